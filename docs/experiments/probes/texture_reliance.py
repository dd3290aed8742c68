"""Does a model need the trabecular texture to find the spine? (docs/experiments/probes.md)

Union Dice of a model on procedural scans (seed 3001, the first 16 per profile)
rendered with and without the trabecular texture (`RenderOptions(texture=False)`),
at the device's dose and at 16 times it. All scans are SIMULATED.

    .venv/bin/python docs/experiments/probes/texture_reliance.py [MODEL]
"""

import dataclasses
import sys

import numpy as np
import torch

from dxaspine.infer import Predictor
from dxaspine.metrics import dice
from dxaspine.simulate.devices import get_device
from dxaspine.simulate.generate import RenderOptions, simulate_scan

SCANS = 16

if __name__ == "__main__":
    torch.set_num_threads(1)
    model = sys.argv[1] if len(sys.argv) > 1 else "dual-energy-bone"
    predictor = Predictor(model, "cpu")
    for name in ("hologic-like", "lunar-like"):
        device = get_device(name)
        for dose in (1.0, 16.0):
            at_dose = dataclasses.replace(device, photons_per_pixel=device.photons_per_pixel * dose)
            for texture in (True, False):
                options = RenderOptions(texture=texture)
                scores = []
                for index in range(SCANS):
                    scan = simulate_scan(3001, index, at_dose, options=options)
                    scores.append(dice(predictor.segment(scan).labels > 0, scan.labels > 0))
                scores = np.array(scores)
                print(
                    f"{model} {name} dose x{dose:g} texture {'on ' if texture else 'off'}: "
                    f"union Dice {scores.mean():.3f} (min {scores.min():.3f})",
                    flush=True,
                )
