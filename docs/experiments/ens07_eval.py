"""Evaluate ens07 (docs/experiments/ens07.prereg.md): the mean softmax of the two
noise07 seeds against the shipped dual-energy-bone, on the selection cohort and
the CT-derived scans (8 noise draws). All figures are from SIMULATED scans.

    .venv/bin/python docs/experiments/ens07_eval.py CXR MASK EXAMPLE_CT EXAMPLE_SEG OUT.json
"""

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from realism import noise_draw_dice
from segmentation import evaluate, print_tables, targets_met

from dxaspine.infer import Predictor, load_model, predict_probabilities
from dxaspine.preprocess import network_input, probabilities_to_labels
from dxaspine.simulate.ct_scan import project_ct
from dxaspine.simulate.generate import simulate_scan

MEMBERS = ["build/runs/noise07s0/best.pt", "build/runs/noise07s1/best.pt"]
INCUMBENT = "src/dxaspine/models/dual_energy_bone.pt"


class EnsemblePredictor(Predictor):
    """Labels from the mean of the members' class probabilities."""

    def __init__(self, paths):
        super().__init__(paths[0], "cpu")
        self.members = [load_model(p, "cpu") for p in paths]

    def raw_labels(self, scan, model=None):
        probabilities = np.mean(
            [
                predict_probabilities(m, network_input(scan, m.network.inputs, m.preprocessing))
                for m in self.members
            ],
            axis=0,
        )
        return probabilities_to_labels(probabilities, scan.shape)


def main():
    cxr, mask, example_ct, example_seg, out = sys.argv[1:6]
    torch.set_num_threads(2)
    console = Console(width=170)
    predictors = {"incumbent": Predictor(INCUMBENT, "cpu"), "ens07": EnsemblePredictor(MEMBERS)}
    scans = [
        simulate_scan(seed, i, device)
        for device, seed in (("hologic-like", 4001), ("lunar-like", 4002))
        for i in range(40)
    ]
    selection = evaluate(predictors, scans, console)
    selection["targets_met"] = targets_met(selection, "ens07")
    selection["single_image"] = None
    print_tables(selection, console)
    ct = {name: [] for name in predictors}
    for (ct_path, labels_path), pose in itertools.product(
        ((cxr, mask), (example_ct, example_seg)), ("ct", "dxa")
    ):
        projection, source = project_ct(ct_path, labels_path, pose=pose)
        for device, (name, predictor) in itertools.product(
            ("hologic-like", "lunar-like"), predictors.items()
        ):
            draws = noise_draw_dice(predictor, projection, source, device, 8)["union"]
            ct[name].append(
                {"scan_id": source["scan_id"], "device": device, "ct_file": source["ct_file"],
                 "union_dice": draws}
            )
            console.print(name, source["scan_id"], device, f"{np.mean(draws):.3f}")
    summary = {}
    for name, rows in ct.items():
        by_ct = {}
        for row in rows:
            by_ct.setdefault(row["ct_file"], []).append(np.mean(row["union_dice"]))
        summary[name] = {f: float(np.mean(v)) for f, v in by_ct.items()}
        summary[name]["mean_of_cts"] = float(np.mean(list(summary[name].values())))
    console.print(summary)
    Path(out).write_text(
        json.dumps({"simulated": True, "selection": selection, "ct": ct, "ct_summary": summary},
                   indent=1, default=float) + "\n"
    )


if __name__ == "__main__":
    main()
