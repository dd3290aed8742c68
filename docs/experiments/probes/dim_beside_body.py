"""Does the model leave out bone beside the bodies because it is faint?

Procedural scans are rendered twice through the same physics and photon-noise
draw: as they are, and with the vertebral mineral of the posterior-element
pixels beside each body (`benchmarks/realism.py`'s `beside_body`) lowered to
at most FRACTION of that body's median mineral, the level both CTs show
(`beside_body.py`: 0.19-0.40, median 0.29). The removed mineral is taken out
of the bone map; labels, soft tissue and everything else stay. For each
model: union Dice, and the share of the labels' beside-body area it leaves out
(`miss_breakdown`). SIMULATED scans.

    python docs/experiments/probes/dim_beside_body.py [--n 16] [--fraction 0.29] \
        --model incumbent=dual-energy-bone --model bmd07s0=build/runs/bmd07s0/best.pt
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from dxaspine.infer import Predictor
from dxaspine.metrics import dice
from dxaspine.simulate.generate import RenderOptions, simulate_scan

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import realism

CLEAN = RenderOptions(noise=False, truth_maps=True)


def dimmed_bone(scan, fraction: float) -> tuple[np.ndarray, float]:
    """The scan's bone map with the beside-body vertebral mineral capped at
    `fraction` of its body's median; and the mineral removed, g (for the record)."""
    maps, labels = scan.truth_maps, scan.labels
    body_labels = maps["body_labels"]
    vertebral = maps["vertebral_bone_g_cm2"]
    beside = realism.beside_body(labels, body_labels)
    removed = np.zeros_like(vertebral)
    for level in range(1, 5):
        body = body_labels == level
        pixels = beside & (labels == level)
        if body.any() and pixels.any():
            cap = fraction * np.median(vertebral[body])
            removed[pixels] = np.clip(vertebral[pixels] - cap, 0, None)
    pixel_cm2 = scan.spacing_mm[0] * scan.spacing_mm[1] / 100
    return maps["bone_g_cm2"] - removed, float(removed.sum() * pixel_cm2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="name=path or kind")
    parser.add_argument("--n", type=int, default=16, help="scans per profile")
    parser.add_argument("--seed", type=int, default=3001)
    parser.add_argument("--fraction", type=float, default=0.29)
    args = parser.parse_args()
    torch.set_num_threads(2)
    predictors = {
        name: Predictor(path, "cpu") for name, path in (m.split("=", 1) for m in args.model)
    }
    print(f"beside-body mineral capped at {args.fraction} of the body's median; seed {args.seed}")
    print("model        profile       bone     union Dice (min)    beside-body left out")
    for device in ("hologic-like", "lunar-like"):
        results = {(n, k): [] for n in predictors for k in ("as drawn", "dimmed")}
        removed_g = []
        for index in range(args.n):
            clean = simulate_scan(args.seed, index, device, options=CLEAN)
            if clean.truth_maps["titanium_g_cm2"].any():
                continue  # the re-render carries bone and soft tissue only
            dimmed, removed = dimmed_bone(clean, args.fraction)
            removed_g.append(removed)
            soft = (clean.truth_maps["lean_g_cm2"], clean.truth_maps["adipose_g_cm2"])
            for kind, bone in (("as drawn", clean.truth_maps["bone_g_cm2"]), ("dimmed", dimmed)):
                rng = np.random.default_rng([args.seed, index, 7])
                scan = realism.rendered(clean, (bone, *soft), clean.labels, rng)
                for name, predictor in predictors.items():
                    predicted = predictor.segment(scan).labels
                    misses = realism.miss_breakdown(
                        predicted, clean.labels, clean.truth_maps["body_labels"], clean.spacing_mm
                    )
                    share = misses["missed_beside_body_cm2"] / max(
                        misses["reference_beside_body_cm2"], 1e-9
                    )
                    results[name, kind].append(
                        (dice(predicted > 0, clean.labels > 0), share, misses)
                    )
        if not removed_g:
            print(f"{device}: no scan without an implant among the first {args.n}")
            continue
        for (name, kind), rows in results.items():
            dices = [r[0] for r in rows]
            missed = sum(r[2]["missed_beside_body_cm2"] for r in rows)
            total = sum(r[2]["reference_beside_body_cm2"] for r in rows)
            print(
                f"{name:<12} {device:<13} {kind:<8} {np.mean(dices):.3f} ({np.min(dices):.3f})"
                f"       {missed / total:.2f} of {total / len(rows):.2f} cm2 per scan"
            )
        removed = np.mean(removed_g)
        print(f"{device}: {len(removed_g)} scans, mineral removed {removed:.2f} g per scan")


if __name__ == "__main__":
    main()
