"""`dxaspine info`: validate scans and say what each one holds.

`describe` is the Python API (a JSON-ready dict); `run_info` is the command,
printing a table per scan or one JSON list, and a one-line error per bad file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dxaspine.io import read_scan
from dxaspine.labels import VERTEBRAE
from dxaspine.scan import Scan, ScanError

if TYPE_CHECKING:
    from rich.table import Table

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _stats(image: np.ndarray) -> dict[str, float]:
    return {
        "min": float(image.min()),
        "max": float(image.max()),
        "mean": float(image.mean(dtype=np.float64)),
    }


def describe(scan: Scan) -> dict[str, Any]:
    """Kind, shape, spacing, ids, value ranges of the images and the reference data present.

    `kind` is "dual-energy" or "single-image"; `low`, `high` and `image` hold
    min/max/mean, or None where the scan lacks that image. `spacing_source`
    says where the spacing came from ("file" unless a reader recorded
    otherwise: "argument", "PixelSpacing", "ExposedArea", "sidecar", ...).
    `vertebrae` lists the vertebra names found in `labels` (empty without
    labels); `simulator_truth` says whether `meta` carries the simulator's
    ground truth.
    """
    vertebrae = []
    if scan.labels is not None:
        present = set(np.unique(scan.labels).tolist())
        vertebrae = [name for label, name in VERTEBRAE.items() if label in present]
    return {
        "kind": "dual-energy" if scan.is_dual_energy else "single-image",
        "shape": list(scan.shape),
        "spacing_mm": list(scan.spacing_mm),
        "spacing_source": str(scan.meta.get("spacing_source", "file")),
        "device": scan.device,
        "scan_id": scan.scan_id,
        "patient_id": scan.patient_id,
        "low": _stats(scan.low) if scan.low is not None else None,
        "high": _stats(scan.high) if scan.high is not None else None,
        "image": _stats(scan.image) if scan.image is not None else None,
        "mask": scan.mask is not None,
        "labels": scan.labels is not None,
        "vertebrae": vertebrae,
        "truth_maps": sorted(scan.truth_maps),
        "simulator_truth": "truth" in scan.meta,
    }


def _reference_text(info: dict[str, Any]) -> str:
    parts = []
    if info["mask"]:
        parts.append("mask")
    if info["labels"]:
        parts.append(f"labels ({' '.join(info['vertebrae']) or 'empty'})")
    if info["truth_maps"]:
        parts.append(f"truth maps ({', '.join(info['truth_maps'])})")
    if info["simulator_truth"]:
        parts.append("simulator truth")
    return ", ".join(parts) or "none"


def _table(path: Path, info: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(title=str(path), show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows, cols = info["shape"]
    table.add_row("kind", info["kind"])
    table.add_row("shape", f"{rows} x {cols} px")
    spacing = "{:g} x {:g} mm".format(*info["spacing_mm"])
    table.add_row("spacing", f"{spacing} (from {info['spacing_source']})")
    for key in ("device", "scan_id", "patient_id"):
        table.add_row(key.replace("_", " "), str(info[key]) if info[key] is not None else "-")
    for name, title in (("low", "low energy"), ("high", "high energy"), ("image", "image")):
        s = info[name]
        if s is not None:
            table.add_row(title, f"min {s['min']:.4f}  max {s['max']:.4f}  mean {s['mean']:.4f}")
    table.add_row("reference", _reference_text(info))
    return table


def run_info(
    paths: Sequence[Path | str],
    as_json: bool = False,
    spacing_mm: tuple[float, float] | float | None = None,
) -> int:
    """Describe each scan on stdout; report each bad file on stderr as one line.

    `spacing_mm` is passed to `read_scan` (exported images without a pixel
    size need it; it replaces any file's own). Returns 0 when every file was
    a valid scan, 2 when any was not.
    """
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    reports = []
    status = EXIT_OK
    for path in map(Path, paths):
        try:
            scan = read_scan(path, spacing_mm=spacing_mm)
        except ScanError as exc:
            message = " ".join(str(exc).split())
            prefix = "" if exc.source == str(path) else f"{path}: "
            print(f"error: {prefix}{message}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        info = describe(scan)
        if as_json:
            reports.append({"path": str(path), **info})
        else:
            console.print(_table(path, info))
    if as_json:
        print(json.dumps(reports, indent=2))
    return status
