"""`dxaspine info` in-process: tables and JSON for good scans (dual-energy and single
exported images), one-line errors and exit 2 for bad files, never a traceback; and the
preview of a single image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.info import describe, run_info
from dxaspine.io import write_scan
from dxaspine.preview import bone_image, scan_tile, soft_tissue_ratio
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


def single_image_scan() -> Scan:
    image = (np.arange(60 * 50).reshape(60, 50) % 256 / 255).astype(np.float32)
    labels = np.zeros((60, 50), np.uint8)
    labels[10:25, 15:35] = 1
    return Scan(spacing_mm=(0.6, 0.6), image=image, labels=labels, meta={"scan_id": "e1"})


def test_describe_single_image(scan: Scan) -> None:
    info = describe(single_image_scan())
    assert info["kind"] == "single-image" and info["low"] is None and info["high"] is None
    assert info["image"]["min"] == 0.0 and info["image"]["max"] == 1.0
    assert info["spacing_source"] == "file" and info["vertebrae"] == ["L1"]
    dual = describe(scan)
    assert dual["kind"] == "dual-energy" and dual["image"] is None
    json.dumps(info)


def test_info_table_single_image_and_spacing_source(tmp_path: Path) -> None:
    dcm = write_scan(single_image_scan(), tmp_path / "e.dcm")[0]
    png = write_scan(single_image_scan(), tmp_path / "e.png")[0]
    result = runner.invoke(app, ["info", str(dcm), str(png)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("single-image") == 2
    assert "0.6 x 0.6 mm (from PixelSpacing)" in result.stdout
    assert "0.6 x 0.6 mm (from sidecar)" in result.stdout
    assert "low energy" not in result.stdout and "image" in result.stdout


def test_preview_of_a_single_image() -> None:
    scan = single_image_scan()
    assert np.array_equal(bone_image(scan), scan.image)
    with pytest.raises(ValueError, match="needs both energies"):
        soft_tissue_ratio(scan)
    tile = scan_tile(scan)
    assert tile.size == (2 * 50 + 4, 60)


def test_run_info_passes_the_spacing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    png = write_scan(single_image_scan(), tmp_path / "e.png", pixel_spacing=False)[0]
    assert run_info([png]) == 2
    assert "--spacing-mm" in capsys.readouterr().err
    assert run_info([png], as_json=True, spacing_mm=(0.5, 0.5)) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["spacing_mm"] == [0.5, 0.5] and report["spacing_source"] == "argument"
