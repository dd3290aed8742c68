"""Pairing a cohort: predictions matched with reference scans by id, mismatches refused."""

import numpy as np
import pytest
from PIL import Image

from dxaspine.io import write_scan
from dxaspine.pairing import pair_cohort
from dxaspine.scan import ScanError


def test_ids_in_one_folder_only_are_listed(
    make_scan, tmp_path, make_prediction, make_cohort_folders
):
    pred, ref = make_cohort_folders(tmp_path)
    for seed in range(3):
        scan = make_scan(seed, meta={"scan_id": f"s{seed}"})
        write_scan(scan, ref / f"s{seed}.npz")
    for name in ("s0", "s1", "x9"):
        make_prediction(pred, name, make_scan().labels, (0.5, 0.6))
    with pytest.raises(
        ValueError, match=r"1 reference scan\(s\) have no prediction .*: s2"
    ) as info:
        pair_cohort(pred, ref)
    assert "1 prediction(s) have no reference scan" in str(info.value) and "x9" in str(info.value)


def test_a_prediction_of_another_shape_or_spacing_names_both_files(
    make_scan, tmp_path, make_prediction, make_cohort_folders
):
    pred, ref = make_cohort_folders(tmp_path)
    scan = make_scan(0, meta={"scan_id": "a"})
    write_scan(scan, ref / "a.npz")
    path = make_prediction(pred, "a", np.zeros((64, 40), np.uint8), scan.spacing_mm)
    with pytest.raises(ScanError, match=r"shape \(64, 40\) differs") as info:
        pair_cohort(pred, ref)
    assert str(path) in str(info.value) and str(ref / "a.npz") in str(info.value)
    make_prediction(pred, "a", scan.labels, (1.0, 1.0))
    with pytest.raises(ScanError, match="spacing_mm"):
        pair_cohort(pred, ref)


def test_empty_folders_and_unlabelled_references_are_refused(
    make_scan, tmp_path, make_prediction, make_cohort_folders
):
    pred, ref = make_cohort_folders(tmp_path)
    with pytest.raises(ValueError, match="no reference scans"):
        pair_cohort(pred, ref)
    write_scan(make_scan(0, reference=False, meta={"scan_id": "a"}), ref / "a.npz")
    with pytest.raises(ValueError, match="no predictions"):
        pair_cohort(pred, ref)
    make_prediction(pred, "a", make_scan().labels, (0.5, 0.6))
    with pytest.raises(ScanError, match="reference scan has no labels"):
        pair_cohort(pred, ref)
    with pytest.raises(ValueError, match="not a folder"):
        pair_cohort(tmp_path / "missing", ref)


def test_png_predictions_stem_ids_and_labels_beside_a_dicom(
    make_scan, tmp_path, make_prediction, make_cohort_folders
):
    pred, ref = make_cohort_folders(tmp_path)
    scan = make_scan(1, meta={})
    write_scan(scan, ref / "knee.npz")  # no scan_id: the stem is the id
    write_scan(scan, ref / "spine.dcm")  # DICOM holds no labels: they lie beside it
    np.savez_compressed(ref / "spine_labels.npz", labels=scan.labels)
    Image.fromarray(scan.labels).save(pred / "knee_labels.png")
    make_prediction(pred, "spine", scan.labels, scan.spacing_mm)
    pairs = pair_cohort(pred, ref)
    assert [(i, p.name, r.name) for i, p, r in pairs] == [
        ("knee", "knee_labels.png", "knee.npz"),
        ("spine", "spine_labels.npz", "spine.dcm"),
    ]
