"""Does a model hold low-density bone? (docs/experiments/probes.md)

Procedural scans (seed 3001, the first 16 per profile) rendered with every
vertebra's target BMD scaled by 1, 0.75 and 0.55 (everything else unchanged):
the model's union Dice and the area it misses and adds. All scans are SIMULATED.

    .venv/bin/python docs/experiments/probes/low_bmd.py [MODEL]
"""

import dataclasses
import sys

import numpy as np
import torch

from dxaspine.infer import Predictor
from dxaspine.metrics import dice
from dxaspine.simulate.case import sample_case
from dxaspine.simulate.devices import get_device
from dxaspine.simulate.generate import render_case

SCANS = 16
SEED = 3001


def with_bmd_scaled(case, factor: float):
    vertebrae = tuple(
        dataclasses.replace(v, bmd_target_g_cm2=v.bmd_target_g_cm2 * factor) for v in case.vertebrae
    )
    return dataclasses.replace(case, vertebrae=vertebrae)


if __name__ == "__main__":
    torch.set_num_threads(2)
    model = sys.argv[1] if len(sys.argv) > 1 else "dual-energy-bone"
    predictor = Predictor(model, "cpu")
    for name in ("hologic-like", "lunar-like"):
        device = get_device(name)
        for factor in (1.0, 0.75, 0.55):
            union, missed, added, bmd = [], [], [], []
            for index in range(SCANS):
                case = sample_case(np.random.default_rng([SEED, index]), f"s{SEED}-{index:05d}")
                noise = np.random.default_rng([SEED, index, 1])
                scan = render_case(with_bmd_scaled(case, factor), device, noise)
                predicted, reference = predictor.segment(scan).labels > 0, scan.labels > 0
                pixel_cm2 = scan.spacing_mm[0] * scan.spacing_mm[1] / 100
                union.append(dice(predicted, reference))
                missed.append((reference & ~predicted).sum() * pixel_cm2)
                added.append((predicted & ~reference).sum() * pixel_cm2)
                bmd.append(scan.meta["truth"]["total_bmd_g_cm2"])
            print(
                f"{model} {name} BMD x{factor}: true L1-L4 BMD {np.mean(bmd):.2f} "
                f"({min(bmd):.2f}..{max(bmd):.2f}); union Dice {np.mean(union):.3f} "
                f"(min {min(union):.3f}); missed {np.mean(missed):.1f} cm2, "
                f"added {np.mean(added):.1f} cm2",
                flush=True,
            )
