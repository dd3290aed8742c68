"""`dxaspine study`: the published study's protocol, run on a simulated cohort.

`run_study(out, StudyConfig(...))` is the Python twin of the command. Each
step leaves a plain folder in OUT, so any step can be inspected or rerun by
hand with the ordinary commands:

1. `cohort/<device>/`: `n_scans` simulated scans, split evenly over the
   device profiles; device i of `devices` uses seed `seed + i` (so no two
   profiles share a patient).
2. `split.json`: 50/25/25 by patient within each profile
   (`train.split_by_patient`, with the profile's seed); train/val/test hold
   the scans of the training profiles, `held_out` every scan of the others.
3. `sets/<name>/`: hard links to the scans of each set (train, val, test,
   device-<profile>), so `dxaspine evaluate --cohort OUT/sets/test` repeats
   an evaluation.
4. `run/`: training (`dxaspine train` on the train set, validated on val),
   unless `pretrained` (the shipped model) or `model` (a model file).
5. `validation/`, `test/`, `device-<profile>/`: `evaluate_model` on each
   set, each with its own report.html.
6. `study.json` and `report.html`: our figures next to the published ones.

The cohort is always simulated, and every page and table says so. A profile
left out of `train_devices` is an unseen device only for a model trained in
the study: the shipped model was trained on both profiles, and the report
says that instead of calling it unseen.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dxaspine.io._common import write_file_atomic

if TYPE_CHECKING:
    from dxaspine.train import TrainConfig

DEVICES = ("hologic-like", "lunar-like")
SHIPPED_TRAINING_SEEDS = (1001, 1002)
"""Cohort seeds the shipped models were trained on (the Makefile's `make model`)."""
SHIPPED_TRAINING_DEVICES = ("hologic-like", "lunar-like")
MIN_SCANS_PER_DEVICE = 4
"""The fewest scans per profile for which every 50/25/25 split is non-empty."""
CONFIG_FILE = "study_config.json"


def default_train_config() -> TrainConfig:
    """The shipped dual-energy model's recipe: U-Net, 16 filters, both energies and
    their soft-tissue-cancelled difference, 40 epochs."""
    from dxaspine.network import NetworkConfig
    from dxaspine.train import TrainConfig

    return TrainConfig(
        network=NetworkConfig(),  # its defaults are the shipped dual-energy network
        epochs=40,
        max_val_scans=100,
    )


@dataclass(frozen=True)
class StudyConfig:
    """Everything `dxaspine study` depends on; saved as study_config.json."""

    n_scans: int = 1182
    seed: int = 3000
    devices: tuple[str, ...] = DEVICES
    train_devices: tuple[str, ...] | None = None
    """Profiles the model is trained (and validated and tested) on; None: all of `devices`."""
    pretrained: bool = False
    """Evaluate the shipped model instead of training one."""
    model: Path | None = None
    """Evaluate this model file instead of training one."""
    train: TrainConfig = field(default_factory=default_train_config)
    jobs: int = 1
    n_bootstrap: int = 1000
    device: str = "auto"
    worst: int = 6
    resume: bool = False
    """Continue an interrupted training run in OUT/run."""

    @property
    def training_devices(self) -> tuple[str, ...]:
        return tuple(self.train_devices or self.devices)

    @property
    def held_out_devices(self) -> tuple[str, ...]:
        return tuple(d for d in self.devices if d not in self.training_devices)

    def device_seeds(self) -> dict[str, int]:
        return {device: self.seed + i for i, device in enumerate(self.devices)}

    def device_counts(self) -> dict[str, int]:
        share, extra = divmod(self.n_scans, len(self.devices))
        return {device: share + (i < extra) for i, device in enumerate(self.devices)}

    def check(self) -> None:
        """ValueError, saying how to fix it, for a study that cannot run."""
        from dxaspine.simulate.devices import DEVICES as PROFILES

        unknown = [d for d in (*self.devices, *self.training_devices) if d not in PROFILES]
        if unknown:
            raise ValueError(
                f"unknown device profile(s) {', '.join(unknown)}; choose from {', '.join(PROFILES)}"
            )
        if not set(self.training_devices) <= set(self.devices):
            raise ValueError("--train-devices must be among the study's device profiles")
        if self.n_scans < MIN_SCANS_PER_DEVICE * len(self.devices):
            raise ValueError(
                f"--n must be at least {MIN_SCANS_PER_DEVICE * len(self.devices)} "
                f"({MIN_SCANS_PER_DEVICE} per device profile, so that no split is empty)"
            )
        if self.pretrained and self.model is not None:
            raise ValueError("give --pretrained (the shipped model) or --model PATH, not both")
        if self.pretrained:
            shared = sorted(set(self.device_seeds().values()) & set(SHIPPED_TRAINING_SEEDS))
            if shared:
                raise ValueError(
                    f"seed {shared[0]} is a seed the shipped model was trained on "
                    f"({', '.join(map(str, SHIPPED_TRAINING_SEEDS))}): choose another --seed"
                )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = None if self.model is None else str(self.model)
        trains = not self.pretrained and self.model is None
        data["train"] = self.train.to_dict() if trains else None
        return data


def run_study(out_dir: Path | str, config: StudyConfig | None = None, quiet: bool = False) -> dict:
    """Run the study into `out_dir` (see the module doc); return the study record
    (also written as study.json). ValueError on a bad configuration or folder."""
    from rich.console import Console

    from dxaspine.study_report import STUDY_NOTE

    config = config or StudyConfig()
    config.check()
    out = Path(out_dir)
    _claim_folder(out, config)
    console = Console(stderr=True, quiet=quiet)
    started = time.perf_counter()

    console.print(f"simulating {config.n_scans} scans into {out / 'cohort'}")
    cohort = _simulate(out, config, quiet)
    split, by_device = _split(cohort, config)
    write_file_atomic(out / "split.json", json.dumps(split, indent=2) + "\n")
    sets = {"train": "train", "validation": "val", "test": "test"}
    sets |= {f"device-{d}": f"device-{d}" for d in config.held_out_devices}
    folders = _link_sets(out, cohort, split, by_device, config)

    model_path, model = _model(out, config, folders, quiet, console)
    from dxaspine.infer import Predictor

    predictor = Predictor(model_path, config.device)
    unseen = _unseen_statement(config, model)
    evaluations: dict[str, dict[str, Any]] = {}
    for name, folder_name in sets.items():
        if name == "train":
            continue
        heading = _heading(name, config, unseen)
        console.print(f"evaluating {heading}: {folders[folder_name]}")
        _evaluate(folders[folder_name], out / name, predictor, config, quiet)
        evaluations[name] = {"folder": str(out / name), "heading": heading}

    study = {
        "simulated": True,
        "note": STUDY_NOTE,
        "out": str(out),
        "config": config.to_dict(),
        "cohort": {
            device: {"scans": len(entries), "seed": config.device_seeds()[device]}
            for device, entries in cohort.items()
        },
        "split_sizes": {name: len(ids) for name, ids in split.items()},
        "model": model,
        "unseen_device": unseen,
        "evaluations": evaluations,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_file_atomic(out / "study.json", json.dumps(study, indent=2) + "\n")
    path = write_study_report(out, study, config.worst)
    console.print(f"study report: {path}")
    return study


def write_study_report(out: Path, study: dict[str, Any], worst: int = 6) -> Path:
    """OUT/report.html from study.json's record and each evaluation folder."""
    from dxaspine.report_html import load_evaluation
    from dxaspine.study_report import render_study

    reports = {
        name: load_evaluation(entry["folder"], worst)
        for name, entry in study["evaluations"].items()
    }
    return write_file_atomic(out / "report.html", render_study(study, reports))


# --------------------------------------------------------------------------- steps


def _claim_folder(out: Path, config: StudyConfig) -> None:
    """OUT must be new, empty, or an earlier study's folder (then its outputs are replaced)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG_FILE).is_file():
        raise ValueError(
            f"{out}: holds other files; choose a new or empty folder for the study "
            f"(a study folder has {CONFIG_FILE})"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def _simulate(out: Path, config: StudyConfig, quiet: bool) -> dict[str, list[dict[str, str]]]:
    """Simulate each profile's share; the cohort.csv rows per device."""
    from dxaspine.simulate.cohort import CohortConfig, simulate_cohort

    cohort = {}
    seeds, counts = config.device_seeds(), config.device_counts()
    for device in config.devices:
        folder = out / "cohort" / device
        simulate_cohort(
            CohortConfig(
                n_scans=counts[device], seed=seeds[device], device=device, jobs=config.jobs
            ),
            folder,
            show_progress=not quiet,
        )
        with (folder / "cohort.csv").open(newline="", encoding="utf-8") as handle:
            cohort[device] = [
                row | {"path": str(folder / row["file"])} for row in csv.DictReader(handle)
            ]
    return cohort


def _split(
    cohort: dict[str, list[dict[str, str]]], config: StudyConfig
) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """split.json (train/val/test of the training profiles, held_out of the rest) and
    each device's scan id -> split name."""
    from dxaspine.train import split_by_patient

    split: dict[str, list[str]] = {"train": [], "val": [], "test": [], "held_out": []}
    by_device: dict[str, dict[str, str]] = {}
    for device, rows in cohort.items():
        ids = [(r["scan_id"], r["patient_id"]) for r in rows]
        parts = split_by_patient(ids, config.device_seeds()[device])
        by_device[device] = {scan_id: name for name, ids in parts.items() for scan_id in ids}
        if device in config.training_devices:
            for name, ids in parts.items():
                split[name].extend(ids)
        else:
            split["held_out"].extend(r["scan_id"] for r in rows)
    return split, by_device


def _link_sets(
    out: Path,
    cohort: dict[str, list[dict[str, str]]],
    split: dict[str, list[str]],
    by_device: dict[str, dict[str, str]],
    config: StudyConfig,
) -> dict[str, Path]:
    """OUT/sets/<name>: hard links (copies where links fail) to each set's scans."""
    folders: dict[str, Path] = {}
    members: dict[str, list[Path]] = {}
    for device, rows in cohort.items():
        for row in rows:
            if device in config.training_devices:
                name = by_device[device][row["scan_id"]]
            else:
                name = f"device-{device}"
            members.setdefault(name, []).append(Path(row["path"]))
    for name in ("train", "val", "test", *(f"device-{d}" for d in config.held_out_devices)):
        folder = out / "sets" / name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.npz"):
            stale.unlink()
        for source in members.get(name, []):
            target = folder / source.name
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        folders[name] = folder
    return folders


def _model(
    out: Path, config: StudyConfig, folders: dict[str, Path], quiet: bool, console
) -> tuple[Path | None, dict[str, Any]]:
    """The model file to evaluate (None: the shipped models) and its description."""
    from dxaspine.infer import DEFAULT_MODELS, load_model, shipped_model_path

    if config.pretrained:
        info = load_model(shipped_model_path(DEFAULT_MODELS["dual-energy"])).info
        recipe = info.get("data_recipe") or (
            "1182 simulated scans of both profiles (seeds "
            f"{' and '.join(map(str, SHIPPED_TRAINING_SEEDS))})"
        )
        return None, {
            "source": "shipped",
            "name": info.get("name", ""),
            "trained_on_devices": list(SHIPPED_TRAINING_DEVICES),
            "description": f"the shipped model ({info.get('name', 'dual-energy')}), trained by "
            f"`make model` on {recipe}; not trained in this study.",
        }
    if config.model is not None:
        from dxaspine.simulate.devices import DEVICES as PROFILES

        info = load_model(config.model).info
        recipe = str(info.get("data_recipe") or "")
        named = [device for device in PROFILES if device in recipe]
        return config.model, {
            "source": str(config.model),
            "name": info.get("name", ""),
            "trained_on_devices": named or None,
            "description": f"{config.model} ({info.get('name', 'unnamed')}), trained outside "
            "this study"
            + (
                f" on: {recipe} (training profiles read from this recipe)."
                if named
                else "; the file does not record its training profiles."
            ),
        }
    from dxaspine.train import train

    n_train = len(list(folders["train"].glob("*.npz")))
    console.print(f"training on {n_train} scans into {out / 'run'}")
    devices = ", ".join(config.training_devices)
    best = train(
        out / "cohort",
        out / "run",
        config.train,
        out / "split.json",  # train/val/test of the training profiles; held_out is not read
        resume=config.resume,
        quiet=quiet,
        name=f"study {config.train.network.architecture}-{config.train.network.base_filters}",
        data_recipe=f"dxaspine study: {config.n_scans} simulated scans, seed {config.seed}; "
        f"train split of {devices}",
    )
    info = load_model(best).info
    network = config.train.network
    return best, {
        "source": "trained in this study",
        "file": str(best),
        "name": info.get("name", ""),
        "trained_on_devices": list(config.training_devices),
        "best_epoch": info.get("epoch"),
        "val_dice_vertebrae": info.get("val_dice_vertebrae"),
        "description": f"{network.architecture} ({', '.join(network.inputs)}), "
        f"{network.base_filters} base filters, trained in this study on the train split of "
        f"{devices} ({n_train} scans, up to {config.train.epochs} epochs; best "
        f"epoch {info.get('epoch')}, validation Dice L1-L4 "
        f"{float(info.get('val_dice_vertebrae', float('nan'))):.4f}).",
    }


def _unseen_statement(config: StudyConfig, model: dict[str, Any]) -> dict[str, Any]:
    """Whether the held-out profiles are unseen by the evaluated model, said plainly."""
    held = list(config.held_out_devices)
    trained_on = model.get("trained_on_devices")
    if not held:
        status = "none"
        note = (
            "No unseen-device cohort: the model is evaluated on the profiles it was trained on "
            f"({', '.join(config.training_devices)}). Run the study with --train-devices "
            f"{config.devices[0]} to hold the other profile out as an unseen device."
        )
    elif trained_on is None:
        status = "unknown"
        note = (
            f"{', '.join(held)}: every scan of this profile is evaluated, but the model file "
            "does not record its training profiles, so whether this device is unseen is unknown."
        )
    elif set(held) & set(trained_on):
        status = "not unseen"
        who = "the shipped model" if model.get("source") == "shipped" else "the model"
        note = (
            f"{', '.join(held)} is NOT an unseen device for this model: {who} was trained on "
            f"{', '.join(trained_on)}. Its cohort is reported below as a per-device figure "
            "only. Train in the study (without --pretrained or --model) with --train-devices "
            "to measure an unseen device."
        )
    else:
        status = "unseen"
        note = (
            f"{', '.join(held)} is an unseen device: the model was trained on "
            f"{', '.join(trained_on)} only, and every scan of the held-out profile is evaluated."
        )
    return {"devices": held, "status": status, "note": note}


def _heading(name: str, config: StudyConfig, unseen: dict[str, Any]) -> str:
    devices = ", ".join(config.training_devices)
    if name == "validation":
        return f"Validation split ({devices})"
    if name == "test":
        return f"Test split ({devices})"
    device = name.removeprefix("device-")
    label = {"unseen": "Unseen device", "not unseen": "Other device, NOT unseen"}.get(
        unseen["status"], "Other device"
    )
    return f"{label}: {device} (every scan)"


def _evaluate(folder: Path, out: Path, predictor, config: StudyConfig, quiet: bool) -> None:
    from rich.progress import Progress

    from dxaspine.cohort_evaluation import PREDICTIONS_FOLDER, evaluate_model
    from dxaspine.pairing import reference_paths

    predictions = out / PREDICTIONS_FOLDER
    if predictions.is_dir():
        shutil.rmtree(predictions)  # the study's own output of an earlier run
    n_scans = len(reference_paths(folder))
    with Progress(disable=quiet, transient=True) as progress:
        tasks = {s: progress.add_task(s + "ing", total=n_scans) for s in ("segment", "evaluate")}
        evaluate_model(
            folder,
            out,
            model=predictor,
            progress=lambda stage, _name: progress.advance(tasks[stage]),
            n_bootstrap=config.n_bootstrap,
            seed=config.seed,
            worst=config.worst,
        )
