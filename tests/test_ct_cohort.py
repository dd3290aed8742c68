"""A cohort from many labelled CTs (simulate/ct_cohort.py, `simulate --ct-list`).

The CTs are test_ct.py's synthetic phantoms (64 x 64 x 80 voxels), written to tmp_path.
"""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from dxaspine.cli import app
from dxaspine.io import read_scan
from dxaspine.simulate.ct import CTError, HUCalibration
from dxaspine.simulate.ct_cohort import (
    ERRORS_FILE,
    SUMMARY_FILE,
    CTCohortConfig,
    draw_seed,
    read_ct_list,
    simulate_ct_cohort,
)
from dxaspine.simulate.ct_scan import scan_from_ct
from dxaspine.train import split_by_patient
from test_ct import phantom, write_pair

TWO_OF_EACH = CTCohortConfig(
    devices=("hologic-like", "lunar-like"), poses=("ct", "dxa"), draws=2, label_map="simple"
)


def write_list(path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def cts(tmp_path_factory):
    """Two phantoms (all of L1-L4, and L1-L3 only) in a folder with a CT list."""
    folder = tmp_path_factory.mktemp("cts")
    write_pair(folder, *phantom(), name="full")
    write_pair(folder, *phantom(lumbar=("L1", "L2", "L3")), name="short")
    rows = [
        {"ct": "full.nii.gz", "labels": "full_seg.nii.gz", "patient_id": "P1"},
        {"ct": "short.nii.gz", "labels": "short_seg.nii.gz", "patient_id": ""},
    ]
    write_list(folder / "list.csv", rows)
    return folder


def read_rows(path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_read_ct_list_resolves_paths_and_fills_ids(cts):
    cases = read_ct_list(cts / "list.csv")
    assert [c.ct_path for c in cases] == [cts / "full.nii.gz", cts / "short.nii.gz"]
    assert [c.case_id for c in cases] == ["ct-full", "ct-short"]
    assert [c.patient_id for c in cases] == ["P1", "ct-short"]
    assert all(c.label_map is None for c in cases)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"ct": "full.nii.gz", "seg": "full_seg.nii.gz"}], "missing labels"),
        ([{"ct": "full.nii.gz", "labels": "gone.nii.gz"}], r"line 2: labels file .*gone"),
        ([{"ct": "", "labels": "full_seg.nii.gz"}], "line 2: empty 'ct'"),
        (
            [
                {"ct": "full.nii.gz", "labels": "full_seg.nii.gz"},
                {"ct": "full.nii.gz", "labels": "full_seg.nii.gz"},
            ],
            "ct-full; give each row its own 'case_id'",
        ),
    ],
)
def test_read_ct_list_names_what_is_wrong(cts, tmp_path, rows, message):
    path = cts / f"bad_{tmp_path.name}.csv"
    write_list(path, rows)
    with pytest.raises(CTError, match=message):
        read_ct_list(path)


def test_an_empty_or_missing_list_is_an_error(cts):
    (cts / "empty.csv").write_text("ct,labels\n", encoding="utf-8")
    with pytest.raises(CTError, match="no rows"):
        read_ct_list(cts / "empty.csv")
    with pytest.raises(CTError, match="cannot read the CT list"):
        read_ct_list(cts / "nothing.csv")


def test_config_rejects_unknown_devices_poses_and_draws():
    with pytest.raises(CTError, match="unknown device profile"):
        CTCohortConfig(devices=("norland",))
    with pytest.raises(CTError, match="unknown pose"):
        CTCohortConfig(poses=("prone",))
    with pytest.raises(CTError, match="named once"):
        CTCohortConfig(poses=("ct", "ct"))
    with pytest.raises(CTError, match="at least 1"):
        CTCohortConfig(draws=0)


@pytest.fixture(scope="module")
def cohort(cts, tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    result = simulate_ct_cohort(read_ct_list(cts / "list.csv"), TWO_OF_EACH, out, False)
    return out, result


def test_every_ct_pose_device_and_draw_is_written_once(cohort):
    out, result = cohort
    assert len(result.rows) == 2 * 2 * 2 * 2 and not result.errors
    rows = read_rows(out / SUMMARY_FILE)
    assert [r["scan_id"] for r in rows] == [r["scan_id"] for r in result.rows]
    assert len({r["scan_id"] for r in rows}) == 16
    assert "ct-full-dxa-lunar-like-d01" in {r["scan_id"] for r in rows}
    for row in rows:
        scan = read_scan(out / row["file"])
        assert scan.scan_id == row["scan_id"] and scan.device == row["device"]
        assert scan.meta["anatomy"]["pose"] == row["pose"]
    assert not (out / ERRORS_FILE).exists()


def test_all_scans_of_a_ct_share_its_patient_id(cohort):
    out, result = cohort
    patients = {row["case_id"]: set() for row in result.rows}
    for row in result.rows:
        patients[row["case_id"]].add(read_scan(out / row["file"]).patient_id)
    assert patients == {"ct-full": {"P1"}, "ct-short": {"ct-short"}}
    split = split_by_patient([(r["scan_id"], r["patient_id"]) for r in result.rows], seed=0)
    part_of = {scan_id: part for part, ids in split.items() for scan_id in ids}
    for case in patients:
        parts = {part_of[r["scan_id"]] for r in result.rows if r["case_id"] == case}
        assert len(parts) == 1, (case, parts)  # both poses, devices and draws together


def test_draws_differ_only_in_their_noise(cohort):
    out, _ = cohort
    first = read_scan(out / "ct-full-hologic-like-d00.npz")
    second = read_scan(out / "ct-full-hologic-like-d01.npz")
    np.testing.assert_array_equal(first.labels, second.labels)
    truth = [{k: v for k, v in s.meta["truth"].items() if k != "tbs"} for s in (first, second)]
    assert truth[0] == truth[1]  # the reference TBS is read off each draw's own image
    assert not np.array_equal(first.low, second.low)
    assert np.corrcoef(first.low.ravel(), second.low.ravel())[0, 1] > 0.9


def test_partial_coverage_is_in_the_summary(cohort):
    _, result = cohort
    short = [r for r in result.rows if r["case_id"] == "ct-short"]
    assert all(r["partial_coverage"] == 1 and r["vertebrae_labelled"] == "L1 L2 L3" for r in short)
    assert all(r["bmd_L4_g_cm2"] is None for r in short)
    full = [r for r in result.rows if r["case_id"] == "ct-full"]
    assert all(r["partial_coverage"] == 0 and r["bmd_L4_g_cm2"] > 0 for r in full)


def test_the_stored_seed_renders_the_same_scan_alone(cts, cohort):
    out, result = cohort
    row = next(r for r in result.rows if r["scan_id"] == "ct-short-dxa-lunar-like-d01")
    assert row["seed"] == draw_seed(0, "ct-short", "dxa", "lunar-like", 1)
    alone = scan_from_ct(
        cts / "short.nii.gz",
        cts / "short_seg.nii.gz",
        "lunar-like",
        row["seed"],
        "simple",
        pose="dxa",
    )
    in_cohort = read_scan(out / row["file"])
    np.testing.assert_array_equal(alone.low, in_cohort.low)
    np.testing.assert_array_equal(alone.high, in_cohort.high)


def test_same_seed_same_bytes_and_other_cts_change_nothing(cts, cohort, tmp_path):
    out, _ = cohort
    write_list(
        tmp_path / "one.csv",
        [{"ct": str(cts / "short.nii.gz"), "labels": str(cts / "short_seg.nii.gz")}],
    )
    simulate_ct_cohort(read_ct_list(tmp_path / "one.csv"), TWO_OF_EACH, tmp_path / "o", False)
    name = "ct-short-lunar-like-d01.npz"
    assert (tmp_path / "o" / name).read_bytes() == (out / name).read_bytes()


def test_a_failing_ct_is_reported_and_the_others_go_on(cts, tmp_path):
    rows = [
        {"ct": "short.nii.gz", "labels": "short_seg.nii.gz", "case_id": "good"},
        {"ct": "full.nii.gz", "labels": "full.nii.gz", "case_id": "swapped"},
    ]
    write_list(cts / "mixed.csv", rows)
    config = CTCohortConfig(label_map="simple")
    result = simulate_ct_cohort(read_ct_list(cts / "mixed.csv"), config, tmp_path, False)
    assert [r["case_id"] for r in result.rows] == ["good"]
    errors = read_rows(tmp_path / ERRORS_FILE)
    assert [e["case_id"] for e in errors] == ["swapped"]
    assert "is this the CT rather than its label volume" in errors[0]["error"]
    assert "1 CT/pose pairs failed" in result.summary(tmp_path)
    # A rerun without failures leaves no stale error list behind.
    write_list(cts / "good.csv", rows[:1])
    simulate_ct_cohort(read_ct_list(cts / "good.csv"), config, tmp_path, False)
    assert not (tmp_path / ERRORS_FILE).exists()


def test_a_list_where_every_ct_fails_is_an_error(cts, tmp_path):
    write_list(cts / "wrong_map.csv", [{"ct": "full.nii.gz", "labels": "full_seg.nii.gz"}])
    with pytest.raises(CTError, match=r"no CT of the list gave a scan.*no voxel carries"):
        simulate_ct_cohort(read_ct_list(cts / "wrong_map.csv"), CTCohortConfig(), tmp_path, False)
    assert (tmp_path / ERRORS_FILE).exists() and not (tmp_path / SUMMARY_FILE).exists()


def test_a_row_may_name_its_own_label_map(cts, tmp_path):
    rows = [{"ct": "full.nii.gz", "labels": "full_seg.nii.gz", "label_map": "simple"}]
    write_list(cts / "own_map.csv", rows)
    result = simulate_ct_cohort(
        read_ct_list(cts / "own_map.csv"), CTCohortConfig(), tmp_path, False
    )
    assert len(result.rows) == 1 and not result.errors


def test_cli_ct_list(cts, tmp_path):
    runner = CliRunner()
    args = ["simulate", "--ct-list", str(cts / "list.csv"), "--label-map", "simple", "--quiet"]
    result = runner.invoke(
        app,
        [
            *args,
            "--device",
            "hologic-like, lunar-like",
            "--draws",
            "2",
            "--jobs",
            "2",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 8 scans from 2 CTs" in result.output
    assert "partial L1-L4 coverage in 1 CTs (ct-short)" in result.output
    assert len(read_rows(tmp_path / "a" / SUMMARY_FILE)) == 8
    again = ["--device", "hologic-like,lunar-like", "--draws", "2", "--resume"]
    resumed = runner.invoke(app, [*args, *again, "--out", str(tmp_path / "a")])
    assert resumed.exit_code == 0 and "wrote 8 scans (8 kept from an earlier run)" in resumed.output
    cases = [
        ["--device", "norland"],
        ["--pose", "ct,sideways"],
        ["--from-ct", str(cts / "full.nii.gz")],
    ]
    for extra in cases:
        bad = runner.invoke(app, [*args, *extra, "--out", str(tmp_path / "b")])
        assert bad.exit_code == 2 and bad.output.startswith("error: "), (extra, bad.output)
    missing = runner.invoke(
        app, ["simulate", "--ct-list", str(tmp_path / "no.csv"), "--out", str(tmp_path / "c")]
    )
    assert missing.exit_code == 2 and "cannot read the CT list" in missing.output


def test_the_dxa_pose_keeps_the_cts_patient_id(cts):
    ct, seg = cts / "full.nii.gz", cts / "full_seg.nii.gz"
    flat = scan_from_ct(ct, seg, label_map="simple", pose="dxa")
    assert flat.scan_id == "ct-full-dxa" and flat.patient_id == "ct-full"
    assert "patient_id" not in flat.meta["anatomy"]


def test_export_writes_single_images_with_their_labels(cts, tmp_path):
    cases = read_ct_list(cts / "list.csv")[:1]
    config = CTCohortConfig(label_map="simple", draws=2, export=True)
    result = simulate_ct_cohort(cases, config, tmp_path / "a", False)
    exported = [read_scan(tmp_path / "a" / row["file"]) for row in result.rows]
    assert all(not scan.is_dual_energy and scan.labels is not None for scan in exported)
    assert all(set(np.unique(scan.labels)) == {0, 1, 2, 3, 4} for scan in exported)
    assert {"export_processing", "export_inverted"} <= set(result.rows[0])
    again = simulate_ct_cohort(cases, config, tmp_path / "b", False)
    for row in again.rows:
        assert (tmp_path / "b" / row["file"]).read_bytes() == (
            tmp_path / "a" / row["file"]
        ).read_bytes()


def test_scans_an_earlier_run_left_in_the_folder_are_named(cts, tmp_path):
    (tmp_path / "ct-old-hologic-like-d07.npz").write_bytes(b"")
    cases = read_ct_list(cts / "list.csv")[:1]
    result = simulate_ct_cohort(cases, CTCohortConfig(label_map="simple"), tmp_path, False)
    assert result.other_scans == ["ct-old-hologic-like-d07.npz"]
    assert "also holds 1 scans this run did not write" in result.summary(tmp_path)


def test_labels_may_be_a_folder_of_masks_but_the_ct_may_not(cts, tmp_path):
    (cts / "masks").mkdir(exist_ok=True)
    write_list(tmp_path / "a.csv", [{"ct": str(cts / "full.nii.gz"), "labels": str(cts / "masks")}])
    assert read_ct_list(tmp_path / "a.csv")[0].labels_path == cts / "masks"
    write_list(tmp_path / "b.csv", [{"ct": str(cts / "masks"), "labels": str(cts / "masks")}])
    with pytest.raises(CTError, match="line 2: ct file"):
        read_ct_list(tmp_path / "b.csv")


def test_an_unexpected_error_in_one_ct_is_listed_with_its_type(cts, tmp_path, monkeypatch):
    import dxaspine.simulate.ct_cohort as ct_cohort

    real = ct_cohort.project_ct

    def fragile(ct_path, *args, **kwargs):
        if "short" in str(ct_path):
            raise MemoryError("the CT did not fit")
        return real(ct_path, *args, **kwargs)

    monkeypatch.setattr(ct_cohort, "project_ct", fragile)
    cases = read_ct_list(cts / "list.csv")
    result = simulate_ct_cohort(cases, CTCohortConfig(label_map="simple"), tmp_path, False)
    assert [r["case_id"] for r in result.rows] == ["ct-full"]
    assert result.errors[0]["error"] == "MemoryError: the CT did not fit"


def test_resume_keeps_an_earlier_runs_scans_made_with_the_same_settings(cts, tmp_path, monkeypatch):
    import dxaspine.simulate.ct_cohort as ct_cohort

    cases = read_ct_list(cts / "list.csv")
    config = CTCohortConfig(label_map="simple", poses=("ct", "dxa"), draws=2)
    first = simulate_ct_cohort(cases, config, tmp_path, False)
    (tmp_path / "ct-short-dxa-hologic-like-d01.npz").unlink()  # a run stopped early
    projected = []
    real = ct_cohort.project_ct

    def counting(ct_path, labels_path, label_map, calibration, pose):
        projected.append((ct_path.name, pose))
        return real(ct_path, labels_path, label_map, calibration, pose)

    monkeypatch.setattr(ct_cohort, "project_ct", counting)
    again = simulate_ct_cohort(cases, replace(config, resume=True), tmp_path, False)
    assert projected == [("short.nii.gz", "dxa")]
    assert again.kept == 6 and "(6 kept from an earlier run)" in again.summary(tmp_path)
    assert again.rows == first.rows
    # Other settings: nothing kept.
    projected.clear()
    fatty = replace(config, resume=True, calibration=HUCalibration(marrow_fat_fraction=0.5))
    assert simulate_ct_cohort(cases, fatty, tmp_path, False).kept == 0
    assert len(projected) == 4
