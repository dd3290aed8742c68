"""`dxaspine info` in-process: tables and JSON for good scans, one-line errors and exit 2
for bad files, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.info import describe
from dxaspine.io import write_scan
from dxaspine.scan import Scan

runner = CliRunner()


def test_describe(scan: Scan) -> None:
    info = describe(scan)
    assert info["shape"] == [64, 48] and info["spacing_mm"] == [0.5, 0.6]
    assert info["device"] == "hologic-like" and info["scan_id"] == "test-0000"
    assert info["low"]["min"] <= info["low"]["mean"] <= info["low"]["max"]
    assert info["mask"] and info["labels"] and info["vertebrae"] == ["L1", "L2"]
    assert info["truth_maps"] == ["bone_g_cm2"] and info["simulator_truth"]
    json.dumps(info)


def test_info_table(scan: Scan, tmp_path: Path) -> None:
    npz = write_scan(scan, tmp_path / "s.npz")[0]
    dcm = write_scan(scan, tmp_path / "s.dcm")[0]
    result = runner.invoke(app, ["info", str(npz), str(dcm)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("64 x 48 px") == 2
    assert "0.5 x 0.6 mm" in result.stdout
    assert "labels (L1 L2)" in result.stdout and "simulator truth" in result.stdout
    assert result.stderr == ""


def test_info_json(scan: Scan, tmp_path: Path) -> None:
    paths = write_scan(scan, tmp_path / "s.png")
    result = runner.invoke(app, ["info", "--json", str(paths[0])])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert report["path"] == str(paths[0])
    assert report["shape"] == [64, 48] and report["spacing_mm"] == [0.5, 0.6]
    assert report["labels"] and report["truth_maps"] == []


def test_info_bad_files_exit_2_with_one_line_each(scan: Scan, tmp_path: Path) -> None:
    good = write_scan(scan, tmp_path / "good.npz")[0]
    text = tmp_path / "notes.txt"
    text.write_text("not a scan\n")
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(good.read_bytes()[:500])
    missing = tmp_path / "missing.npz"
    result = runner.invoke(
        app, ["info", "--json", str(good), str(text), str(truncated), str(missing)]
    )
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    for line, path in zip(errors, (text, truncated, missing), strict=True):
        assert line.startswith(f"error: {path}: ")
    assert "Traceback" not in result.output
    assert [r["path"] for r in json.loads(result.stdout)] == [str(good)]


def test_info_names_the_partner_file(scan: Scan, tmp_path: Path) -> None:
    low, high, *_ = write_scan(scan, tmp_path / "s.png")
    high.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = runner.invoke(app, ["info", str(low)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {low}: {high}: ")
    assert "Traceback" not in result.output
