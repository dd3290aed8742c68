"""Cohort evaluation (`dxaspine evaluate`): score every prediction of a
cohort against its reference scan, in the published study's terms.

`evaluate_cohort` pairs a folder of predictions with a folder of reference
scans (`dxaspine.pairing.pair_cohort`), scores both and the scanner-style
baseline per scan, and writes `per_scan.csv`, `per_vertebra.csv` and
`summary.json` (`dxaspine.cohort_summary` computes the summary, with
percentile bootstrap CIs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dxaspine.baseline import baseline_segmentation
from dxaspine.cohort_summary import OVERLAP_KEYS, csv_text, plain, summarise
from dxaspine.evaluate import mean_sd, overlap_metrics
from dxaspine.io._common import one_line, write_file_atomic
from dxaspine.labels import VERTEBRAE
from dxaspine.metrics import dice
from dxaspine.pairing import pair_cohort, read_reference, reference_paths
from dxaspine.qc import check_labels
from dxaspine.report import bmd_and_tbs
from dxaspine.scan import Scan, ScanError
from dxaspine.scores import (
    Calibration,
    bone_areal_density,
    device_calibration,
    t_score,
    who_category,
)
from dxaspine.tbs import tbs

if TYPE_CHECKING:
    from dxaspine.infer import Predictor

SIMULATED_NOTE = (
    "All figures come from simulated scans (every reference carries simulator ground truth): "
    "they describe behaviour on the simulator, not clinical accuracy."
)


def evaluate_cohort(
    pred_dir: Path | str,
    ref_dir: Path | str,
    out_dir: Path | str,
    *,
    calibration: Calibration | Path | str | None = None,
    with_baseline: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    split: Mapping[str, Sequence[str]] | Path | str | None = None,
    tbs_cutoffs: tuple[float, float] | None = None,
    segmentation: dict[str, Any] | None = None,
    html: bool = True,
    worst: int = 6,
) -> dict[str, Any]:
    """Evaluate predictions against reference scans; write and return the summary.

    Per scan (`pair_cohort` pairs them): `overlap_metrics` and per-vertebra
    Dice of the prediction; area, BMD and TBS per vertebra and in total, the
    total's T-score and WHO category, from the predicted and from the
    reference labels; the same for `baseline_segmentation` when
    `with_baseline` (a baseline failure gives nan and is counted).
    BMD uses `calibration` (a Calibration or its JSON file), else the scan
    device's shipped calibration; without one (or for a single-image scan)
    BMD, T-score and WHO are unavailable (nan / 'unknown') and TBS is taken on
    the uncalibrated bone image, as `report.scores_to_dict` does.

    Writes to `out_dir` (created; files replaced atomically):
    `per_scan.csv` (one row per scan), `per_vertebra.csv` (one row per scan
    and vertebra L1..L4), `summary.json` (the returned dict; nan and inf as
    null). Differences are method - reference. CIs are seeded percentile
    bootstraps over scans (`n_bootstrap` resamples; 0 leaves them null).
    With `html`, also `report.html` (`report_html.write_evaluation_report`:
    the tables, plots and the `worst` lowest-Dice scans as thumbnails).
    `progress(scan_id)` is called after each scan.

    `split` (train/val/test lists of scan ids, or the JSON file `dxaspine
    train` writes as split.json) adds a 'split' column ('none' for a scan in
    no list) and overlap per split to the summary. `tbs_cutoffs` fixes the
    TBS category cut-offs (default: tertiles of the reference TBS; see
    `cohort_summary.diagnosis_changes`). `segmentation` (how the predictions
    were made: model, device, seconds per scan) is stored as is.
    """
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be 0 (no CIs) or more, got {n_bootstrap}")
    if calibration is not None and not isinstance(calibration, Calibration):
        calibration = Calibration.from_json(calibration)
    from dxaspine.io import read_labels

    where = _split_of(split)
    pairs = pair_cohort(pred_dir, ref_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scan_rows: list[dict[str, Any]] = []
    vertebra_rows: list[dict[str, Any]] = []
    n_simulated = 0
    for scan_id, pred_path, ref_path in pairs:
        scan, reference = read_reference(ref_path)
        n_simulated += "truth" in scan.meta
        labels = {"pred": read_labels(pred_path, scan.shape)}
        row: dict[str, Any] = {
            "scan_id": scan_id,
            "patient_id": scan.patient_id or scan_id,
            "reference_file": str(ref_path),
            "prediction_file": str(pred_path),
            "device": scan.device or "",
        }
        if where is not None:
            row["split"] = where.get(scan_id, "none")
        error = ""
        if with_baseline:
            try:
                labels["baseline"] = baseline_segmentation(scan)
            except ValueError as exc:  # ScanError included
                labels["baseline"], error = None, one_line(exc)
        scan_row, rows = _evaluate_scan(scan, reference, labels, calibration, ref_path)
        scan_rows.append(row | scan_row | ({"baseline_error": error} if with_baseline else {}))
        vertebra_rows.extend({"scan_id": scan_id} | r for r in rows)
        if progress is not None:
            progress(scan_id)
    summary = summarise(scan_rows, vertebra_rows, with_baseline, n_bootstrap, seed, tbs_cutoffs)
    summary["counts"]["simulated_scans"] = n_simulated
    summary["simulated"] = n_simulated == len(pairs)
    summary["note"] = SIMULATED_NOTE if summary["simulated"] else None
    summary["inputs"] = {"pred_dir": str(pred_dir), "ref_dir": str(ref_dir)}
    if segmentation is not None:
        summary["segmentation"] = segmentation
    if html:
        summary["files"].append("report.html")
    summary = plain(summary)
    write_file_atomic(out_dir / "per_scan.csv", csv_text(scan_rows))
    write_file_atomic(out_dir / "per_vertebra.csv", csv_text(vertebra_rows))
    write_file_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if html:
        from dxaspine.report_html import write_evaluation_report

        write_evaluation_report(out_dir, worst)
    return summary


def _split_of(split: Mapping[str, Sequence[str]] | Path | str | None) -> dict[str, str] | None:
    """Scan id -> split name, from a mapping or a JSON file of lists of ids."""
    if split is None:
        return None
    if not isinstance(split, Mapping):
        try:
            split = json.loads(Path(split).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{split}: cannot read the split file: {one_line(exc)}") from None
    if not isinstance(split, Mapping) or not all(
        isinstance(ids, list | tuple) for ids in split.values()
    ):
        raise ValueError(
            "a split must map split names to lists of scan ids, e.g. "
            '{"train": [...], "val": [...], "test": [...]} (dxaspine train writes split.json)'
        )
    return {str(scan_id): str(name) for name, ids in split.items() for scan_id in ids}


def _scan_calibration(scan: Scan, calibration: Calibration | None) -> Calibration | None:
    if not scan.is_dual_energy:
        return None
    if calibration is not None or not scan.device:
        return calibration
    try:
        return device_calibration(scan.device)
    except (KeyError, ValueError):
        return None


def _evaluate_scan(
    scan: Scan,
    reference: np.ndarray,
    labels: dict[str, np.ndarray | None],
    calibration: Calibration | None,
    source: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The per-scan row (after the ids) and the four per-vertebra rows (after scan_id)."""
    from dxaspine.preview import bone_image

    calibration = _scan_calibration(scan, calibration)
    try:
        bone = bone_image(scan) if calibration is None else bone_areal_density(scan, calibration)
        # BMD reads the PSF-corrected image, as `dxaspine score` does; TBS the plain one.
        bmd_bone = (
            None if calibration is None else bone_areal_density(scan, calibration, correct_psf=True)
        )
    except ValueError as exc:
        raise ScanError(str(source), one_line(exc)) from None
    scores = {"ref": _bone_scores(scan, reference, calibration, bone, bmd_bone)}
    row: dict[str, Any] = {"bmd_available": calibration is not None}
    vertebrae: list[dict[str, Any]] = [{"vertebra": name} for name in VERTEBRAE.values()]
    nan = math.nan
    for method, predicted in labels.items():
        prefix = "" if method == "pred" else f"{method}_"
        if predicted is None:
            overlap = dict.fromkeys(OVERLAP_KEYS, nan)
            per_vertebra = dict.fromkeys(VERTEBRAE.values(), nan)
            scores[method] = _bone_scores(scan, None, None, bone, None)
        else:
            overlap = overlap_metrics(predicted, reference, scan.spacing_mm)
            per_vertebra = {
                name: dice(predicted == label, reference == label)
                for label, name in VERTEBRAE.items()
            }
            scores[method] = _bone_scores(scan, predicted, calibration, bone, bmd_bone)
        if method == "baseline":
            row["baseline_failed"] = predicted is None
        row.update({prefix + key: value for key, value in overlap.items()})
        if method == "pred":
            row.update({f"dice_{name}": value for name, value in per_vertebra.items()})
            row["qc_findings"] = _qc_codes(predicted, scan.spacing_mm)
            row["ref_qc_findings"] = _qc_codes(reference, scan.spacing_mm)
        for entry in vertebrae:
            entry[f"{prefix}dice"] = per_vertebra[entry["vertebra"]]
    for key in ("bmd_g_cm2", "tbs"):
        row[f"{key}_ref"] = scores["ref"]["total"][key]
        for method in labels:
            row[f"{key}_{method}"] = scores[method]["total"][key]
            row[f"{key}_{method}_diff"] = row[f"{key}_{method}"] - row[f"{key}_ref"]
    for key in ("t_score", "who"):
        for method in scores:
            row[f"{key}_{method}"] = scores[method][key]
    for method in labels:
        pair = (scores[method]["who"], scores["ref"]["who"])
        row[f"who_{method}_agree"] = None if "unknown" in pair else pair[0] == pair[1]
    for entry in vertebrae:
        name = entry["vertebra"]
        for key in ("area_cm2", "bmd_g_cm2", "tbs"):
            for method in scores:
                entry[f"{key}_{method}"] = scores[method][name][key]
        for method in labels:
            entry[f"bmd_g_cm2_{method}_diff"] = (
                entry[f"bmd_g_cm2_{method}"] - entry["bmd_g_cm2_ref"]
            )
    return row, vertebrae


def _qc_codes(labels: np.ndarray | None, spacing_mm: tuple[float, float]) -> str:
    """The QC finding codes of a labelling, space-separated ('' when it passes)."""
    if labels is None:
        return ""
    return " ".join(finding.code for finding in check_labels(labels, spacing_mm))


def _bone_scores(
    scan: Scan,
    labels: np.ndarray | None,
    calibration: Calibration | None,
    bone: np.ndarray,
    bmd_bone: np.ndarray | None,
) -> dict[str, Any]:
    """Area (cm2), BMD (g/cm2, from `bmd_bone`) and TBS (from `bone`) per vertebra name
    and 'total'; the total's T-score and WHO category. BMD and T nan (WHO 'unknown')
    without a calibration; TBS and BMD nan for an empty labelling; everything nan for
    none (a failed segmentation)."""
    nan = math.nan
    pixels = {
        name: nan if labels is None else float((labels == label).sum())
        for label, name in VERTEBRAE.items()
    }
    out: dict[str, Any] = {
        name: {"area_cm2": count * scan.pixel_area_cm2, "bmd_g_cm2": nan, "tbs": nan}
        for name, count in pixels.items()
    }
    total_area = sum(region["area_cm2"] for region in out.values())
    out["total"] = {"area_cm2": total_area, "bmd_g_cm2": nan, "tbs": nan}
    if labels is not None and labels.any():
        if calibration is None:
            texture = tbs(bone, labels, scan.spacing_mm)
        else:
            result, texture = bmd_and_tbs(scan, labels, calibration, bone, bmd_bone)
            for vertebra in result.vertebrae:
                out[vertebra.name]["bmd_g_cm2"] = vertebra.bmd_g_cm2
            out["total"]["bmd_g_cm2"] = result.total.bmd_g_cm2
        for name, value in texture.items():
            out[name]["tbs"] = value
    out["t_score"] = t_score(out["total"]["bmd_g_cm2"])
    out["who"] = who_category(out["t_score"])
    return out


# --------------------------------------------------------------------------- segment, then evaluate

PREDICTIONS_FOLDER = "predictions"


def evaluate_model(
    cohort_dir: Path | str,
    out_dir: Path | str,
    *,
    model: Predictor | Path | str | None = None,
    device: str = "auto",
    progress: Callable[[str, str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Segment a labelled cohort with a model, then evaluate the predictions
    against the scans' own labels: the Python twin of `dxaspine evaluate
    --cohort DIR --out OUT [--model PATH]`.

    `model` is a `Predictor` (loaded once and reused, as `dxaspine study`
    does for each split), a model file, or None for the shipped models.
    The scans are the reference scans `pair_cohort` would find in
    `cohort_dir`, each checked for labels before any is segmented. The
    predictions go to OUT/predictions as `dxaspine segment` writes them
    (label maps, scores; no overlays or DICOM SEG); then `evaluate_cohort`
    (with `options`) writes the report into OUT, with the model, the
    compute device and the seconds per scan (inference and
    post-processing, as `dxaspine segment` times them) under
    'segmentation'. `progress(stage, name)` is called after each scan with
    stage 'segment' (the file name) and then 'evaluate' (the scan id).
    Raises ValueError (ScanError for a file) on bad input or when a scan
    cannot be segmented.
    """
    from dxaspine.batch import SegmentOptions, segment_files
    from dxaspine.infer import Predictor

    cohort_dir, out_dir = Path(cohort_dir), Path(out_dir)
    if not cohort_dir.is_dir():
        raise ValueError(f"{cohort_dir}: the cohort folder does not exist or is not a folder")
    references = reference_paths(cohort_dir)
    if not references:
        raise ValueError(
            f"no reference scans in {cohort_dir}: expected NPZ or DICOM scans carrying L1..L4 "
            "labels"
        )
    for path in references:
        read_reference(path)
    predictor = model if isinstance(model, Predictor) else Predictor(model, device)
    pred_dir = out_dir / PREDICTIONS_FOLDER
    calibration = options.get("calibration")
    segment_options = SegmentOptions(
        calibration=Path(calibration) if isinstance(calibration, Path | str) else None,
        write_seg=False,
        write_overlay=False,
    )

    def segmented(path: Path, _error: str | None) -> None:
        if progress is not None:
            progress("segment", path.name)

    result = segment_files(references, pred_dir, predictor, segment_options, segmented)
    if result.failures:
        first, reason = next(iter(result.failures.items()))
        raise ValueError(
            f"{len(result.failures)} of {len(references)} scans could not be segmented "
            f"(first: {first}: {reason}); see {pred_dir / 'segment.json'}"
        )
    from dxaspine.report_html import read_rows

    timing = read_rows(pred_dir / "scores.csv")
    seconds = np.array([float(row["seconds"]) for row in timing], np.float64)
    models = sorted({row["model"] for row in timing})
    segmentation = {
        "model": ", ".join(models),
        "model_file": (
            str(model) if isinstance(model, Path | str) else "shipped" if model is None else None
        ),
        "device": predictor.device,
        "seconds_per_scan": mean_sd(seconds) | {"median": float(np.median(seconds))},
        "predictions": str(pred_dir),
    }

    def evaluated(scan_id: str) -> None:
        if progress is not None:
            progress("evaluate", scan_id)

    return evaluate_cohort(
        pred_dir, cohort_dir, out_dir, progress=evaluated, segmentation=segmentation, **options
    )
