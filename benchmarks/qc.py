"""How well the QC checks (`dxaspine.qc`) single out the labellings to review.

On the test cohort (seeds 2001/2002, as benchmarks/segmentation.py) and,
where CTs are given, on scans projected from them (docs/ct.md): the share of
reference labellings flagged (the anatomy alone trips a check), the share of
the shipped model's labellings flagged, and how the flags split the model's
good labellings from its failures (a failure: a vertebra with Dice below 0.90).
All figures are from SIMULATED scans.

    .venv/bin/python benchmarks/qc.py [--n 100] [--model NAME]
        [--ct CT --labels SEG ...] [--draws 4] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from dxaspine import __version__
from dxaspine.infer import Predictor
from dxaspine.metrics import dice
from dxaspine.qc import QCConfig, check_labels
from dxaspine.simulate.ct_scan import project_ct, scan_from_projection
from dxaspine.simulate.generate import simulate_scan

DEVICE_SEEDS = {"hologic-like": 2001, "lunar-like": 2002}
FAILURE_DICE = 0.90
"""A labelling fails when any vertebra the reference holds scores below this Dice."""
GROSS_FAILURE_DICE = 0.50
"""... and fails grossly when one scores below this (mostly another vertebra's label)."""


def assess(predictor: Predictor, scan, config: QCConfig) -> dict:
    """QC findings of the reference and the model's labels, and the model's Dice."""
    predicted = predictor.segment(scan).labels
    present = [v for v in (1, 2, 3, 4) if (scan.labels == v).any()]
    per_vertebra = [dice(predicted == v, scan.labels == v) for v in present]
    truth_flags = scan.meta.get("truth", {}).get("flags", {})
    return {
        "scan_id": scan.scan_id,
        "device": scan.device,
        "union_dice": dice(predicted > 0, scan.labels > 0),
        "min_vertebra_dice": min(per_vertebra, default=math.nan),
        "compression_fracture": bool(truth_flags.get("compression_fracture")),
        "reference_findings": [f.code for f in check_labels(scan.labels, scan.spacing_mm, config)],
        "predicted_findings": [f.code for f in check_labels(predicted, scan.spacing_mm, config)],
    }


def summarise(rows: list[dict]) -> dict:
    """Flag rates and how the model's flags split its failures from its good labellings."""
    failed = [r for r in rows if r["min_vertebra_dice"] < FAILURE_DICE]
    gross = [r for r in rows if r["min_vertebra_dice"] < GROSS_FAILURE_DICE]
    fractures = [r for r in rows if r["compression_fracture"]]
    good = [r for r in rows if r["min_vertebra_dice"] >= FAILURE_DICE]
    flagged = [r for r in rows if r["predicted_findings"]]
    unflagged = [r for r in rows if not r["predicted_findings"]]

    def share(subset: list[dict], key: str) -> float | None:
        return round(float(np.mean([bool(r[key]) for r in subset])), 4) if subset else None

    def mean(subset: list[dict], key: str) -> float | None:
        return round(float(np.mean([r[key] for r in subset])), 4) if subset else None

    return {
        "scans": len(rows),
        "reference_flagged": share(rows, "reference_findings"),
        "reference_codes": dict(Counter(c for r in rows for c in set(r["reference_findings"]))),
        "predicted_flagged": share(rows, "predicted_findings"),
        "predicted_codes": dict(Counter(c for r in rows for c in set(r["predicted_findings"]))),
        "failures": len(failed),
        "failures_flagged": share(failed, "predicted_findings"),
        "gross_failures": len(gross),
        "gross_failures_flagged": share(gross, "predicted_findings"),
        "compression_fractures": len(fractures),
        "compression_fractures_flagged": share(fractures, "predicted_findings"),
        "good_flagged": share(good, "predicted_findings"),
        "union_dice_flagged": mean(flagged, "union_dice"),
        "union_dice_unflagged": mean(unflagged, "union_dice"),
        "min_vertebra_dice_flagged": mean(flagged, "min_vertebra_dice"),
        "min_vertebra_dice_unflagged": mean(unflagged, "min_vertebra_dice"),
    }


def ct_summaries(rows: list[dict]) -> dict[str, dict]:
    """`summarise` per CT: its scans in both poses (ids ct-<name> and ct-<name>-dxa)."""
    names = sorted({r["scan_id"].removesuffix("-dxa") for r in rows})
    return {
        n: summarise([r for r in rows if r["scan_id"].removesuffix("-dxa") == n]) for n in names
    }


def print_summary(title: str, summaries: dict[str, dict], console: Console) -> None:
    table = Table(title=title)
    columns = (
        ("scans", "scans"),
        ("ref. flagged", "reference_flagged"),
        ("model flagged", "predicted_flagged"),
        ("failures", "failures"),
        ("failures flagged", "failures_flagged"),
        ("gross", "gross_failures"),
        ("gross flagged", "gross_failures_flagged"),
        ("good flagged", "good_flagged"),
        ("union Dice flagged / not", None),
    )
    table.caption = (
        f"failure: a vertebra with Dice below {FAILURE_DICE} (gross: {GROSS_FAILURE_DICE}); "
        "flagged: shares of those scans"
    )
    table.add_column("cohort")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for name, s in summaries.items():
        cells = [s[key] for _, key in columns if key]
        dice_pair = f"{s['union_dice_flagged']} / {s['union_dice_unflagged']}"
        table.add_row(name, *["-" if c is None else str(c) for c in cells], dice_pair)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="test scans per device")
    parser.add_argument("--model", default="dual-energy-bone")
    parser.add_argument("--ct", type=Path, action="append", default=[])
    parser.add_argument("--labels", type=Path, action="append", default=[])
    parser.add_argument("--draws", type=int, default=4, help="noise draws per CT-derived scan")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if len(args.ct) != len(args.labels):
        parser.error("give one --labels per --ct")
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    config = QCConfig()
    predictor = Predictor(args.model, "cpu")
    procedural = {}
    for device, seed in DEVICE_SEEDS.items():
        rows = [
            assess(predictor, simulate_scan(seed, i, device), config)
            for i in track(range(args.n), description=f"{device} test cohort", console=console)
        ]
        procedural[device] = {"summary": summarise(rows), "scans": rows}
    ct_rows: list[dict] = []
    for ct, labels in zip(args.ct, args.labels, strict=True):
        for pose in ("ct", "dxa"):
            projection, source = project_ct(ct, labels, pose=pose)
            for device in DEVICE_SEEDS:
                for draw in range(args.draws):
                    scan = scan_from_projection(projection, source, device, draw)
                    ct_rows.append({**assess(predictor, scan, config), "pose": pose, "draw": draw})
    results = {
        "simulated": True,
        "note": "All figures are from SIMULATED scans (procedural, or projected from CTs).",
        "dxaspine": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": args.model,
        "qc_config": config.__dict__,
        "failure_dice": FAILURE_DICE,
        "gross_failure_dice": GROSS_FAILURE_DICE,
        "test_cohort": {"devices": DEVICE_SEEDS, "scans_per_device": args.n},
        "procedural": procedural,
        "ct": {
            "files": [str(p.name) for p in args.ct],
            "draws": args.draws,
            "summary": ct_summaries(ct_rows),
            "scans": ct_rows,
        },
    }
    summaries = {d: v["summary"] for d, v in procedural.items()}
    summaries.update(results["ct"]["summary"])
    print_summary(f"QC flags of {args.model} on SIMULATED scans", summaries, console)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "qc.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
