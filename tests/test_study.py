"""dxaspine study: the split, the unseen-device statement, and tiny studies end to end."""

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.study import StudyConfig, _split, _unseen_statement


def _cohort(n_per_device: int) -> dict[str, list[dict[str, str]]]:
    return {
        device: [
            {"scan_id": f"s{seed}-{i:05d}", "patient_id": f"Ps{seed}-{i:05d}"}
            for i in range(n_per_device)
        ]
        for device, seed in (("hologic-like", 1), ("lunar-like", 2))
    }


def test_the_split_is_50_25_25_by_patient_within_each_profile():
    split, by_device = _split(_cohort(20), StudyConfig(n_scans=40))
    assert [len(split[name]) for name in ("train", "val", "test", "held_out")] == [20, 10, 10, 0]
    for device in ("hologic-like", "lunar-like"):
        names = list(by_device[device].values())
        assert (names.count("train"), names.count("val"), names.count("test")) == (10, 5, 5)
    held = StudyConfig(n_scans=40, train_devices=("hologic-like",))
    split, _ = _split(_cohort(20), held)
    assert [len(split[name]) for name in ("train", "val", "test", "held_out")] == [10, 5, 5, 20]
    assert all(scan_id.startswith("s2-") for scan_id in split["held_out"])


def test_a_held_out_profile_is_called_unseen_only_when_it_was():
    held = StudyConfig(train_devices=("hologic-like",))
    trained = _unseen_statement(held, {"trained_on_devices": ["hologic-like"]})
    assert trained["status"] == "unseen" and trained["devices"] == ["lunar-like"]
    shipped = _unseen_statement(
        held, {"source": "shipped", "trained_on_devices": ["hologic-like", "lunar-like"]}
    )
    assert shipped["status"] == "not unseen" and "NOT an unseen device" in shipped["note"]
    assert "the shipped model was trained on hologic-like, lunar-like" in shipped["note"]
    assert _unseen_statement(held, {"trained_on_devices": None})["status"] == "unknown"
    both = _unseen_statement(StudyConfig(), {"trained_on_devices": ["hologic-like"]})
    assert both["status"] == "none" and "--train-devices" in both["note"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--n", "7", "--pretrained"], "at least 8"),
        (["--pretrained", "--model", "m.pt"], "not both"),
        (["--pretrained", "--seed", "1001"], "shipped model was trained on"),
        (["--pretrained", "--seed", "1000"], "shipped model was trained on"),  # 1000 + 1
        (["--train-devices", "prodigy"], "unknown device profile"),
        (["--architecture", "resnet"], "architecture"),
    ],
)
def test_bad_studies_are_refused_before_anything_runs(arguments, message, tmp_path):
    result = CliRunner().invoke(app, ["study", "--out", str(tmp_path / "s"), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "s").exists()


def test_a_folder_holding_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(app, ["study", "--out", str(tmp_path), "--pretrained", "--n", "8"])
    assert result.exit_code == 2 and "holds other files" in result.output
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def _tables_all_say_simulated(text: str) -> bool:
    return text.count("<table>") == text.count("[simulated cohort]</span></caption>") > 0


def test_a_pretrained_study_of_eight_scans_end_to_end(tmp_path):
    out = tmp_path / "study"
    result = CliRunner().invoke(
        app,
        ["study", "--out", str(out), "--pretrained", "--n", "8", "--bootstrap", "20", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert "test Dice" in result.output
    record = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert record["simulated"] is True and record["model"]["source"] == "shipped"
    assert record["cohort"] == {
        "hologic-like": {"scans": 4, "seed": 3000},
        "lunar-like": {"scans": 4, "seed": 3001},
    }
    assert record["split_sizes"] == {"train": 4, "val": 2, "test": 2, "held_out": 0}
    assert list(record["evaluations"]) == ["validation", "test"]
    assert record["unseen_device"]["status"] == "none"
    assert sorted(p.name for p in (out / "sets" / "test").iterdir()) == sorted(
        f"{scan_id}.npz" for scan_id in json.loads((out / "split.json").read_text())["test"]
    )
    test = json.loads((out / "test" / "summary.json").read_text(encoding="utf-8"))
    assert test["counts"]["scans"] == 2 and test["overlap"]["dxaspine"]["dice"]["mean"] > 0.9
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Simulated cohort." in page and _tables_all_say_simulated(page)
    assert "next to the published study" in page
    for published in ("0.973 (0.011)", "5.684 (2.201)", "0.996", "0.028 (2.56%)", "0.989"):
        assert published in page, published
    assert "0.040 (3.70%)" in page and "0.034 (2.55%)" in page
    assert "No unseen-device cohort" in page
    assert "Validation split (hologic-like, lunar-like)" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 2 * 3
    for name in ("validation", "test"):
        assert _tables_all_say_simulated((out / name / "report.html").read_text(encoding="utf-8"))


# One epoch of a 4-filter network segments badly: scoring its labels may warn.
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_a_study_that_trains_on_one_profile_tests_the_other_as_unseen(tmp_path):
    out = tmp_path / "study"
    arguments = ["study", "--out", str(out), "--n", "8", "--train-devices", "hologic-like"]
    arguments += ["--epochs", "1", "--base-filters", "4", "--max-val-scans", "1"]
    # Two inputs: this one-epoch network finds a spine to split on these seeds.
    arguments += ["--inputs", "low,high", "--threads", "1", "--bootstrap", "10", "--quiet"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert record["model"]["source"] == "trained in this study"
    assert record["model"]["trained_on_devices"] == ["hologic-like"]
    assert Path(record["model"]["file"]).is_file()
    assert record["unseen_device"]["status"] == "unseen"
    assert list(record["evaluations"]) == ["validation", "test", "device-lunar-like"]
    unseen = json.loads((out / "device-lunar-like" / "summary.json").read_text(encoding="utf-8"))
    assert unseen["counts"]["scans"] == 4
    with (out / "device-lunar-like" / "per_scan.csv").open(newline="", encoding="utf-8") as rows:
        assert {row["device"] for row in csv.DictReader(rows)} == {"lunar-like"}
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Unseen device: lunar-like" in page and "is an unseen device" in page
    again = CliRunner().invoke(app, arguments)  # the run folder holds a finished run
    assert again.exit_code == 2 and "--resume" in again.output
