"""Tests of dxaspine.scores: calibration, baseline, BMD accuracy, T/Z/WHO/ISCD."""

from __future__ import annotations

import numpy as np
import pytest

from dxaspine import scores as S
from dxaspine.scan import Scan
from dxaspine.simulate.case import AnatomyRanges
from dxaspine.simulate.devices import DEVICES
from dxaspine.simulate.generate import RenderOptions, simulate_scan
from dxaspine.simulate.physics import acquire, shipped_calibration

TRUE_BMD = (0.5, 1.0, 1.5)


def esp_like_phantom(device) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Three 40 x 30 mm hydroxyapatite blocks (0.5, 1.0, 1.5 g/cm2) stacked like vertebrae,
    under 15-25 g/cm2 muscle + adipose whose thickness and fat fraction (0.1-0.5) vary
    across the image. Returns (areal densities, labels 1..3 = the blocks)."""
    rows, cols = device.shape
    height, width = device.field_of_view_mm
    y = (np.arange(rows) + 0.5) * device.spacing_mm[0]
    x = (np.arange(cols) + 0.5) * device.spacing_mm[1]
    yy, xx = np.meshgrid(y, x, indexing="ij")
    soft = 15.0 + 10.0 * (0.6 * xx / width + 0.4 * yy / height)
    fat = 0.1 + 0.4 * (0.5 * (1 - xx / width) + 0.5 * yy / height)
    mineral = np.zeros((rows, cols))
    labels = np.zeros((rows, cols), np.uint8)
    for k, (bmd, centre) in enumerate(zip(TRUE_BMD, (0.27, 0.5, 0.73), strict=True)):
        r0 = int((centre * height - 15) / device.spacing_mm[0])
        r1 = int((centre * height + 15) / device.spacing_mm[0])
        c0 = int((width / 2 - 20) / device.spacing_mm[1])
        c1 = int((width / 2 + 20) / device.spacing_mm[1])
        mineral[r0:r1, c0:c1] = bmd
        labels[r0:r1, c0:c1] = k + 1
    return {"hydroxyapatite": mineral, "muscle": soft * (1 - fat), "adipose": soft * fat}, labels


def phantom_errors(name: str, rng, blur: bool) -> np.ndarray:
    """Relative BMD errors of the three blocks. An acquisition without blur is a
    detector with no PSF, so it is scored without the PSF correction."""
    device = DEVICES[name]
    areal, labels = esp_like_phantom(device)
    low, high = acquire(areal, device, rng, blur=blur)
    scan = Scan(low=low, high=high, spacing_mm=device.spacing_mm, meta={"device": name})
    result = S.score_bmd(scan, labels, S.device_calibration(name), correct_psf=blur)
    measured = np.array([v.bmd_g_cm2 for v in result.vertebrae])
    return measured / np.array(TRUE_BMD) - 1


@pytest.mark.parametrize("name", list(DEVICES))
def test_calibration_residual(name):
    table = shipped_calibration(DEVICES[name])
    cubic = S.fit_calibration(table, name, degree=3)
    default = S.device_calibration(name)
    assert cubic.residual_rms_g_cm2 < 0.0015
    assert default.degree == S.DEFAULT_DEGREE
    assert default.residual_rms_g_cm2 < 0.0005
    bone = default.bone_g_cm2(table[:, 0], table[:, 1])
    assert np.abs(bone - table[:, 2]).max() < 0.005


@pytest.mark.parametrize("name", list(DEVICES))
def test_phantom_noise_free_within_1_percent(name):
    errors = phantom_errors(name, None, blur=False)
    print(name, "noise-free errors %", np.round(errors * 100, 3))
    assert np.abs(errors).max() < 0.01


@pytest.mark.parametrize("name", list(DEVICES))
def test_phantom_noisy_without_blur_within_2_percent(name):
    errors = phantom_errors(name, np.random.default_rng(0), blur=False)
    assert np.abs(errors).max() < 0.02


@pytest.mark.parametrize("name", list(DEVICES))
def test_phantom_noise_free_with_blur_within_2_percent(name):
    errors = phantom_errors(name, None, blur=True)
    print(name, "noise-free+blur errors %", np.round(errors * 100, 3))
    assert np.abs(errors).max() < 0.02


@pytest.mark.parametrize("name", list(DEVICES))
def test_phantom_psf_correction_is_needed(name):
    """Noise-free with blur, the corrected L1-L3 total is closer to the truth than
    the plain one (plain: hologic-like about -0.9 %, lunar-like -4 to -6.5 %)."""
    device = DEVICES[name]
    areal, labels = esp_like_phantom(device)
    low, high = acquire(areal, device, None, blur=True)
    scan = Scan(low=low, high=high, spacing_mm=device.spacing_mm, meta={"device": name})
    calibration = S.device_calibration(name)
    plain = S.score_bmd(scan, labels, calibration, correct_psf=False).total.bmd_g_cm2
    corrected = S.score_bmd(scan, labels, calibration).total.bmd_g_cm2
    true_total = float(np.mean(TRUE_BMD))  # equal block areas
    assert abs(corrected / true_total - 1) < abs(plain / true_total - 1)


@pytest.mark.parametrize("name", list(DEVICES))
def test_phantom_noisy_with_blur_within_2_percent(name):
    errors = phantom_errors(name, np.random.default_rng(0), blur=True)
    print(name, "noisy+blur errors %", np.round(errors * 100, 3))
    assert np.abs(errors).max() < 0.02


def test_deblur_log_attenuation_recovers_a_blurred_edge():
    """A noise-free bone block seen through a Gaussian PSF: the linear part alone
    (iterations=0) leaves the Jensen gap of the log of blurred intensities; the
    default one-step correction removes most of it."""
    from scipy.ndimage import gaussian_filter

    spacing, fwhm = (1.2, 1.05), (1.8, 1.6)
    sigma = [f / 2.3548 / d for f, d in zip(fwhm, spacing, strict=True)]
    true = np.full((80, 70), 1.0)
    true[25:55, 20:50] += 2.0  # a low-energy bone edge of 2 log units
    measured = -np.log(gaussian_filter(np.exp(-true), sigma, mode="nearest"))
    block = np.s_[25:55, 20:50]
    linear = S.deblur_log_attenuation(measured, spacing, fwhm, iterations=0)
    corrected = S.deblur_log_attenuation(measured, spacing, fwhm)
    excess = [(image[block] - 1.0).mean() / 2.0 - 1 for image in (measured, linear, corrected)]
    assert excess[0] < -0.04  # blurred: -5.4 %; linear part only: -3.7 %
    assert abs(excess[2]) < abs(excess[1]) / 3  # corrected: -0.9 %
    assert abs(excess[2]) < 0.015
    np.testing.assert_allclose(
        S.deblur_log_attenuation(measured, spacing, (0.0, 0.0)), measured, atol=0
    )


def test_baseline_cancels_linear_gradient():
    rows, cols = 64, 120
    x = np.arange(cols, dtype=float)
    image = np.tile(0.05 + 0.002 * x, (rows, 1))
    mask = np.zeros((rows, cols), bool)
    mask[20:40, 50:70] = True
    baseline = S.soft_tissue_baseline(image + 0.8 * mask, mask, (1.0, 1.0), window_mm=40)
    np.testing.assert_allclose(baseline[mask], image[mask], atol=1e-9)


def test_t_score_who_and_iscd_hand_values():
    ref = S.BMDReference("test", 1.0, 0.1)
    assert S.t_score(0.85, ref) == pytest.approx(-1.5)
    assert S.who_category(-1.0) == "normal"
    assert S.who_category(-1.01) == "osteopenia"
    assert S.who_category(-2.49) == "osteopenia"
    assert S.who_category(-2.5) == "osteoporosis"
    assert S.who_category(float("nan")) == "unknown"
    default = S.NHANES_WOMEN_DEFAULT
    assert S.t_score(0.852, default) == pytest.approx((0.852 - 1.064) / 0.106)
    assert S.z_score(1.0, None, "F") is None
    assert S.z_score(1.064, 25, "F") == pytest.approx(0.0)
    assert S.z_score(0.993 - 0.141, 55, "F") == pytest.approx(-1.0)

    def v(name, t):
        return S.VertebraScore(name, 15.0, 15.0, 1.0, t, None)

    assert S.iscd_flags([v("L1", -1.0), v("L2", -1.5), v("L3", -2.6), v("L4", -2.0)]) == [
        "L2",
        "L3",
    ]
    assert S.iscd_flags([v("L1", -1.0), v("L2", -2.0)]) == []


def test_total_is_sum_bmc_over_sum_area():
    rows, cols = 64, 64
    scan = Scan(
        low=np.zeros((rows, cols), np.float32),
        high=np.zeros((rows, cols), np.float32),
        spacing_mm=(1.0, 2.0),
        meta={"device": "test"},
    )
    labels = np.zeros((rows, cols), np.uint8)
    labels[10:20, 20:30] = 1  # 100 px
    labels[30:50, 20:30] = 2  # 200 px
    table = np.array(
        [[lo, hi, lo, 0.0] for lo in np.linspace(0, 1, 5) for hi in np.linspace(0, 1, 5)]
    )
    calibration = S.fit_calibration(table, "test", degree=1)  # bone = low exactly
    scan.low[labels == 1] = 1.0
    scan.low[labels == 2] = 0.4
    result = S.score_bmd(scan, labels, calibration, S.BMDReference("r", 1.0, 0.1))
    l1, l2 = result.vertebrae
    assert l1.area_cm2 == pytest.approx(100 * 0.02)
    assert l1.bmd_g_cm2 == pytest.approx(1.0)
    assert l2.bmd_g_cm2 == pytest.approx(0.4)
    assert result.total.bmd_g_cm2 == pytest.approx((2.0 * 1.0 + 4.0 * 0.4) / 6.0)
    assert result.total.bmd_g_cm2 != pytest.approx(0.7)
    assert result.iscd_flags == ["L1", "L2"]
    assert result.who_category == "osteoporosis"  # T = (0.6 - 1.0) / 0.1 = -4


def test_calibration_json_round_trip(tmp_path):
    calibration = S.device_calibration("lunar-like")
    path = tmp_path / "cal.json"
    calibration.to_json(path)
    back = S.Calibration.from_json(path)
    assert back.device == calibration.device and back.degree == calibration.degree
    np.testing.assert_array_equal(back.bone_coefficients, calibration.bone_coefficients)
    assert calibration.psf_fwhm_mm == DEVICES["lunar-like"].psf_fwhm_mm
    assert back.psf_fwhm_mm == calibration.psf_fwhm_mm
    assert back.psf_regularisation == calibration.psf_regularisation
    low, high = np.array([1.0, 2.0]), np.array([0.5, 1.0])
    np.testing.assert_array_equal(back.bone_g_cm2(low, high), calibration.bone_g_cm2(low, high))


def test_read_calibration_table(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("high,low,bone_g_cm2,soft_g_cm2\n0.5,1.0,0.1,10\n", encoding="utf-8")
    np.testing.assert_array_equal(S.read_calibration_table(good), [[1.0, 0.5, 0.1, 10.0]])
    missing = tmp_path / "missing.csv"
    missing.write_text("low,high,bone_g_cm2\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing\.csv.*soft_g_cm2"):
        S.read_calibration_table(missing)
    text = tmp_path / "text.csv"
    text.write_text("low,high,bone_g_cm2,soft_g_cm2\n1,x,3,4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"text\.csv"):
        S.read_calibration_table(text)


def test_device_mismatch_is_refused():
    scan = simulate_scan(7, 1, "hologic-like")
    with pytest.raises(ValueError, match="lunar-like"):
        S.bone_areal_density(scan, S.device_calibration("lunar-like"))


# Seed 7 scans without aortic calcification, clips or implants (ribs are always present).
CLEAN_SCANS = (0, 1, 3, 9)
# The same fat fraction over and beside the spine: the fat-distribution error
# of DXA (AnatomyRanges.paraspinal_fat_deficit) is the patient's, which no
# soft-tissue baseline can remove; these tests measure the scoring's own error.
EVEN_FAT = AnatomyRanges(paraspinal_fat_deficit=(0.0, 0.0))


def simulated_errors(name: str) -> list[float]:
    errors = []
    for index in CLEAN_SCANS:
        scan = simulate_scan(7, index, name, EVEN_FAT, options=RenderOptions(truth_maps=True))
        result = S.score_bmd(scan, scan.labels, S.device_calibration(name))
        truth = scan.meta["truth"]["vertebrae"]
        errors += [v.bmd_g_cm2 / truth[v.name]["bmd_g_cm2"] - 1 for v in result.vertebrae]
    return errors


def test_simulated_scans_hologic_within_6_percent():
    errors = simulated_errors("hologic-like")
    print("hologic-like simulated BMD errors %", np.round(np.array(errors) * 100, 2))
    assert np.abs(errors).max() < 0.06


@pytest.mark.xfail(
    strict=True,
    reason="since posterior elements carry their literature share of the mineral (0.4), "
    "the lunar-like PSF loses more at the mask edges: worst vertebra -7.9 %, mean -3.6 % "
    "(docs/physics.md, 'BMD accuracy and the PSF')",
)
def test_simulated_scans_lunar_within_6_percent():
    errors = simulated_errors("lunar-like")
    print("lunar-like simulated BMD errors %", np.round(np.array(errors) * 100, 2))
    assert np.abs(errors).max() < 0.06


def test_vertebra_under_an_implant_is_excluded_from_the_total():
    """Simulated lunar-like scan 14 (seed 2002) has a titanium implant over L4."""
    scan = simulate_scan(2002, 14, "lunar-like")
    calibration = S.device_calibration("lunar-like")
    assert S.out_of_calibration(scan, calibration)[scan.labels == 4].mean() > 0.01
    result = S.score_bmd(scan, scan.labels, calibration)
    assert result.excluded == ["L4"]
    assert result.total.name == "L1-L3"
    kept = [v for v in result.vertebrae if v.name != "L4"]
    assert result.total.area_cm2 == pytest.approx(sum(v.area_cm2 for v in kept))
    assert result.total.bmc_g == pytest.approx(sum(v.bmc_g for v in kept))
    truth = scan.meta["truth"]["vertebrae"]
    true_total = sum(truth[n]["bmc_g"] for n in ("L1", "L2", "L3")) / sum(
        truth[n]["area_cm2"] for n in ("L1", "L2", "L3")
    )
    assert result.total.bmd_g_cm2 == pytest.approx(true_total, rel=0.1)
    l4 = next(v for v in result.vertebrae if v.name == "L4")
    assert l4.area_cm2 > 0 and np.isnan(l4.bmd_g_cm2) and np.isnan(l4.t_score)


def test_scans_without_metal_exclude_nothing():
    for index in range(3):
        scan = simulate_scan(2002, index, "lunar-like")
        result = S.score_bmd(scan, scan.labels, S.device_calibration("lunar-like"))
        assert result.excluded == [] and result.total.name == "L1-L4"


def test_region_names_follow_iscd_notation():
    def named(*names):
        return [S.VertebraScore(n, 1.0, 1.0, 1.0, 0.0, None) for n in names]

    assert S._region_name(named("L1", "L2", "L3", "L4")) == "L1-L4"
    assert S._region_name(named("L1", "L3", "L4")) == "L1,L3-L4"
    assert S._region_name(named("L2")) == "L2"
    assert S._region_name([]) == "none"


def test_without_vertebrae_clears_only_the_named_ones():
    labels = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    np.testing.assert_array_equal(S.without_vertebrae(labels, ["L2", "L4"]), [[1, 0], [3, 0]])
    assert labels[0, 1] == 2  # the input is not modified
