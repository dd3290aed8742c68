"""Behaviour of the scan simulator: determinism, the segmentation protocol
(docs/protocol.md), ground truth, each artefact, texture, device profiles and
the `simulate` command.

Artefact tests change one field of a fixed `Case` with `dataclasses.replace`
and compare noise-free renders, so every difference is signal.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.scan import Scan
from dxaspine.simulate.case import AnatomyRanges, ArtefactRates, Case, sample_case
from dxaspine.simulate.devices import DEVICES, DeviceProfile
from dxaspine.simulate.generate import RenderOptions, render_case, simulate_scan
from dxaspine.simulate.spine import place_vertebrae, render_vertebra
from dxaspine.simulate.texture import trabecular_texture

LUMBAR = ("L1", "L2", "L3", "L4")
FLAG_NAMES = tuple(field.name for field in dataclasses.fields(ArtefactRates))
NO_ARTEFACTS = ArtefactRates(**{name: 0.0 for name in FLAG_NAMES})
HOLOGIC = DEVICES["hologic-like"]
EXACT = RenderOptions(noise=False, blur=False)


def index_of(case: Case, name: str) -> int:
    return [v.name for v in case.vertebrae].index(name)


def with_vertebra(case: Case, name: str, **changes) -> Case:
    vertebrae = list(case.vertebrae)
    i = index_of(case, name)
    vertebrae[i] = dataclasses.replace(vertebrae[i], **changes)
    return dataclasses.replace(case, vertebrae=tuple(vertebrae))


def with_spine(case: Case, **changes) -> Case:
    return dataclasses.replace(case, spine=dataclasses.replace(case.spine, **changes))


def with_soft(case: Case, **changes) -> Case:
    return dataclasses.replace(case, soft=dataclasses.replace(case.soft, **changes))


def with_artefacts(case: Case, **changes) -> Case:
    return dataclasses.replace(case, artefacts=dataclasses.replace(case.artefacts, **changes))


def render(case: Case, device: DeviceProfile = HOLOGIC, options: RenderOptions | None = None):
    """Noise-free render (blurred unless `options` says otherwise)."""
    return render_case(case, device, None, options)


def centroids(scan: Scan) -> dict[int, np.ndarray]:
    """(row, col) centroid of each label 1..4, in pixels."""
    return {label: np.array(ndimage.center_of_mass(scan.labels == label)) for label in range(1, 5)}


def bmd(scan: Scan) -> dict[str, float]:
    return {name: v["bmd_g_cm2"] for name, v in scan.meta["truth"]["vertebrae"].items()}


def pixel_mm(scan: Scan) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) in mm, as 2-D grids."""
    rows, cols = scan.shape
    y = (np.arange(rows) + 0.5) * scan.spacing_mm[0]
    x = (np.arange(cols) + 0.5) * scan.spacing_mm[1]
    return np.meshgrid(y, x, indexing="ij")


@pytest.fixture(scope="module")
def straight_case() -> Case:
    """A patient with no artefacts, an upright spine and no axial rotation."""
    case = sample_case(np.random.default_rng(5), "straight", rates=NO_ARTEFACTS)
    assert not any(case.flags.values())
    assert case.spine.scoliosis_deg == 0.0
    assert not case.artefacts.clips and not case.artefacts.calcification
    return with_spine(case, tilt_deg=0.0, axial_rotation_deg=0.0)


@pytest.fixture(scope="module")
def base_scan(straight_case: Case) -> Scan:
    return render(straight_case)


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_and_index_give_identical_scans() -> None:
    a = simulate_scan(3, 2, "hologic-like")
    b = simulate_scan(3, 2, "hologic-like")
    for name in ("low", "high", "labels", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.meta == b.meta
    assert a.spacing_mm == b.spacing_mm
    other = simulate_scan(3, 3, "hologic-like")
    assert other.scan_id != a.scan_id
    assert not np.array_equal(other.low, a.low)
    assert not np.array_equal(other.labels, a.labels)
    assert other.meta["truth"] != a.meta["truth"]


def test_same_patients_on_every_device() -> None:
    hologic = simulate_scan(4, 1, "hologic-like")
    lunar = simulate_scan(4, 1, "lunar-like")
    for key in ("age_years", "sex", "bmi_kg_m2", "flags", "fat_fraction"):
        assert hologic.meta["truth"][key] == lunar.meta["truth"][key]
    for name in LUMBAR:
        h, u = hologic.meta["truth"]["vertebrae"][name], lunar.meta["truth"]["vertebrae"][name]
        assert h["bmd_target_g_cm2"] == u["bmd_target_g_cm2"]
        assert u["bmd_g_cm2"] == pytest.approx(h["bmd_g_cm2"], rel=0.05)
        assert u["area_cm2"] == pytest.approx(h["area_cm2"], rel=0.08)


# --- protocol consistency -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort() -> list[Scan]:
    """Default artefact rates: six hologic-like and two lunar-like scans."""
    return [simulate_scan(11, i, "hologic-like") for i in range(6)] + [
        simulate_scan(11, i, "lunar-like") for i in range(2)
    ]


def test_labels_and_mask_follow_the_stored_form(cohort: list[Scan]) -> None:
    for scan in cohort:
        assert scan.labels.dtype == np.uint8 and scan.mask.dtype == np.uint8
        assert scan.labels.shape == scan.shape == scan.mask.shape
        assert set(np.unique(scan.labels)) <= {0, 1, 2, 3, 4}
        np.testing.assert_array_equal(scan.mask, (scan.labels > 0).astype(np.uint8))


def test_each_vertebra_present_ordered_and_connected(cohort: list[Scan]) -> None:
    for scan in cohort:
        rows = []
        for label in range(1, 5):
            region = scan.labels == label
            assert region.sum() > 200, f"{scan.scan_id}: L{label} nearly empty"
            rows.append(np.nonzero(region)[0].mean())
            components, n = ndimage.label(region)
            sizes = np.bincount(components.ravel())[1:]
            assert sizes.max() >= 0.95 * sizes.sum(), (
                f"{scan.scan_id}: L{label} split into {n} pieces {sorted(sizes)[::-1]}"
            )
        assert np.all(np.diff(rows) > 0), f"{scan.scan_id}: vertebrae not top to bottom {rows}"


def test_body_labels_are_the_labels_less_their_posterior_elements() -> None:
    maps = RenderOptions(noise=False, truth_maps=True)
    for index, device in ((0, "hologic-like"), (1, "lunar-like")):
        scan = simulate_scan(11, index, device, options=maps)
        assert "body_labels" not in simulate_scan(11, index, device).truth_maps
        bodies = scan.truth_maps["body_labels"]
        assert np.all((bodies == 0) | (bodies == scan.labels))  # a part of the labels
        for label in range(1, 5):
            body, whole = bodies == label, scan.labels == label
            assert 0.75 < body.sum() / whole.sum() < 0.98, (label, body.sum() / whole.sum())
        for label in range(1, 4):  # (L5's body may take the L4-L5 disc space, if narrowed)
            body, whole = bodies == label, scan.labels == label
            # Posterior elements of the vertebra reach into the disc space below its body.
            below = np.nonzero(whole & ~body)[0].max() - np.nonzero(body)[0].max()
            assert below * scan.spacing_mm[0] > 4.0, (label, below)


def test_truth_areas_bmd_and_total(cohort: list[Scan]) -> None:
    l1, rest = [], []
    for scan in cohort:
        truth = scan.meta["truth"]
        vertebrae = truth["vertebrae"]
        assert set(vertebrae) == set(LUMBAR)
        for label, name in enumerate(LUMBAR, start=1):
            n_pixels = int((scan.labels == label).sum())
            assert vertebrae[name]["area_cm2"] == pytest.approx(
                n_pixels * scan.pixel_area_cm2, abs=1e-6
            )
            assert vertebrae[name]["bmc_g"] == pytest.approx(
                vertebrae[name]["bmd_g_cm2"] * vertebrae[name]["area_cm2"], rel=1e-5
            )
            assert 0.4 <= vertebrae[name]["bmd_g_cm2"] <= 1.8
        total = sum(v["bmc_g"] for v in vertebrae.values()) / sum(
            v["area_cm2"] for v in vertebrae.values()
        )
        assert truth["total_bmd_g_cm2"] == pytest.approx(total, rel=1e-5)
        l1.append(vertebrae["L1"]["bmd_g_cm2"])
        rest.append(np.mean([vertebrae[n]["bmd_g_cm2"] for n in LUMBAR[1:]]))
        assert set(truth["flags"]) == set(FLAG_NAMES)
    assert np.mean(l1) < np.mean(rest) - 0.03


# --- ground truth does not depend on soft tissue --------------------------------------------


@pytest.mark.parametrize(
    ("field", "before", "after", "low_change"),
    [
        # Twice the abdomen: much more attenuation.
        ("centre_g_cm2", 15.0, 30.0, 1.0),
        # Fat attenuates less than lean: attenuation falls, the low channel most.
        ("fat_fraction", 0.15, 0.5, -0.02),
    ],
)
def test_truth_independent_of_soft_tissue(
    straight_case: Case, field: str, before: float, after: float, low_change: float
) -> None:
    a = render(with_soft(straight_case, **{field: before}))
    b = render(with_soft(straight_case, **{field: after}))
    change_low = float(b.low.mean() - a.low.mean())
    change_high = float(b.high.mean() - a.high.mean())
    assert np.sign(change_low) == np.sign(low_change) == np.sign(change_high)
    assert abs(change_low) > abs(low_change)
    assert abs(change_low) > abs(change_high) > 0
    np.testing.assert_array_equal(a.labels, b.labels)
    assert bmd(a) == bmd(b)
    assert a.meta["truth"]["total_bmd_g_cm2"] == b.meta["truth"]["total_bmd_g_cm2"]


def test_paraspinal_fat_deficit_has_its_own_random_stream() -> None:
    """Drawing the deficit left every other draw of a case as it was."""
    no_deficit = AnatomyRanges(paraspinal_fat_deficit=(0.0, 0.0))
    for index in range(5):
        drawn = sample_case(np.random.default_rng([11, index]), "x")
        without = sample_case(np.random.default_rng([11, index]), "x", no_deficit)
        assert without.soft.paraspinal_fat_deficit == 0.0
        assert drawn.soft.paraspinal_fat_deficit != 0.0
        assert with_soft(drawn, paraspinal_fat_deficit=0.0) == without
    mean, sd = AnatomyRanges().paraspinal_fat_deficit
    deficits = np.array(
        [
            sample_case(np.random.default_rng([12, i]), "x").soft.paraspinal_fat_deficit
            for i in range(300)
        ]
    )
    # 300 draws: the mean's standard error is 0.06 SD; allow four of them.
    assert abs(deficits.mean() - mean) < 0.25 * sd
    assert abs(deficits.std() - sd) < 0.25 * sd
    assert deficits.min() >= mean - 2.5 * sd and deficits.max() <= mean + 2.5 * sd


def test_less_fat_over_the_spine_reads_as_bone_mineral(straight_case: Case) -> None:
    """The fat-distribution error of DXA: lean tissue over the spine, fatter tissue
    beside it, raise the measured BMD although the true BMD is unchanged."""
    from dxaspine import scores

    even = render(with_soft(straight_case, paraspinal_fat_deficit=0.0))
    lean_over_spine = render(with_soft(straight_case, paraspinal_fat_deficit=0.3))
    np.testing.assert_array_equal(even.labels, lean_over_spine.labels)
    assert bmd(even) == bmd(lean_over_spine)
    # Lean attenuates more than fat: over the spine only, the low image rises.
    spine_col = int(np.mean(np.nonzero(even.labels)[1]))
    flank_col = 5
    assert (lean_over_spine.low - even.low)[:, spine_col].min() > 0.001
    np.testing.assert_allclose(lean_over_spine.low[:, flank_col], even.low[:, flank_col])
    calibration = scores.device_calibration("hologic-like")
    measured = [
        np.array([v.bmd_g_cm2 for v in scores.score_bmd(s, s.labels, calibration).vertebrae])
        for s in (even, lean_over_spine)
    ]
    # +0.038 g/cm2 of BMD per g/cm2 of fat over the spine turned lean (docs/physics.md).
    soft = straight_case.soft
    expected = 0.038 * soft.centre_g_cm2 * soft.fat_fraction * 0.3
    np.testing.assert_allclose(measured[1] - measured[0], expected, rtol=0.4)


# --- artefacts, one at a time at a fixed anatomy ----------------------------------------------


def assert_truth_and_labels_unchanged(scan: Scan, base: Scan) -> None:
    """Foreign objects, calcification and gas never change labels or true BMD (protocol §4, §7)."""
    np.testing.assert_array_equal(scan.labels, base.labels)
    assert bmd(scan) == bmd(base)


def test_clip_raises_attenuation_at_the_clip_only(straight_case: Case, base_scan: Scan) -> None:
    y, x = 60.0, 40.0
    scan = render(with_artefacts(straight_case, clips=((y, x, 0.3),)))
    yy, xx = pixel_mm(scan)
    distance = np.hypot(yy - y, xx - x)
    at = np.unravel_index(distance.argmin(), distance.shape)
    for channel in ("low", "high"):
        diff = getattr(scan, channel) - getattr(base_scan, channel)
        assert diff[at] > 0.1, channel
        assert distance[np.unravel_index(diff.argmax(), diff.shape)] < 5.0
        assert np.abs(diff[distance > 12.0]).max() < 1e-6
        assert diff.min() > -1e-3  # metal only ever adds attenuation
    assert_truth_and_labels_unchanged(scan, base_scan)


def test_aortic_calcification_right_of_spine_between_l1_and_l4(
    straight_case: Case, base_scan: Scan
) -> None:
    scan = render(with_artefacts(straight_case, calcification=((0.5, 1, 10.0, 0.3),)))
    diff = scan.high - base_scan.high
    assert diff.max() > 0.03
    row, _ = np.unravel_index(diff.argmax(), diff.shape)
    centre = centroids(base_scan)
    assert centre[1][0] < row < centre[4][0]
    spine_col = np.mean([c[1] for c in centre.values()])
    changed_cols = np.nonzero(np.abs(diff) > 1e-4)[1]
    assert changed_cols.min() > spine_col + 5.0 / scan.spacing_mm[1]  # image right: patient left
    assert_truth_and_labels_unchanged(scan, base_scan)


def test_osteophyte_adds_pixels_at_the_body_corner(straight_case: Case, base_scan: Scan) -> None:
    scan = render(with_vertebra(straight_case, "L3", osteophytes=((1, 1, 6.0),)))
    gained = (scan.labels == 3) & (base_scan.labels != 3)
    lost = (base_scan.labels == 3) & (scan.labels != 3)
    assert gained.sum() >= 10 and lost.sum() == 0
    # The spur grows from the lower (end +1) corner on the image right (side +1).
    l3 = straight_case.vertebrae[index_of(straight_case, "L3")]
    row, col = centroids(base_scan)[3]
    rows, cols = np.nonzero(gained)
    assert rows.min() > row
    assert cols.min() > col + 0.7 * l3.half_width_mm / scan.spacing_mm[1]
    # Osteophytes are bone of L3 (protocol §2): its true BMD rises, the others' do not change.
    before, after = bmd(base_scan), bmd(scan)
    assert after["L3"] > before["L3"]
    assert all(after[name] == before[name] for name in ("L1", "L2", "L4"))


def test_osteophytes_are_attached_to_the_vertebral_body(straight_case: Case) -> None:
    """Marginal spurs grow from the endplate corners (protocol §2), so the vertebra
    with spurs at all four corners is still one connected region."""
    spurs = tuple((side, end, 6.0) for side in (-1, 1) for end in (-1, 1))
    scan = render(with_vertebra(straight_case, "L3", osteophytes=spurs))
    _, n_pieces = ndimage.label(scan.labels == 3, structure=np.ones((3, 3)))
    assert n_pieces == 1, f"L3 with four spurs is {n_pieces} separate pieces"


def test_compression_fracture_shrinks_the_vertebra(straight_case: Case, base_scan: Scan) -> None:
    scan = render(with_vertebra(straight_case, "L2", height_loss=0.3))
    area_before = (base_scan.labels == 2).sum()
    area_after = (scan.labels == 2).sum()
    assert area_after < 0.85 * area_before
    rows_before = np.ptp(np.nonzero(base_scan.labels == 2)[0])
    rows_after = np.ptp(np.nonzero(scan.labels == 2)[0])
    assert rows_after < rows_before
    rows = [c[0] for c in centroids(scan).values()]
    assert np.all(np.diff(rows) > 0)


def test_scoliosis_spreads_the_vertebrae_sideways(straight_case: Case, base_scan: Scan) -> None:
    straight_cols = [c[1] for c in centroids(base_scan).values()]
    assert np.std(straight_cols) < 1.0
    scan = render(with_spine(straight_case, scoliosis_deg=12.0))
    curved = centroids(scan)
    cols = [c[1] for c in curved.values()]
    assert np.std(cols) > np.std(straight_cols) + 2.0
    assert np.all(np.diff([c[0] for c in curved.values()]) > 0)


@pytest.mark.parametrize("tilt_deg", [8.0, -8.0])
def test_tilt_slants_the_spine(straight_case: Case, tilt_deg: float) -> None:
    scan = render(with_spine(straight_case, tilt_deg=tilt_deg))
    centre = np.array(list(centroids(scan).values())) * np.array(scan.spacing_mm)
    slope = np.polyfit(centre[:, 0], centre[:, 1], 1)[0]  # mm right per mm down
    assert slope == pytest.approx(np.tan(np.deg2rad(tilt_deg)), abs=0.03)


@pytest.mark.parametrize("rotation_deg", [12.0, -12.0])
def test_axial_rotation_moves_posterior_elements(
    straight_case: Case, base_scan: Scan, rotation_deg: float
) -> None:
    scan = render(with_spine(straight_case, axial_rotation_deg=rotation_deg))
    diff = scan.low - base_scan.low
    inside, outside = base_scan.labels > 0, base_scan.labels == 0
    assert np.abs(diff[inside]).mean() > 5 * np.abs(diff[outside]).mean()
    # In L2 the bone moves towards the rotation side: gains on that side, losses on the other.
    l2 = base_scan.labels == 2
    col = np.indices(diff.shape)[1]
    gain = np.where(l2 & (diff > 0), diff, 0.0)
    loss = np.where(l2 & (diff < 0), -diff, 0.0)
    gain_col, loss_col = (gain * col).sum() / gain.sum(), (loss * col).sum() / loss.sum()
    assert np.sign(gain_col - loss_col) == np.sign(rotation_deg)
    assert abs(gain_col - loss_col) > 5.0


@pytest.mark.parametrize("shift_mm", [15.0, -20.0])
def test_off_centre_shifts_the_spine(straight_case: Case, base_scan: Scan, shift_mm: float) -> None:
    scan = render(with_spine(straight_case, centre_x_mm=straight_case.spine.centre_x_mm + shift_mm))
    before, after = centroids(base_scan), centroids(scan)
    for label in range(1, 5):
        assert after[label][0] == pytest.approx(before[label][0], abs=0.5)
        shift_px = after[label][1] - before[label][1]
        assert shift_px == pytest.approx(shift_mm / scan.spacing_mm[1], abs=1.0)


def test_bowel_gas_lowers_attenuation_at_the_pocket(straight_case: Case, base_scan: Scan) -> None:
    l3 = place_vertebrae(straight_case, HOLOGIC.field_of_view_mm[1])[index_of(straight_case, "L3")]
    y, x = l3.centre_y_mm, l3.centre_x_mm
    pocket = (y, x, 10.0, 1.0, 2.5)
    scan = render(with_soft(straight_case, gas_pockets=(*straight_case.soft.gas_pockets, pocket)))
    yy, xx = pixel_mm(scan)
    distance = np.hypot(yy - y, xx - x)
    at = np.unravel_index(distance.argmin(), distance.shape)
    for channel, drop in (("low", 0.2), ("high", 0.1)):
        diff = getattr(scan, channel) - getattr(base_scan, channel)
        assert diff[at] < -drop, channel
        assert diff.max() < 1e-6  # gas only removes tissue
        assert np.abs(diff[distance > 20.0]).max() < 1e-6
    assert_truth_and_labels_unchanged(scan, base_scan)


def test_endplate_sclerosis_densifies_near_the_endplates(
    straight_case: Case, base_scan: Scan
) -> None:
    scan = render(with_vertebra(straight_case, "L3", sclerosis=1.0))
    before, after = bmd(base_scan), bmd(scan)
    assert after["L3"] > 1.05 * before["L3"]
    assert all(after[name] == before[name] for name in ("L1", "L2", "L4"))
    np.testing.assert_array_equal(scan.labels, base_scan.labels)

    i = index_of(straight_case, "L3")
    place = place_vertebrae(straight_case, HOLOGIC.field_of_view_mm[1])[i]
    vertebra = straight_case.vertebrae[i]
    yy, xx = pixel_mm(scan)
    v = np.abs(yy - place.centre_y_mm)  # the spine is upright: v is the row offset
    central = np.abs(xx - place.centre_x_mm) < 0.5 * vertebra.half_width_mm
    hh = vertebra.half_height_mm
    band = central & (v > hh - 4.5) & (v < hh - 1.8)
    middle = central & (v < hh - 8.0)
    diff = scan.high - base_scan.high
    assert diff[band].mean() > 0.02
    assert diff[band].mean() > 5 * abs(diff[middle].mean())
    near_l3 = ndimage.binary_dilation(base_scan.labels == 3, iterations=3)
    assert np.abs(diff[~near_l3]).max() < 1e-3


def test_implant_is_strong_attenuation_at_its_levels(straight_case: Case, base_scan: Scan) -> None:
    scan = render(with_artefacts(straight_case, implant_levels=("L2", "L3")))
    diff = scan.high - base_scan.high
    for label in (2, 3):
        assert diff[scan.labels == label].max() > 1.0
    for label in (1, 4):
        assert np.abs(diff[scan.labels == label]).max() < 0.01
    assert_truth_and_labels_unchanged(scan, base_scan)


# --- trabecular texture ---------------------------------------------------------------------


def roughness(image: np.ndarray, region: np.ndarray) -> float:
    """Mean squared difference of horizontal neighbours inside `region`, over the variance."""
    image = image.astype(np.float64)
    pairs = region[:, 1:] & region[:, :-1]
    steps = (image[:, 1:] - image[:, :-1])[pairs]
    return float(np.mean(steps**2) / image[region].var())


def test_disc_narrowing_narrows_one_or_two_discs_and_nothing_else() -> None:
    narrowed_count = []
    for i in range(30):
        always = sample_case(  # a rate of 100 at 65 is certain at any age
            np.random.default_rng([21, i]), "t", rates=ArtefactRates(disc_narrowing=100.0)
        )
        never = sample_case(
            np.random.default_rng([21, i]), "t", rates=ArtefactRates(disc_narrowing=0.0)
        )
        assert always.flags["disc_narrowing"] and not never.flags["disc_narrowing"]
        # Everything but the disc heights (and the flag) is the case drawn before.
        same_discs = with_spine(always, disc_heights_mm=never.spine.disc_heights_mm)
        assert dataclasses.replace(same_discs, flags={}) == dataclasses.replace(never, flags={})
        fraction = np.array(always.spine.disc_heights_mm) / np.array(never.spine.disc_heights_mm)
        changed = fraction < 1.0
        narrowed_count.append(int(changed.sum()))
        assert np.all((fraction[changed] >= 0.1) & (fraction[changed] <= 0.6))
        assert np.all(fraction[~changed] == 1.0)
    assert set(narrowed_count) == {1, 2}


def test_a_narrowed_disc_brings_the_vertebrae_together(
    straight_case: Case, base_scan: Scan
) -> None:
    discs = list(straight_case.spine.disc_heights_mm)
    l2, l3 = index_of(straight_case, "L2"), index_of(straight_case, "L3")
    discs[l3 - 1] *= 0.25  # discs[i - 1] lies above vertebra i: the L2/L3 disc
    narrowed = with_spine(straight_case, disc_heights_mm=tuple(discs))
    width = HOLOGIC.field_of_view_mm[1]
    before, after = place_vertebrae(straight_case, width), place_vertebrae(narrowed, width)
    gap_before = before[l3].centre_y_mm - before[l2].centre_y_mm
    gap_after = after[l3].centre_y_mm - after[l2].centre_y_mm
    assert gap_before - gap_after == pytest.approx(
        0.75 * straight_case.spine.disc_heights_mm[l3 - 1]
    )
    assert after[l2].centre_y_mm == before[l2].centre_y_mm  # the levels above stay
    # In the image the dark band of the disc space between L2 and L3 all but closes.
    maps = RenderOptions(noise=False, truth_maps=True)
    dips = [disc_dip(render(case, options=maps), 2, 3) for case in (straight_case, narrowed)]
    assert dips[1] < dips[0] - 0.05, dips


def disc_dip(scan: Scan, upper: int, lower: int) -> float:
    """1 - lowest row mean of vertebral mineral between two labels' centres / the
    centres' mean, over the middle half of the spine's width: 1 = an empty gap."""
    mineral = scan.truth_maps["vertebral_bone_g_cm2"]
    cols = np.flatnonzero((scan.labels > 0).any(axis=0))
    quarter = (cols.max() - cols.min()) // 4
    profile = mineral[:, cols.min() + quarter : cols.max() - quarter + 1].mean(axis=1)
    rows = [round(np.nonzero(scan.labels == label)[0].mean()) for label in (upper, lower)]
    return float(1 - profile[rows[0] : rows[1]].min() / profile[rows].mean())


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_texture_hurst_sets_the_roughness_of_its_vertebra(straight_case: Case, name: str) -> None:
    device = DEVICES[name]
    rough = render(with_vertebra(straight_case, "L2", texture_hurst=0.2), device, EXACT)
    smooth = render(with_vertebra(straight_case, "L2", texture_hurst=0.6), device, EXACT)
    plain = render(straight_case, device, dataclasses.replace(EXACT, texture=False))
    np.testing.assert_array_equal(rough.labels, smooth.labels)
    l2 = rough.labels == 2
    diff = np.abs(rough.low - smooth.low)
    assert diff[l2].max() > 0.02
    # The change stays with L2: its body and its posterior elements (textured too),
    # which reach into the disc spaces, between L1's and L3's middle rows.
    middle = {k: round(np.flatnonzero((rough.labels == k).any(axis=1)).mean()) for k in (1, 3)}
    assert diff[middle[1] : middle[3]].sum() > 0.99 * diff.sum()
    assert diff[l2].sum() > 0.8 * diff.sum()
    # Inside the other labels only the facet joints change, where L2's articular
    # processes overlap its neighbours' body corners: a few pixels.
    for label in (1, 3, 4):
        assert np.percentile(diff[rough.labels == label], 99) < 0.05 * diff[l2].max()
    core = ndimage.binary_erosion(l2, iterations=4)
    assert roughness(rough.low, core) > roughness(smooth.low, core)
    # The texture alone (render minus a texture-free render) differs far more clearly.
    texture_rough = roughness(rough.low - plain.low, core)
    texture_smooth = roughness(smooth.low - plain.low, core)
    assert texture_rough > 2.0 * texture_smooth


def _mean_variogram(hurst: float, lags_px: tuple[int, ...], n_fields: int = 12) -> np.ndarray:
    """Horizontal variogram of trabecular_texture at 0.5 mm pixels, averaged over fields."""
    rng = np.random.default_rng(4)
    total = np.zeros(len(lags_px))
    for _ in range(n_fields):
        field = trabecular_texture((96, 96), (0.5, 0.5), hurst, rng)
        total += [np.mean((field[:, k:] - field[:, :-k]) ** 2) for k in lags_px]
    return total / n_fields


def test_trabecular_texture_slope_follows_hurst_at_a_fixed_3mm_strength() -> None:
    lags_px = (2, 4, 6)  # 1, 2 and 3 mm
    slopes, at_3mm = [], []
    for hurst in (0.2, 0.4, 0.6):
        gamma = _mean_variogram(hurst, lags_px)
        slopes.append(np.polyfit(np.log(lags_px), np.log(gamma), 1)[0])
        at_3mm.append(gamma[-1])
    assert slopes[0] < slopes[1] < slopes[2]
    # Variogram 2(1 - exp(-(h/4)^(2H))): log-log slope at 1-3 mm a little under 2H.
    for hurst, slope in zip((0.2, 0.4, 0.6), slopes, strict=True):
        assert 1.2 * hurst < slope < 2.0 * hurst + 0.05
    reference = 2 * (1 - np.exp(-3 / 4))
    np.testing.assert_allclose(at_3mm, reference, rtol=0.15)


def test_trabecular_texture_is_stationary() -> None:
    """Unlike fBm, the variance does not grow with the patch: no texture-sized gradients."""
    rng = np.random.default_rng(5)
    small = np.mean([trabecular_texture((40, 40), (0.5, 0.5), 0.5, rng).var() for _ in range(20)])
    large = np.mean([trabecular_texture((200, 200), (0.5, 0.5), 0.5, rng).var() for _ in range(5)])
    assert large == pytest.approx(small, rel=0.25)


def test_reference_tbs_is_the_tbs_of_the_reference_labels() -> None:
    from dxaspine.report import bmd_and_tbs
    from dxaspine.scores import bone_areal_density, device_calibration

    scan = simulate_scan(5, 1, "lunar-like")
    calibration = device_calibration("lunar-like")
    _, expected = bmd_and_tbs(scan, scan.labels, calibration, bone_areal_density(scan, calibration))
    recorded = scan.meta["truth"]["tbs"]
    assert set(recorded) == {"L1", "L2", "L3", "L4", "total"}
    for name, value in expected.items():
        assert recorded[name] == pytest.approx(value, abs=1e-5)
    assert 0.8 < recorded["total"] < 1.6


# --- device profiles ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_device_profile_sets_geometry(name: str) -> None:
    device = DEVICES[name]
    scan = simulate_scan(0, 0, name)
    assert scan.shape == device.shape
    assert scan.spacing_mm == device.spacing_mm
    assert scan.device == name
    assert scan.low.dtype == np.float32 and scan.high.dtype == np.float32
    rows, cols = scan.shape
    assert 150 <= rows <= 400 and 120 <= cols <= 450
    assert all(0.5 <= s <= 1.2 for s in scan.spacing_mm)
    # Both energies see the spine: mean attenuation is higher on the mask than beside it.
    for image in (scan.low, scan.high):
        assert image[scan.mask > 0].mean() > image[scan.mask == 0].mean()
    assert (scan.low > scan.high).mean() > 0.99


# --- the `simulate` command -----------------------------------------------------------------

COHORT_COLUMNS = (
    "scan_id",
    "patient_id",
    "file",
    "device",
    "age_years",
    "sex",
    "bmi_kg_m2",
    "bmd_L1_g_cm2",
    "bmd_L2_g_cm2",
    "bmd_L3_g_cm2",
    "bmd_L4_g_cm2",
    "bmd_total_g_cm2",
    *FLAG_NAMES,
)


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def cli_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "serial"
    result = run_cli("simulate", "--n", "3", "--seed", "1", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_simulate_cli_writes_scans_and_cohort_csv(cli_cohort: Path) -> None:
    assert len(list(cli_cohort.glob("*.npz"))) == 3
    with open(cli_cohort / "cohort.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = list(reader)
    assert len(rows) == 3
    missing = [c for c in COHORT_COLUMNS if c not in header]
    assert not missing, f"cohort.csv lacks {missing}"
    assert len(header) == len(set(header))
    for i, row in enumerate(rows):
        assert (cli_cohort / row["file"]).is_file()
        assert row["device"] == "hologic-like"
        assert all(row[flag] in ("0", "1") for flag in FLAG_NAMES)
        # The row is the scan's ground truth (scan i depends on seed and index only).
        truth = simulate_scan(1, i, "hologic-like").meta["truth"]
        for name in LUMBAR:
            assert float(row[f"bmd_{name}_g_cm2"]) == truth["vertebrae"][name]["bmd_g_cm2"]
        assert float(row["bmd_total_g_cm2"]) == truth["total_bmd_g_cm2"]
        assert float(row["age_years"]) == truth["age_years"] and row["sex"] == truth["sex"]
        assert [int(row[flag]) for flag in FLAG_NAMES] == [
            int(truth["flags"][flag]) for flag in FLAG_NAMES
        ]


def test_simulate_cli_is_byte_identical_with_jobs(cli_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "parallel"
    result = run_cli(
        "simulate", "--n", "3", "--seed", "1", "--out", str(out), "--jobs", "2", "--quiet"
    )
    assert result.exit_code == 0, result.output
    serial = sorted(p.name for p in cli_cohort.iterdir())
    parallel = sorted(p.name for p in out.iterdir())
    assert serial == parallel
    for name in serial:
        assert (cli_cohort / name).read_bytes() == (out / name).read_bytes(), name


def test_simulate_cli_rejects_unknown_device(tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = run_cli("simulate", "--n", "2", "--device", "siemens-like", "--out", str(out))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "siemens-like" in lines[0] and "hologic-like" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


# --- lordosis: endplates tilted against the beam ----------------------------------------------


def _l3_alone(case: Case, tilt_deg: float):
    """L3 of `case` rendered on its own at 0.1 mm, tilted by `tilt_deg`."""
    i = index_of(case, "L3")
    vertebra = dataclasses.replace(case.vertebrae[i], sagittal_tilt_deg=tilt_deg)
    place = place_vertebrae(case, HOLOGIC.field_of_view_mm[1])[i]
    y = np.arange(place.centre_y_mm - 30, place.centre_y_mm + 30, 0.1)
    x = np.arange(place.centre_x_mm - 35, place.centre_x_mm + 35, 0.1)
    return vertebra, place, render_vertebra(vertebra, place, 0.0, y[:, None], x[None, :])


def test_sagittal_tilt_keeps_the_mineral_and_smears_the_endplates(straight_case: Case) -> None:
    vertebra, _, flat = _l3_alone(straight_case, 0.0)
    _, _, tilted = _l3_alone(straight_case, 12.0)
    renders = {"flat": flat, "tilted": tilted}
    mineral = {k: (b.trabecular + b.structural).sum() for k, b in renders.items()}
    assert mineral["tilted"] == pytest.approx(mineral["flat"], rel=0.01)
    # The body's projection grows by depth x tan(tilt) along the spine...
    rows = {k: np.flatnonzero(b.body.any(axis=1)) for k, b in renders.items()}
    growth_mm = 0.1 * (np.ptp(rows["tilted"]) - np.ptp(rows["flat"]))
    expected_mm = vertebra.depth_mm * np.tan(np.deg2rad(12.0))
    assert growth_mm == pytest.approx(expected_mm, abs=1.5)
    # ...and the bright upper endplate line spreads out along the central column
    # (above mid-height no posterior element projects on the midline).
    centre_row, centre_col = flat.body.shape[0] // 2, flat.body.shape[1] // 2
    upper = slice(0, centre_row - round(5 * vertebra.half_height_mm))
    top = {k: b.structural[upper, centre_col].max() for k, b in renders.items()}
    assert top["tilted"] < 0.7 * top["flat"]


def test_lordosis_tilts_upper_and_lower_levels_opposite_ways() -> None:
    cases = [sample_case(np.random.default_rng([11, i]), "t") for i in range(40)]
    tilts = np.array([[v.sagittal_tilt_deg for v in case.vertebrae] for case in cases])
    names = ("T12", "L1", "L2", "L3", "L4", "L5")
    mean = dict(zip(names, tilts.mean(axis=0), strict=True))
    assert mean["L1"] < -3 and mean["L5"] > 3 and abs(mean["L3"]) < 2
    assert np.abs(tilts).max() < 30


def test_truth_records_each_vertebras_endplate_tilt() -> None:
    scan = simulate_scan(5, 0, "lunar-like")
    case = sample_case(np.random.default_rng([5, 0]), "t")  # simulate_scan's case
    drawn = {v.name: round(abs(v.sagittal_tilt_deg), 2) for v in case.vertebrae if v.label}
    recorded = {n: v["endplate_tilt_deg"] for n, v in scan.meta["truth"]["vertebrae"].items()}
    assert recorded == drawn
    assert len(recorded) == 4 and max(recorded.values()) > 0


def test_a_flat_spine_renders_as_before_tilt_was_modelled(straight_case: Case) -> None:
    _, _, flat = _l3_alone(straight_case, 0.0)
    _, _, tiny = _l3_alone(straight_case, 0.05)  # under one slab step: the plain projection
    np.testing.assert_array_equal(flat.structural, tiny.structural)
    np.testing.assert_array_equal(flat.body, tiny.body)


def test_sampled_patients_carry_about_half_their_mineral_in_posterior_elements() -> None:
    cases = [sample_case(np.random.default_rng([13, i]), "t") for i in range(300)]
    shares = np.array([case.vertebrae[0].posterior_fraction for case in cases])
    # One share per patient, for every level.
    assert all(len({v.posterior_fraction for v in case.vertebrae}) == 1 for case in cases)
    assert shares.mean() == pytest.approx(0.49, abs=0.01)
    assert shares.std() == pytest.approx(0.04, abs=0.008)
    assert shares.min() >= 0.39 and shares.max() <= 0.59


def test_posterior_elements_carry_the_drawn_share_of_the_mineral(straight_case: Case) -> None:
    i = index_of(straight_case, "L3")
    place = place_vertebrae(straight_case, HOLOGIC.field_of_view_mm[1])[i]
    y = np.arange(place.centre_y_mm - 40, place.centre_y_mm + 40, 0.2)
    x = np.arange(place.centre_x_mm - 70, place.centre_x_mm + 70, 0.2)

    def mineral(
        share: float | None, rotation_deg: float = 0.0, tp_mm: float = 0.0, columns=slice(None)
    ) -> float:
        vertebra = dataclasses.replace(
            straight_case.vertebrae[i], posterior_fraction=share, tp_length_mm=tp_mm
        )
        bone = render_vertebra(vertebra, place, np.deg2rad(rotation_deg), y[:, None], x[None, :])
        return float((bone.trabecular + bone.structural)[:, columns].sum())

    # Without transverse processes a share of ~0 leaves the body alone.
    body_alone = mineral(1e-9)
    tp_mm = straight_case.vertebrae[i].tp_length_mm
    for share in (0.3, 0.49, 0.6):
        assert 1 - body_alone / mineral(share) == pytest.approx(share, abs=0.01)
        assert 1 - body_alone / mineral(share, tp_mm=tp_mm) == pytest.approx(share, abs=0.01)
    # Axial rotation moves the posterior elements sideways, not their mineral.
    assert mineral(0.49, rotation_deg=12.0) == pytest.approx(mineral(0.49), rel=0.01)
    # None keeps the drawn shapes' own, much smaller share.
    assert 1 - body_alone / mineral(None, tp_mm=tp_mm) < 0.3
    # The transverse processes (all there is beside the body) keep their drawn mineral.
    beside = np.abs(x - place.centre_x_mm) > straight_case.vertebrae[i].half_width_mm + 5
    assert mineral(None, tp_mm=tp_mm, columns=beside) > 0
    assert mineral(0.49, tp_mm=tp_mm, columns=beside) == pytest.approx(
        mineral(None, tp_mm=tp_mm, columns=beside), rel=1e-6
    )


@pytest.mark.parametrize("waist", [0.04, 0.10, 0.16])
def test_body_shows_its_drawn_waist(straight_case: Case, waist: float) -> None:
    case = with_vertebra(straight_case, "L3", waist=waist, osteophytes=(), sagittal_tilt_deg=0.0)
    scan = render(case, options=RenderOptions(noise=False, blur=False, truth_maps=True))
    widths = (scan.truth_maps["body_labels"] == 3).sum(axis=1)
    widths = widths[widths > 0] * scan.spacing_mm[1]
    centre = len(widths) // 2
    middle = np.median(widths[centre - 1 : centre + 2])
    vertebra = case.vertebrae[index_of(case, "L3")]
    # Mid-height is the drawn width; the rims flare to the widest row.
    assert middle == pytest.approx(2 * vertebra.half_width_mm, abs=2 * scan.spacing_mm[1])
    assert 1 - middle / widths.max() == pytest.approx(waist, abs=0.02)


def test_pedicles_have_their_measured_size_and_place(straight_case: Case) -> None:
    """Seen end-on, each pedicle is an oval about 15 mm tall beside the
    spinal canal, its outer wall near the body's side; its medial convergence
    smears it sideways (0.6)."""
    ranges = AnatomyRanges()
    i = index_of(straight_case, "L3")
    place = place_vertebrae(straight_case, HOLOGIC.field_of_view_mm[1])[i]
    y = np.arange(place.centre_y_mm - 40, place.centre_y_mm + 40, 0.1)
    x = np.arange(place.centre_x_mm - 40, place.centre_x_mm + 40, 0.1)
    drawn = dataclasses.replace(straight_case.vertebrae[i], tp_length_mm=0.0)
    scale = drawn.half_width_mm / (ranges.body_width_mm[i] / 2)
    height_scale = drawn.half_height_mm / (ranges.body_height_mm[i] / 2)
    centre_u = (ranges.interpedicular_mm[i] + ranges.pedicle_width_mm[i]) / 2 * scale

    def pedicles(vertebra) -> tuple[np.ndarray, np.ndarray]:
        """Lateral positions (mm from the midline) of the posterior mineral on
        the pedicles' middle row, and the rows it covers in their column."""

        def mineral(share: float) -> np.ndarray:
            v = dataclasses.replace(vertebra, posterior_fraction=share)
            bone = render_vertebra(v, place, 0.0, y[:, None], x[None, :])
            return bone.trabecular + bone.structural

        posterior = (mineral(0.49) - mineral(1e-9)) > 1e-6
        # Through the pedicle's centre only the pedicle projects (the
        # articular processes and laminae lie nearer the midline).
        column = np.argmin(np.abs(x - place.centre_x_mm - centre_u))
        rows = np.nonzero(posterior[:, column])[0]
        middle = (rows.max() + rows.min()) // 2
        return x[posterior[middle]] - place.centre_x_mm, rows

    lateral, rows = pedicles(dataclasses.replace(drawn, pedicle_smear_mm=0.0))
    height_mm = (rows.max() - rows.min()) * 0.1
    assert height_mm == pytest.approx(ranges.pedicle_height_mm[i] * height_scale, abs=0.3)
    inner_gap = lateral[lateral > 0].min() - lateral[lateral < 0].max()
    assert inner_gap == pytest.approx(ranges.interpedicular_mm[i] * scale, abs=0.3)
    each_width = lateral.max() - lateral[lateral > 0].min()
    assert each_width == pytest.approx(ranges.pedicle_width_mm[i] * scale, abs=0.3)
    # Their top lies just below the upper endplate.
    top = y[rows.min()] - place.centre_y_mm
    assert top == pytest.approx(-drawn.half_height_mm + 1.5, abs=0.2)

    # Converging, each pedicle covers its width plus the smear, inside the body.
    smear = ranges.pedicle_length_mm * scale * np.tan(np.deg2rad(ranges.pedicle_convergence_deg[i]))
    assert drawn.pedicle_smear_mm == pytest.approx(smear)
    lateral, _ = pedicles(drawn)
    each_width = lateral.max() - lateral[lateral > 0].min()
    assert each_width == pytest.approx(ranges.pedicle_width_mm[i] * scale + smear, abs=0.3)
    assert drawn.half_width_mm - 3 < lateral.max() <= drawn.half_width_mm


def test_sized_pedicles_scale_with_their_body_and_change_nothing_else() -> None:
    ranges = AnatomyRanges()
    for k in range(20):
        case = sample_case(np.random.default_rng([17, k]), "t")
        for i, v in enumerate(case.vertebrae):
            scale = v.half_width_mm / (ranges.body_width_mm[i] / 2)
            assert v.pedicle_half_width_mm == pytest.approx(ranges.pedicle_width_mm[i] / 2 * scale)
            centre = (ranges.interpedicular_mm[i] + ranges.pedicle_width_mm[i]) / 2 * scale
            assert v.pedicle_centre_mm == pytest.approx(centre)
    # Other pedicle sizes give the same patient in every other respect.
    wide = dataclasses.replace(ranges, pedicle_width_mm=(12.0,) * 6, interpedicular_mm=(18.0,) * 6)
    a = sample_case(np.random.default_rng([17, 0]), "t")
    b = sample_case(np.random.default_rng([17, 0]), "t", wide)
    assert a.vertebrae[2].pedicle_half_width_mm != b.vertebrae[2].pedicle_half_width_mm
    unsized = {"pedicle_half_width_mm": None, "pedicle_centre_mm": None}
    assert [dataclasses.replace(v, **unsized) for v in a.vertebrae] == [
        dataclasses.replace(v, **unsized) for v in b.vertebrae
    ]
    assert (a.spine, a.soft, a.artefacts, a.texture_seed) == (
        b.spine,
        b.soft,
        b.artefacts,
        b.texture_seed,
    )


def test_bmd_sd_factor_widens_the_patients_bmd_around_the_nhanes_mean() -> None:
    """Same seeds: every other draw unchanged, each patient's BMD deviation from the
    NHANES mean (for age, sex and BMI) scaled by the factor."""
    from dxaspine.simulate.case import LEVEL_FACTOR, nhanes_bmd

    wide = AnatomyRanges(bmd_sd_factor=1.5)
    deviations: dict[str, list[float]] = {"base": [], "wide": []}
    for index in range(300):
        base = sample_case(np.random.default_rng([11, index]), "x")
        widened = sample_case(np.random.default_rng([11, index]), "x", wide)
        assert [v.half_width_mm for v in widened.vertebrae] == [
            v.half_width_mm for v in base.vertebrae
        ]
        ratios = [
            w.bmd_target_g_cm2 / b.bmd_target_g_cm2
            for w, b in zip(widened.vertebrae, base.vertebrae, strict=True)
        ]
        assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)  # one patient factor
        mean = nhanes_bmd(base.age_years, base.sex)[0] + 0.004 * (base.bmi_kg_m2 - 26.5)
        for name, case in (("base", base), ("wide", widened)):
            lumbar = [v.bmd_target_g_cm2 / LEVEL_FACTOR[v.name] for v in case.vertebrae[1:5]]
            deviations[name].append(float(np.mean(lumbar)) - mean)
    spread = np.std(deviations["wide"]) / np.std(deviations["base"])
    assert spread == pytest.approx(1.5, abs=0.1)


def test_simulate_cli_passes_the_bmd_sd_factor(tmp_path: Path) -> None:
    from dxaspine.io import read_scan

    totals = {}
    for factor in ("1", "1.5"):
        out = tmp_path / factor
        args = ["simulate", "--n", "1", "--seed", "11", "--out", str(out), "--quiet"]
        result = CliRunner().invoke(app, [*args, "--bmd-sd-factor", factor])
        assert result.exit_code == 0, result.output
        scan = read_scan(next(out.glob("*.npz")))
        totals[factor] = scan.meta["truth"]["total_bmd_g_cm2"]
    assert totals["1"] == pytest.approx(
        simulate_scan(11, 0).meta["truth"]["total_bmd_g_cm2"], rel=1e-9
    )
    assert totals["1.5"] != pytest.approx(totals["1"], rel=1e-3)
