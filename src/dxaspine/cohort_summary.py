"""Cohort summary: per-scan evaluation rows -> the figures of the study's
tables (mean and SD of overlap, agreement of BMD and TBS with the
reference, the baseline's RMSD over ours, WHO agreement), each with a
seeded percentile bootstrap 95% CI; and the JSON/CSV forms of both.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dxaspine import __version__
from dxaspine.evaluate import agreement, bootstrap_ci, mean_sd
from dxaspine.labels import VERTEBRAE

OVERLAP_KEYS = ("dice", "dice_vertebrae", "hausdorff_mm", "hd95_mm", "assd_mm")
WHO_CATEGORIES = ("normal", "osteopenia", "osteoporosis")
TBS_CLINICAL_CATEGORIES = ("normal", "partially degraded", "degraded")
"""Names for TBS cut-offs given explicitly (the commercial TBS's 1.350 / 1.200)."""
TBS_TERTILE_CATEGORIES = ("upper third", "middle third", "lower third")
"""Names for the default cut-offs: tertiles of the cohort's reference TBS."""


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([math.nan if r[key] is None else r[key] for r in rows], np.float64)


def _ci(
    values: np.ndarray, statistic: Callable, n: int, seed: int, patients: list[str] | None = None
) -> tuple[float, float] | None:
    return bootstrap_ci(values, statistic, n, seed, groups=patients) if n else None


def _patients(scan_rows: list[dict[str, Any]]) -> list[str] | None:
    """The rows' patient ids when some patient has several scans (then CIs
    resample patients); None when each scan is its own patient or ids are missing."""
    ids = [row.get("patient_id") or "" for row in scan_rows]
    if not all(ids) or len(set(ids)) == len(ids):
        return None
    return ids


def _pearson(pairs: np.ndarray) -> float:
    return agreement(pairs[:, 0], pairs[:, 1]).pearson_r


def _rmsd_percent(pairs: np.ndarray) -> float:
    return agreement(pairs[:, 0], pairs[:, 1]).rmsd_percent


def _rmsd_ratio(rows: np.ndarray) -> float:
    """RMSD(baseline - reference) / RMSD(method - reference) of (method, baseline, ref) rows."""
    method = np.sqrt(np.mean((rows[:, 0] - rows[:, 2]) ** 2))
    baseline = np.sqrt(np.mean((rows[:, 1] - rows[:, 2]) ** 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(baseline) / method)


def qc_summary(scan_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many predicted (and reference) labellings the QC checks flag, and the
    predictions' union Dice with and without a flag (`dxaspine.qc`)."""
    flagged = np.array([bool(r["qc_findings"]) for r in scan_rows])
    dice_values = _column(scan_rows, "dice")
    return {
        "flagged": int(flagged.sum()),
        "reference_flagged": int(sum(bool(r.get("ref_qc_findings")) for r in scan_rows)),
        "dice_flagged": mean_sd(dice_values[flagged]),
        "dice_unflagged": mean_sd(dice_values[~flagged]),
    }


def summarise(
    scan_rows: list[dict[str, Any]],
    vertebra_rows: list[dict[str, Any]],
    with_baseline: bool,
    n: int,
    seed: int,
    tbs_cutoffs: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The cohort summary from the per-scan and per-vertebra rows of
    `cohort_evaluation` (methods 'dxaspine' and, `with_baseline`, 'baseline').

    Mean and SD (`mean_sd`) of each overlap metric and of per-vertebra Dice;
    BMD and TBS `agreement` with the reference; the baseline's RMSD over
    ours; the fraction of scans whose WHO category is unchanged; under
    'diagnosis', how often the WHO and the TBS category change, with their
    cross-tables (`diagnosis_changes`); under 'overlap_by_split', overlap
    per split when the rows carry a 'split'; under 'qc', how many labellings
    the QC checks flag (`qc_summary`). CIs are
    percentile bootstraps over scans, `n` resamples from `seed` (None when n
    is 0); over patients, each with all its scans, when the rows carry
    'patient_id' and some patient has several scans. Values may be nan;
    `plain` makes the dict JSON-ready.
    """
    patients = _patients(scan_rows)
    methods = {"dxaspine": ("", "pred")} | (
        {"baseline": ("baseline_", "baseline")} if with_baseline else {}
    )
    summary: dict[str, Any] = {
        "counts": {
            "scans": len(scan_rows),
            "bmd_available": sum(bool(r["bmd_available"]) for r in scan_rows),
            "baseline_failures": (
                sum(bool(r["baseline_failed"]) for r in scan_rows) if with_baseline else None
            ),
        },
        "overlap": {},
        "dice_per_vertebra": {},
        "bmd": {},
        "tbs": {},
        "who_agreement": {},
    }
    for method, (prefix, suffix) in methods.items():
        overlap = {}
        for key in OVERLAP_KEYS:
            values = _column(scan_rows, prefix + key)
            overlap[key] = mean_sd(values) | {"mean_ci95": _ci(values, np.mean, n, seed, patients)}
        summary["overlap"][method] = overlap
        summary["dice_per_vertebra"][method] = {
            name: mean_sd(
                _column([r for r in vertebra_rows if r["vertebra"] == name], f"{prefix}dice")
            )
            for name in VERTEBRAE.values()
        }
        for score, key in (("bmd", "bmd_g_cm2"), ("tbs", "tbs")):
            pairs = np.column_stack(
                [_column(scan_rows, f"{key}_{suffix}"), _column(scan_rows, f"{key}_ref")]
            )
            result = agreement(pairs[:, 0], pairs[:, 1]).to_dict()
            result["pearson_r_ci95"] = _ci(pairs, _pearson, n, seed, patients)
            result["rmsd_percent_ci95"] = _ci(pairs, _rmsd_percent, n, seed, patients)
            summary[score][method] = result
        agree = [
            r[f"who_{suffix}_agree"] for r in scan_rows if r[f"who_{suffix}_agree"] is not None
        ]
        summary["who_agreement"][method] = {
            "fraction": float(np.mean(agree)) if agree else math.nan,
            "n": len(agree),
        }
    if with_baseline:
        for score, key in (("bmd", "bmd_g_cm2"), ("tbs", "tbs")):
            rows = np.column_stack(
                [_column(scan_rows, f"{key}_{s}") for s in ("pred", "baseline", "ref")]
            )
            finite = rows[np.isfinite(rows).all(axis=1)]
            summary[score]["rmsd_ratio_baseline_over_dxaspine"] = {
                "value": _rmsd_ratio(finite) if len(finite) else math.nan,
                "ci95": _ci(rows, _rmsd_ratio, n, seed, patients),
                "n": len(finite),
            }
    summary["diagnosis"] = diagnosis_changes(scan_rows, tuple(methods), tbs_cutoffs)
    if scan_rows and all("qc_findings" in row for row in scan_rows):
        summary["qc"] = qc_summary(scan_rows)
    if any("split" in row for row in scan_rows):
        summary["overlap_by_split"] = {
            name: {
                method: {
                    key: mean_sd(
                        _column([r for r in scan_rows if r.get("split") == name], prefix + key)
                    )
                    for key in OVERLAP_KEYS
                }
                for method, (prefix, _) in methods.items()
            }
            for name in dict.fromkeys(row.get("split", "") for row in scan_rows)
        }
    resampled = "scans resampled" if patients is None else "patients resampled with all their scans"
    summary["bootstrap"] = {"resamples": n, "seed": seed, "method": f"percentile, {resampled}"}
    summary["units"] = {
        "bmd": "g/cm2",
        "distances": "mm",
        "tbs": "open variogram TBS, not the commercial TBS; clinical cut-offs do not apply",
        "who_agreement": "fraction of scans whose WHO category from the method's labels equals "
        "that from the reference labels, over scans where both are known",
    }
    summary["files"] = ["per_scan.csv", "per_vertebra.csv", "summary.json"]
    summary["dxaspine_version"] = __version__
    return summary


def tbs_category(value: float, cutoffs: tuple[float, float], names: tuple[str, str, str]) -> str:
    """names[0] at or above the upper cut-off, names[2] at or below the lower one,
    names[1] between; 'unknown' for nan."""
    low, high = sorted(cutoffs)
    if not math.isfinite(value):
        return "unknown"
    return names[0] if value >= high else names[2] if value <= low else names[1]


def diagnosis_changes(
    scan_rows: list[dict[str, Any]],
    methods: tuple[str, ...] = ("dxaspine", "baseline"),
    tbs_cutoffs: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """How often a method's segmentation changes the WHO category (from the
    total T-score) and the TBS category, compared with the reference labels.

    Per method: `n` scans where both categories are known, `changed` of
    them, `fraction_changed`, and `table[reference][method]` counts. The
    open TBS has no clinical cut-offs, so by default the TBS categories are
    the tertiles of the cohort's reference TBS (the cut-offs are stored);
    pass `tbs_cutoffs` (e.g. 1.200, 1.350 for a commercial TBS) to use fixed
    ones with the clinical names.
    """
    suffix = {"dxaspine": "pred", "baseline": "baseline"}
    reference_tbs = _column(scan_rows, "tbs_ref") if scan_rows else np.array([])
    finite = reference_tbs[np.isfinite(reference_tbs)]
    if tbs_cutoffs is not None:
        cutoffs, names, basis = tuple(sorted(tbs_cutoffs)), TBS_CLINICAL_CATEGORIES, "fixed"
    elif finite.size:
        cutoffs = tuple(float(c) for c in np.percentile(finite, [100 / 3, 200 / 3]))
        names, basis = TBS_TERTILE_CATEGORIES, "tertiles of the reference TBS"
    else:
        cutoffs, names, basis = (math.nan, math.nan), TBS_TERTILE_CATEGORIES, "no TBS"
    out: dict[str, Any] = {
        "who": {"categories": list(WHO_CATEGORIES)},
        "tbs": {"categories": list(names), "cutoffs": list(cutoffs), "cutoff_basis": basis},
    }
    for method in methods:
        key = suffix[method]
        if not scan_rows or f"tbs_{key}" not in scan_rows[0]:
            continue
        who = [(r["who_ref"], r[f"who_{key}"]) for r in scan_rows]
        tbs = [
            tuple(
                tbs_category(math.nan if r[f"tbs_{k}"] is None else r[f"tbs_{k}"], cutoffs, names)
                for k in ("ref", key)
            )
            for r in scan_rows
        ]
        out["who"][method] = _changes(who, WHO_CATEGORIES)
        out["tbs"][method] = _changes(tbs, names)
    return out


def _changes(pairs: list[tuple[str, str]], categories: tuple[str, ...]) -> dict[str, Any]:
    known = [(ref, got) for ref, got in pairs if "unknown" not in (ref, got)]
    changed = sum(ref != got for ref, got in known)
    table = {ref: dict.fromkeys(categories, 0) for ref in categories}
    for ref, got in known:
        table[ref][got] += 1
    return {
        "n": len(known),
        "changed": changed,
        "fraction_changed": changed / len(known) if known else math.nan,
        "table": table,
    }


def plain(value: Any) -> Any:
    """JSON-ready: tuples to lists, numpy scalars to Python, nan and inf to None."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, float | np.floating):
        return round(float(value), 6) if math.isfinite(value) else ""
    return value


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV of the rows (columns from the first): booleans as 0/1, floats to 6
    decimals, None and non-finite values as empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()
