"""Cohort evaluation: every file written, known answers on tiny cohorts, the CLI."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dxaspine.cohort_evaluation import evaluate_cohort
from dxaspine.io import write_scan
from dxaspine.simulate.generate import simulate_scan


@pytest.fixture(scope="module")
def simulated_cohort(
    tmp_path_factory, make_prediction, make_cohort_folders
) -> tuple[Path, Path, list[str]]:
    """Three small simulated scans with predictions identical to their reference labels."""
    pred, ref = make_cohort_folders(tmp_path_factory.mktemp("cohort"))
    ids = []
    for index in range(3):
        scan = simulate_scan(5, index, "lunar-like")
        write_scan(scan, ref / f"{scan.scan_id}.npz")
        make_prediction(pred, scan.scan_id, scan.labels, scan.spacing_mm)
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
    assert summary["qc"]["flagged"] == summary["qc"]["reference_flagged"] == 0
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


def test_a_column_shift_gives_the_expected_hausdorff_without_bmd_or_baseline(
    make_scan, tmp_path, make_prediction, make_cohort_folders
):
    pred, ref = make_cohort_folders(tmp_path)
    for seed in range(3):
        scan = make_scan(seed, meta={"scan_id": f"h{seed}"})  # no device: no calibration
        write_scan(scan, ref / f"h{seed}.npz")
        make_prediction(pred, f"h{seed}", np.roll(scan.labels, 2, axis=1), scan.spacing_mm)
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


def test_qc_flags_are_counted_and_split_the_dice(tmp_path, make_prediction, make_cohort_folders):
    pred, ref = make_cohort_folders(tmp_path)
    for index in range(3):
        scan = simulate_scan(5, index, "lunar-like")
        write_scan(scan, ref / f"{scan.scan_id}.npz")
        labels = scan.labels.copy()
        if index == 1:
            labels[labels == 4] = 0  # the model missed L4
        make_prediction(pred, scan.scan_id, labels, scan.spacing_mm)
    summary = evaluate_cohort(pred, ref, tmp_path / "out", with_baseline=False, n_bootstrap=0)
    qc = summary["qc"]
    assert qc["flagged"] == 1 and qc["reference_flagged"] == 0
    assert qc["dice_unflagged"]["mean"] == 1.0 and qc["dice_unflagged"]["n"] == 2
    assert 0.5 < qc["dice_flagged"]["mean"] < 1.0 and qc["dice_flagged"]["n"] == 1
    rows = _read_csv(tmp_path / "out" / "per_scan.csv")
    assert [row["qc_findings"] for row in rows] == ["", "missing", ""]
    assert all(row["ref_qc_findings"] == "" for row in rows)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "QC flagged 1 labelling of the predictions" in page


def test_a_failed_baseline_gives_nan_and_is_counted(
    make_scan, tmp_path, make_prediction, make_cohort_folders
):
    pred, ref = make_cohort_folders(tmp_path)
    scan = make_scan(3)  # random pixels: no spine for the baseline to find
    write_scan(scan, ref / "x.npz")
    make_prediction(pred, scan.scan_id, scan.labels, scan.spacing_mm)
    summary = evaluate_cohort(pred, ref, tmp_path / "out", n_bootstrap=0)
    assert summary["counts"]["baseline_failures"] == 1
    assert summary["overlap"]["baseline"]["dice"]["n_not_finite"] == 1
    assert summary["overlap"]["dxaspine"]["dice"]["mean_ci95"] is None
    row = _read_csv(tmp_path / "out" / "per_scan.csv")[0]
    assert row["baseline_failed"] == "1" and row["baseline_dice"] == "" and row["baseline_error"]


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


def test_a_split_adds_a_column_and_overlap_per_split(simulated_cohort, tmp_path):
    pred, ref, ids = simulated_cohort
    split = {"val": [ids[0]], "test": [ids[1]]}
    summary = evaluate_cohort(pred, ref, tmp_path / "out", n_bootstrap=0, split=split, html=False)
    assert [row["split"] for row in _read_csv(tmp_path / "out" / "per_scan.csv")] == [
        "val",
        "test",
        "none",
    ]
    by_split = summary["overlap_by_split"]
    assert list(by_split) == ["val", "test", "none"]
    assert by_split["val"]["dxaspine"]["dice"] == {
        "mean": 1.0,
        "sd": 0.0,
        "n": 1,
        "n_not_finite": 0,
    }
    assert "report.html" not in summary["files"]
    assert not (tmp_path / "out" / "report.html").exists()
    (tmp_path / "split.json").write_text(json.dumps(split), encoding="utf-8")
    again = evaluate_cohort(
        pred, ref, tmp_path / "again", n_bootstrap=0, split=tmp_path / "split.json"
    )
    assert again["overlap_by_split"] == by_split
    assert (tmp_path / "again" / "report.html").exists()
    with pytest.raises(ValueError, match="lists of scan ids"):
        evaluate_cohort(pred, ref, tmp_path / "bad", split={"val": "s5-00000"})


def _labelled_cohort(folder: Path, n: int = 2) -> list[str]:
    folder.mkdir()
    ids = []
    for index in range(n):
        scan = simulate_scan(7, index, "lunar-like")
        write_scan(scan, folder / f"{scan.scan_id}.npz")
        ids.append(scan.scan_id)
    return ids


def test_evaluate_cohort_segments_with_the_shipped_model_then_evaluates(tmp_path):
    from typer.testing import CliRunner

    from dxaspine.cli import app

    ids = _labelled_cohort(tmp_path / "cohort")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["evaluate", "--cohort", str(tmp_path / "cohort"), "--out", str(out), "--bootstrap", "20"],
    )
    assert result.exit_code == 0, result.output
    assert "simulated" in result.output and "report.html" in result.output
    for scan_id in ids:
        assert (out / "predictions" / f"{scan_id}_labels.npz").is_file()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["scans"] == 2
    assert summary["overlap"]["dxaspine"]["dice"]["mean"] > 0.9  # the shipped model works
    segmentation = summary["segmentation"]
    assert segmentation["model_file"] == "shipped" and segmentation["model"].startswith("dual")
    assert segmentation["seconds_per_scan"]["n"] == 2
    assert "Simulated cohort" in (out / "report.html").read_text(encoding="utf-8")


def test_evaluate_takes_either_folders_or_a_cohort_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from dxaspine.cli import app

    runner = CliRunner()
    out = ["--out", str(tmp_path / "r")]
    cases = [
        (["a", "b", "--cohort", "c"], "not both"),
        (["a"], "give PRED_DIR and REF_DIR"),
        ([], "or --cohort DIR"),
        (["a", "b", "--model", "m.pt"], "--model needs --cohort"),
        (["--cohort", str(tmp_path / "missing")], "does not exist"),
    ]
    for arguments, message in cases:
        result = runner.invoke(app, ["evaluate", *arguments, *out])
        assert result.exit_code == 2, arguments
        assert message in result.output, (arguments, result.output)


def test_an_unlabelled_scan_is_refused_before_anything_is_segmented(make_scan, tmp_path):
    from dxaspine.cohort_evaluation import evaluate_model
    from dxaspine.scan import ScanError

    _labelled_cohort(tmp_path / "cohort", 1)
    write_scan(make_scan(0, reference=False), tmp_path / "cohort" / "bare.npz")
    with pytest.raises(ScanError, match=r"bare\.npz.*no labels"):
        evaluate_model(tmp_path / "cohort", tmp_path / "out")
    assert not (tmp_path / "out" / "predictions").exists()


def test_cis_resample_patients_when_a_patient_has_several_scans(
    make_scan, tmp_path, make_prediction, make_cohort_folders
):
    pred, ref = make_cohort_folders(tmp_path)
    for seed in range(4):
        scan = make_scan(seed, meta={"scan_id": f"s{seed}", "patient_id": f"p{seed // 2}"})
        write_scan(scan, ref / f"s{seed}.npz")
        make_prediction(pred, f"s{seed}", np.roll(scan.labels, seed, axis=1), scan.spacing_mm)
    summary = evaluate_cohort(pred, ref, tmp_path / "out", with_baseline=False, n_bootstrap=50)
    assert summary["bootstrap"]["method"] == "percentile, patients resampled with all their scans"
    with (tmp_path / "out" / "per_scan.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["patient_id"] for r in rows] == ["p0", "p0", "p1", "p1"]
    # Two patients: every resample holds the scans of p0 and p1 in one of three mixes.
    low, high = summary["overlap"]["dxaspine"]["dice"]["mean_ci95"]
    dice = [float(r["dice"]) for r in rows]
    mixes = {np.mean(dice[:2] * 2), np.mean(dice), np.mean(dice[2:] * 2)}
    assert low == pytest.approx(min(mixes)) and high == pytest.approx(max(mixes))
