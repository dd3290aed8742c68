"""Simulator speed and cohort statistics: seconds per scan on one core, and
whether simulated anatomy stays inside the documented ranges.

    .venv/bin/python benchmarks/simulate_speed.py [--n 40] [--out benchmarks/results]

Prints a table and writes benchmarks/results/simulate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from dxaspine import __version__
from dxaspine.simulate.devices import DEVICES
from dxaspine.simulate.generate import simulate_scan


def summarise(values: list[float]) -> dict[str, float]:
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {
        "mean": float(np.mean(values)),
        "sd": sd,
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="scans per device profile")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    results: dict = {
        "dxaspine": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "n_per_device": args.n,
        "devices": {},
    }
    for name in DEVICES:
        seconds, areas, bmds, softs, l1_ratio = [], [], [], [], []
        simulate_scan(args.seed, 0, name)  # warm-up: loads tables
        for i in range(args.n):
            start = time.perf_counter()
            scan = simulate_scan(args.seed, i, name)
            seconds.append(time.perf_counter() - start)
            truth = scan.meta["truth"]
            vertebrae = truth["vertebrae"]
            areas += [v["area_cm2"] for v in vertebrae.values()]
            bmds.append(truth["total_bmd_g_cm2"])
            softs.append(truth["soft_tissue_g_cm2"])
            rest = np.mean([vertebrae[k]["bmd_g_cm2"] for k in ("L2", "L3", "L4")])
            l1_ratio.append(vertebrae["L1"]["bmd_g_cm2"] / rest)
        results["devices"][name] = {
            "shape": list(scan.shape),
            "spacing_mm": list(scan.spacing_mm),
            "seconds_per_scan_median": statistics.median(seconds),
            "seconds_per_scan_max": max(seconds),
            "vertebra_area_cm2": summarise(areas),
            "total_bmd_g_cm2": summarise(bmds),
            "soft_tissue_g_cm2": summarise(softs),
            "l1_over_l2_l4_bmd": summarise(l1_ratio),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "simulate_speed.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(
        f"{'device':14} {'shape':>10} {'s/scan':>7} {'area cm2':>14} {'BMD g/cm2':>14} "
        f"{'soft g/cm2':>14} {'L1/L2-4':>8}"
    )
    for name, r in results["devices"].items():
        a, b, s, q = (
            r["vertebra_area_cm2"],
            r["total_bmd_g_cm2"],
            r["soft_tissue_g_cm2"],
            r["l1_over_l2_l4_bmd"],
        )
        print(
            f"{name:14} {'x'.join(map(str, r['shape'])):>10} {r['seconds_per_scan_median']:7.3f} "
            f"{a['mean']:6.1f} ({a['sd']:4.1f}) {b['mean']:6.3f} ({b['sd']:5.3f}) "
            f"{s['mean']:6.1f} ({s['sd']:4.1f}) {q['mean']:8.3f}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
