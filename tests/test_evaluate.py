"""Evaluation: overlap metrics of label maps and agreement of bone scores."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dxaspine.evaluate import (
    agreement,
    bootstrap_ci,
    evaluate_cohort,
    mean_sd,
    overlap_metrics,
    pair_cohort,
)
from dxaspine.io import write_scan
from dxaspine.scan import ScanError
from dxaspine.simulate.generate import simulate_scan


def _spine(shift_cols: int = 0) -> np.ndarray:
    labels = np.zeros((100, 60), np.uint8)
    for i, top in enumerate((10, 30, 50, 70)):
        labels[top : top + 16, 20 + shift_cols : 40 + shift_cols] = i + 1
    return labels


def test_identical_maps_are_perfect():
    result = overlap_metrics(_spine(), _spine(), (1.0, 0.5))
    assert result["dice"] == 1.0 and result["dice_vertebrae"] == 1.0
    assert result["hausdorff_mm"] == 0.0 and result["assd_mm"] == 0.0


def test_a_known_shift_gives_the_expected_hausdorff_in_mm():
    result = overlap_metrics(_spine(shift_cols=2), _spine(), (1.0, 0.5))
    assert result["hausdorff_mm"] == pytest.approx(1.0)  # 2 columns x 0.5 mm
    assert result["dice"] == pytest.approx(18 / 20)


def test_swapped_vertebra_labels_cost_per_vertebra_dice_only():
    swapped = _spine()
    swapped[_spine() == 1], swapped[_spine() == 2] = 2, 1
    result = overlap_metrics(swapped, _spine(), (1.0, 1.0))
    assert result["dice"] == 1.0
    assert result["dice_vertebrae"] == pytest.approx(0.5)


def test_agreement_of_identical_values_and_of_a_known_offset():
    reference = np.array([0.8, 0.9, 1.0, 1.1, 1.2])
    same = agreement(reference, reference)
    assert same.rmsd == 0 and same.pearson_r == pytest.approx(1.0) and same.bias == 0
    shifted = agreement(reference + 0.05, reference)
    assert shifted.rmsd == pytest.approx(0.05)
    assert shifted.rmsd_percent == pytest.approx(5.0)
    assert shifted.bias == pytest.approx(0.05)
    assert shifted.loa_low == pytest.approx(0.05) and shifted.loa_high == pytest.approx(0.05)


def test_agreement_limits_follow_the_spread_and_skip_nan():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.7, 1.3, 2000)
    method = reference + rng.normal(0.01, 0.02, reference.size)
    method[0] = np.nan
    result = agreement(method, reference)
    assert result.n == 1999
    assert result.loa_high - result.loa_low == pytest.approx(2 * 1.96 * 0.02, rel=0.08)
    assert agreement(np.array([1.0]), np.array([1.0])).n == 1
    assert math.isnan(agreement(np.array([1.0]), np.array([1.0])).rmsd)
    with pytest.raises(ValueError, match="shape"):
        agreement(np.ones(3), np.ones(4))


def test_mean_sd_counts_non_finite_values():
    assert mean_sd([1.0, 3.0, math.nan]) == {"mean": 2.0, "sd": 1.0, "n": 2, "n_not_finite": 1}


# --------------------------------------------------------------------------- cohorts


def _write_prediction(folder: Path, scan_id: str, labels: np.ndarray, spacing_mm) -> Path:
    path = folder / f"{scan_id}_labels.npz"
    np.savez_compressed(path, labels=labels, spacing_mm=np.asarray(spacing_mm))
    return path


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    return pred, ref


@pytest.fixture(scope="module")
def simulated_cohort(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """Three small simulated scans with predictions identical to their reference labels."""
    pred, ref = _folders(tmp_path_factory.mktemp("cohort"))
    ids = []
    for index in range(3):
        scan = simulate_scan(5, index, "lunar-like")
        write_scan(scan, ref / f"{scan.scan_id}.npz")
        _write_prediction(pred, scan.scan_id, scan.labels, scan.spacing_mm)
        ids.append(scan.scan_id)
    return pred, ref, ids


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_identical_predictions_are_perfect_and_every_file_is_written(simulated_cohort, tmp_path):
    pred, ref, ids = simulated_cohort
    seen: list[str] = []
    summary = evaluate_cohort(pred, ref, tmp_path / "out", n_bootstrap=50, progress=seen.append)
    assert seen == ids
    dice_stats = summary["overlap"]["dxaspine"]["dice"]
    assert dice_stats["mean"] == 1.0 and dice_stats["mean_ci95"] == [1.0, 1.0]
    assert summary["overlap"]["dxaspine"]["hausdorff_mm"]["mean"] == 0.0
    assert summary["bmd"]["dxaspine"]["rmsd"] == 0.0 and summary["bmd"]["dxaspine"]["n"] == 3
    assert summary["tbs"]["dxaspine"]["rmsd"] == 0.0
    assert summary["who_agreement"]["dxaspine"] == {"fraction": 1.0, "n": 3}
    assert summary["counts"]["scans"] == 3 and summary["counts"]["bmd_available"] == 3
    assert summary["simulated"] is True and "simulated" in summary["note"]
    assert summary["counts"]["baseline_failures"] + summary["bmd"]["baseline"]["n"] == 3
    assert "rmsd_ratio_baseline_over_dxaspine" in summary["bmd"]
    written = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert written == summary
    per_scan = _read_csv(tmp_path / "out" / "per_scan.csv")
    assert [row["scan_id"] for row in per_scan] == ids
    assert {"dice", "hausdorff_mm", "dice_L4", "bmd_g_cm2_pred_diff", "who_pred_agree"} <= set(
        per_scan[0]
    )
    assert all(float(row["bmd_g_cm2_pred_diff"]) == 0.0 for row in per_scan)
    per_vertebra = _read_csv(tmp_path / "out" / "per_vertebra.csv")
    assert len(per_vertebra) == 3 * 4
    assert [row["vertebra"] for row in per_vertebra[:4]] == ["L1", "L2", "L3", "L4"]
    assert {float(row["dice"]) for row in per_vertebra} == {1.0}
    assert all(row["bmd_g_cm2_ref"] == row["bmd_g_cm2_pred"] for row in per_vertebra)


def test_a_column_shift_gives_the_expected_hausdorff_without_bmd_or_baseline(make_scan, tmp_path):
    pred, ref = _folders(tmp_path)
    for seed in range(3):
        scan = make_scan(seed, meta={"scan_id": f"h{seed}"})  # no device: no calibration
        write_scan(scan, ref / f"h{seed}.npz")
        _write_prediction(pred, f"h{seed}", np.roll(scan.labels, 2, axis=1), scan.spacing_mm)
    summary = evaluate_cohort(pred, ref, tmp_path / "out", with_baseline=False, n_bootstrap=20)
    hausdorff = summary["overlap"]["dxaspine"]["hausdorff_mm"]
    assert hausdorff["mean"] == pytest.approx(1.2) and hausdorff["sd"] == pytest.approx(0)
    assert summary["overlap"]["dxaspine"]["dice"]["mean"] == pytest.approx(22 / 24)
    assert "baseline" not in summary["overlap"] and summary["counts"]["baseline_failures"] is None
    assert summary["counts"]["bmd_available"] == 0 and summary["bmd"]["dxaspine"]["n"] == 0
    assert summary["who_agreement"]["dxaspine"]["n"] == 0
    assert summary["tbs"]["dxaspine"]["n"] == 3  # TBS on the uncalibrated image
    assert summary["simulated"] is False and summary["note"] is None
    row = _read_csv(tmp_path / "out" / "per_scan.csv")[0]
    assert row["bmd_g_cm2_ref"] == "" and row["who_ref"] == "unknown"
    assert not any(key.startswith("baseline") for key in row)


def test_a_failed_baseline_gives_nan_and_is_counted(make_scan, tmp_path):
    pred, ref = _folders(tmp_path)
    scan = make_scan(3)  # random pixels: no spine for the baseline to find
    write_scan(scan, ref / "x.npz")
    _write_prediction(pred, scan.scan_id, scan.labels, scan.spacing_mm)
    summary = evaluate_cohort(pred, ref, tmp_path / "out", n_bootstrap=0)
    assert summary["counts"]["baseline_failures"] == 1
    assert summary["overlap"]["baseline"]["dice"]["n_not_finite"] == 1
    assert summary["overlap"]["dxaspine"]["dice"]["mean_ci95"] is None
    row = _read_csv(tmp_path / "out" / "per_scan.csv")[0]
    assert row["baseline_failed"] == "1" and row["baseline_dice"] == "" and row["baseline_error"]


def test_ids_in_one_folder_only_are_listed(make_scan, tmp_path):
    pred, ref = _folders(tmp_path)
    for seed in range(3):
        scan = make_scan(seed, meta={"scan_id": f"s{seed}"})
        write_scan(scan, ref / f"s{seed}.npz")
    for name in ("s0", "s1", "x9"):
        _write_prediction(pred, name, make_scan().labels, (0.5, 0.6))
    with pytest.raises(
        ValueError, match=r"1 reference scan\(s\) have no prediction .*: s2"
    ) as info:
        pair_cohort(pred, ref)
    assert "1 prediction(s) have no reference scan" in str(info.value) and "x9" in str(info.value)


def test_a_prediction_of_another_shape_or_spacing_names_both_files(make_scan, tmp_path):
    pred, ref = _folders(tmp_path)
    scan = make_scan(0, meta={"scan_id": "a"})
    write_scan(scan, ref / "a.npz")
    path = _write_prediction(pred, "a", np.zeros((64, 40), np.uint8), scan.spacing_mm)
    with pytest.raises(ScanError, match=r"shape \(64, 40\) differs") as info:
        pair_cohort(pred, ref)
    assert str(path) in str(info.value) and str(ref / "a.npz") in str(info.value)
    _write_prediction(pred, "a", scan.labels, (1.0, 1.0))
    with pytest.raises(ScanError, match="spacing_mm"):
        pair_cohort(pred, ref)


def test_empty_folders_and_unlabelled_references_are_refused(make_scan, tmp_path):
    pred, ref = _folders(tmp_path)
    with pytest.raises(ValueError, match="no reference scans"):
        pair_cohort(pred, ref)
    write_scan(make_scan(0, reference=False, meta={"scan_id": "a"}), ref / "a.npz")
    with pytest.raises(ValueError, match="no predictions"):
        pair_cohort(pred, ref)
    _write_prediction(pred, "a", make_scan().labels, (0.5, 0.6))
    with pytest.raises(ScanError, match="reference scan has no labels"):
        pair_cohort(pred, ref)
    with pytest.raises(ValueError, match="not a folder"):
        pair_cohort(tmp_path / "missing", ref)


def test_png_predictions_stem_ids_and_labels_beside_a_dicom(make_scan, tmp_path):
    pred, ref = _folders(tmp_path)
    scan = make_scan(1, meta={})
    write_scan(scan, ref / "knee.npz")  # no scan_id: the stem is the id
    write_scan(scan, ref / "spine.dcm")  # DICOM holds no labels: they lie beside it
    np.savez_compressed(ref / "spine_labels.npz", labels=scan.labels)
    Image.fromarray(scan.labels).save(pred / "knee_labels.png")
    _write_prediction(pred, "spine", scan.labels, scan.spacing_mm)
    pairs = pair_cohort(pred, ref)
    assert [(i, p.name, r.name) for i, p, r in pairs] == [
        ("knee", "knee_labels.png", "knee.npz"),
        ("spine", "spine_labels.npz", "spine.dcm"),
    ]


def test_bootstrap_ci_contains_the_mean_and_repeats_with_its_seed():
    values = np.random.default_rng(1).normal(10.0, 2.0, 60)
    low, high = bootstrap_ci(values, np.mean, 500, seed=3)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(60), rel=0.25)
    assert bootstrap_ci(values, np.mean, 500, seed=3) == (low, high)
    assert bootstrap_ci(values, np.mean, 500, seed=4) != (low, high)
    with_nan = np.append(values, np.nan)
    assert bootstrap_ci(with_nan, np.mean, 500, seed=3) == (low, high)
    pairs = np.column_stack([values, values + 1.0])
    assert bootstrap_ci(pairs, lambda p: float(np.mean(p[:, 1] - p[:, 0])), 50, 0) == (
        pytest.approx(1.0),
        pytest.approx(1.0),
    )
    assert all(math.isnan(v) for v in bootstrap_ci([math.nan], np.mean, 10, 0))
    with pytest.raises(ValueError, match="at least 1"):
        bootstrap_ci(values, np.mean, 0, 0)


def test_evaluate_command_reports_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from dxaspine.cli import app
    from dxaspine.io import write_scan
    from dxaspine.simulate.generate import simulate_scan

    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    for index in range(2):
        scan = simulate_scan(3, index, "lunar-like")
        write_scan(scan, ref / f"{scan.scan_id}.npz")
        np.savez(
            pred / f"{scan.scan_id}_labels.npz",
            labels=scan.labels,
            spacing_mm=np.asarray(scan.spacing_mm),
        )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(pred),
            str(ref),
            "--out",
            str(tmp_path / "r"),
            "--bootstrap",
            "50",
            "--quiet",
            "--no-baseline",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Dice 1.0000" in result.output and "simulated" in result.output
    assert (tmp_path / "r" / "summary.json").exists()
    (pred / "s3-00001_labels.npz").unlink()
    result = runner.invoke(app, ["evaluate", str(pred), str(ref), "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "s3-00001" in result.output
