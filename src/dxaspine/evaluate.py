"""Evaluation: how a segmentation compares with the reference, per scan and
for a cohort, in the published study's terms.

`overlap_metrics` scores one predicted label map against the reference;
`agreement` compares a method's bone scores with those from the reference
masks (Pearson r, RMSD, RMSD % of the reference mean, Bland-Altman bias and
95% limits of agreement). `evaluate_cohort` (behind `dxaspine evaluate`)
pairs a folder of predictions with a folder of reference scans
(`pair_cohort`), scores both and the scanner-style baseline, and writes
`per_scan.csv`, `per_vertebra.csv` and `summary.json` with percentile
bootstrap CIs (`bootstrap_ci`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dxaspine import __version__
from dxaspine.baseline import baseline_segmentation
from dxaspine.io._common import one_line, write_file_atomic
from dxaspine.labels import VERTEBRAE
from dxaspine.metrics import assd_mm, dice, hausdorff_mm
from dxaspine.scan import Scan, ScanError
from dxaspine.scores import (
    Calibration,
    bone_areal_density,
    device_calibration,
    score_bmd,
    t_score,
    who_category,
)
from dxaspine.tbs import tbs


def overlap_metrics(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: tuple[float, float]
) -> dict[str, float]:
    """Dice, HD, HD95 and ASSD (mm) of the L1-L4 union, plus the mean Dice of
    L1..L4 taken one by one (a wrong vertebra label costs there, not in the union)."""
    pred_union, ref_union = predicted > 0, reference > 0
    per_vertebra = [dice(predicted == v, reference == v) for v in VERTEBRAE]
    return {
        "dice": dice(pred_union, ref_union),
        "dice_vertebrae": float(np.mean(per_vertebra)),
        "hausdorff_mm": hausdorff_mm(pred_union, ref_union, spacing_mm),
        "hd95_mm": hausdorff_mm(pred_union, ref_union, spacing_mm, percentile=95),
        "assd_mm": assd_mm(pred_union, ref_union, spacing_mm),
    }


@dataclass(frozen=True)
class Agreement:
    """Agreement of a method's values with reference values (same units).

    RMSD % is 100 x RMSD / mean(reference), the convention the published
    table's figures fit (0.028 g/cm2 = 2.56% of a mean BMD near 1.09).
    Limits of agreement are bias +- 1.96 SD of the differences.
    """

    n: int
    pearson_r: float
    rmsd: float
    rmsd_percent: float
    bias: float
    loa_low: float
    loa_high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def agreement(method: np.ndarray, reference: np.ndarray) -> Agreement:
    """Agreement over the pairs where both values are finite (nan where n < 2)."""
    method = np.asarray(method, np.float64)
    reference = np.asarray(reference, np.float64)
    if method.shape != reference.shape:
        raise ValueError(f"method {method.shape} and reference {reference.shape} differ in shape")
    keep = np.isfinite(method) & np.isfinite(reference)
    m, r = method[keep], reference[keep]
    n = int(keep.sum())
    if n < 2:
        nan = math.nan
        return Agreement(n, nan, nan, nan, nan, nan, nan)
    difference = m - r
    rmsd = float(np.sqrt(np.mean(difference**2)))
    spread = np.std(m) * np.std(r)
    pearson = float(np.corrcoef(m, r)[0, 1]) if spread > 0 else math.nan
    bias = float(difference.mean())
    sd = float(difference.std(ddof=1))
    return Agreement(
        n=n,
        pearson_r=pearson,
        rmsd=rmsd,
        rmsd_percent=100.0 * rmsd / float(np.mean(r)),
        bias=bias,
        loa_low=bias - 1.96 * sd,
        loa_high=bias + 1.96 * sd,
    )


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean and SD over the finite values, with how many were not finite."""
    array = np.asarray(values, np.float64)
    finite = array[np.isfinite(array)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "sd": float(finite.std()) if finite.size else math.nan,
        "n": int(finite.size),
        "n_not_finite": int(array.size - finite.size),
    }


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    values: np.ndarray | list,
    statistic: Callable[[np.ndarray], float],
    n: int = 1000,
    seed: int = 0,
    *,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (default 95%).

    `values` is 1-D (one value per scan) or 2-D (one row per scan: pairs
    resampled together, e.g. method and reference). Rows with a non-finite
    value are dropped first. Draws `n` resamples of the rows with
    replacement from `numpy.random.default_rng(seed)`, so the same inputs
    give the same interval; resamples whose statistic is not finite are
    skipped. (nan, nan) when no row or no finite statistic is left.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 resample, got {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    data = np.asarray(values, np.float64)
    if data.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D (rows resampled), got shape {data.shape}")
    finite = np.isfinite(data) if data.ndim == 1 else np.isfinite(data).all(axis=1)
    data = data[finite]
    if data.shape[0] == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, data.shape[0], size=(n, data.shape[0]))
    stats = np.array([statistic(data[rows]) for rows in draws], np.float64)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return (math.nan, math.nan)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return (float(low), float(high))


# --------------------------------------------------------------------------- cohort pairing

REFERENCE_SUFFIXES = (".npz", ".dcm", ".dicom")
PREDICTION_NAMES = ("{id}_labels.npz", "{id}_labels.png", "{id}.npz")
"""Prediction file names tried for a scan id, first match wins (`dxaspine segment --out`
writes the first two)."""
_NOT_SCANS = ("_labels", "_mask", "_high", "_low")


def pair_cohort(pred_dir: Path | str, ref_dir: Path | str) -> list[tuple[str, Path, Path]]:
    """(scan id, prediction file, reference scan file) for every reference scan, by id.

    References are the NPZ and DICOM scans in `ref_dir` (files, and
    subfolders holding a two-file DICOM scan); each must carry an L1..L4
    label map: an NPZ `labels` key, or a `<stem>_labels.npz/.png` beside it
    (DICOM stores none). A scan's id is its meta `scan_id`, else its file
    stem. Predictions in `pred_dir` are `<id>_labels.npz`, `<id>_labels.png`
    or `<id>.npz` with a `labels` key. Raises ValueError (ScanError for a
    file) when either folder has none, when an id is in one folder only, or
    when a prediction's shape or stored `spacing_mm` differs from its scan's.
    Sorted by id.
    """
    pred_dir, ref_dir = _folder(pred_dir, "prediction"), _folder(ref_dir, "reference")
    references = _reference_paths(ref_dir)
    if not references:
        raise ValueError(
            f"no reference scans in {ref_dir}: expected NPZ or DICOM scans carrying L1..L4 labels"
        )
    predictions = _prediction_paths(pred_dir)
    if not predictions:
        names = ", ".join(PREDICTION_NAMES)
        raise ValueError(
            f"no predictions in {pred_dir}: expected files named {names} "
            "(as `dxaspine segment --out DIR` writes)"
        )
    found: dict[str, tuple[Path, tuple[int, int], tuple[float, float]]] = {}
    for path in references:
        scan, _ = _read_reference(path)
        scan_id = scan.scan_id or path.stem
        if scan_id in found:
            raise ScanError(
                str(path),
                f"scan id '{scan_id}' is also that of {found[scan_id][0]}; ids must be unique",
            )
        found[scan_id] = (path, scan.shape, scan.spacing_mm)
    unpredicted = sorted(set(found) - set(predictions))
    unreferenced = sorted(set(predictions) - set(found))
    if unpredicted or unreferenced:
        problems = []
        if unpredicted:
            problems.append(
                f"{len(unpredicted)} reference scan(s) have no prediction in {pred_dir}: "
                + _first_five(unpredicted)
            )
        if unreferenced:
            problems.append(
                f"{len(unreferenced)} prediction(s) have no reference scan in {ref_dir}: "
                + _first_five(unreferenced)
            )
        raise ValueError("; ".join(problems) + " (ids are meta scan_id, else the file stem)")
    pairs = []
    for scan_id in sorted(found):
        ref_path, shape, spacing = found[scan_id]
        _check_prediction(predictions[scan_id], ref_path, shape, spacing)
        pairs.append((scan_id, predictions[scan_id], ref_path))
    return pairs


def _folder(path: Path | str, role: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path}: the {role} folder does not exist or is not a folder")
    return path


def _first_five(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _reference_paths(ref_dir: Path) -> list[Path]:
    paths = []
    for path in sorted(ref_dir.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            if any(p.suffix.lower() in REFERENCE_SUFFIXES[1:] for p in path.iterdir()):
                paths.append(path)
        elif path.suffix.lower() in REFERENCE_SUFFIXES and not path.stem.endswith(_NOT_SCANS):
            paths.append(path)
    return paths


def _prediction_paths(pred_dir: Path) -> dict[str, Path]:
    """Scan id -> prediction file, preferring the order of PREDICTION_NAMES."""
    ranked: dict[str, tuple[int, Path]] = {}
    for path in sorted(pred_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        for rank, pattern in enumerate(PREDICTION_NAMES):
            ending = pattern.removeprefix("{id}")
            if path.name.endswith(ending) and len(path.name) > len(ending):
                scan_id = path.name[: -len(ending)]
                if scan_id not in ranked or rank < ranked[scan_id][0]:
                    ranked[scan_id] = (rank, path)
                break
    return {scan_id: path for scan_id, (_, path) in ranked.items()}


def _read_reference(path: Path) -> tuple[Scan, np.ndarray]:
    """The reference scan and its L1..L4 labels (from the scan, else a file beside it)."""
    from dxaspine.io import read_labels, read_scan

    scan = read_scan(path)
    if scan.labels is not None:
        return scan, scan.labels
    stem = path.parent / path.stem if path.is_file() else path
    for suffix in ("_labels.npz", "_labels.png", "_labels.tif", "_labels.tiff"):
        beside = stem.with_name(stem.name + suffix)
        if beside.is_file():
            return scan, read_labels(beside, scan.shape)
    held = "only a binary 'mask'" if scan.mask is not None else "no labels"
    raise ScanError(
        str(path),
        f"reference scan has {held}; evaluation needs the L1..L4 map: a 'labels' key in the "
        f"NPZ, or {stem.name}_labels.npz / {stem.name}_labels.png beside it",
    )


def _check_prediction(
    pred: Path, ref: Path, shape: tuple[int, int], spacing_mm: tuple[float, float]
) -> None:
    """Same shape (and stored spacing, for NPZ) as the reference scan, else ScanError."""
    from dxaspine.io.npz import is_npz

    stored_spacing = None
    try:
        if is_npz(pred):
            with np.load(pred, allow_pickle=False) as data:
                key = next((k for k in ("labels", "mask") if k in data.files), None)
                if key is None:
                    raise ScanError(str(pred), "prediction NPZ has no 'labels' key")
                pred_shape = tuple(data[key].shape)
                if "spacing_mm" in data.files:
                    stored_spacing = tuple(float(s) for s in np.ravel(data["spacing_mm"]))
        else:
            with Image.open(pred) as image:
                pred_shape = (image.height, image.width)
    except ScanError:
        raise
    except Exception as exc:
        raise ScanError(str(pred), f"cannot read the prediction: {one_line(exc)}") from None
    if pred_shape != tuple(shape):
        raise ScanError(
            str(pred),
            f"prediction shape {pred_shape} differs from the reference scan {ref} {tuple(shape)}; "
            "predict on the reference scans themselves",
        )
    if stored_spacing is not None and not np.allclose(
        stored_spacing, spacing_mm, rtol=1e-6, atol=1e-9
    ):
        raise ScanError(
            str(pred),
            f"prediction spacing_mm {list(stored_spacing)} differs from the reference scan "
            f"{ref} {list(spacing_mm)}; was it made with another --spacing-mm?",
        )


# --------------------------------------------------------------------------- cohort evaluation

OVERLAP_KEYS = ("dice", "dice_vertebrae", "hausdorff_mm", "hd95_mm", "assd_mm")
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
    `progress(scan_id)` is called after each scan.
    """
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be 0 (no CIs) or more, got {n_bootstrap}")
    if calibration is not None and not isinstance(calibration, Calibration):
        calibration = Calibration.from_json(calibration)
    from dxaspine.io import read_labels

    pairs = pair_cohort(pred_dir, ref_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scan_rows: list[dict[str, Any]] = []
    vertebra_rows: list[dict[str, Any]] = []
    n_simulated = 0
    for scan_id, pred_path, ref_path in pairs:
        scan, reference = _read_reference(ref_path)
        n_simulated += "truth" in scan.meta
        labels = {"pred": read_labels(pred_path, scan.shape)}
        row: dict[str, Any] = {
            "scan_id": scan_id,
            "reference_file": str(ref_path),
            "prediction_file": str(pred_path),
            "device": scan.device or "",
        }
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
    summary = _summary(scan_rows, vertebra_rows, with_baseline, n_bootstrap, seed)
    summary["counts"]["simulated_scans"] = n_simulated
    summary["simulated"] = n_simulated == len(pairs)
    summary["note"] = SIMULATED_NOTE if summary["simulated"] else None
    summary["inputs"] = {"pred_dir": str(pred_dir), "ref_dir": str(ref_dir)}
    summary = _plain(summary)
    write_file_atomic(out_dir / "per_scan.csv", _csv_text(scan_rows))
    write_file_atomic(out_dir / "per_vertebra.csv", _csv_text(vertebra_rows))
    write_file_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


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
    except ValueError as exc:
        raise ScanError(str(source), one_line(exc)) from None
    scores = {"ref": _bone_scores(scan, reference, calibration, bone)}
    row: dict[str, Any] = {"bmd_available": calibration is not None}
    vertebrae: list[dict[str, Any]] = [{"vertebra": name} for name in VERTEBRAE.values()]
    nan = math.nan
    for method, predicted in labels.items():
        prefix = "" if method == "pred" else f"{method}_"
        if predicted is None:
            overlap = dict.fromkeys(OVERLAP_KEYS, nan)
            per_vertebra = dict.fromkeys(VERTEBRAE.values(), nan)
            scores[method] = _bone_scores(scan, None, None, bone)
        else:
            overlap = overlap_metrics(predicted, reference, scan.spacing_mm)
            per_vertebra = {
                name: dice(predicted == label, reference == label)
                for label, name in VERTEBRAE.items()
            }
            scores[method] = _bone_scores(scan, predicted, calibration, bone)
        if method == "baseline":
            row["baseline_failed"] = predicted is None
        row.update({prefix + key: value for key, value in overlap.items()})
        if method == "pred":
            row.update({f"dice_{name}": value for name, value in per_vertebra.items()})
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


def _bone_scores(
    scan: Scan, labels: np.ndarray | None, calibration: Calibration | None, bone: np.ndarray
) -> dict[str, Any]:
    """Area (cm2), BMD (g/cm2) and TBS per vertebra name and 'total'; the total's T-score
    and WHO category. BMD and T nan (WHO 'unknown') without a calibration; TBS and BMD
    nan for an empty labelling; everything nan for none (a failed segmentation)."""
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
        for name, value in tbs(bone, labels, scan.spacing_mm).items():
            out[name]["tbs"] = value
        if calibration is not None:
            result = score_bmd(scan, labels, calibration, bone_g_cm2=bone)
            for vertebra in result.vertebrae:
                out[vertebra.name]["bmd_g_cm2"] = vertebra.bmd_g_cm2
            out["total"]["bmd_g_cm2"] = result.total.bmd_g_cm2
    out["t_score"] = t_score(out["total"]["bmd_g_cm2"])
    out["who"] = who_category(out["t_score"])
    return out


# --------------------------------------------------------------------------- summary


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([math.nan if r[key] is None else r[key] for r in rows], np.float64)


def _ci(values: np.ndarray, statistic: Callable, n: int, seed: int) -> tuple[float, float] | None:
    return bootstrap_ci(values, statistic, n, seed) if n else None


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


def _summary(
    scan_rows: list[dict[str, Any]],
    vertebra_rows: list[dict[str, Any]],
    with_baseline: bool,
    n: int,
    seed: int,
) -> dict[str, Any]:
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
            overlap[key] = mean_sd(values) | {"mean_ci95": _ci(values, np.mean, n, seed)}
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
            result["pearson_r_ci95"] = _ci(pairs, _pearson, n, seed)
            result["rmsd_percent_ci95"] = _ci(pairs, _rmsd_percent, n, seed)
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
            rows = rows[np.isfinite(rows).all(axis=1)]
            summary[score]["rmsd_ratio_baseline_over_dxaspine"] = {
                "value": _rmsd_ratio(rows) if len(rows) else math.nan,
                "ci95": _ci(rows, _rmsd_ratio, n, seed),
                "n": len(rows),
            }
    summary["bootstrap"] = {"resamples": n, "seed": seed, "method": "percentile, scans resampled"}
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


def _plain(value: Any) -> Any:
    """JSON-ready: tuples to lists, numpy scalars to Python, nan and inf to None."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
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


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()
