"""Simulating a cohort: N scans as NPZ files, a cohort.csv, optional previews.

Scan i depends only on (seed, i), so `--jobs` changes the speed and never
the bytes. With `export`, each scan is stored as the scanner's exported
image instead (simulate/export.py), drawn from its own stream (seed, i,
EXPORT_STREAM). Each file is written atomically; cohort.csv is written last.
"""

from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dxaspine.io._common import write_file_atomic
from dxaspine.scan import Scan
from dxaspine.simulate.case import VERTEBRA_NAMES, AnatomyRanges, ArtefactRates
from dxaspine.simulate.export import ExportOptions, render_export
from dxaspine.simulate.generate import RenderOptions, simulate_scan

PREVIEW_SCANS_PER_MONTAGE = 8
FLAG_NAMES = tuple(ArtefactRates.__dataclass_fields__)
LUMBAR = tuple(name for name in VERTEBRA_NAMES if name.startswith("L") and name != "L5")
EXPORT_STREAM = int.from_bytes(b"export", "big")
"""Third seed word of the export generator: scan i's export uses [seed, i, EXPORT_STREAM]."""


@dataclass(frozen=True)
class CohortConfig:
    """What `dxaspine simulate` makes: how many scans, from which seed and device."""

    n_scans: int = 10
    seed: int = 0
    device: str = "hologic-like"
    jobs: int = 1
    preview: bool = False
    truth_maps: bool = False
    ranges: AnatomyRanges = field(default_factory=AnatomyRanges)
    rates: ArtefactRates = field(default_factory=ArtefactRates)
    export: bool = False
    """Store each scan as its single-image export (image + labels + meta) instead."""
    export_options: ExportOptions = field(default_factory=ExportOptions)


def export_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that draws scan `index`'s export in cohort `seed`."""
    return np.random.default_rng([seed, index, EXPORT_STREAM])


def scan_file_name(scan: Scan) -> str:
    return f"{scan.scan_id}.npz"


def _simulate_and_write(args: tuple[CohortConfig, int, Path]) -> dict:
    from dxaspine.io import write_scan

    config, index, out = args
    options = RenderOptions(truth_maps=config.truth_maps)
    scan = simulate_scan(config.seed, index, config.device, config.ranges, config.rates, options)
    if config.export:
        scan = render_export(scan, export_rng(config.seed, index), config.export_options)
    write_scan(scan, out / scan_file_name(scan))
    return cohort_row(scan)


def cohort_row(scan: Scan) -> dict:
    """One cohort.csv row: ids, patient, true BMD per vertebra, artefact flags, and
    for exports the export's spacing, polarity, overlay and processing."""
    truth = scan.meta["truth"]
    row = {
        "scan_id": scan.scan_id,
        "patient_id": scan.patient_id,
        "file": scan_file_name(scan),
        "device": scan.device,
        "age_years": truth["age_years"],
        "sex": truth["sex"],
        "bmi_kg_m2": truth["bmi_kg_m2"],
        "soft_tissue_g_cm2": truth["soft_tissue_g_cm2"],
        "fat_fraction": truth["fat_fraction"],
    }
    for name in LUMBAR:
        row[f"bmd_{name}_g_cm2"] = truth["vertebrae"].get(name, {}).get("bmd_g_cm2")
    row["bmd_total_g_cm2"] = truth["total_bmd_g_cm2"]
    for name in LUMBAR:
        row[f"texture_hurst_{name}"] = truth["vertebrae"].get(name, {}).get("texture_hurst")
    for name in FLAG_NAMES:
        row[name] = int(truth["flags"][name])
    return row | export_columns(scan)


def export_columns(scan: Scan) -> dict:
    """A cohort row's export_* columns ({} for a dual-energy scan)."""
    export = scan.meta.get("export")
    if export is None:
        return {}
    return {
        "export_spacing_row_mm": export["spacing_mm"][0],
        "export_spacing_col_mm": export["spacing_mm"][1],
        "export_inverted": int(export["inverted"]),
        "export_overlay": int(export["overlay"] is not None),
        "export_processing": export["processing"]["kind"],
    }


def simulate_cohort(config: CohortConfig, out: Path, show_progress: bool = True) -> str:
    """Simulate `config.n_scans` scans into `out`; return a one-line summary."""
    from rich.progress import Progress

    out.mkdir(parents=True, exist_ok=True)
    tasks = [(config, i, out) for i in range(config.n_scans)]
    start = time.perf_counter()
    rows: list[dict] = []
    with Progress(disable=not show_progress, transient=True) as progress:
        bar = progress.add_task(f"simulating {config.n_scans} scans", total=config.n_scans)
        if config.jobs > 1:
            with ProcessPoolExecutor(max_workers=config.jobs) as pool:
                for row in pool.map(_simulate_and_write, tasks, chunksize=4):
                    rows.append(row)
                    progress.advance(bar)
        else:
            for task in tasks:
                rows.append(_simulate_and_write(task))
                progress.advance(bar)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_file_atomic(out / "cohort.csv", buffer.getvalue())
    if config.preview:
        write_previews(out, [row["file"] for row in rows])
    seconds = time.perf_counter() - start
    return (
        f"wrote {len(rows)} scans ({config.device}, seed {config.seed}) and cohort.csv to {out} "
        f"in {seconds:.1f} s ({seconds / len(rows):.2f} s per scan)"
    )


def write_previews(out: Path, files: list[str]) -> list[Path]:
    """PNG montages (bone image | labels) of the scans, 8 per sheet, under out/preview."""
    from dxaspine.io import read_scan
    from dxaspine.preview import montage

    paths = []
    for start in range(0, len(files), PREVIEW_SCANS_PER_MONTAGE):
        chunk = files[start : start + PREVIEW_SCANS_PER_MONTAGE]
        scans = [read_scan(out / name) for name in chunk]
        path = out / "preview" / f"montage_{start // PREVIEW_SCANS_PER_MONTAGE:03d}.png"
        paths.append(montage(scans, path))
    return paths
