"""Pairing a cohort: which prediction file goes with which reference scan.

`pair_cohort` matches the predictions in one folder (as `dxaspine segment
--out` writes them) with the labelled reference scans in another, by scan id,
and refuses mismatches (an id in one folder only, another shape or spacing)
with messages that name both files. `read_reference` reads a reference scan
and its L1..L4 labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dxaspine.io._common import one_line
from dxaspine.scan import Scan, ScanError

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
    references = reference_paths(ref_dir)
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
        scan, _ = read_reference(path)
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


def reference_paths(ref_dir: Path) -> list[Path]:
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


def read_reference(path: Path) -> tuple[Scan, np.ndarray]:
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
