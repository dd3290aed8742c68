"""The evaluation report as one self-contained HTML page (report.html).

`render_evaluation` turns an `EvaluationReport` (the summary, the per-scan
rows, PNG figures and worst-case thumbnails) into a string: a pure function
with no file access. `load_evaluation` builds an `EvaluationReport` from the
folder `evaluate_cohort` wrote (summary.json, per_scan.csv, and the scans the
rows name, for the thumbnails); `write_evaluation_report` writes
report.html there. `evaluation_section` is the piece `dxaspine study` puts
on its own page, once per evaluation set.

The page shows the summary tables in the published study's form (overlap as
mean (SD), per split when known; BMD and TBS agreement for dxaspine and the
scanner-style baseline side by side, with bootstrap CIs and Bland-Altman
bias and limits), how often the WHO and TBS categories change, the plots,
and the lowest-Dice scans as overlays. When the cohort is simulated, the top
of the page and the caption of every table say so. Building blocks (tables,
escaping, the page) are in `dxaspine.html_page`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxaspine.html_page import (
    SIMULATED_CAPTION,
    ci_text,
    esc,
    fmt,
    image,
    mean_sd_text,
    render_page,
    table,
)
from dxaspine.report_figures import METHOD_NAMES, number

BMD_DIGITS, TBS_DIGITS = 4, 4


@dataclass
class WorstCase:
    """One low-Dice scan: its per-scan row and its overlay thumbnail (PNG), or
    why the thumbnail could not be drawn."""

    row: dict[str, Any]
    png: bytes | None = None
    error: str = ""


@dataclass
class EvaluationReport:
    """Everything one evaluation's report shows."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    figures: dict[str, bytes] = field(default_factory=dict)
    """'dice', 'bmd', 'tbs' -> PNG bytes (a missing key: no figure)."""
    worst: list[WorstCase] = field(default_factory=list)


def simulated_note(summary: dict[str, Any]) -> str | None:
    """What the page says about simulated scans: the summary's note when every
    scan is simulated, a count when some are, None when none is."""
    if summary.get("simulated"):
        return str(summary.get("note") or "Every scan of this cohort is simulated.")
    n_simulated = int(summary.get("counts", {}).get("simulated_scans") or 0)
    if n_simulated:
        total = summary["counts"]["scans"]
        return f"{n_simulated} of {total} reference scans are simulated; the rest are not."
    return None


# --------------------------------------------------------------------------- sections


def _methods(summary: dict[str, Any]) -> list[str]:
    return list(summary.get("overlap", {}))


def overlap_table(summary: dict[str, Any], simulated: bool) -> str:
    """Dice, Dice L1-L4, HD, HD95, ASSD as mean (SD), per split when known."""
    header = ["set", "method", "n", "Dice", "Dice 95% CI", "Dice L1-L4 (mean of 4)"]
    header += ["Hausdorff mm", "HD95 mm", "ASSD mm"]
    rows = []
    sets = dict(summary.get("overlap_by_split") or {})
    sets["all scans"] = summary["overlap"]
    for name, by_method in sets.items():
        for method, stats in by_method.items():
            dice = stats["dice"]
            rows.append(
                [
                    name,
                    METHOD_NAMES.get(method, method),
                    dice.get("n", "–"),
                    mean_sd_text(dice, 4),
                    ci_text(dice.get("mean_ci95"), 4),
                    mean_sd_text(stats["dice_vertebrae"], 4),
                    mean_sd_text(stats["hausdorff_mm"], 2),
                    mean_sd_text(stats["hd95_mm"], 2),
                    mean_sd_text(stats["assd_mm"], 3),
                ]
            )
    return table(
        "Segmentation overlap with the reference labels, mean (SD) over scans",
        header,
        rows,
        simulated,
        "Distances in mm. n counts scans with a finite value (HD and ASSD are undefined "
        "for an empty mask).",
    )


def vertebra_table(summary: dict[str, Any], simulated: bool) -> str:
    per_vertebra = summary.get("dice_per_vertebra", {})
    names = list(next(iter(per_vertebra.values()), {}))
    rows = [
        [METHOD_NAMES.get(method, method)] + [mean_sd_text(stats.get(name), 4) for name in names]
        for method, stats in per_vertebra.items()
    ]
    return table("Dice per vertebra, mean (SD)", ["method", *names], rows, simulated)


def score_table(summary: dict[str, Any], score: str, simulated: bool) -> str:
    """BMD or TBS from each method's labels against the reference labels."""
    digits = BMD_DIGITS if score == "bmd" else TBS_DIGITS
    unit = " (g/cm2)" if score == "bmd" else ""
    methods = [m for m in _methods(summary) if m in summary.get(score, {})]
    stats = [summary[score][m] for m in methods]
    rows = [
        ["scans with both values", *[s.get("n", "–") for s in stats]],
        ["Pearson r", *[fmt(s.get("pearson_r"), 4) for s in stats]],
        ["Pearson r, 95% CI", *[ci_text(s.get("pearson_r_ci95"), 4) for s in stats]],
        [f"RMSD{unit}", *[fmt(s.get("rmsd"), digits) for s in stats]],
        ["RMSD % of reference mean", *[fmt(s.get("rmsd_percent"), 2) for s in stats]],
        ["RMSD %, 95% CI", *[ci_text(s.get("rmsd_percent_ci95"), 2) for s in stats]],
        [f"Bland-Altman bias{unit}", *[fmt(s.get("bias"), digits) for s in stats]],
        [
            "95% limits of agreement",
            *[
                f"{fmt(s.get('loa_low'), digits)} to {fmt(s.get('loa_high'), digits)}"
                for s in stats
            ],
        ],
    ]
    ratio = summary.get(score, {}).get("rmsd_ratio_baseline_over_dxaspine")
    if ratio is not None and len(methods) == 2:
        rows.append(
            [
                "RMSD baseline / RMSD dxaspine [95% CI]",
                "",
                f"{fmt(ratio.get('value'), 2)} {ci_text(ratio.get('ci95'), 2)}",
            ]
        )
    name = "BMD L1-L4" if score == "bmd" else "Open TBS L1-L4"
    return table(
        f"{name} from each method's labels vs from the reference labels",
        ["", *[METHOD_NAMES.get(m, m) for m in methods]],
        rows,
        simulated,
        "Same image and calibration for every method; only the labels differ. "
        "Differences are method - reference.",
    )


def diagnosis_tables(summary: dict[str, Any], simulated: bool) -> str:
    """How often the WHO and the TBS category change, and the cross-tables."""
    diagnosis = summary.get("diagnosis")
    if not diagnosis:
        return ""
    parts = []
    for kind, title in (("who", "WHO category from the total T-score"), ("tbs", "TBS category")):
        block = diagnosis[kind]
        methods = [m for m in _methods(summary) if m in block]
        categories = block["categories"]
        note = None
        if kind == "tbs":
            cutoffs = ", ".join(fmt(c, 4) for c in block.get("cutoffs", []))
            note = (
                f"Cut-offs {cutoffs} ({block.get('cutoff_basis', '')}). The open TBS has no "
                "clinical cut-offs, so these categories only count how often a segmentation "
                "moves a scan across fixed thresholds; they are not diagnoses."
            )
        rows = [
            [
                METHOD_NAMES.get(m, m),
                block[m]["n"],
                block[m]["changed"],
                fmt(100 * number(block[m]["fraction_changed"]), 1),
            ]
            for m in methods
        ]
        parts.append(
            table(
                f"{title}: method's labels vs reference labels",
                ["method", "scans with both known", "changed", "% changed"],
                rows,
                simulated,
                note,
            )
        )
        crosses = []
        for method in methods:
            cross = block[method]["table"]
            crosses.append(
                table(
                    f"{title}, {METHOD_NAMES.get(method, method)}: rows reference, "
                    "columns method (scans)",
                    ["reference \\ method", *categories],
                    [[ref, *[cross[ref][got] for got in categories]] for ref in categories],
                    simulated,
                )
            )
        parts.append(f'<div class="row">{"".join(crosses)}</div>\n')
    return "".join(parts)


def worst_cases_html(cases: list[WorstCase], simulated: bool) -> str:
    if not cases:
        return ""
    items = []
    for case in cases:
        row = case.row
        lines = [
            f"{row.get('scan_id', '')} ({row.get('device') or 'no device'})",
            f"Dice {fmt(row.get('dice'), 4)}, L1-L4 {fmt(row.get('dice_vertebrae'), 4)}",
            "per vertebra "
            + ", ".join(f"{v} {fmt(row.get(f'dice_{v}'), 3)}" for v in ("L1", "L2", "L3", "L4")),
            f"HD {fmt(row.get('hausdorff_mm'), 2)} mm, HD95 {fmt(row.get('hd95_mm'), 2)} mm, "
            f"ASSD {fmt(row.get('assd_mm'), 3)} mm",
            f"BMD ref {fmt(row.get('bmd_g_cm2_ref'), 4)}, pred {fmt(row.get('bmd_g_cm2_pred'), 4)}"
            f" g/cm2 (diff {fmt(row.get('bmd_g_cm2_pred_diff'), 4)})",
            f"TBS ref {fmt(row.get('tbs_ref'), 4)}, pred {fmt(row.get('tbs_pred'), 4)}",
            f"WHO ref {row.get('who_ref', '')}, pred {row.get('who_pred', '')}",
        ]
        picture = (
            image(case.png, f"overlay of {row.get('scan_id', '')}")
            if case.png
            else f'<p class="note">no thumbnail: {esc(case.error)}</p>'
        )
        caption = "<br>".join(esc(line) for line in lines)
        items.append(f"<figure>{picture}<figcaption>{caption}</figcaption></figure>")
    mark = f' <span class="sim">[{SIMULATED_CAPTION}]</span>' if simulated else ""
    return (
        f"<h3>Lowest Dice: the {len(cases)} worst scans{mark}</h3>\n"
        '<p class="note">Predicted vertebrae filled and outlined in their colours '
        "(L1 red, L2 green, L3 yellow, L4 blue); reference contours in white.</p>\n"
        f'<div class="cases">{"".join(items)}</div>\n'
    )


def conventions_html(summary: dict[str, Any]) -> str:
    boot = summary.get("bootstrap", {})
    items = [
        "Reference = each scan's reference labels (for simulated scans, the simulator's "
        "protocol labels, docs/protocol.md); the published study's 'expert segmentation'.",
        "Dice, Hausdorff (HD), HD95 and ASSD of the L1-L4 union; 'Dice L1-L4' is the mean of "
        "the four per-vertebra Dice values, so a wrong vertebra label counts there.",
        "Boundary = mask XOR its 4-connected erosion; distances in mm with the per-axis pixel "
        "spacing. HD95 = the larger of the two directed 95th percentiles (MONAI's convention; "
        "medpy pools both directions). ASSD = mean of the pooled distances of both directions.",
        "RMSD % = 100 x RMSD / mean of the reference values. Bland-Altman: bias = mean of "
        "method - reference; limits = bias +- 1.96 SD of the differences.",
        f"95% CIs: percentile bootstrap over scans, {boot.get('resamples', '–')} resamples, "
        f"seed {boot.get('seed', '–')}.",
        "TBS is dxaspine's open variogram TBS, not the commercial TBS: another scale, and the "
        "clinical cut-offs do not apply. BMD uses the scan device's calibration.",
        "The scanner-style baseline is dxaspine's imitation of scanner software's automatic "
        "ROI (dxaspine.baseline), not any vendor's software.",
    ]
    return "<h3>Conventions</h3>\n<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>\n"


def _labellings(n: int) -> str:
    return f"{n} labelling{'' if n == 1 else 's'}"


def _counts_html(report: EvaluationReport) -> str:
    counts = report.summary.get("counts", {})
    devices: dict[str, int] = {}
    for row in report.rows:
        devices[row.get("device") or "unknown"] = devices.get(row.get("device") or "unknown", 0) + 1
    parts = [
        f"{counts.get('scans', len(report.rows))} scans",
        "devices: " + ", ".join(f"{name} {n}" for name, n in sorted(devices.items())),
        f"BMD available for {counts.get('bmd_available', '–')}",
    ]
    if counts.get("baseline_failures") is not None:
        parts.append(f"scanner-style baseline failed on {counts['baseline_failures']}")
    qc = report.summary.get("qc")
    if qc:
        parts.append(
            f"QC flagged {_labellings(qc['flagged'])} of the predictions for review (union "
            f"Dice {fmt(qc['dice_flagged']['mean'], 3)} flagged, "
            f"{fmt(qc['dice_unflagged']['mean'], 3)} not) and "
            f"{_labellings(qc['reference_flagged'])} of the references"
        )
    text = "; ".join(parts) + "."
    segmentation = report.summary.get("segmentation")
    if segmentation:
        seconds = segmentation.get("seconds_per_scan", {})
        text += (
            f" Segmented by {segmentation.get('model', '?')} on {segmentation.get('device', '?')}:"
            f" {fmt(seconds.get('median'), 2)} s per scan (median; mean "
            f"{fmt(seconds.get('mean'), 2)} s), inference and post-processing."
        )
    return f"<p>{esc(text)}</p>\n"


def evaluation_section(report: EvaluationReport, heading: str | None = None, level: int = 2) -> str:
    """One evaluation as HTML: counts, overlap, bone-score agreement, diagnosis
    changes, figures, worst cases and conventions."""
    summary = report.summary
    simulated = bool(summary.get("simulated") or summary.get("counts", {}).get("simulated_scans"))
    h, sub = f"h{level}", f"h{level + 1}"
    parts = [f"<{h}>{esc(heading)}</{h}>\n"] if heading else []
    parts.append(_counts_html(report))
    parts.append(f"<{sub}>Segmentation</{sub}>\n")
    parts.append(overlap_table(summary, simulated))
    parts.append(vertebra_table(summary, simulated))
    if "dice" in report.figures:
        parts.append(f"<p>{image(report.figures['dice'], 'histogram of per-scan Dice')}</p>\n")
    parts.append(f"<{sub}>Bone scores: BMD and TBS</{sub}>\n")
    for score in ("bmd", "tbs"):
        parts.append(score_table(summary, score, simulated))
        if score in report.figures:
            alt = f"{score.upper()} scatter and Bland-Altman plots"
            parts.append(f"<p>{image(report.figures[score], alt)}</p>\n")
        else:
            parts.append(f'<p class="note">No {score.upper()} plot: no scan has both values.</p>')
    parts.append(f"<{sub}>Agreement in diagnosis</{sub}>\n")
    parts.append(diagnosis_tables(summary, simulated))
    parts.append(worst_cases_html(report.worst, simulated))
    parts.append(conventions_html(summary))
    return "".join(parts)


def render_evaluation(report: EvaluationReport, title: str = "dxaspine evaluation report") -> str:
    """The whole report page of one evaluation."""
    inputs = report.summary.get("inputs", {})
    subtitle = ", ".join(f"{key}: {value}" for key, value in inputs.items())
    return render_page(title, evaluation_section(report), simulated_note(report.summary), subtitle)


# --------------------------------------------------------------------------- files


def read_rows(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_evaluation(out_dir: Path | str, worst: int = 6) -> EvaluationReport:
    """The report of the evaluation in `out_dir` (summary.json, per_scan.csv):
    figures drawn, and thumbnails of the `worst` lowest-Dice scans, read from
    the reference and prediction files the rows name."""
    from dxaspine.io import read_labels
    from dxaspine.pairing import read_reference
    from dxaspine.report_figures import dice_figure, overlay_thumbnail, score_figure
    from dxaspine.scan import ScanError

    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    rows = read_rows(out_dir / "per_scan.csv")
    methods = _methods(summary)
    figures = {
        "dice": dice_figure(rows, methods),
        "bmd": score_figure(rows, "bmd", methods),
        "tbs": score_figure(rows, "tbs", methods),
    }
    ranked = sorted(
        (row for row in rows if math.isfinite(number(row.get("dice")))),
        key=lambda row: (number(row["dice"]), row["scan_id"]),
    )
    cases = []
    for row in ranked[:worst]:
        try:
            scan, reference = read_reference(Path(row["reference_file"]))
            predicted = read_labels(row["prediction_file"], scan.shape)
            cases.append(WorstCase(row, overlay_thumbnail(scan, reference, predicted)))
        except (ScanError, OSError, ValueError) as exc:
            cases.append(WorstCase(row, None, str(exc)))
    return EvaluationReport(
        summary, rows, {k: v for k, v in figures.items() if v is not None}, cases
    )


def write_evaluation_report(out_dir: Path | str, worst: int = 6) -> Path:
    """Write `out_dir`/report.html for the evaluation in `out_dir`; return its path."""
    from dxaspine.io._common import write_file_atomic

    text = render_evaluation(load_evaluation(out_dir, worst))
    return write_file_atomic(Path(out_dir) / "report.html", text)
