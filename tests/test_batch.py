"""`dxaspine segment`: every output written, bad files skipped, exit codes."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.infer import SegmentationModel
from dxaspine.io import write_scan
from dxaspine.network import NetworkConfig, build_model
from dxaspine.preprocess import Preprocessing

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    # Two inputs: this untrained network labels something on seed 0.
    config = NetworkConfig("dualpath", ("low", "high"), base_filters=4, levels=3)
    module = build_model(config).eval()
    model = SegmentationModel(config, Preprocessing(spacing_mm=1.0), module, {"name": "tiny"})
    return model.save(tmp_path_factory.mktemp("model") / "tiny.pt")


def test_segment_writes_every_output_and_skips_a_bad_file(tiny_model, make_scan, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in (0, 1):
        write_scan(make_scan(seed=seed), inputs / f"scan{seed}.npz")
    (inputs / "broken.npz").write_bytes(b"not a zip")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["segment", str(inputs), "--out", str(out), "--model", str(tiny_model), "--json"]
    )
    assert result.exit_code == 1, result.output  # one file failed, the others went on
    summary = json.loads(result.output)
    assert summary["segmented"] == 2 and list(summary["failed"]) == [str(inputs / "broken.npz")]
    for scan_id in ("test-0000", "test-0001"):
        labels = np.asarray(Image.open(out / f"{scan_id}_labels.png"))
        with np.load(out / f"{scan_id}_labels.npz") as data:
            np.testing.assert_array_equal(data["labels"], labels)
        assert labels.shape == (64, 48) and labels.max() <= 4
        assert (out / f"{scan_id}_overlay.png").exists()
        scores = json.loads((out / f"{scan_id}_scores.json").read_text())
        assert scores["model"] == "tiny" and "total" in scores
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert [r["scan_id"] for r in rows] == ["test-0000", "test-0001"]
    for row in rows:  # one set of total columns, whatever region the total holds
        assert row["total_region"] and "total_area_cm2" in row and "who_category" in row
        assert not any(key.startswith(("L1-", "L2-", "L3-")) for key in row)
    run = json.loads((out / "segment.json").read_text())
    assert str(inputs / "broken.npz") in run["failures"] and run["versions"]["torch"]
    # An untrained network's labels are no spine: every scan is listed for review.
    for row, scan_id in zip(rows, ("test-0000", "test-0001"), strict=True):
        scores = json.loads((out / f"{scan_id}_scores.json").read_text())
        assert row["qc_review"] == "True" and scores["qc"]["review"] is True
        assert row["qc_findings"].split() == [f["code"] for f in scores["qc"]["findings"]]
    assert (
        sorted(run["review"])
        == sorted(summary["review"])
        == sorted(str(inputs / f"scan{seed}.npz") for seed in (0, 1))
    )


def test_segment_all_good_exits_zero_and_bad_options_exit_two(tiny_model, make_scan, tmp_path):
    path = write_scan(make_scan(), tmp_path / "scan.npz")[0]
    out = tmp_path / "out"
    ok = runner.invoke(
        app, ["segment", str(path), "--out", str(out), "--model", str(tiny_model), "--quiet"]
    )
    assert ok.exit_code == 0, ok.output
    missing_model = runner.invoke(
        app, ["segment", str(path), "--out", str(out), "--model", str(tmp_path / "nope.pt")]
    )
    assert missing_model.exit_code == 2 and "no such model" in missing_model.output
    bad_spacing = runner.invoke(
        app, ["segment", str(path), "--out", str(out), "--spacing-mm", "a,b"]
    )
    assert bad_spacing.exit_code == 2 and "--spacing-mm" in bad_spacing.output
    nothing = runner.invoke(
        app,
        [
            "segment",
            str(tmp_path / "empty_dir_missing"),
            "--out",
            str(out),
            "--model",
            str(tiny_model),
        ],
    )
    assert nothing.exit_code != 0


def test_dicom_input_gets_a_dicom_seg_matching_the_labels(tiny_model, make_scan, tmp_path):
    from dxaspine.io.seg import read_dicom_seg

    path = write_scan(make_scan(), tmp_path / "scan.dcm", format="dicom")[0]
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["segment", str(path), "--out", str(out), "--model", str(tiny_model), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(out / "test-0000_labels.png"))
    assert labels.any()  # the seeded tiny model labels something
    np.testing.assert_array_equal(read_dicom_seg(out / "test-0000_seg.dcm"), labels)
