"""The pure helpers of benchmarks/realism.py on tiny hand-built label maps and images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark_loader import load_benchmark

realism = load_benchmark("realism")


# --------------------------------------------------------------------------- background_band


def test_background_band_is_15_to_35_mm_beside_the_mask_in_its_rows():
    """A 5-row spine mask (L1 and L2) at 1 mm pixels: the band is columns 15-35 px
    away on each side, inclusive, and only in the mask's rows (not the rows above
    or below, though they lie within 35 mm too)."""
    labels = np.zeros((20, 100), np.uint8)
    labels[5:8, 45:55] = 1
    labels[8:10, 45:55] = 2
    band = realism.background_band(labels, (1.0, 1.0))
    expected = np.zeros(labels.shape, bool)
    expected[5:10, 10:31] = True  # 45 - c in 15..35
    expected[5:10, 69:90] = True  # c - 54 in 15..35
    np.testing.assert_array_equal(band, expected)


def test_background_band_measures_columns_in_their_own_spacing():
    """At 2 mm per column the band is 8-17 columns from the mask (16-34 mm):
    the distance uses (row, col) spacing in that order."""
    labels = np.zeros((20, 100), np.uint8)
    labels[5:10, 45:55] = 1
    band = realism.background_band(labels, (1.0, 2.0))
    expected = np.zeros(labels.shape, bool)
    expected[5:10, 28:38] = True
    expected[5:10, 62:72] = True
    np.testing.assert_array_equal(band, expected)


# --------------------------------------------------------------------------- vertebra_sizes


def test_vertebra_sizes_width_height_area_in_mm_and_cm2():
    """Width is the widest row (x column spacing), height the tallest column
    (x row spacing), area the pixel count in cm2; absent vertebrae and labels
    beyond L4 are left out."""
    labels = np.zeros((20, 12), np.uint8)
    labels[2:6, 3:9] = 1  # 4 rows x 6 columns
    labels[10:14, 2:10] = 2  # 4 rows x 8 columns ...
    labels[14:16, 4:6] = 2  # ... and a 2 x 2 foot below columns 4-5
    labels[17:19, 0:12] = 5
    sizes = realism.vertebra_sizes(labels, (0.5, 2.0))
    assert set(sizes) == {"L1", "L2"}
    assert sizes["L1"] == pytest.approx({"width_mm": 12.0, "height_mm": 2.0, "area_cm2": 0.24})
    assert sizes["L2"] == pytest.approx({"width_mm": 16.0, "height_mm": 3.0, "area_cm2": 0.36})


# --------------------------------------------------------------------------- body_waist


def test_body_waist_compares_middle_third_median_with_widest_row():
    """L1's 9 rows are 10, 10, 10, 7, 5, 7, 10, 10, 10 wide: median of the middle
    third (7) over the widest (10) gives a waist of 0.3. A straight-sided L3 has
    none; L2, with 5 rows (under 6), is skipped."""
    body = np.zeros((40, 20), np.uint8)
    for row, width in enumerate((10, 10, 10, 7, 5, 7, 10, 10, 10)):
        body[row, 5 : 5 + width] = 1
    body[12:17, 5:15] = 2
    body[20:26, 4:12] = 3
    waists = realism.body_waist(body)
    assert set(waists) == {"L1", "L3"}
    assert waists["L1"] == pytest.approx(0.3)
    assert waists["L3"] == 0.0


def test_body_waist_middle_third_of_rows_not_divisible_by_three():
    """7 rows (third = 7 // 3 = 2 trimmed at each end): the middle is rows 2-4,
    widths 6, 7, 8 -> median 7, widest 8 -> waist 0.125. The narrow rows 1 and 5
    lie outside it (with them the median would be 6)."""
    body = np.zeros((10, 12), np.uint8)
    for row, width in enumerate((8, 2, 6, 7, 8, 2, 8)):
        body[row, :width] = 1
    assert realism.body_waist(body) == {"L1": pytest.approx(0.125)}


# --------------------------------------------------------------------------- disc_contrast


def _column_of_three(gap_values: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """L1-L3 in rows 2-10, 14-22, 26-34 (centres 6, 18, 30) over columns 4-15;
    the bone is 2 g/cm2 in every row but the two disc gaps, which hold
    `gap_values`. The columns outside the middle half (4-5, 14-15) hold 10 in the
    gaps, which the profile must not see."""
    labels = np.zeros((40, 20), np.uint8)
    labels[2:11, 4:16] = 1
    labels[14:23, 4:16] = 2
    labels[26:35, 4:16] = 3
    bone = np.full(labels.shape, 2.0)
    for rows, value in zip((slice(11, 14), slice(23, 26)), gap_values, strict=True):
        bone[rows] = value
        bone[rows, 4:6] = 10.0
        bone[rows, 14:16] = 10.0
    return bone, labels


def test_disc_contrast_averages_the_dip_of_each_neighbouring_pair():
    """Dips of 1 - 0.5/2 = 0.75 and 1 - 1/2 = 0.5 average to 0.625, over the middle
    half of the column's width only (columns 6-13)."""
    bone, labels = _column_of_three((0.5, 1.0))
    assert realism.disc_contrast(bone, labels) == pytest.approx(0.625)


def test_disc_contrast_reference_is_the_mean_of_the_two_centres():
    """Centres at 2 and 4 g/cm2 with a gap of 1.5: 1 - 1.5 / 3 = 0.5."""
    labels = np.zeros((30, 10), np.uint8)
    labels[2:11, 2:8] = 1
    labels[14:23, 2:8] = 2
    bone = np.full(labels.shape, 2.0)
    bone[14:] = 4.0
    bone[11:14] = 1.5
    assert realism.disc_contrast(bone, labels) == pytest.approx(0.5)


def test_disc_contrast_is_one_for_an_empty_gap_and_zero_for_none():
    """The docstring's two ends: no mineral in the gaps -> 1; uniform bone -> 0."""
    bone, labels = _column_of_three((0.0, 0.0))
    assert realism.disc_contrast(bone, labels) == pytest.approx(1.0)
    bone, labels = _column_of_three((2.0, 2.0))
    assert realism.disc_contrast(bone, labels) == pytest.approx(0.0)


def test_disc_contrast_is_nan_without_a_neighbouring_pair():
    """A single vertebra has no disc to measure."""
    labels = np.zeros((20, 10), np.uint8)
    labels[5:12, 2:8] = 2
    assert math.isnan(realism.disc_contrast(np.ones(labels.shape), labels))


# --------------------------------------------------------------------------- label_edge_offset_mm


def _vertebra_in_field(bone_columns: slice, width: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """L1 labelled in rows 0-9, columns 10-19, with mineral 1 in `bone_columns`."""
    labels = np.zeros((10, width), np.uint8)
    labels[:, 10:20] = 1
    mineral = np.zeros(labels.shape)
    mineral[:, bone_columns] = 1.0
    return mineral, labels


def test_label_edge_offset_is_mean_of_both_sides_in_mm():
    """Bone in columns 12-17, label 10-19: 2 px outside on each side -> 2 mm at
    1 mm columns and 1 mm at 0.5 mm columns."""
    mineral, labels = _vertebra_in_field(slice(12, 18))
    assert realism.label_edge_offset_mm(mineral, labels, 1.0) == {"L1": 2.0}
    assert realism.label_edge_offset_mm(mineral, labels, 0.5) == {"L1": 1.0}


def test_label_edge_offset_one_sided_and_negative():
    """Bone 12-19 (label flush on the right, 2 px wide on the left) -> 1 mm; bone
    8-21, wider than the label by 2 px each side -> -2 mm."""
    mineral, labels = _vertebra_in_field(slice(12, 20))
    assert realism.label_edge_offset_mm(mineral, labels, 1.0) == {"L1": 1.0}
    mineral, labels = _vertebra_in_field(slice(8, 22))
    assert realism.label_edge_offset_mm(mineral, labels, 1.0) == {"L1": -2.0}


def test_label_edge_offset_uses_the_middle_half_of_the_rows():
    """Rows 3-6 (the middle half of 0-9) have bone 12-17 (2 mm); the other six
    rows match the label (0 mm). The median over all rows would be 0."""
    mineral, labels = _vertebra_in_field(slice(10, 20))
    mineral[3:7, 10:12] = 0.0
    mineral[3:7, 18:20] = 0.0
    assert realism.label_edge_offset_mm(mineral, labels, 1.0) == {"L1": 2.0}


def test_label_edge_offset_searches_only_within_reach():
    """Other bone 16-19 px right of the label is ignored within a 10 mm reach; with
    a 20 mm reach the right edge is found there (19 - 38 = -19 px): (-19 + 2) / 2."""
    mineral, labels = _vertebra_in_field(slice(12, 18))
    mineral[:, 35:39] = 1.0
    assert realism.label_edge_offset_mm(mineral, labels, 1.0) == {"L1": 2.0}
    assert realism.label_edge_offset_mm(mineral, labels, 1.0, reach_mm=20.0) == {"L1": -8.5}


def test_label_edge_offset_skips_short_and_boneless_vertebrae():
    """L2 has 3 rows (< 4) and L3 no mineral under its label: only L1 is measured."""
    labels = np.zeros((30, 40), np.uint8)
    labels[0:10, 10:20] = 1
    labels[12:15, 10:20] = 2
    labels[18:28, 10:20] = 3
    mineral = np.zeros(labels.shape)
    mineral[0:15, 12:18] = 1.0
    assert realism.label_edge_offset_mm(mineral, labels, 1.0) == {"L1": 2.0}


# --------------------------------------------------------------------------- beside_body


def test_beside_body_is_own_label_outside_the_body_in_rows_it_crosses():
    """L1's label fills rows 0-5, columns 0-9; its body spans columns 3-6 in rows
    1-4, narrowed to 4-5 in row 2 (waisted) and hollow in row 3 (columns 3 and 6
    only). Beside: the label outside the body's extent in rows 1-4; row 3's hollow
    lies inside the extent and rows 0 and 5 are not crossed. L2's label, with no
    body, is never beside."""
    labels = np.zeros((8, 12), np.uint8)
    labels[0:6, 0:10] = 1
    labels[1:5, 10:12] = 2
    body = np.zeros(labels.shape, np.uint8)
    body[1:5, 3:7] = 1
    body[2, [3, 6]] = 0
    body[3, [4, 5]] = 0
    expected = np.zeros(labels.shape, bool)
    expected[1:5, 0:3] = True
    expected[1:5, 7:10] = True
    expected[2, [3, 6]] = True
    np.testing.assert_array_equal(realism.beside_body(labels, body), expected)


# --------------------------------------------------------------------------- miss_breakdown


def test_miss_breakdown_splits_missed_pixels_by_anatomy():
    """L1 fills rows 0-5 x columns 0-9 (60 px) with its body in rows 1-4 x
    columns 3-6 (16 px): 24 px beside the body, 20 px other posterior elements.
    The model misses 2 body, 3 beside and 5 other pixels, adds 4 and gives one
    reference pixel another vertebra's label (neither missed nor added). At
    1 x 2 mm a pixel is 0.02 cm2."""
    labels = np.zeros((8, 10), np.uint8)
    labels[0:6, :] = 1
    body = np.zeros(labels.shape, np.uint8)
    body[1:5, 3:7] = 1
    predicted = labels.copy()
    predicted[2, 3:5] = 0
    predicted[1, 0:3] = 0
    predicted[0, 0:5] = 0
    predicted[7, 0:4] = 1
    predicted[5, 9] = 2
    misses = realism.miss_breakdown(predicted, labels, body, (1.0, 2.0))
    assert misses == pytest.approx(
        {
            "missed_body_cm2": 0.04,
            "missed_beside_body_cm2": 0.06,
            "missed_other_posterior_cm2": 0.10,
            "added_cm2": 0.08,
            "reference_posterior_cm2": 0.88,
            "reference_beside_body_cm2": 0.48,
        }
    )
    assert set(misses) == set(realism.MISS_KEYS)


def test_miss_breakdown_of_the_reference_itself_misses_nothing():
    """The reference against itself: no misses, nothing added; the reference's own
    figures stay."""
    labels = np.zeros((8, 10), np.uint8)
    labels[0:6, :] = 1
    body = np.zeros(labels.shape, np.uint8)
    body[1:5, 3:7] = 1
    misses = realism.miss_breakdown(labels, labels, body, (1.0, 1.0))
    assert misses["missed_body_cm2"] == 0.0
    assert misses["missed_beside_body_cm2"] == 0.0
    assert misses["missed_other_posterior_cm2"] == 0.0
    assert misses["added_cm2"] == 0.0
    assert misses["reference_posterior_cm2"] == pytest.approx(0.44)
    assert misses["reference_beside_body_cm2"] == pytest.approx(0.24)


# --------------------------------------------------------------------------- distribution


def test_distribution_over_finite_values():
    """None, nan and inf are dropped; SD is the sample SD (ddof 1); the 2.5/97.5
    percentiles interpolate linearly (1 + 0.075, 1 + 2.925)."""
    d = realism.distribution([3.0, None, 1.0, math.nan, 4.0, math.inf, 2.0])
    assert d == pytest.approx(
        {
            "n": 4,
            "mean": 2.5,
            "sd": math.sqrt(5 / 3),
            "min": 1.0,
            "p2_5": 1.075,
            "p97_5": 3.925,
            "max": 4.0,
        }
    )


def test_distribution_of_one_value_and_of_none():
    """One value: SD 0 rather than nan; no finite value: only n = 0."""
    assert realism.distribution([0.7]) == pytest.approx(
        {"n": 1, "mean": 0.7, "sd": 0.0, "min": 0.7, "p2_5": 0.7, "p97_5": 0.7, "max": 0.7}
    )
    assert realism.distribution([]) == {"n": 0}
    assert realism.distribution([math.nan, None]) == {"n": 0}


# --------------------------------------------------------------------------- compare


def _measurement(scan_id: str, value: float, vertebrae=realism.LUMBAR) -> dict:
    """A `measure` row with every scan and vertebra figure set to `value`."""
    return {
        "scan_id": scan_id,
        "scan": dict.fromkeys(realism.SCAN_KEYS, value),
        "vertebrae": {name: dict.fromkeys(realism.ANATOMY_KEYS, value) for name in vertebrae},
    }


def test_compare_flags_ct_values_outside_the_procedural_range():
    """Procedural 1, 2, 3: CT values 3.5 and 0.5 are outside, 2.5 and 3.0 (the
    max, inclusive) inside, nan never flagged. L4, absent from one procedural
    scan, has the range 1..2; a CT scan without L2-L4 has no value there."""
    procedural = [
        _measurement("p0", 1.0),
        _measurement("p1", 2.0),
        _measurement("p2", 3.0, vertebrae=("L1", "L2", "L3")),
    ]
    ct = [
        _measurement("ct-a", 2.5),
        _measurement("ct-b", 3.5),
        _measurement("ct-c", 3.0),
        _measurement("ct-d", math.nan),
        _measurement("ct-e", 0.5, vertebrae=("L1",)),
    ]
    out = realism.compare(procedural, ct)
    per_vertebra = {f"{n} {k}" for n in realism.LUMBAR for k in realism.ANATOMY_KEYS}
    assert set(out) == set(realism.SCAN_KEYS) | per_vertebra

    row = out["contrast_low"]
    assert row["procedural"]["n"] == 3
    assert (row["procedural"]["min"], row["procedural"]["max"]) == (1.0, 3.0)
    assert list(row["ct"]) == ["ct-a", "ct-b", "ct-c", "ct-d", "ct-e"]
    assert row["ct"]["ct-b"] == 3.5
    assert math.isnan(row["ct"]["ct-d"])
    assert row["ct_outside_procedural_range"] == ["ct-b", "ct-e"]

    row = out["L4 width_mm"]
    assert row["procedural"]["n"] == 2
    assert row["procedural"]["max"] == 2.0
    assert list(row["ct"]) == ["ct-a", "ct-b", "ct-c", "ct-d"]
    assert row["ct_outside_procedural_range"] == ["ct-a", "ct-b", "ct-c"]

    assert out["L1 tbs"]["ct_outside_procedural_range"] == ["ct-b", "ct-e"]
    assert out["L2 tbs"]["ct_outside_procedural_range"] == ["ct-b"]


def test_compare_flags_nothing_without_procedural_values():
    """No procedural scan has L4: its procedural distribution is empty and a CT's
    L4 value cannot be outside it."""
    procedural = [_measurement("p0", 1.0, vertebrae=("L1", "L2", "L3"))]
    out = realism.compare(procedural, [_measurement("ct-a", 9.0)])
    assert out["L4 area_cm2"]["procedural"] == {"n": 0}
    assert out["L4 area_cm2"]["ct"] == {"ct-a": 9.0}
    assert out["L4 area_cm2"]["ct_outside_procedural_range"] == []
    assert out["L3 area_cm2"]["ct_outside_procedural_range"] == ["ct-a"]


# --------------------------------------------------------------------------- noise_draw_summary


def test_noise_draw_summary_averages_scans_per_draw_then_over_draws():
    """a.nii.gz has two scans: per draw (0.9 + 0.7) / 2 = 0.8 and (0.8 + 0.6) / 2
    = 0.7, so mean 0.75, SD 0.1 / sqrt 2, min 0.7, max 0.8. b.nii.gz has one."""
    rows = [
        {"ct_file": "a.nii.gz", "union_dice": [0.9, 0.8]},
        {"ct_file": "b.nii.gz", "union_dice": [0.5, 0.5]},
        {"ct_file": "a.nii.gz", "union_dice": [0.7, 0.6]},
    ]
    summary = realism.noise_draw_summary(rows)
    assert list(summary) == ["a.nii.gz", "b.nii.gz"]
    a = summary["a.nii.gz"]
    assert a["scans"] == 2
    assert a["mean_union_dice_per_draw"] == pytest.approx([0.8, 0.7])
    assert a["n"] == 2
    assert a["mean"] == pytest.approx(0.75)
    assert a["sd"] == pytest.approx(0.1 / math.sqrt(2))
    assert (a["min"], a["max"]) == pytest.approx((0.7, 0.8))
    b = summary["b.nii.gz"]
    assert b["scans"] == 1
    assert b["mean_union_dice_per_draw"] == pytest.approx([0.5, 0.5])
    assert (b["mean"], b["sd"]) == pytest.approx((0.5, 0.0))


def test_noise_draw_summary_of_no_rows_is_empty():
    """No CT-derived scan, no CT file."""
    assert realism.noise_draw_summary([]) == {}


# --------------------------------------------------------------------------- pair_inputs


def test_pair_inputs_pairs_files_in_order(tmp_path):
    """One --labels per --ct: paired in the order given."""
    cts = [tmp_path / "b.nii.gz", tmp_path / "a.nii.gz"]
    labels = [tmp_path / "b_seg.nii.gz", tmp_path / "a_seg.nii.gz"]
    assert realism.pair_inputs(cts, labels) == list(zip(cts, labels, strict=True))


def test_pair_inputs_refuses_unequal_counts(tmp_path):
    """Two CTs with one labels file is a usage error, not a silent truncation."""
    with pytest.raises(SystemExit, match="one --labels per --ct"):
        realism.pair_inputs([tmp_path / "a.nii", tmp_path / "b.nii"], [tmp_path / "a_seg.nii"])


def test_pair_inputs_pairs_folders_by_file_name(tmp_path):
    """--ct DIR --labels DIR: the CT folder's NIfTI files (.nii, .nii.gz) sorted by
    name, each with the labels folder's file of the same name; other files ignored."""
    ct_dir, label_dir = tmp_path / "ct", tmp_path / "labels"
    ct_dir.mkdir()
    label_dir.mkdir()
    for name in ("b.nii.gz", "a.nii", "notes.txt"):
        (ct_dir / name).write_bytes(b"")
    for name in ("b.nii.gz", "a.nii"):
        (label_dir / name).write_bytes(b"")
    assert realism.pair_inputs([ct_dir], [label_dir]) == [
        (ct_dir / "a.nii", label_dir / "a.nii"),
        (ct_dir / "b.nii.gz", label_dir / "b.nii.gz"),
    ]


def test_pair_inputs_refuses_a_ct_folder_without_a_labels_folder(tmp_path):
    """A CT folder needs exactly one labels folder."""
    ct_dir = tmp_path / "ct"
    ct_dir.mkdir()
    labels_file = tmp_path / "seg.nii.gz"
    labels_file.write_bytes(b"")
    with pytest.raises(SystemExit, match="--labels DIR"):
        realism.pair_inputs([ct_dir], [labels_file])
    with pytest.raises(SystemExit, match="--labels DIR"):
        realism.pair_inputs([ct_dir], [tmp_path, tmp_path])


def test_ct_cases_from_pairs_group_by_file_name_as_before(tmp_path):
    cts = [tmp_path / "cxr.nii.gz"]
    cases = realism.ct_cases(cts, [tmp_path / "mask.nii.gz"], None)
    [(case, group)] = cases
    assert (case.case_id, case.patient_id, group) == ("ct-cxr", "ct-cxr", "cxr.nii.gz")
    assert case.label_map is None


def test_ct_cases_from_a_list_group_by_case_id(tmp_path):
    """Datasets name every CT ct.nii.gz: a list's case ids keep the CTs apart."""
    for case in ("s1", "s2"):
        (tmp_path / case).mkdir()
        (tmp_path / case / "ct.nii.gz").write_bytes(b"")
        (tmp_path / case / "segmentations").mkdir()
    (tmp_path / "cts.csv").write_text(
        "ct,labels,case_id,patient_id,label_map\n"
        "s1/ct.nii.gz,s1/segmentations,s1,P,\n"
        "s2/ct.nii.gz,s2/segmentations,s2,P,verse\n",
        encoding="utf-8",
    )
    cases = realism.ct_cases(None, None, tmp_path / "cts.csv")
    assert [group for _, group in cases] == ["s1", "s2"]
    assert [c.patient_id for c, _ in cases] == ["P", "P"]
    assert [c.label_map for c, _ in cases] == [None, "verse"]


def test_ct_cases_needs_one_kind_of_input(tmp_path):
    with pytest.raises(SystemExit, match="not both"):
        realism.ct_cases([tmp_path / "a.nii"], [tmp_path / "b.nii"], tmp_path / "l.csv")
    with pytest.raises(SystemExit, match="or --ct-list FILE"):
        realism.ct_cases(None, None, None)
    with pytest.raises(SystemExit, match="cannot read the CT list"):
        realism.ct_cases(None, None, tmp_path / "missing.csv")


def test_noise_draw_summary_groups_by_case_when_rows_name_it():
    rows = [
        {"ct_file": "ct.nii.gz", "ct_case": case, "union_dice": [dice, dice]}
        for case, dice in (("s1", 0.9), ("s2", 0.5))
    ]
    summary = realism.noise_draw_summary(rows)
    assert {k: v["mean"] for k, v in summary.items()} == pytest.approx({"s1": 0.9, "s2": 0.5})


def test_sha256_of_a_mask_folder_follows_its_files(tmp_path):
    (tmp_path / "vertebrae_L1.nii.gz").write_bytes(b"one")
    first = realism.sha256(tmp_path)
    assert realism.sha256(tmp_path) == first
    (tmp_path / "vertebrae_L1.nii.gz").write_bytes(b"two")
    assert realism.sha256(tmp_path) != first


# --------------------------------------------------------------------------- fmt


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (0.98765, 3, "0.988"),
        (2.0, 1, "2.0"),
        (-0.5, 2, "-0.50"),
        (7, 0, "7"),
        (None, 3, "nan"),
        (math.nan, 1, "nan"),
        (math.inf, 3, "nan"),
    ],
)
def test_fmt(value, digits, text):
    """Fixed decimals for finite values; 'nan' for None, nan and inf."""
    assert realism.fmt(value, digits) == text


def test_disc_contrast_pairs_only_neighbouring_levels():
    """Without L2, L1 and L3 are not neighbours: the dip between them (over L2's
    empty place) is not a disc, so only L3-L4 counts (1 - 1/2 = 0.5)."""
    labels = np.zeros((60, 20), np.uint8)
    labels[2:11, 4:16] = 1
    labels[26:35, 4:16] = 3
    labels[38:47, 4:16] = 4
    bone = np.full(labels.shape, 2.0)
    bone[11:26] = 0.0
    bone[35:38] = 1.0
    assert realism.disc_contrast(bone, labels) == pytest.approx(0.5)


def test_disc_contrast_is_nan_without_any_vertebra():
    assert math.isnan(realism.disc_contrast(np.ones((10, 10)), np.zeros((10, 10), np.uint8)))


def test_pair_inputs_names_ct_files_without_labels(tmp_path):
    """A CT in the folder with no same-named labels file is refused up front, by name."""
    ct_dir, label_dir = tmp_path / "ct", tmp_path / "labels"
    ct_dir.mkdir()
    label_dir.mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        (ct_dir / name).touch()
    (label_dir / "a.nii.gz").touch()
    with pytest.raises(SystemExit, match=r"lacks the labels of: b\.nii\.gz"):
        realism.pair_inputs([ct_dir], [label_dir])


def test_mean_vertebra_dice_counts_a_wrong_level_as_missed():
    """The model finds the whole spine (union Dice 1) but calls L2 L3: L1 Dice 1,
    L2 Dice 0, so the mean over the reference's two levels is 0.5."""
    labels = np.zeros((10, 4), np.uint8)
    labels[1:4] = 1
    labels[5:8] = 2
    predicted = labels.copy()
    predicted[predicted == 2] = 3
    assert realism.mean_vertebra_dice(predicted, labels) == pytest.approx(0.5)
    assert math.isnan(realism.mean_vertebra_dice(predicted, np.zeros_like(labels)))


def test_noise_draw_summary_adds_the_mean_vertebra_dice_when_rows_carry_it():
    """Two scans of a.nii.gz with L1-L4 Dice per draw (0.8, 0.6) and (0.9, 0.9):
    per-scan means 0.7 and 0.9, CT mean 0.8. Rows without it (files written before
    0.7.3) leave the key out rather than guessing."""
    rows = [
        {"ct_file": "a.nii.gz", "union_dice": [0.9, 0.8], "vertebra_dice": [0.8, 0.6]},
        {"ct_file": "a.nii.gz", "union_dice": [0.7, 0.6], "vertebra_dice": [0.9, 0.9]},
        {"ct_file": "b.nii.gz", "union_dice": [0.5, 0.5]},
    ]
    summary = realism.noise_draw_summary(rows)
    assert summary["a.nii.gz"]["mean_vertebra_dice"] == pytest.approx(0.8)
    assert summary["a.nii.gz"]["mean"] == pytest.approx(0.75)
    assert "mean_vertebra_dice" not in summary["b.nii.gz"]
