"""The study page: our figures next to the published study's, then each evaluation.

`PUBLISHED` holds the reference study's figures (docs/evaluation.md cites
them); `comparison_rows` pairs them with ours from the study's evaluation
summaries; `render_study` is the pure function from the study record and
the evaluation reports to the HTML page. Every table says the cohort is
simulated.
"""

from __future__ import annotations

from typing import Any

from dxaspine.html_page import esc, fmt, mean_sd_text, render_page, table
from dxaspine.report_html import EvaluationReport, evaluation_section

PUBLISHED: dict[str, Any] = {
    "source": "IVD-Net-style dual-energy network (Medimaps), 1182 clinical scans of women, "
    "split 50/25/25; reference = expert segmentation; comparator = scanner software",
    "validation": {
        "dice": (0.973, 0.007),
        "hausdorff_mm": (5.906, 2.071),
        "assd_mm": (0.032, 0.018),
    },
    "test": {"dice": (0.973, 0.011), "hausdorff_mm": (5.684, 2.201), "assd_mm": (0.033, 0.032)},
    "bmd": {
        "dxaspine": {"pearson_r": 0.996, "rmsd": 0.028, "rmsd_percent": 2.56},
        "baseline": {"pearson_r": 0.994, "rmsd": 0.040, "rmsd_percent": 3.70},
    },
    "tbs": {
        "dxaspine": {"pearson_r": 0.989, "rmsd": 0.017, "rmsd_percent": 1.31},
        "baseline": {"pearson_r": 0.960, "rmsd": 0.034, "rmsd_percent": 2.55},
    },
    "seconds_per_scan": 3.0,
}
"""The published figures; 'dxaspine' stands for the published network and
'baseline' for the scanner software, matching our summaries' method names."""

STUDY_NOTE = (
    "Every scan of this study is simulated (dxaspine's DXA simulator, with exact ground "
    "truth): the figures describe behaviour on the simulator, not clinical accuracy, and are "
    "not comparable one to one with the published figures from clinical scans."
)


def _overlap(summary: dict[str, Any] | None, key: str, digits: int) -> str:
    if summary is None:
        return "–"
    return mean_sd_text(summary["overlap"]["dxaspine"][key], digits)


def _score(summary: dict[str, Any] | None, score: str, method: str, key: str) -> str:
    if summary is None or method not in summary.get(score, {}):
        return "–"
    stats = summary[score][method]
    if key == "rmsd":
        return f"{fmt(stats['rmsd'], 3)} ({fmt(stats['rmsd_percent'], 2)}%)"
    return fmt(stats[key], 4)


def comparison_rows(summaries: dict[str, dict[str, Any]]) -> list[list[str]]:
    """[figure, published, ours, note] rows; ours from the 'validation' and
    'test' summaries (BMD, TBS and timing from the test split)."""
    val, test = summaries.get("validation"), summaries.get("test")
    published = PUBLISHED

    def pub_overlap(split: str, key: str, digits: int) -> str:
        mean, sd = published[split][key]
        return f"{mean:.{digits}f} ({sd:.{digits}f})"

    def pub_score(score: str, method: str, key: str) -> str:
        stats = published[score][method]
        if key == "rmsd":
            return f"{stats['rmsd']:.3f} ({stats['rmsd_percent']:.2f}%)"
        return f"{stats[key]:.3f}"

    rows = []
    for label, key in (("Dice", "dice"), ("Hausdorff mm", "hausdorff_mm")):
        for split, summary in (("validation", val), ("test", test)):
            figure = f"{label}, {split}, mean (SD)"
            rows.append([figure, pub_overlap(split, key, 3), _overlap(summary, key, 3), ""])
    rows.append(
        [
            "ASSD mm, test, mean (SD)",
            pub_overlap("test", "assd_mm", 3),
            _overlap(test, "assd_mm", 3),
            "published value is below any DXA pixel size: likely another unit",
        ]
    )
    for score, name, unit in (("bmd", "BMD", " g/cm2"), ("tbs", "TBS", "")):
        for method, who in (("dxaspine", "network"), ("baseline", "scanner segmentation")):
            note = "ours: the scanner-style baseline, test split" if method == "baseline" else ""
            note = note or "test split"
            if score == "tbs":
                note += "; open variogram TBS, another scale: compare the %"
            for key, what in (("pearson_r", "Pearson r"), ("rmsd", f"RMSD{unit} (%)")):
                figure = f"{name} vs reference, {who}: {what}"
                ours = _score(test, score, method, key)
                rows.append([figure, pub_score(score, method, key), ours, note])
    seconds = (test or {}).get("segmentation", {}).get("seconds_per_scan", {})
    rows.append(
        [
            "Seconds per scan",
            f"{published['seconds_per_scan']:.0f}",
            fmt(seconds.get("median"), 2),
            "ours: median, inference and post-processing on this study's machine",
        ]
    )
    return rows


def sets_rows(summaries: dict[str, dict[str, Any]], headings: dict[str, str]) -> list[list[str]]:
    """One row per evaluation set: scans, devices, Dice, HD, BMD and TBS RMSD %, WHO changes."""
    rows = []
    for name, summary in summaries.items():
        overlap = summary["overlap"]["dxaspine"]
        who = summary.get("diagnosis", {}).get("who", {}).get("dxaspine", {})
        rows.append(
            [
                headings.get(name, name),
                summary["counts"]["scans"],
                mean_sd_text(overlap["dice"], 4),
                mean_sd_text(overlap["hausdorff_mm"], 2),
                fmt(summary["bmd"]["dxaspine"]["rmsd_percent"], 2),
                fmt(summary["tbs"]["dxaspine"]["rmsd_percent"], 2),
                f"{who.get('changed', '–')} of {who.get('n', '–')}",
            ]
        )
    return rows


def render_study(study: dict[str, Any], reports: dict[str, EvaluationReport]) -> str:
    """The study page: what was done, the comparison with the published
    figures, the evaluation sets side by side, the unseen-device statement,
    then each evaluation in full."""
    summaries = {name: report.summary for name, report in reports.items()}
    headings = {name: entry["heading"] for name, entry in study["evaluations"].items()}
    cohort = study["cohort"]
    model = study["model"]
    facts = [
        f"Cohort: {study['config']['n_scans']} simulated scans, "
        + ", ".join(
            f"{device} {entry['scans']} (seed {entry['seed']})" for device, entry in cohort.items()
        )
        + ".",
        "Split 50/25/25 by patient within each device profile: "
        + ", ".join(f"{name} {n}" for name, n in study["split_sizes"].items())
        + ".",
        f"Model: {model['description']}",
    ]
    body = ["<p>" + "<br>".join(esc(fact) for fact in facts) + "</p>\n"]
    body.append(
        table(
            "dxaspine on the simulated cohort next to the published study",
            ["figure", "published (clinical scans)", "dxaspine (simulated scans)", "note"],
            comparison_rows(summaries),
            True,
            f"Published: {PUBLISHED['source']}. Ours: reference = the simulator's protocol labels;"
            " scanner software = dxaspine's scanner-style baseline.",
        )
    )
    body.append(
        table(
            "Every evaluation set, dxaspine",
            ["set", "scans", "Dice", "Hausdorff mm", "BMD RMSD %", "TBS RMSD %", "WHO changed"],
            sets_rows(summaries, headings),
            True,
        )
    )
    unseen = study["unseen_device"]
    body.append(f"<h2>Unseen device</h2>\n<p>{esc(unseen['note'])}</p>\n")
    for name, report in reports.items():
        body.append(evaluation_section(report, headings.get(name, name)))
    return render_page(
        "dxaspine study: the published protocol on a simulated cohort",
        "".join(body),
        STUDY_NOTE,
        f"Study folder: {study['out']}",
    )
