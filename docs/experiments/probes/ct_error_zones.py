"""Where models gain or lose union Dice on a CT-derived scan, by zone.

Each pixel a model gets wrong on the union mask (reference pixel left out, or
pixel added outside the reference) is put in one zone of rows, read off the
reference labels: 'cranial end' (within 3 mm of L1's top row, or above it),
'caudal end' (the same at L4's bottom), 'disc' (from 3 mm above the bottom of
Ln to 3 mm below the top of Ln+1) and 'mid-body' (every other row: there an
error lies at the column's sides). Pixels in both masks with another level's
label are counted apart ('relabelled'; they move per-vertebra Dice, not the
union), and the mean L1-L4 Dice over the levels the reference holds. Means
over both poses, both device profiles and photon-noise draws 0..draws-1, in
cm2 per scan. SIMULATED scans: real anatomy, dxaspine's image.

    python docs/experiments/probes/ct_error_zones.py CT LABELS [--draws 8] \
        --model incumbent=dual-energy-bone --model bmd07s0=build/runs/bmd07s0/best.pt ...
"""

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

from dxaspine.infer import Predictor
from dxaspine.metrics import dice
from dxaspine.simulate.ct_scan import project_ct, scan_from_projection

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import realism

ZONES = ("cranial end", "disc", "mid-body", "caudal end")
BAND_MM = 3.0


def row_zones(labels: np.ndarray, row_mm: float) -> np.ndarray:
    """The zone index (into ZONES) of every row of the image."""
    band = round(BAND_MM / row_mm)
    rows = {v: np.flatnonzero((labels == v).any(axis=1)) for v in range(1, 5)}
    present = [v for v in range(1, 5) if rows[v].size]
    zone = np.full(labels.shape[0], ZONES.index("mid-body"))
    for upper, lower in itertools.pairwise(present):
        zone[max(rows[upper].max() - band, 0) : rows[lower].min() + band + 1] = ZONES.index("disc")
    zone[: rows[present[0]].min() + band + 1] = ZONES.index("cranial end")
    zone[max(rows[present[-1]].max() - band, 0) :] = ZONES.index("caudal end")
    return zone


def error_zones(predicted: np.ndarray, labels: np.ndarray, spacing_mm) -> dict[str, float]:
    """Missed and added union pixels per zone, and relabelled pixels, in cm2."""
    pixel_cm2 = spacing_mm[0] * spacing_mm[1] / 100
    zone = row_zones(labels, spacing_mm[0])[:, None] * np.ones(labels.shape[1], dtype=int)
    missed = (labels > 0) & (predicted == 0)
    added = (labels == 0) & (predicted > 0)
    out = {}
    for index, name in enumerate(ZONES):
        out[f"missed {name}"] = float((missed & (zone == index)).sum() * pixel_cm2)
        out[f"added {name}"] = float((added & (zone == index)).sum() * pixel_cm2)
    relabelled = (labels > 0) & (predicted > 0) & (labels != predicted)
    out["relabelled"] = float(relabelled.sum() * pixel_cm2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct", type=Path)
    parser.add_argument("labels", type=Path)
    parser.add_argument("--model", action="append", required=True, help="name=path or kind")
    parser.add_argument("--draws", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = dict(item.split("=", 1) for item in args.model)
    predictors = {name: Predictor(path, "cpu") for name, path in models.items()}
    rows = {name: [] for name in models}
    dices = {name: [] for name in models}
    level_dices = {name: [] for name in models}
    for pose in ("ct", "dxa"):
        projection, source = project_ct(args.ct, args.labels, pose=pose)
        for device in ("hologic-like", "lunar-like"):
            for draw in range(args.draws):
                scan = scan_from_projection(projection, source, device, draw)
                for name, predictor in predictors.items():
                    predicted = predictor.segment(scan).labels
                    rows[name].append(error_zones(predicted, scan.labels, scan.spacing_mm))
                    dices[name].append(dice(predicted > 0, scan.labels > 0))
                    level_dices[name].append(realism.mean_vertebra_dice(predicted, scan.labels))
    keys = list(next(iter(rows.values()))[0])
    print(f"{args.ct.name}: mean cm2 per scan over 2 poses x 2 devices x {args.draws} draws")
    header = " ".join(f"{k[:16]:>16}" for k in keys)
    print(f"{'model':<12} {'union':>6} {'L1-L4':>6} {header}")
    for name in models:
        means = " ".join(f"{np.mean([r[k] for r in rows[name]]):16.2f}" for k in keys)
        print(f"{name:<12} {np.mean(dices[name]):6.3f} {np.mean(level_dices[name]):6.3f} {means}")


if __name__ == "__main__":
    main()
