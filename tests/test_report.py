"""The `score` and `calibrate` commands and the per-scan report behind them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.io import write_scan
from dxaspine.report import scores_to_dict
from dxaspine.scores import device_calibration
from dxaspine.simulate.case import ArtefactRates
from dxaspine.simulate.generate import simulate_scan
from dxaspine.simulate.physics import shipped_calibration_path

runner = CliRunner()


@pytest.fixture(scope="module")
def scan():
    # Disc spaces open: this patient's two narrowed discs (drawn with disc
    # narrowing) close the gaps a binary mask is split at.
    return simulate_scan(5, 0, "hologic-like", rates=ArtefactRates(disc_narrowing=0.0))


@pytest.fixture()
def scan_file(scan, tmp_path: Path) -> Path:
    return write_scan(scan, tmp_path / "scan.npz")[0]


def test_report_total_is_sum_bmc_over_sum_area(scan):
    report = scores_to_dict(scan, scan.labels, device_calibration("hologic-like"))
    names = [row["name"] for row in report["vertebrae"]]
    assert names == ["L1", "L2", "L3", "L4"]
    bmc = sum(row["bmc_g"] for row in report["vertebrae"])
    area = sum(row["area_cm2"] for row in report["vertebrae"])
    assert report["total"]["bmd_g_cm2"] == pytest.approx(bmc / area, abs=2e-4)
    truth = scan.meta["truth"]["vertebrae"]
    for row in report["vertebrae"]:
        assert row["area_cm2"] == pytest.approx(truth[row["name"]]["area_cm2"], abs=1e-3)
        assert row["bmd_g_cm2"] == pytest.approx(truth[row["name"]]["bmd_g_cm2"], rel=0.08)
        assert row["tbs"] is not None


def test_report_carries_qc_findings_of_the_labels(scan):
    calibration = device_calibration("hologic-like")
    assert scores_to_dict(scan, scan.labels, calibration)["qc"] == {
        "review": False,
        "findings": [],
    }
    merged = np.where(scan.labels == 2, 1, scan.labels).astype(np.uint8)  # L1 runs into L2
    qc = scores_to_dict(scan, merged, calibration)["qc"]
    assert qc["review"] is True
    assert qc["findings"][0] == {
        "code": "missing",
        "vertebrae": ["L2"],
        "message": "no label for L2",
    }


def test_score_cli_prints_review_lines(scan, tmp_path: Path):
    labels = np.where(scan.labels == 4, 0, scan.labels).astype(np.uint8)
    Image.fromarray(labels).save(tmp_path / "labels.png")
    path = write_scan(scan, tmp_path / "scan.npz")[0]
    result = runner.invoke(app, ["score", str(path), "--mask", str(tmp_path / "labels.png")])
    assert result.exit_code == 0, result.output
    assert "Review: no label for L4" in result.output


def test_score_cli_prints_table_and_json(scan_file: Path):
    table = runner.invoke(app, ["score", str(scan_file)])
    assert table.exit_code == 0, table.output
    for text in ("L1", "L4", "L1-L4", "BMD g/cm2", "WHO category"):
        assert text in table.output
    result = runner.invoke(app, ["score", str(scan_file), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["labels_from_binary_mask"] is False
    assert report["who_category"] in ("normal", "osteopenia", "osteoporosis")


def test_score_with_binary_png_mask_splits_vertebrae(scan, scan_file: Path, tmp_path: Path):
    mask_path = tmp_path / "mask.png"
    Image.fromarray(scan.mask).save(mask_path)
    result = runner.invoke(app, ["score", str(scan_file), "--mask", str(mask_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["labels_from_binary_mask"] is True
    assert [row["name"] for row in report["vertebrae"]] == ["L1", "L2", "L3", "L4"]


def test_score_rejects_bad_input_with_one_line(scan_file: Path, tmp_path: Path):
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(wrong)
    result = runner.invoke(app, ["score", str(scan_file), "--mask", str(wrong)])
    assert result.exit_code == 2
    assert "does not match" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["score", str(tmp_path / "missing.npz")])
    assert result.exit_code == 2 and "missing.npz" in result.output


def test_score_without_device_reports_bmd_unavailable(scan, tmp_path: Path):
    import dataclasses
    import json

    bare = dataclasses.replace(scan, meta={"scan_id": "bare"})
    path = write_scan(bare, tmp_path / "bare.npz")[0]
    result = runner.invoke(app, ["score", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert "--calibration" in report["bmd_note"]
    assert report["total"]["bmd_g_cm2"] is None and report["who_category"] == "unknown"
    assert report["total"]["area_cm2"] > 0
    assert all("tbs_uncalibrated" in v["flags"] for v in report["vertebrae"])
    calibration = tmp_path / "cal.json"
    device_calibration("hologic-like").to_json(calibration)
    result = runner.invoke(app, ["score", str(path), "--calibration", str(calibration), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"]["bmd_g_cm2"] > 0


def test_calibrate_fits_shipped_table(tmp_path: Path):
    table = tmp_path / "steps.csv"
    table.write_text(_shipped_text("lunar-like"))
    out = tmp_path / "device.json"
    result = runner.invoke(app, ["calibrate", str(table), "--out", str(out), "--device", "x"])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["device"] == "x"
    assert saved["residual_rms_g_cm2"] < 0.002


def test_calibrate_bad_table_writes_nothing(tmp_path: Path):
    table = tmp_path / "bad.csv"
    table.write_text("low,high\n1,2\n")
    out = tmp_path / "device.json"
    result = runner.invoke(app, ["calibrate", str(table), "--out", str(out)])
    assert result.exit_code == 2
    assert "bad.csv" in result.output and not out.exists()


def _shipped_text(device: str) -> str:
    from dxaspine.simulate.devices import get_device

    return shipped_calibration_path(get_device(device)).read_text(encoding="utf-8")


def test_single_image_scan_gets_areas_and_flagged_tbs_but_no_bmd(scan):
    from dxaspine.report import scores_to_dict
    from dxaspine.scan import Scan

    grey = (scan.low - scan.low.min()) / (scan.low.max() - scan.low.min())
    single = Scan(image=grey.astype(np.float32), spacing_mm=scan.spacing_mm, labels=scan.labels)
    report = scores_to_dict(single, single.labels, device_calibration("hologic-like"))
    assert "single exported image" in report["bmd_note"]
    assert report["total"]["bmd_g_cm2"] is None and report["total"]["t_score"] is None
    present = sorted(set(np.unique(scan.labels).tolist()) - {0})
    assert [v["name"] for v in report["vertebrae"]] == [f"L{i}" for i in present]
    assert report["vertebrae"][0]["area_cm2"] == pytest.approx(
        (scan.labels == 1).sum() * scan.pixel_area_cm2, rel=1e-3
    )
    assert all("tbs_uncalibrated" in v["flags"] for v in report["vertebrae"])


def test_vertebrae_under_metal_have_no_bmd_or_tbs_and_leave_the_total():
    """Simulated lunar-like scan 14 (seed 2002) has a titanium implant over L4."""
    from dxaspine.report import scores_to_dict
    from dxaspine.scores import device_calibration
    from dxaspine.simulate.generate import simulate_scan

    scan = simulate_scan(2002, 14, "lunar-like")
    report = scores_to_dict(scan, scan.labels, device_calibration("lunar-like"))
    assert report["excluded_from_total"] == ["L4"]
    l4 = report["vertebrae"][3]
    assert l4["name"] == "L4" and "excluded_metal" in l4["flags"]
    assert l4["bmd_g_cm2"] is None and l4["tbs"] is None and l4["area_cm2"] > 0
    assert report["total"]["name"] == "L1-L3"
