"""Segmentation accuracy and speed of the shipped models on a freshly simulated
test cohort (new seeds, never seen in training), against the scanner-style
baseline. All figures are from SIMULATED scans.

    .venv/bin/python benchmarks/segmentation.py [--n 100] [--model NAME=PATH ...]
        [--single-image-model PATH] [--seeds 2001,2002] [--out benchmarks/results]

Per model and per device profile: Dice (union and per vertebra), Hausdorff,
HD95, ASSD (mean, SD); BMD and TBS agreement with the reference-mask scores
(r, RMSD, RMSD %); the same for the baseline; seconds per scan (median) for
inference alone and for segment + score. Prints tables and writes
benchmarks/results/segmentation.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from dxaspine import __version__
from dxaspine.baseline import baseline_segmentation
from dxaspine.evaluate import agreement, mean_sd, overlap_metrics
from dxaspine.infer import Predictor, load_model, shipped_model_path
from dxaspine.network import count_parameters
from dxaspine.report import bmd_and_tbs, scores_to_dict
from dxaspine.scores import (
    bone_areal_density,
    device_calibration,
)
from dxaspine.simulate.generate import simulate_scan

DEVICE_SEEDS = {"hologic-like": 2001, "lunar-like": 2002}
"""Test cohorts: seeds differ from the training recipe's (1001, 1002)."""
TARGETS = {
    "dice": 0.975,
    "hausdorff_mm": 5.0,
    "bmd_rmsd_percent": 1.5,
    "tbs_rmsd_percent": 1.3,
    "seconds_per_scan": 0.2,
}
"""The project's targets (README): Dice at least its value, the others under theirs."""
PUBLISHED = {
    "dice": 0.973,
    "hausdorff_mm": 5.684,
    "bmd_rmsd_percent": 2.56,
    "tbs_rmsd_percent": 1.31,
    "seconds_per_scan": 3.0,
}


def bone_scores(scan, labels, calibration, bone) -> tuple[float, float]:
    """(total BMD g/cm2, total TBS) of one labelling; nan when it has no vertebra.

    `bone` is (PSF-corrected image for BMD, plain image for TBS), as `dxaspine score` uses.
    """
    if not np.any(labels):
        return math.nan, math.nan
    bmd_bone, tbs_bone = bone
    result, texture = bmd_and_tbs(scan, labels, calibration, tbs_bone, bmd_bone)
    return float(result.total.bmd_g_cm2), float(texture["total"])


def summarise(rows: list[dict], method: str) -> dict:
    """Overlap means/SDs and score agreement for one method over some rows."""
    out = {
        key: mean_sd([r[method][key] for r in rows])
        for key in ("dice", "dice_vertebrae", "hausdorff_mm", "hd95_mm", "assd_mm")
    }
    for score in ("bmd", "tbs"):
        out[f"{score}_agreement"] = agreement(
            np.array([r[method][score] for r in rows]),
            np.array([r["reference"][score] for r in rows]),
        ).to_dict()
    out["failures"] = sum(1 for r in rows if r[method].get("failed"))
    return out


def evaluate(predictors: dict[str, Predictor], scans: list, console: Console) -> dict:
    rows = []
    timing: dict[str, dict[str, list[float]]] = {
        name: {"inference": [], "segment_and_score": []} for name in predictors
    }
    for scan in track(scans, description="evaluating", console=console):
        calibration = device_calibration(scan.device)
        bone = (
            bone_areal_density(scan, calibration, correct_psf=True),
            bone_areal_density(scan, calibration),
        )
        row = {
            "scan_id": scan.scan_id,
            "device": scan.device,
            "reference": dict(
                zip(("bmd", "tbs"), bone_scores(scan, scan.labels, calibration, bone), strict=True)
            ),
        }
        for name, predictor in predictors.items():
            start = time.perf_counter()
            segmentation = predictor.segment(scan)
            middle = time.perf_counter()
            scores_to_dict(scan, segmentation.labels, calibration)
            end = time.perf_counter()
            timing[name]["inference"].append(middle - start)
            timing[name]["segment_and_score"].append(end - start)
            result = overlap_metrics(segmentation.labels, scan.labels, scan.spacing_mm)
            result.update(
                zip(
                    ("bmd", "tbs"),
                    bone_scores(scan, segmentation.labels, calibration, bone),
                    strict=True,
                )
            )
            row[name] = result
        try:
            labels = baseline_segmentation(scan)
            result = overlap_metrics(labels, scan.labels, scan.spacing_mm)
            result.update(
                zip(("bmd", "tbs"), bone_scores(scan, labels, calibration, bone), strict=True)
            )
        except ValueError as exc:  # the baseline refuses scans it cannot type, as scanners do
            nan = math.nan
            result = {
                "dice": 0.0,
                "dice_vertebrae": 0.0,
                "hausdorff_mm": nan,
                "hd95_mm": nan,
                "assd_mm": nan,
                "bmd": nan,
                "tbs": nan,
                "failed": str(exc),
            }
        row["baseline"] = result
        rows.append(row)
    methods = [*predictors, "baseline"]
    groups = {"all": rows, **{d: [r for r in rows if r["device"] == d] for d in DEVICE_SEEDS}}
    summary = {
        group: {m: summarise(subset, m) for m in methods}
        for group, subset in groups.items()
        if subset
    }
    seconds = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in timing.items()}
    return {"summary": summary, "seconds_per_scan_median": seconds, "per_scan": rows}


def evaluate_single_image(path: Path | None, scans: list, console: Console) -> dict | None:
    """The single-image model on simulated scanner exports of the same scans."""
    try:
        from dxaspine.simulate.export import render_export
    except ImportError:
        return None
    predictor = Predictor(path, "cpu") if path else None
    if predictor is None:
        if not shipped_model_path("single-image").exists():
            return None
        predictor = Predictor(shipped_model_path("single-image"), "cpu")
    rows, seconds = [], []
    for scan in track(scans, description="single-image exports", console=console):
        rng = np.random.default_rng([7, int(scan.scan_id.split("-")[-1])])
        exported = render_export(scan, rng)
        segmentation = predictor.segment(exported)
        seconds.append(segmentation.seconds)
        rows.append(
            {
                "device": scan.device,
                **overlap_metrics(segmentation.labels, exported.labels, exported.spacing_mm),
            }
        )
    groups = {"all": rows, **{d: [r for r in rows if r["device"] == d] for d in DEVICE_SEEDS}}
    return {
        group: {
            key: mean_sd([r[key] for r in subset])
            for key in ("dice", "dice_vertebrae", "hausdorff_mm", "hd95_mm", "assd_mm")
        }
        for group, subset in groups.items()
        if subset
    } | {"seconds_per_scan_median": statistics.median(seconds)}


def describe(path: str) -> dict:
    """What a compared model is: file, network settings, size, provenance."""
    model = load_model(path, "cpu")
    return {
        "path": path,
        "name": model.name,
        "network": model.network.to_dict(),
        "parameters": count_parameters(model.module),
        "info": {k: v for k, v in model.info.items() if k != "name"},
    }


def targets_met(results: dict, method: str) -> dict:
    """Each target of TARGETS against `method`'s figures on all test scans."""
    s = results["summary"]["all"][method]
    seconds = results["seconds_per_scan_median"][method]["segment_and_score"]
    figures = {
        "dice": (s["dice"]["mean"], s["dice"]["mean"] >= TARGETS["dice"]),
        "hausdorff_mm": (
            s["hausdorff_mm"]["mean"],
            s["hausdorff_mm"]["mean"] < TARGETS["hausdorff_mm"],
        ),
        "bmd_rmsd_percent": (
            s["bmd_agreement"]["rmsd_percent"],
            s["bmd_agreement"]["rmsd_percent"] < TARGETS["bmd_rmsd_percent"],
        ),
        "tbs_rmsd_percent": (
            s["tbs_agreement"]["rmsd_percent"],
            s["tbs_agreement"]["rmsd_percent"] < TARGETS["tbs_rmsd_percent"],
        ),
        "seconds_per_scan": (seconds, seconds < TARGETS["seconds_per_scan"]),
    }
    return {key: {"value": value, "met": bool(met)} for key, (value, met) in figures.items()}


def print_tables(results: dict, console: Console) -> None:
    for group, methods in results["summary"].items():
        table = Table(title=f"SIMULATED test scans: {group}")
        for column in (
            "method",
            "Dice",
            "Dice L1-L4",
            "HD mm",
            "HD95 mm",
            "ASSD mm",
            "BMD r",
            "BMD RMSD %",
            "TBS r",
            "TBS RMSD %",
            "failed",
        ):
            table.add_column(column, justify="right")
        for method, s in methods.items():
            table.add_row(
                method,
                f"{s['dice']['mean']:.4f} ({s['dice']['sd']:.4f})",
                f"{s['dice_vertebrae']['mean']:.4f}",
                f"{s['hausdorff_mm']['mean']:.2f} ({s['hausdorff_mm']['sd']:.2f})",
                f"{s['hd95_mm']['mean']:.2f}",
                f"{s['assd_mm']['mean']:.3f}",
                f"{s['bmd_agreement']['pearson_r']:.4f}",
                f"{s['bmd_agreement']['rmsd_percent']:.2f}",
                f"{s['tbs_agreement']['pearson_r']:.4f}",
                f"{s['tbs_agreement']['rmsd_percent']:.2f}",
                str(s["failures"]),
            )
        console.print(table)
    console.print("seconds per scan (median):", results["seconds_per_scan_median"])
    console.print("targets (first model, all scans):", results["targets_met"])
    if results.get("single_image"):
        s = results["single_image"]["all"]
        console.print(
            f"single-image model on simulated exports: Dice {s['dice']['mean']:.4f} "
            f"HD {s['hausdorff_mm']['mean']:.2f} mm"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="test scans per device profile")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="NAME=PATH of a model to compare (default: the shipped default, dual-energy-bone)",
    )
    parser.add_argument("--single-image-model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--seeds",
        default="2001,2002",
        help="hologic-like,lunar-like cohort seeds; other seeds than the test cohort's "
        "make a selection cohort for choosing between trained models",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    seeds = dict(zip(DEVICE_SEEDS, (int(s) for s in args.seeds.split(",")), strict=True))
    torch.set_num_threads(args.threads)
    console = Console(width=170)

    models = dict(item.split("=", 1) for item in args.model) or {
        "dxaspine": str(shipped_model_path())
    }
    predictors = {name: Predictor(path, "cpu") for name, path in models.items()}
    scans = [
        simulate_scan(seed, i, device)
        for device, seed in seeds.items()
        for i in track(range(args.n), description=f"simulating {device}", console=console)
    ]
    results = {
        "simulated": True,
        "note": "All figures are from SIMULATED scans (dxaspine's physics simulator), "
        "not from patients. BMD/TBS agreement is against scores from the reference masks.",
        "dxaspine": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": args.threads,
        "cohort": {"devices": seeds, "scans_per_device": args.n},
        "models": {name: describe(path) for name, path in models.items()},
        "targets": TARGETS,
        "published_reference": PUBLISHED,
    }
    results |= evaluate(predictors, scans, console)
    results["targets_met"] = targets_met(results, next(iter(predictors)))
    results["single_image"] = evaluate_single_image(args.single_image_model, scans, console)
    print_tables(results, console)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "segmentation.json"
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
