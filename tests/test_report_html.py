"""The HTML report: tables, the simulated-cohort statement, embedded images, escaping,
and a real browser (headless Debian chromium) loading it without errors."""

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dxaspine.cohort_evaluation import evaluate_cohort
from dxaspine.io import write_scan
from dxaspine.report_html import (
    EvaluationReport,
    load_evaluation,
    render_evaluation,
    write_evaluation_report,
)
from dxaspine.simulate.generate import simulate_scan

IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _cohort(folder: Path, simulated: bool, make_scan=None) -> tuple[Path, Path]:
    """Three scans with predictions shifted one column right of the reference."""
    pred, ref = folder / "pred", folder / "ref"
    pred.mkdir(parents=True)
    ref.mkdir()
    for index in range(3):
        if simulated:
            scan = simulate_scan(5, index, "lunar-like")
        else:
            scan = make_scan(index, meta={"scan_id": f"x{index}", "device": "hologic-like"})
        write_scan(scan, ref / f"{scan.scan_id}.npz")
        np.savez(
            pred / f"{scan.scan_id}_labels.npz",
            labels=np.roll(scan.labels, index, axis=1),
            spacing_mm=np.asarray(scan.spacing_mm),
        )
    return pred, ref


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    pred, ref = _cohort(folder, simulated=True)
    evaluate_cohort(pred, ref, folder / "out", n_bootstrap=50, worst=2)
    return folder / "out"


def test_the_report_holds_the_tables_figures_and_worst_cases(report_dir):
    text = (report_dir / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for caption in (
        "Segmentation overlap with the reference labels",
        "Dice per vertebra",
        "BMD L1-L4 from each method",
        "Open TBS L1-L4 from each method",
        "WHO category from the total T-score",
        "TBS category",
    ):
        assert caption in text, caption
    for row in ("Pearson r", "RMSD % of reference mean", "Bland-Altman bias", "95% limits"):
        assert row in text
    assert "RMSD baseline / RMSD dxaspine" in text and "scanner-style baseline" in text
    assert "Lowest Dice: the 2 worst scans" in text
    assert "s5-00002" in text  # the scan shifted by two columns is the worst
    assert "<script" in text and "http://" not in text and "https://" not in text


def test_a_simulated_cohort_says_so_on_the_page_and_in_every_table(report_dir):
    text = (report_dir / "report.html").read_text(encoding="utf-8")
    assert '<body data-simulated="true">' in text
    assert "Simulated cohort." in text and "not clinical accuracy" in text
    n_tables = text.count("<table>")
    assert n_tables >= 8
    assert text.count("[simulated cohort]</span></caption>") == n_tables


def test_images_are_embedded_pngs(report_dir):
    text = (report_dir / "report.html").read_text(encoding="utf-8")
    images = IMAGE.findall(text)
    assert len(images) == 3 + 2  # Dice histogram, BMD and TBS plots; two thumbnails
    for data in images:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "PNG" and min(image.size) > 20


def test_the_same_folder_gives_the_same_bytes(report_dir):
    before = (report_dir / "report.html").read_bytes()
    write_evaluation_report(report_dir, worst=2)
    assert (report_dir / "report.html").read_bytes() == before


def test_real_scans_are_not_called_simulated_and_text_is_escaped(make_scan, tmp_path):
    pred, ref = _cohort(tmp_path, simulated=False, make_scan=make_scan)
    summary = evaluate_cohort(pred, ref, tmp_path / "out", n_bootstrap=0, with_baseline=False)
    assert summary["simulated"] is False
    text = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert '<body data-simulated="false">' in text
    assert "Simulated cohort" not in text and "[simulated cohort]" not in text
    report = load_evaluation(tmp_path / "out", worst=1)
    report.summary["inputs"] = {"pred_dir": "<b>&'\""}
    report.rows[0]["scan_id"] = "<script>alert(1)</script>"
    report.worst[0].row["scan_id"] = "<script>alert(1)</script>"
    page = render_evaluation(report, title="a < b")
    assert "<b>&" not in page and "&lt;b&gt;&amp;&#x27;&quot;" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert "<title>a &lt; b</title>" in page


def test_missing_figures_and_scans_are_stated_not_fatal(report_dir, tmp_path):
    report = load_evaluation(report_dir, worst=1)
    bare = EvaluationReport(report.summary, report.rows)
    assert "No BMD plot" in render_evaluation(bare)
    for name in ("summary.json", "per_scan.csv"):
        shutil.copy(report_dir / name, tmp_path / name)
    rows = (tmp_path / "per_scan.csv").read_text(encoding="utf-8")
    (tmp_path / "per_scan.csv").write_text(rows.replace("/ref/", "/gone/"), encoding="utf-8")
    text = write_evaluation_report(tmp_path, worst=1).read_text(encoding="utf-8")
    assert "no thumbnail" in text


# --------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (CI installs it: apt-get install chromium)",
)
def test_the_report_loads_in_a_headless_browser_with_every_image(report_dir, tmp_path):
    assert CHROMIUM is not None, "CI must have chromium: .ci/run installs it with apt-get"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (report_dir / "report.html").resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body[^>]*>", result.stdout)
    assert body is not None, result.stdout[:500]
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(0)))
    assert attributes.get("data-simulated") == "true"
    assert attributes.get("data-errors") == "", attributes
    loaded, total = attributes["data-images"].split("/")
    assert int(total) == 5 and loaded == total
