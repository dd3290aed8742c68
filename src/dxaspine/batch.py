"""`dxaspine segment`: segment and score many scans, writing every output.

Per scan, in OUT: `<id>_labels.png` and `<id>_labels.npz` (the L1..L4 map),
`<id>_overlay.png`, `<id>_seg.dcm` (a DICOM SEG, when the input was DICOM),
`<id>_scores.json` (with its QC findings, `dxaspine.qc`); for the batch,
`scores.csv` (one row per scan) and `segment.json` (the run: model, versions,
every file, every failure, every scan to review). A bad file is reported and
skipped, and the rest go on.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dxaspine.infer import Predictor, Segmentation, versions
from dxaspine.io._common import write_file_atomic
from dxaspine.scan import Scan, ScanError

CSV_VERTEBRA_FIELDS = ("area_cm2", "bmd_g_cm2", "t_score", "tbs")


@dataclass
class SegmentOptions:
    """What `dxaspine segment` writes and how it scores."""

    calibration: Path | None = None
    spacing_mm: tuple[float, float] | None = None
    write_seg: bool = True
    write_overlay: bool = True


@dataclass
class BatchResult:
    """What happened to each input: outputs written, or the reason it failed."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    review: dict[str, list[str]] = field(default_factory=dict)
    """Input -> the QC findings' messages, for scans whose labels should be reviewed."""

    @property
    def ok(self) -> bool:
        return not self.failures


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders expand to the scan files inside (NPZ, DICOM, PNG, TIFF)."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in (".npz", ".dcm", ".dicom", ".png", ".tif", ".tiff")
                and not p.stem.endswith(("_high", "_labels", "_mask"))
            )
            files.extend(found)
        else:
            files.append(path)
    return files


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def overlay_image(scan: Scan, labels: np.ndarray) -> np.ndarray:
    from dxaspine.preview import bone_image, overlay, square_pixels, to_8bit

    grey = to_8bit(bone_image(scan))
    return np.asarray(square_pixels(overlay(grey, labels), scan.spacing_mm))


def score_segmentation(scan: Scan, segmentation: Segmentation, options: SegmentOptions) -> dict:
    """Scores from the predicted labels; BMD only where a calibration is known."""
    from dxaspine.report import scores_to_dict
    from dxaspine.scores import Calibration, device_calibration

    calibration = None
    if options.calibration is not None:
        calibration = Calibration.from_json(options.calibration)
    elif scan.device and scan.is_dual_energy:
        try:
            calibration = device_calibration(scan.device)
        except (KeyError, ValueError):
            calibration = None
    return scores_to_dict(scan, segmentation.labels, calibration)


def csv_row(source: str, segmentation: Segmentation, report: dict) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scan_id": segmentation.scan_id,
        "source": source,
        "model": segmentation.model,
        "seconds": round(segmentation.seconds, 4),
    }
    for vertebra in report["vertebrae"]:
        for name in CSV_VERTEBRA_FIELDS:
            row[f"{vertebra['name']}_{name}"] = vertebra[name]
    # The total's columns keep one name whatever it holds (L1-L4, L1-L3, L1,L4).
    row["total_region"] = report["total"]["name"]
    for name in CSV_VERTEBRA_FIELDS:
        row[f"total_{name}"] = report["total"][name]
    row["excluded_from_total"] = " ".join(report.get("excluded_from_total", []))
    row["who_category"] = report["who_category"]
    row["qc_review"] = report["qc"]["review"]
    row["qc_findings"] = " ".join(f["code"] for f in report["qc"]["findings"])
    return row


def segment_files(
    inputs: list[Path],
    out_dir: Path,
    predictor: Predictor,
    options: SegmentOptions | None = None,
    on_progress: Callable[[Path, str | None], None] | None = None,
) -> BatchResult:
    """Segment and score each input; `on_progress(path, error)` after each one."""
    from dxaspine.io import read_scan

    options = options or SegmentOptions()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = BatchResult()
    rows = []
    for path in inputs:
        try:
            scan = read_scan(path, spacing_mm=options.spacing_mm)
            segmentation = predictor.segment(scan)
            written, report = _write_outputs(path, scan, segmentation, out_dir, options)
            result.outputs[str(path)] = written
            rows.append(csv_row(str(path), segmentation, report))
            if report["qc"]["review"]:
                result.review[str(path)] = [f["message"] for f in report["qc"]["findings"]]
            error = None
        except (ScanError, ValueError, OSError) as exc:
            error = str(exc)
            result.failures[str(path)] = error
        if on_progress:
            on_progress(path, error)
    if rows:
        fields = list(dict.fromkeys(key for row in rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        write_file_atomic(out_dir / "scores.csv", buffer.getvalue().encode())
    run = {
        "inputs": [str(p) for p in inputs],
        "outputs": result.outputs,
        "failures": result.failures,
        "review": result.review,
        "device": predictor.device,
        "versions": versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_file_atomic(out_dir / "segment.json", (json.dumps(run, indent=2) + "\n").encode())
    return result


def _write_outputs(
    source: Path, scan: Scan, segmentation: Segmentation, out_dir: Path, options: SegmentOptions
) -> tuple[dict[str, Any], dict]:
    stem = segmentation.scan_id or source.stem
    written: dict[str, Any] = {}
    labels = segmentation.labels
    path = write_file_atomic(out_dir / f"{stem}_labels.png", _png_bytes(labels))
    written["labels_png"] = str(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=labels, spacing_mm=np.asarray(scan.spacing_mm))
    path = write_file_atomic(out_dir / f"{stem}_labels.npz", buffer.getvalue())
    written["labels_npz"] = str(path)
    if options.write_overlay:
        image = _png_bytes(overlay_image(scan, labels))
        written["overlay_png"] = str(write_file_atomic(out_dir / f"{stem}_overlay.png", image))
    if options.write_seg and _is_dicom(source) and labels.any():
        from dxaspine.io.seg import write_dicom_seg

        dicom_source = source if source.is_file() else sorted(source.iterdir())[0]
        written["dicom_seg"] = str(
            write_dicom_seg(labels, dicom_source, out_dir / f"{stem}_seg.dcm")
        )
    report = score_segmentation(scan, segmentation, options)
    report["model"] = segmentation.model
    report["seconds"] = segmentation.seconds
    text = json.dumps(report, indent=2) + "\n"
    written["scores_json"] = str(write_file_atomic(out_dir / f"{stem}_scores.json", text.encode()))
    return written, report


def _is_dicom(path: Path) -> bool:
    from dxaspine.io import dicom

    if path.is_dir():
        return True
    return dicom.is_dicom(path)
