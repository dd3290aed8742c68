"""Copy a trained run's best model into the package as a shipped model.

    .venv/bin/python scripts/ship_model.py build/runs/dual_energy/best.pt dual-energy

Weights are stored as float16 (half the size; predictions checked equal to
float32 on the run's own validation scans is the benchmark's job). The model
file records the recipe that made it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dxaspine.infer import SHIPPED_MODELS, load_model, shipped_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("best", type=Path, help="best.pt of a training run")
    parser.add_argument("kind", choices=sorted(SHIPPED_MODELS))
    parser.add_argument("--recipe", default="make model", help="command that trained it")
    parser.add_argument(
        "--data",
        default="simulated: 591 hologic-like (seed 1001) + 591 lunar-like (seed 1002) scans, "
        "split 50/25/25 by patient (seed 0)",
        help="the training data it saw",
    )
    args = parser.parse_args()
    model = load_model(args.best)
    network = model.network
    name = f"{args.kind} {network.architecture}-{network.base_filters} ({','.join(network.inputs)})"
    model.info = {**model.info, "name": name, "kind": args.kind, "recipe": args.recipe}
    model.info["data_recipe"] = model.info.get("data_recipe") or args.data
    model.info["versions"] = {k: str(v) for k, v in model.info.get("versions", {}).items()}
    path = model.save(shipped_model_path(args.kind), half=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {model.info}")


if __name__ == "__main__":
    main()
