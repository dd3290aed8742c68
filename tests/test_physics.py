"""Behaviour of the dual-energy forward model (simulate/physics.py) on both device profiles.

Shipped calibration tables, monotonic attenuation, dual-energy contrast, beam
hardening, quantum noise against the dose model, and the detector PSF.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dxaspine.simulate.devices import DEVICES, DeviceProfile
from dxaspine.simulate.physics import (
    CALIBRATION_COLUMNS,
    STEP_PHANTOM_BONE_G_CM2,
    STEP_PHANTOM_SOFT_G_CM2,
    acquire,
    calibration_csv,
    log_attenuation_std,
    shipped_calibration,
    shipped_calibration_path,
    step_phantom_table,
)

DEVICE_NAMES = sorted(DEVICES)


def slab(device: DeviceProfile, **areal_g_cm2: float) -> tuple[float, float]:
    """Noise-free, blur-free (low, high) through one uniform slab of the given materials."""
    images = {name: np.full((1, 1), float(value)) for name, value in areal_g_cm2.items()}
    low, high = acquire(images, device, None, blur=False)
    return float(low[0, 0]), float(high[0, 0])


def edge_width_px(profile: np.ndarray) -> float:
    """10-90 % width (pixels) of a rising edge profile, by linear interpolation."""
    p = (profile - profile.min()) / (profile.max() - profile.min())
    assert np.all(np.diff(p) >= -1e-9), "edge profile is not monotonic"
    x = np.arange(p.size, dtype=float)
    return float(np.interp(0.9, p, x) - np.interp(0.1, p, x))


def step_edge(device: DeviceProfile, axis: int, blur: bool, size: int = 64) -> float:
    """Edge width (pixels along `axis`) of 1 g/cm2 bone stepping in over 20 g/cm2 soft tissue."""
    bone = np.zeros((size, size))
    if axis == 0:
        bone[size // 2 :, :] = 1.0
    else:
        bone[:, size // 2 :] = 1.0
    soft = np.full_like(bone, 20.0)
    low, _ = acquire({"hydroxyapatite": bone, "soft_tissue": soft}, device, None, blur=blur)
    # Average across the edge direction; the image is noise-free so any line would do.
    return edge_width_px(low.mean(axis=1 - axis))


# --- calibration tables ---------------------------------------------------------------------


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_shipped_calibration_equals_fresh_step_phantom(name: str) -> None:
    device = DEVICES[name]
    fresh_table = step_phantom_table(device)
    shipped_text = shipped_calibration_path(device).read_text(encoding="utf-8")
    assert shipped_text == calibration_csv(fresh_table), (
        f"calibration_{name}.csv is stale: run scripts/make_calibration_tables.py"
    )
    table = shipped_calibration(device)
    n = STEP_PHANTOM_SOFT_G_CM2.size * STEP_PHANTOM_BONE_G_CM2.size
    assert table.shape == (n, len(CALIBRATION_COLUMNS))
    np.testing.assert_allclose(table[:, :2], fresh_table[:, :2], atol=1e-8)
    np.testing.assert_array_equal(table[:, 2:], fresh_table[:, 2:])
    assert set(np.round(table[:, 2], 2)) == set(STEP_PHANTOM_BONE_G_CM2)
    assert set(table[:, 3]) == set(STEP_PHANTOM_SOFT_G_CM2)


# --- attenuation and dual-energy contrast ----------------------------------------------------


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_more_bone_raises_both_energies(name: str) -> None:
    device = DEVICES[name]
    bone_steps = np.arange(0.0, 2.01, 0.25)
    for soft in (10.0, 20.0, 30.0):
        values = np.array([slab(device, soft_tissue=soft, hydroxyapatite=b) for b in bone_steps])
        assert np.all(np.diff(values[:, 0]) > 0), f"low not rising with bone at soft {soft}"
        assert np.all(np.diff(values[:, 1]) > 0), f"high not rising with bone at soft {soft}"


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_more_soft_tissue_raises_both_energies(name: str) -> None:
    device = DEVICES[name]
    soft_steps = np.arange(5.0, 35.01, 5.0)
    for bone in (0.0, 1.0):
        values = np.array([slab(device, soft_tissue=s, hydroxyapatite=bone) for s in soft_steps])
        assert np.all(np.diff(values[:, 0]) > 0)
        assert np.all(np.diff(values[:, 1]) > 0)
    # Fat attenuates less than lean per g/cm2 (the basis of body-composition DXA).
    assert slab(device, adipose=20.0)[0] < slab(device, muscle=20.0)[0]


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_step_phantom_is_strictly_monotonic_over_its_whole_grid(name: str) -> None:
    """Every step of the calibration grid must be distinguishable (the table is inverted
    to fit BMD): no cell may sit on the one-photon floor of `acquire`."""
    table = step_phantom_table(DEVICES[name])
    shape = (STEP_PHANTOM_SOFT_G_CM2.size, STEP_PHANTOM_BONE_G_CM2.size)
    for column, channel in ((0, "low"), (1, "high")):
        grid = table[:, column].reshape(shape)
        flat_bone = np.argwhere(np.diff(grid, axis=1) <= 0)
        flat_soft = np.argwhere(np.diff(grid, axis=0) <= 0)
        where = [
            (float(STEP_PHANTOM_SOFT_G_CM2[i]), float(STEP_PHANTOM_BONE_G_CM2[j]))
            for i, j in np.concatenate([flat_bone, flat_soft])
        ]
        assert not where, f"{name} {channel}: no contrast at (soft, bone) = {where[:6]}"


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_bone_has_higher_low_high_ratio_than_soft_tissue(name: str) -> None:
    device = DEVICES[name]
    bone_low, bone_high = slab(device, hydroxyapatite=1.0)
    soft_low, soft_high = slab(device, soft_tissue=20.0)
    assert bone_low / bone_high > 1.2 * (soft_low / soft_high)
    # The same contrast for increments on a realistic abdomen (the R-values of DXA).
    base_low, base_high = slab(device, soft_tissue=20.0)
    plus_bone = slab(device, soft_tissue=20.0, hydroxyapatite=1.0)
    plus_soft = slab(device, soft_tissue=21.0)
    r_bone = (plus_bone[0] - base_low) / (plus_bone[1] - base_high)
    r_soft = (plus_soft[0] - base_low) / (plus_soft[1] - base_high)
    assert r_soft > 1.0
    assert r_bone > 1.2 * r_soft


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_beam_hardening_lowers_effective_mu_with_thickness(name: str) -> None:
    device = DEVICES[name]
    thickness = np.array([1.0, 5.0, 10.0, 20.0, 30.0])
    per_g = np.array([slab(device, soft_tissue=t) for t in thickness]) / thickness[:, None]
    for column in (0, 1):
        assert np.all(np.diff(per_g[:, column]) < 0), per_g[:, column]
        assert per_g[-1, column] < 0.995 * per_g[0, column]
    # The softer (low) channel hardens more than the high one.
    drop = 1 - per_g[-1] / per_g[0]
    assert drop[0] > drop[1]


# --- quantum noise --------------------------------------------------------------------------

SLAB = {"soft_tissue": 20.0, "hydroxyapatite": 1.0}


def measured_noise(device: DeviceProfile, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images = {name: np.full((200, 200), value) for name, value in SLAB.items()}
    return acquire(images, device, np.random.default_rng(seed), blur=False)


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_noise_matches_dose_model(name: str) -> None:
    device = DEVICES[name]
    low, high = measured_noise(device, seed=1)
    predicted = log_attenuation_std(SLAB, device)
    expected_mean = slab(device, **SLAB)
    for image, std, mean in zip((low, high), predicted, expected_mean, strict=True):
        assert image.std() == pytest.approx(std, rel=0.05)
        # Unbiased to well within one pixel's noise, and white (no pixel-to-pixel correlation).
        assert abs(image.mean() - mean) < 0.2 * std
        centred = image - image.mean()
        rho = (centred[:, 1:] * centred[:, :-1]).mean() / centred.var()
        assert abs(rho) < 0.03


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_doubling_dose_lowers_noise_by_sqrt2(name: str) -> None:
    device = DEVICES[name]
    doubled = dataclasses.replace(device, photons_per_pixel=2 * device.photons_per_pixel)
    low1, high1 = measured_noise(device, seed=2)
    low2, high2 = measured_noise(doubled, seed=3)
    assert low1.std() / low2.std() == pytest.approx(np.sqrt(2), rel=0.05)
    assert high1.std() / high2.std() == pytest.approx(np.sqrt(2), rel=0.05)
    predicted1, predicted2 = log_attenuation_std(SLAB, device), log_attenuation_std(SLAB, doubled)
    np.testing.assert_allclose(np.divide(predicted1, predicted2), np.sqrt(2), rtol=1e-6)


def test_noise_is_reproducible_from_the_generator() -> None:
    device = DEVICES["hologic-like"]
    a = measured_noise(device, seed=5)
    b = measured_noise(device, seed=5)
    c = measured_noise(device, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


# --- blur (PSF) -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEVICE_NAMES)
@pytest.mark.parametrize("axis", [0, 1])
def test_blur_widens_a_sharp_edge(name: str, axis: int) -> None:
    device = DEVICES[name]
    sharp = step_edge(device, axis, blur=False)
    blurred = step_edge(device, axis, blur=True)
    assert sharp == pytest.approx(0.8, abs=1e-6)  # a one-pixel step, linearly interpolated
    assert blurred > sharp + 0.03


@pytest.mark.parametrize("axis", [0, 1])
def test_lunar_like_psf_is_wider_than_hologic_like(axis: int) -> None:
    hologic, lunar = DEVICES["hologic-like"], DEVICES["lunar-like"]
    assert lunar.psf_fwhm_mm[axis] > hologic.psf_fwhm_mm[axis]
    # In physical units on each device's own grid...
    hologic_mm = step_edge(hologic, axis, blur=True) * hologic.spacing_mm[axis]
    lunar_mm = step_edge(lunar, axis, blur=True) * lunar.spacing_mm[axis]
    assert lunar_mm > 1.5 * hologic_mm
    # ...and on the same pixel grid, so only the PSF differs.
    lunar_on_hologic_grid = dataclasses.replace(lunar, spacing_mm=hologic.spacing_mm)
    assert step_edge(lunar_on_hologic_grid, axis, blur=True) > 1.5 * step_edge(
        hologic, axis, blur=True
    )
