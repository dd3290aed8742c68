"""Evaluate loco (docs/experiments/loco.prereg.md): union and mean L1-L4 Dice of
the base, the control and the two leave-one-CT-out runs on both CTs (both poses,
both profiles, the realism benchmark's 8 noise draws). All figures are from
SIMULATED scans.

    .venv/bin/python docs/experiments/loco/loco_eval.py CXR MASK EXAMPLE_CT EXAMPLE_SEG OUT.json
"""

import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from realism import noise_draw_dice

from dxaspine.infer import Predictor, SegmentationModel
from dxaspine.network import build_model
from dxaspine.simulate.ct_scan import project_ct
from dxaspine.train import TrainConfig

BASE = "build/runs/bmd07s1/best.pt"
RUNS = ("loco_none", "loco_cxr", "loco_abd")
DRAWS = 8


def last_epoch_model(run: str) -> Path:
    """The run's last.pt weights as a model file (validation saw no CT, so the
    pre-registration reads the last epoch, not the best validation epoch)."""
    run_dir = Path("build/runs") / run
    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    module = build_model(config.network)
    module.load_state_dict(state["module"])
    info = {"name": run, "epoch": state["epoch"]}
    model = SegmentationModel(config.network, config.preprocessing, module, info)
    return model.save(run_dir / f"epoch{state['epoch']}.pt")


def validation_at_last_epoch(run: str) -> dict:
    with (Path("build/runs") / run / "metrics.csv").open(newline="") as handle:
        row = list(csv.DictReader(handle))[-1]
    return {k: float(row[k]) for k in ("epoch", "val_dice_vertebrae", "val_dice_union")}


def main():
    cxr, mask, example_ct, example_seg, out = sys.argv[1:6]
    torch.set_num_threads(2)
    models = {"base": Path(BASE), **{run: last_epoch_model(run) for run in RUNS}}
    predictors = {name: Predictor(path, "cpu") for name, path in models.items()}
    results = {name: {} for name in predictors}
    for (ct_path, labels_path), pose in itertools.product(
        ((cxr, mask), (example_ct, example_seg)), ("ct", "dxa")
    ):
        projection, source = project_ct(ct_path, labels_path, pose=pose)
        ct_name = source["patient_id"]
        for device, (name, predictor) in itertools.product(
            ("hologic-like", "lunar-like"), predictors.items()
        ):
            draws = noise_draw_dice(predictor, projection, source, device, DRAWS)
            entry = results[name].setdefault(ct_name, {"union": [], "vertebrae": [], "scans": []})
            entry["union"] += draws["union"]
            entry["vertebrae"] += draws["vertebrae"]
            entry["scans"].append(
                {
                    "pose": pose,
                    "device": device,
                    "union": float(np.mean(draws["union"])),
                    "vertebrae": float(np.mean(draws["vertebrae"])),
                }
            )
            print(
                f"{name:10s} {source['scan_id']:18s} {device:13s} "
                f"union {np.mean(draws['union']):.3f}  L1-L4 {np.mean(draws['vertebrae']):.3f}",
                flush=True,
            )
    summary = {
        name: {
            ct: {
                "union_dice": round(float(np.mean(v["union"])), 4),
                "vertebra_dice": round(float(np.mean(v["vertebrae"])), 4),
                "scans": v["scans"],
            }
            for ct, v in by_ct.items()
        }
        for name, by_ct in results.items()
    }
    for run in RUNS:
        summary[run]["validation_last_epoch"] = validation_at_last_epoch(run)
    print("\nSIMULATED scans; mean over both poses, both profiles and 8 noise draws")
    print(f"{'model':10s} {'ct-cxr union / L1-L4':>22s} {'ct-example_ct union / L1-L4':>28s}")
    for name, by_ct in summary.items():
        c, a = by_ct["ct-cxr"], by_ct["ct-example_ct"]
        print(
            f"{name:10s} {c['union_dice']:>12.3f} / {c['vertebra_dice']:.3f}"
            f" {a['union_dice']:>18.3f} / {a['vertebra_dice']:.3f}"
        )
    Path(out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
