"""DXA scans projected from labelled CT volumes (simulate/ct.py, simulate/ct_scan.py).

Every volume is a small synthetic phantom written with nibabel to tmp_path: an
elliptical abdomen of lean tissue in a fat layer, in air, with L1-L4 as
upright bone cylinders (radius 20 mm, 25 mm tall, 300 HU) on the spine axis;
L2 has a transverse process. Voxels are 2 x 2 x 2.5 mm and every cylinder
axis lies on voxel corners, so the voxelised shapes are known exactly.
"""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.io import read_scan
from dxaspine.simulate.ct import (
    LABEL_MAPS,
    CTError,
    HUCalibration,
    derive_hu_calibration,
    endplate_tilt_deg,
    hu_to_materials,
    parse_label_map,
)
from dxaspine.simulate.ct_scan import (
    at_voxel_resolution,
    labels_at_voxel_resolution,
    scan_from_ct,
)
from dxaspine.simulate.generate import RenderOptions
from dxaspine.simulate.tables import physics_tables

SHAPE = (64, 64, 80)  # x (towards the patient's left), y (towards the front), z (up)
VOXEL_MM = (2.0, 2.0, 2.5)
RADIUS_MM = 20.0
BODY_SLICES = 10  # 25 mm
BONE_HU = 300.0
TOP_SLICE = {"L1": 62, "L2": 47, "L3": 32, "L4": 17}  # top slice index of each body (z up)
EXACT = RenderOptions(noise=False, blur=False, truth_maps=True)


def phantom(lumbar=("L1", "L2", "L3", "L4")) -> tuple[np.ndarray, np.ndarray]:
    """(HU, labels 1..4) arrays of SHAPE; vertebrae not in `lumbar` are absent."""
    x = (np.arange(SHAPE[0]) + 0.5) * VOXEL_MM[0] - 64.0  # cylinder axes at voxel corners
    y = (np.arange(SHAPE[1]) + 0.5) * VOXEL_MM[1] - 64.0
    xx, yy = np.meshgrid(x, y, indexing="ij")
    outer = (xx / 62) ** 2 + (yy / 50) ** 2 <= 1
    inner = (xx / 50) ** 2 + (yy / 40) ** 2 <= 1
    hu = np.full(SHAPE, -1000.0, dtype=np.float32)
    hu[outer] = -100.0
    hu[inner] = 40.0
    labels = np.zeros(SHAPE, dtype=np.uint8)
    spine_y = -10.0
    disc = xx**2 + (yy - spine_y) ** 2 <= RADIUS_MM**2
    # Transverse process of L2: a bar 8 mm behind the body, reaching 45 mm to each side,
    # joined to the body by a pedicle (so the body's back is the fewest-voxel plane).
    bar = (np.abs(xx) <= 45) & (np.abs(yy - (spine_y - 30)) <= 3)
    pedicle = (np.abs(xx) <= 4) & (yy < spine_y) & (yy >= spine_y - 30)
    for label, name in enumerate(("L1", "L2", "L3", "L4"), start=1):
        if name not in lumbar:
            continue
        top = TOP_SLICE[name]
        for z in range(top - BODY_SLICES + 1, top + 1):
            hu[:, :, z][disc] = BONE_HU
            labels[:, :, z][disc] = label
            if name == "L2" and z >= top - 3:
                hu[:, :, z][bar | pedicle] = BONE_HU
                labels[:, :, z][bar | pedicle] = label
    return hu, labels


def affine() -> np.ndarray:
    return np.diag([*VOXEL_MM, 1.0]) @ np.array(
        [[1, 0, 0, -32], [0, 1, 0, -32], [0, 0, 1, -40], [0, 0, 0, 1]], dtype=float
    )


def write_pair(tmp_path, hu, labels, label_affine=None, name="phantom"):
    """Write the CT (RAS+, x towards the patient's right) and its labels; return paths.

    The arrays above run x towards the patient's left, so the file axis is flipped
    ('L' in the affine), as many CT files are.
    """
    to_left = np.diag([-1.0, 1.0, 1.0, 1.0])
    ct_path, seg_path = tmp_path / f"{name}.nii.gz", tmp_path / f"{name}_seg.nii.gz"
    nib.save(nib.Nifti1Image(hu.astype(np.int16), to_left @ affine()), ct_path)
    seg_affine = to_left @ affine() if label_affine is None else label_affine
    nib.save(nib.Nifti1Image(labels, seg_affine), seg_path)
    return ct_path, seg_path


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ct")
    ct, seg = write_pair(tmp, *phantom())
    return ct, seg, scan_from_ct(ct, seg, label_map="simple", options=EXACT)


def rows_cols(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(mask)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_default_calibration_is_the_derivation_at_70_kev():
    derived = derive_hu_calibration(70.0)
    default = HUCalibration()
    assert derived.adipose_hu == pytest.approx(default.adipose_hu, abs=0.5)
    assert derived.lean_hu == pytest.approx(default.lean_hu, abs=0.5)
    assert derived.mineral_mg_cm3_per_hu == pytest.approx(default.mineral_mg_cm3_per_hu, abs=1e-3)


def test_hu_to_materials_known_voxels():
    cal = HUCalibration()
    rho = physics_tables().density_g_cm3
    hu = np.array([-1000.0, -600.0, cal.adipose_hu, cal.lean_hu, cal.lean_hu + 200.0, 1000.0])
    bone = np.array([False, False, False, False, True, False])
    mineral, lean, adipose = hu_to_materials(hu, bone, cal)
    assert mineral[0] == lean[0] == adipose[0] == lean[1] == adipose[1] == 0  # air
    assert adipose[2] == pytest.approx(rho["adipose"]) and lean[2] == 0
    assert lean[3] == pytest.approx(rho["muscle"]) and adipose[3] == 0
    assert mineral[4] == pytest.approx(200 * cal.mineral_mg_cm3_per_hu / 1000, rel=1e-5)
    assert lean[4] == pytest.approx(rho["muscle"] * (1 - mineral[4] / rho["hydroxyapatite"]))
    assert mineral[5] == 0 and lean[5] > rho["muscle"]  # dense, but not labelled bone


def test_marrow_fat_moves_where_the_mineral_starts_in_bone_only():
    lean_marrow, fat_marrow = HUCalibration(), HUCalibration(marrow_fat_fraction=0.5)
    rho = physics_tables().density_g_cm3
    assert fat_marrow.marrow_hu == pytest.approx((lean_marrow.adipose_hu + lean_marrow.lean_hu) / 2)
    hu = np.array([fat_marrow.marrow_hu, 200.0, 200.0])
    bone = np.array([True, True, False])
    mineral, lean, adipose = hu_to_materials(hu, bone, fat_marrow)
    assert mineral[0] == 0  # bone-free marrow, half fat by volume
    assert lean[0] == pytest.approx(rho["muscle"] / 2) and adipose[0] == pytest.approx(
        rho["adipose"] / 2
    )
    more = (lean_marrow.lean_hu - fat_marrow.marrow_hu) * fat_marrow.mineral_mg_cm3_per_hu / 1000
    before = hu_to_materials(hu, bone, lean_marrow)
    assert mineral[1] == pytest.approx(before[0][1] + more, rel=1e-5)
    assert adipose[1] > 0 and adipose[1] == pytest.approx(lean[1] * rho["adipose"] / rho["muscle"])
    assert (mineral[2], lean[2], adipose[2]) == pytest.approx(tuple(m[2] for m in before))
    with pytest.raises(ValueError, match="marrow_fat_fraction"):
        HUCalibration(marrow_fat_fraction=1.0)


def test_totalsegmentator_preset_ids():
    # TotalSegmentator v2 'total' task: vertebrae_L1 = 31 ... vertebrae_L5 = 27, T12 = 32.
    ids = LABEL_MAPS["totalsegmentator"].vertebrae
    assert ids == {"T12": 32, "L1": 31, "L2": 30, "L3": 29, "L4": 28, "L5": 27}
    assert parse_label_map("L1=5, L2=6").vertebrae == {"L1": 5, "L2": 6}
    with pytest.raises(CTError, match="unknown label map"):
        parse_label_map("nonsense")


def test_l1_at_the_top_and_mask_area_of_the_cylinders(full):
    _, _, scan = full
    sr, sc = scan.spacing_mm
    centres = [np.nonzero(scan.labels == i)[0].mean() for i in (1, 2, 3, 4)]
    assert centres == sorted(centres)  # L1 on top, L4 at the bottom
    for label in (1, 3, 4):
        rows, cols = rows_cols(scan.labels == label)
        assert rows * sr == pytest.approx(BODY_SLICES * VOXEL_MM[2], abs=1.5 * sr)
        assert cols * sc == pytest.approx(2 * RADIUS_MM, abs=1.5 * sc)
        area_cm2 = scan.meta["truth"]["vertebrae"][f"L{label}"]["area_cm2"]
        assert area_cm2 == pytest.approx(2 * RADIUS_MM * BODY_SLICES * VOXEL_MM[2] / 100, rel=0.05)


def test_transverse_process_cut_at_the_body_edge(full):
    _, _, scan = full
    sc = scan.spacing_mm[1]
    l2 = scan.labels == 2
    _, cols = rows_cols(l2)
    assert cols * sc == pytest.approx(2 * RADIUS_MM, abs=1.5 * sc)  # not 90 mm
    rows = np.unique(l2.nonzero()[0])
    bone = scan.truth_maps["vertebral_bone_g_cm2"][rows] > 0
    _, bone_cols = rows_cols(bone)
    assert bone_cols * sc > 80  # the process is in the image, outside the mask


def test_body_labels_leave_out_the_posterior_elements(tmp_path):
    hu, labels = phantom()
    # A spinous process behind L3's body, hanging two slices (5 mm) into the disc below.
    x = (np.arange(SHAPE[0]) + 0.5) * VOXEL_MM[0] - 64.0
    y = (np.arange(SHAPE[1]) + 0.5) * VOXEL_MM[1] - 64.0
    xx, yy = np.meshgrid(x, y, indexing="ij")
    spinous = (np.abs(xx) <= 4) & (yy <= -40) & (yy >= -55)
    bottom = TOP_SLICE["L3"] - BODY_SLICES + 1
    for z in (bottom - 2, bottom - 1):
        hu[:, :, z][spinous] = BONE_HU
        labels[:, :, z][spinous] = 3
    scan = scan_from_ct(*write_pair(tmp_path, hu, labels), label_map="simple", options=EXACT)
    bodies = scan.truth_maps["body_labels"]
    assert set(np.unique(bodies)) == {0, 1, 2, 3, 4}
    assert np.all((bodies == 0) | (bodies == scan.labels))  # a part of the labels
    for label in (1, 4):  # nothing but the body in the column
        assert np.array_equal(bodies == label, scan.labels == label)
    # L2's transverse process is cut at the body's edge: at most its two corner pixels stay.
    assert ((scan.labels == 2) & (bodies != 2)).sum() <= 2
    posterior = (scan.labels == 3) & (bodies == 0)
    rows, cols = rows_cols(posterior)
    assert rows * scan.spacing_mm[0] == pytest.approx(5.0, abs=1.5 * scan.spacing_mm[0])
    assert cols * scan.spacing_mm[1] == pytest.approx(8.0, abs=2.5 * scan.spacing_mm[1])
    assert posterior.nonzero()[0].min() > (bodies == 3).nonzero()[0].max()  # below the body


def test_bmd_truth_is_the_projected_mineral(full):
    _, _, scan = full
    truth = scan.meta["truth"]["vertebrae"]
    vertebral = scan.truth_maps["vertebral_bone_g_cm2"].astype(np.float64)
    cal = HUCalibration()
    mineral_g_cm3 = (BONE_HU - cal.lean_hu) * cal.mineral_mg_cm3_per_hu / 1e3
    for label in (1, 3, 4):
        mask = scan.labels == label
        projected = vertebral[mask].mean()
        assert truth[f"L{label}"]["bmd_g_cm2"] == pytest.approx(projected, rel=1e-5)
        # A cylinder seen from the side averages to rho * pi * r / 2 over its rectangle.
        assert projected == pytest.approx(mineral_g_cm3 * np.pi * RADIUS_MM / 20, rel=0.04)
    # Resampling keeps the mass: all projected vertebral mineral = all voxel mineral.
    _, labels = phantom()
    voxel_cm3 = np.prod(VOXEL_MM) / 1000
    total_g = (labels > 0).sum() * voxel_cm3 * mineral_g_cm3
    assert vertebral.sum() * scan.pixel_area_cm2 == pytest.approx(total_g, rel=0.03)


def test_soft_tissue_and_physics_match_the_procedural_path(full):
    _, _, scan = full
    from dxaspine.simulate.devices import get_device
    from dxaspine.simulate.generate import acquire_materials

    maps = scan.truth_maps
    low, high = acquire_materials(
        maps["bone_g_cm2"], maps["lean_g_cm2"], maps["adipose_g_cm2"],
        get_device("hologic-like"), None, EXACT,
    )  # fmt: skip
    # The truth maps are float32 copies of the maps the scan was made from.
    np.testing.assert_allclose(low, scan.low, atol=1e-5)
    np.testing.assert_allclose(high, scan.high, atol=1e-5)
    # The middle of the field is the L2/L3 disc on the midline: 80 mm of lean tissue
    # (HU 40) between two 10 mm layers of fat (HU -100).
    row = (np.nonzero(scan.labels == 2)[0].max() + np.nonzero(scan.labels == 3)[0].min()) // 2
    col = int(np.nonzero(scan.labels == 2)[1].mean())
    assert scan.labels[row - 2 : row + 3, col].max() == 0
    _, lean, adipose = hu_to_materials(np.array([40.0, -100.0]), np.zeros(2, bool))
    assert maps["lean_g_cm2"][row, col] == pytest.approx(8 * lean[0] + 2 * lean[1], rel=1e-3)
    assert maps["adipose_g_cm2"][row, col] == pytest.approx(2 * adipose[1], rel=1e-3)


def test_reordered_and_flipped_affine_gives_the_same_scan(tmp_path, full):
    ct, seg, reference = full
    codes = ("S", "P", "L")  # another axis order, two axes reversed
    for path in (ct, seg):
        image = nib.load(path)
        turned = image.as_reoriented(
            nib.orientations.ornt_transform(
                nib.orientations.io_orientation(image.affine),
                nib.orientations.axcodes2ornt(codes),
            )
        )
        nib.save(turned, tmp_path / path.name)
    other = scan_from_ct(tmp_path / ct.name, tmp_path / seg.name, label_map="simple", options=EXACT)
    assert nib.aff2axcodes(nib.load(tmp_path / ct.name).affine) == codes
    assert other.meta["anatomy"]["source_axcodes"] == "SPL"
    assert np.array_equal(other.labels, reference.labels)
    np.testing.assert_allclose(other.low, reference.low, atol=1e-5)
    np.testing.assert_allclose(other.high, reference.high, atol=1e-5)


def test_partial_coverage_l1_to_l3_is_flagged(tmp_path):
    hu, labels = phantom()
    keep = slice(TOP_SLICE["L4"] + 3, SHAPE[2])  # the CT stops in the L3/L4 disc
    ct, seg = write_pair(tmp_path, hu[:, :, keep], labels[:, :, keep])
    scan = scan_from_ct(ct, seg, label_map="simple", options=EXACT)
    anatomy = scan.meta["anatomy"]
    assert anatomy["missing_vertebrae"] == ["L4"]
    assert anatomy["truncated_vertebrae"] == []
    assert anatomy["partial_coverage"] is True
    assert scan.meta["truth"]["flags"]["partial_coverage"] is True
    assert set(np.unique(scan.labels)) == {0, 1, 2, 3}
    assert list(scan.meta["truth"]["vertebrae"]) == ["L1", "L2", "L3"]
    reference_tbs = scan.meta["truth"]["tbs"]
    assert reference_tbs["L4"] is None and all(reference_tbs[n] for n in ("L1", "L2", "L3"))
    assert anatomy["field_cropped_px"][0] > 0  # the field's bottom lies below the CT


def test_vertebra_cut_by_the_ct_edge_is_flagged(tmp_path):
    hu, labels = phantom()
    keep = slice(TOP_SLICE["L4"] - 4, SHAPE[2])  # through the middle of L4's body
    ct, seg = write_pair(tmp_path, hu[:, :, keep], labels[:, :, keep])
    scan = scan_from_ct(ct, seg, label_map="simple", options=EXACT)
    assert scan.meta["anatomy"]["truncated_vertebrae"] == ["L4"]
    assert scan.meta["truth"]["vertebrae"]["L4"]["truncated"] is True


def test_straight_spine_has_no_endplate_tilt(full):
    vertebrae = full[2].meta["truth"]["vertebrae"]
    tilts = [vertebrae[n]["endplate_tilt_deg"] for n in ("L1", "L2", "L3", "L4")]
    assert tilts == pytest.approx([0, 0, 0, 0], abs=0.5)  # L2's pedicle pulls its body a voxel


def test_endplate_tilt_follows_the_line_of_body_centres(tmp_path):
    # Each body 4 voxels (8 mm) further forward than the one above, 37.5 mm apart:
    # the local spine axis leans atan(8 / 37.5) = 12.0 deg, so the endplates do too.
    hu, labels = phantom()
    for name, shift in zip(("L1", "L2", "L3", "L4"), (6, 2, -2, -6), strict=True):
        body = slice(TOP_SLICE[name] - BODY_SLICES + 1, TOP_SLICE[name] + 1)
        hu[:, :, body] = np.roll(hu[:, :, body], shift, axis=1)
        labels[:, :, body] = np.roll(labels[:, :, body], shift, axis=1)
    ct, seg = write_pair(tmp_path, hu, labels)
    scan = scan_from_ct(ct, seg, label_map="simple", options=EXACT)
    expected = np.degrees(np.arctan(8.0 / 37.5))
    for name in ("L1", "L2", "L3", "L4"):
        assert scan.meta["truth"]["vertebrae"][name]["endplate_tilt_deg"] == pytest.approx(
            expected, abs=0.5
        )


def test_endplate_tilt_needs_a_neighbour():
    assert endplate_tilt_deg({"L2": (0.0, 0.0)}) == {}
    tilts = endplate_tilt_deg({"L1": (0.0, 0.0), "L3": (60.0, -60.0)})  # L2 missing
    assert tilts == {"L1": 45.0, "L3": 45.0}


# --- the DXA pose: lordosis flattened ---------------------------------------------------------


def leaning(hu, labels, angle_deg):
    """The phantom turned rigidly by `angle_deg` in the sagittal (y, z) plane about the
    volume's centre: a whole spine leaning against the beam, endplates and all."""
    turn = np.deg2rad(angle_deg)
    scale = np.diag(VOXEL_MM)
    rotation = np.eye(3)
    rotation[1:, 1:] = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    matrix = np.linalg.inv(scale) @ rotation @ scale  # output index -> input index
    centre = (np.array(SHAPE) - 1) / 2
    offset = centre - matrix @ centre
    turned_hu = ndimage.affine_transform(hu, matrix, offset, order=0, cval=-1000.0)
    turned_labels = ndimage.affine_transform(labels, matrix, offset, order=0, cval=0)
    return turned_hu.astype(np.float32), turned_labels


def disc_dip(scan, upper: int, lower: int) -> float:
    """1 - lowest row of vertebral mineral between two vertebra centres / the centres'
    mean, over the middle columns: 1 for an open disc space, 0 for none."""
    mineral = scan.truth_maps["vertebral_bone_g_cm2"]
    cols = np.flatnonzero((scan.labels > 0).any(axis=0))
    middle = mineral[:, cols.min() + cols.size // 4 : cols.max() - cols.size // 4]
    profile = middle.mean(axis=1)
    centres = [round(np.nonzero(scan.labels == k)[0].mean()) for k in (upper, lower)]
    return float(1 - profile[centres[0] : centres[1]].min() / profile[centres].mean())


@pytest.fixture(scope="module")
def leaning_spine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lean")
    ct, seg = write_pair(tmp, *leaning(*phantom(), 25.0), name="lean")
    return {
        pose: scan_from_ct(ct, seg, label_map="simple", options=EXACT, pose=pose)
        for pose in ("ct", "dxa")
    }


def test_a_leaning_spine_closes_its_disc_spaces_and_the_dxa_pose_opens_them(full, leaning_spine):
    straight, ct_pose, dxa_pose = full[2], leaning_spine["ct"], leaning_spine["dxa"]
    for name in ("L1", "L2", "L3", "L4"):
        assert ct_pose.meta["truth"]["vertebrae"][name]["endplate_tilt_deg"] == pytest.approx(
            25.0, abs=2.0
        )
        assert dxa_pose.meta["truth"]["vertebrae"][name]["endplate_tilt_deg"] < 3.0
        assert abs(dxa_pose.meta["anatomy"]["pose_turn_deg"][name]) == pytest.approx(25, abs=2)
    for upper in (1, 2, 3):
        # 40 mm deep bodies at 25 deg smear over 19 mm, more than the 12.5 mm disc.
        assert disc_dip(ct_pose, upper, upper + 1) < disc_dip(straight, upper, upper + 1) - 0.15
        assert disc_dip(dxa_pose, upper, upper + 1) == pytest.approx(
            disc_dip(straight, upper, upper + 1), abs=0.05
        )
    assert dxa_pose.scan_id == "ct-lean-dxa" and dxa_pose.meta["anatomy"]["pose"] == "dxa"


def test_the_dxa_pose_keeps_the_mineral(full, leaning_spine):
    def total_g(scan):
        return scan.truth_maps["vertebral_bone_g_cm2"].sum() * scan.pixel_area_cm2

    assert total_g(leaning_spine["dxa"]) == pytest.approx(total_g(leaning_spine["ct"]), rel=0.02)
    straight = full[2].meta["truth"]["vertebrae"]
    dxa_pose = leaning_spine["dxa"].meta["truth"]["vertebrae"]
    for name in ("L1", "L2", "L3", "L4"):
        assert dxa_pose[name]["bmc_g"] == pytest.approx(straight[name]["bmc_g"], rel=0.05)


def test_the_dxa_pose_leaves_a_straight_spine_as_it_is(tmp_path, full):
    ct, seg, straight = full
    scan = scan_from_ct(ct, seg, label_map="simple", options=EXACT, pose="dxa")
    np.testing.assert_array_equal(scan.labels, straight.labels)
    for name, truth in straight.meta["truth"]["vertebrae"].items():
        assert scan.meta["truth"]["vertebrae"][name]["bmd_g_cm2"] == pytest.approx(
            truth["bmd_g_cm2"], rel=0.005
        )


def test_an_unknown_pose_is_a_clear_error(tmp_path, full):
    ct, seg, _ = full
    with pytest.raises(CTError, match="unknown pose 'sideways'"):
        scan_from_ct(ct, seg, label_map="simple", pose="sideways")
    args = ["simulate", "--from-ct", str(ct), "--labels", str(seg), "--label-map", "simple"]
    result = CliRunner().invoke(app, [*args, "--pose", "sideways", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown pose" in result.output


def test_label_grid_mismatch_is_a_clear_error(tmp_path):
    hu, labels = phantom()
    ct, seg = write_pair(tmp_path, hu, labels[:, :, :-1], name="shape")
    with pytest.raises(CTError, match=r"shape \(64, 64, 79\) does not match the CT"):
        scan_from_ct(ct, seg, label_map="simple")
    shifted = np.diag([-1.0, 1.0, 1.0, 1.0]) @ affine()
    shifted[2, 3] += 5.0
    ct, seg = write_pair(tmp_path, hu, labels, label_affine=shifted, name="shifted")
    with pytest.raises(CTError, match="affine differs from the CT's by up to 5 mm"):
        scan_from_ct(ct, seg, label_map="simple")


def test_wrong_label_map_is_a_clear_error(tmp_path, full):
    ct, seg, _ = full
    with pytest.raises(CTError, match="no voxel carries an L1-L4 id"):
        scan_from_ct(ct, seg, label_map="totalsegmentator")


def test_cli_end_to_end(tmp_path, full):
    ct, seg, _ = full
    runner = CliRunner()
    args = ["simulate", "--from-ct", str(ct), "--labels", str(seg), "--label-map", "simple"]
    args += ["--device", "lunar-like", "--seed", "3"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "true BMD" in result.output
    path = tmp_path / "a" / "ct-phantom.npz"
    scan = read_scan(path)
    assert scan.device == "lunar-like" and scan.meta["simulated"] is True
    assert scan.meta["anatomy"]["ct_file"] == "phantom.nii.gz"
    assert set(np.unique(scan.labels)) == {0, 1, 2, 3, 4}
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert again.exit_code == 0
    assert (tmp_path / "b" / "ct-phantom.npz").read_bytes() == path.read_bytes()
    posed = runner.invoke(app, [*args, "--pose", "dxa", "--out", str(tmp_path / "a")])
    assert posed.exit_code == 0 and "dxa pose" in posed.output
    assert read_scan(tmp_path / "a" / "ct-phantom-dxa.npz").meta["anatomy"]["pose"] == "dxa"
    fat = runner.invoke(app, [*args, "--marrow-fat", "0.5", "--out", str(tmp_path / "c")])
    assert fat.exit_code == 0, fat.output
    fatty = read_scan(tmp_path / "c" / "ct-phantom.npz").meta
    assert fatty["anatomy"]["hu_calibration"]["marrow_fat_fraction"] == 0.5
    lean = scan.meta["truth"]["vertebrae"]
    for name, truth in fatty["truth"]["vertebrae"].items():
        assert truth["bmd_g_cm2"] > lean[name]["bmd_g_cm2"]  # mineral starts at a lower HU


def test_ct_options_without_from_ct_are_named_not_silently_dropped(tmp_path):
    args = ["simulate", "--n", "1", "--quiet", "--marrow-fat", "0.5", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "apply only to --from-ct" in result.output


def test_cli_errors_exit_2(tmp_path, full):
    ct, seg, _ = full
    runner = CliRunner()
    hu, labels = phantom()
    bad_ct, bad_seg = write_pair(tmp_path, hu, labels[:, :, :-1], name="bad")
    cases = [
        ["--from-ct", str(bad_ct), "--labels", str(bad_seg), "--label-map", "simple"],
        ["--from-ct", str(ct)],
        ["--from-ct", str(tmp_path / "missing.nii.gz"), "--labels", str(seg)],
        ["--from-ct", str(ct), "--labels", str(seg), "--label-map", "L9=1"],
    ]
    for extra in cases:
        result = runner.invoke(app, ["simulate", *extra, "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, (extra, result.output)
        assert result.output.startswith("error: ")


def test_partial_coverage_is_printed(tmp_path):
    hu, labels = phantom(lumbar=("L1", "L2", "L3"))
    ct, seg = write_pair(tmp_path, hu, labels)
    args = ["simulate", "--from-ct", str(ct), "--labels", str(seg), "--label-map", "simple"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "partial coverage (not in the CT: L4)" in result.output


def test_calibration_is_recorded(full):
    _, _, scan = full
    recorded = scan.meta["anatomy"]["hu_calibration"]
    assert recorded == dataclasses.asdict(HUCalibration())


def test_totalsegmentator_ids_and_contrast_capping(tmp_path):
    """With TotalSegmentator ids, an enhanced aorta (label 52, 400 HU) is soft tissue;
    with the simple map (no organ labels) the same voxels read as bone."""
    hu, labels = phantom()
    ts = np.zeros_like(labels)
    for label, ts_id in zip((1, 2, 3, 4), (31, 30, 29, 28), strict=True):
        ts[labels == label] = ts_id
    x = (np.arange(SHAPE[0]) + 0.5) * VOXEL_MM[0] - 64.0
    y = (np.arange(SHAPE[1]) + 0.5) * VOXEL_MM[1] - 64.0
    xx, yy = np.meshgrid(x, y, indexing="ij")
    aorta = ((xx - 30) ** 2 + (yy - 20) ** 2 <= 100)[:, :, None] & np.ones(SHAPE, bool)
    hu[aorta] = 400.0
    ts[aorta] = 52
    ct, seg = write_pair(tmp_path, hu, ts)
    capped = scan_from_ct(ct, seg, options=EXACT)
    both = labels.copy()
    both[aorta] = 0
    ct2, seg2 = write_pair(tmp_path, hu, both, name="simple")
    enhanced = scan_from_ct(ct2, seg2, label_map="simple", options=EXACT)
    assert np.array_equal(capped.labels, enhanced.labels)
    assert capped.meta["anatomy"]["label_map"] == "totalsegmentator"
    other = capped.truth_maps["bone_g_cm2"] - capped.truth_maps["vertebral_bone_g_cm2"]
    assert other.max() < 1e-6  # the aorta adds no mineral
    other = enhanced.truth_maps["bone_g_cm2"] - enhanced.truth_maps["vertebral_bone_g_cm2"]
    assert other.max() > 0.5  # 2 cm of 400 HU read as bone


def test_posterior_share_is_the_mineral_behind_the_body(full):
    _, _, scan = full
    truth = scan.meta["truth"]["vertebrae"]
    for name in ("L1", "L3", "L4"):  # bare cylinders: all body
        assert truth[name]["posterior_share"] == pytest.approx(0.0, abs=1e-6)
    # L2: the bar and the pedicle behind the cylinder (all voxels the same HU).
    _, labels = phantom()
    l2 = labels == 2
    x = (np.arange(SHAPE[0]) + 0.5) * VOXEL_MM[0] - 64.0
    y = (np.arange(SHAPE[1]) + 0.5) * VOXEL_MM[1] - 64.0
    xx, yy = np.meshgrid(x, y, indexing="ij")
    behind = (xx**2 + (yy + 10.0) ** 2 > RADIUS_MM**2) & (yy < -10.0)
    expected = (l2 & behind[:, :, None]).sum() / l2.sum()
    assert 0.1 < expected < 0.5
    assert truth["L2"]["posterior_share"] == pytest.approx(expected, abs=0.02)


def test_voxel_resolution_keeps_the_grid_mass_and_smooths_edges():
    spacing = (0.9, 0.6)
    block = np.zeros((200, 150))
    block[50:150, 40:110] = 1.0
    np.testing.assert_allclose(at_voxel_resolution(block, spacing, spacing), block, atol=1e-12)
    coarse = at_voxel_resolution(block, spacing, (3.0, 3.0))
    assert coarse.sum() == pytest.approx(block.sum(), rel=1e-3)
    assert 0.3 < np.abs(coarse - block).max() < 0.7  # edges spread over about a voxel
    np.testing.assert_allclose(coarse[90:110, 60:90], 1.0)  # the inside untouched
    flat = at_voxel_resolution(np.full((40, 30), 2.0), spacing, (2.5, 0.7))
    np.testing.assert_allclose(flat, 2.0)


def test_labels_at_voxel_resolution_move_edges_by_under_a_voxel():
    spacing, voxel = (0.9, 0.6), (3.0, 3.0)
    labels = np.zeros((200, 150), np.uint8)
    labels[50:100, 40:110] = 1
    labels[100:150, 40:110] = 2
    np.testing.assert_array_equal(labels_at_voxel_resolution(labels, spacing, spacing), labels)
    coarse = labels_at_voxel_resolution(labels, spacing, voxel)
    assert set(np.unique(coarse)) == {0, 1, 2}
    for label in (1, 2):
        rows, cols = np.nonzero(coarse == label)
        exact_rows, exact_cols = np.nonzero(labels == label)
        assert abs(rows.min() - exact_rows.min()) * spacing[0] <= voxel[0]
        assert abs(rows.max() - exact_rows.max()) * spacing[0] <= voxel[0]
        assert abs(cols.min() - exact_cols.min()) * spacing[1] <= voxel[1]
        assert abs(cols.max() - exact_cols.max()) * spacing[1] <= voxel[1]
        assert (coarse == label).sum() == pytest.approx((labels == label).sum(), rel=0.1)


def test_label_values_must_be_non_negative_whole_ids(tmp_path):
    hu, labels = phantom()
    ct, _ = write_pair(tmp_path, hu, labels)
    with pytest.raises(CTError, match="ids are never negative; is this the CT"):
        scan_from_ct(ct, ct, label_map="simple")
    smeared = ndimage.uniform_filter(labels.astype(np.float32), 3)
    _, seg = write_pair(tmp_path, hu, smeared, name="smeared")
    with pytest.raises(CTError, match=r"fractional label ids.*nearest neighbour"):
        scan_from_ct(ct, seg, label_map="simple")
    _, seg = write_pair(tmp_path, hu, labels.astype(np.float32), name="float")
    as_float = scan_from_ct(ct, seg, label_map="simple", options=EXACT)
    assert set(np.unique(as_float.labels)) == {0, 1, 2, 3, 4}


def test_verse_preset_reads_verse_ids(tmp_path, full):
    _, _, simple = full
    hu, labels = phantom()
    verse = np.where(labels > 0, labels + 19, 0).astype(np.uint8)  # L1 20 ... L4 23
    ct, seg = write_pair(tmp_path, hu, verse, name="verse")
    scan = scan_from_ct(ct, seg, label_map="verse", options=EXACT)
    np.testing.assert_array_equal(scan.labels, simple.labels)
    assert LABEL_MAPS["verse"].vertebrae["T12"] == 19
    assert 28 in LABEL_MAPS["verse"].bone_labels  # T13, a transitional vertebra


def test_a_folder_of_totalsegmentator_masks_reads_as_its_multi_label_file(tmp_path):
    """TotalSegmentator writes one mask per structure by default (`segmentations/`);
    that folder gives the same scan as the one-file (`--ml`) label volume."""
    hu, labels = phantom()
    ts = np.zeros_like(labels)
    for label, ts_id in zip((1, 2, 3, 4), (31, 30, 29, 28), strict=True):
        ts[labels == label] = ts_id
    aorta = np.zeros(SHAPE, dtype=bool)
    aorta[40:46, 40:46, :] = True
    hu[aorta] = 400.0
    ts[aorta] = 52
    ct, seg = write_pair(tmp_path, hu, ts)
    folder = tmp_path / "segmentations"
    folder.mkdir()
    to_left = np.diag([-1.0, 1.0, 1.0, 1.0]) @ affine()
    for name, ts_id in (
        ("vertebrae_L1", 31),
        ("vertebrae_L2", 30),
        ("vertebrae_L3", 29),
        ("vertebrae_L4", 28),
        ("aorta", 52),
        ("liver", 5),
    ):
        nib.save(
            nib.Nifti1Image((ts == ts_id).astype(np.uint8), to_left), folder / f"{name}.nii.gz"
        )
    (folder / "notes.txt").write_text("not a mask", encoding="utf-8")
    from_file = scan_from_ct(ct, seg, options=EXACT)
    from_folder = scan_from_ct(ct, folder, options=EXACT)
    np.testing.assert_array_equal(from_folder.labels, from_file.labels)
    for name in ("bone_g_cm2", "lean_g_cm2", "adipose_g_cm2"):
        np.testing.assert_array_equal(from_folder.truth_maps[name], from_file.truth_maps[name])
    with pytest.raises(CTError, match="'simple' does not fit"):
        scan_from_ct(ct, folder, label_map="simple")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CTError, match="no TotalSegmentator mask files"):
        scan_from_ct(ct, empty)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), to_left), folder / "sacrum.nii.gz")
    with pytest.raises(CTError, match=r"sacrum.nii.gz: label volume shape \(4, 4, 4\)"):
        scan_from_ct(ct, folder)
