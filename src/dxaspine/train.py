"""Training a segmentation network on a folder of scans with reference labels.

A run folder holds everything needed to understand and resume a run:
config.json, labels.json, split.json, metrics.csv (one row per epoch),
best.pt (best validation Dice, a model file `dxaspine segment --model` takes)
and last.pt (weights, optimiser and random state to resume from).
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from dxaspine.infer import SegmentationModel, predict_probabilities, versions
from dxaspine.io._common import write_file_atomic
from dxaspine.labels import VERTEBRAE
from dxaspine.metrics import dice
from dxaspine.network import LossConfig, NetworkConfig, build_model, soft_dice_loss
from dxaspine.preprocess import (
    Preprocessing,
    network_input,
    pixel_noise_sd,
    probabilities_to_labels,
    soft_labels,
)
from dxaspine.scan import Scan, ScanError

SPLITS = ("train", "val", "test")
SCAN_SUFFIXES = (".npz", ".dcm", ".dicom")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation that respects DXA: small rotation and scale (a spacing
    change), shifts, left-right flips, blur, contrast and noise; never a
    vertical flip (L1 is on top). Some batches are cut to a shorter field of
    view; a smooth random background stands in for organs, gas and soft
    tissue that procedural anatomy does not draw (not on the "bone" input,
    where soft tissue cancels). `invert` flips polarity, for exported images."""

    rotation_deg: float = 8.0
    scale: float = 0.2
    shift_mm: float = 12.0
    flip_left_right: bool = True
    contrast: float = 0.15
    noise_sd: float = 0.08
    invert: bool = False
    crop_probability: float = 0.3
    """Share of batches cut to a shorter field of view (a scan or CT that
    shows only part of L1-L4), each image renormalised as a whole scan is."""
    crop_min_mm: float = 96.0
    blur_probability: float = 0.5
    blur_mm: float = 2.5
    """Largest Gaussian blur SD (mm) added: scanners and real anatomy are less
    sharp than simulated edges."""
    background_sd: float = 0.6
    """Largest SD (in normalised image units) of a smooth random field added
    to both energies alike, on a grid of background_cell_mm cells."""
    background_cell_mm: float = 24.0
    anisotropic_blur: bool = False
    """Blur rows and columns with SDs drawn apart (each up to blur_mm), as a
    scanning direction or a CT's slices would, instead of one SD for both."""
    elastic_mm: float = 0.0
    """Largest SD (mm) of a smooth random displacement field (cells of
    elastic_cell_mm) that bends image and labels alike; 0: off."""
    elastic_cell_mm: float = 32.0
    elastic_probability: float = 0.5
    pixel_noise_factor: float = 1.0
    """Largest factor by which an example's own per-pixel noise is raised
    (`pixel_noise_sd` of each input, white noise added per channel, in
    pixel_noise_probability of the examples); 1: off. Scans of low-BMD,
    heavy patients carry up to about twice the procedural cohort's typical
    noise relative to their image's spread (docs/model.md)."""
    pixel_noise_probability: float = 0.5
    pixel_noise_grain_mm: float = 0.0
    """Largest SD (mm), drawn for rows and columns apart, of a Gaussian that
    smooths the added noise into grains or streaks of fine detail (a CT's
    0.7 mm in-plane voxels under 2.5 mm slices, a scanning direction),
    rescaled to the same SD; 0: white noise."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved as config.json."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 40
    batch_size: int = 8
    learning_rate: float = 1e-3
    patience: int = 12
    """Stop after this many epochs without a better validation Dice."""
    patch_px: tuple[int, int] = (208, 160)
    """Training patch on the working grid; covers a whole lumbar DXA field at 1 mm."""
    max_val_scans: int | None = None
    """Validate each epoch on at most this many scans (all when None)."""
    seed: int = 0
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["network"] = self.network.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(
            network=NetworkConfig(**data["network"]),
            preprocessing=Preprocessing(**data["preprocessing"]),
            augment=AugmentConfig(**data["augment"]),
            loss=LossConfig(**{**data["loss"], "ignore": tuple(data["loss"]["ignore"])}),
            **{
                k: (tuple(v) if k == "patch_px" else v)
                for k, v in data.items()
                if k not in ("network", "preprocessing", "augment", "loss")
            },
        )


def scan_files(folder: Path) -> list[Path]:
    """Scan files in a folder (NPZ and DICOM), sorted by name."""
    if not folder.is_dir():
        raise ScanError(str(folder), "no such folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SCAN_SUFFIXES)


def split_by_patient(
    ids: list[tuple[str, str]], seed: int, fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
) -> dict[str, list[str]]:
    """Deterministic train/val/test split of (scan_id, patient_id) pairs by
    patient, so no patient is in two sets (the published 50/25/25 protocol)."""
    patients = sorted({patient for _, patient in ids})
    random.Random(seed).shuffle(patients)
    cut1 = round(len(patients) * fractions[0])
    cut2 = cut1 + round(len(patients) * fractions[1])
    where = {
        p: ("train" if i < cut1 else "val" if i < cut2 else "test") for i, p in enumerate(patients)
    }
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for scan_id, patient in ids:
        split[where[patient]].append(scan_id)
    return split


@dataclass
class Example:
    """One training scan on the working grid, plus its native labels for validation."""

    scan_id: str
    inputs: torch.Tensor
    target: torch.Tensor
    labels: np.ndarray
    shape: tuple[int, int]
    noise_sd: torch.Tensor | None = None
    """Per-pixel noise SD of each input channel (`pixel_noise_sd`), in the
    normalised units of `inputs`; None: not measured (no noise scaling)."""


def make_example(scan: Scan, config: TrainConfig) -> Example:
    if scan.labels is None:
        raise ScanError(scan.meta.get("source", ""), "has no vertebra labels (L1..L4) to train on")
    inputs = network_input(scan, config.network.inputs, config.preprocessing)
    target = soft_labels(scan.labels, inputs.shape[1:])
    return Example(
        str(scan.scan_id),
        torch.from_numpy(inputs),
        torch.from_numpy(target),
        scan.labels,
        scan.shape,
        torch.tensor([pixel_noise_sd(channel) for channel in inputs], dtype=torch.float32),
    )


def augment_batch(
    examples: list[Example], config: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random affine (rotation, scale, shift, flip) into a fixed patch, then
    contrast and noise: one batch of (inputs, soft targets)."""
    aug = config.augment
    rows, cols = config.patch_px
    spacing = config.preprocessing.spacing_mm
    inputs, targets = [], []
    # The random background stands in for soft tissue, which the "bone" input cancels.
    soft_channels = torch.tensor(
        [0.0 if name == "bone" else 1.0 for name in config.network.inputs]
    ).view(1, -1, 1, 1)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    cropped = uniform(0, 1) < aug.crop_probability
    if cropped:
        shortest = min(rows, 16 * math.ceil(aug.crop_min_mm / spacing / 16))
        rows = 16 * int(uniform(shortest / 16, rows / 16 + 1))
        rows = min(max(rows, shortest), config.patch_px[0])
    for ex in examples:
        h, w = ex.inputs.shape[1:]
        angle = math.radians(uniform(-aug.rotation_deg, aug.rotation_deg))
        scale = math.exp(uniform(-aug.scale, aug.scale))
        flip = -1.0 if aug.flip_left_right and uniform(0, 1) < 0.5 else 1.0
        shift_col = uniform(-aug.shift_mm, aug.shift_mm) / spacing
        # A short window may sit anywhere along the spine.
        reach_row = max(aug.shift_mm / spacing, (h - rows) / 2 if cropped else 0.0)
        shift_row = uniform(-reach_row, reach_row)
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        # Output patch pixel offsets (u col, v row) -> input pixel offsets, in
        # normalised coordinates of each grid (align_corners=False).
        theta = torch.tensor(
            [
                [cos * flip * cols / w, -sin * rows / w, 2 * shift_col / w],
                [sin * flip * cols / h, cos * rows / h, 2 * shift_row / h],
            ],
            dtype=torch.float32,
        )[None]
        grid = F.affine_grid(theta, [1, 1, rows, cols], align_corners=False)
        if aug.elastic_mm > 0 and uniform(0, 1) < aug.elastic_probability:
            grid = grid + elastic_offsets(
                (rows, cols),
                (h, w),
                uniform(0, aug.elastic_mm) / spacing,
                aug.elastic_cell_mm / spacing,
                generator,
            )
        image = F.grid_sample(ex.inputs[None], grid, padding_mode="border", align_corners=False)
        target = F.grid_sample(ex.target[None], grid, padding_mode="border", align_corners=False)
        if (
            aug.pixel_noise_factor > 1
            and ex.noise_sd is not None
            and uniform(0, 1) < aug.pixel_noise_probability
        ):
            # Raise the example's own noise SD by a factor f: add sqrt(f^2 - 1) of it.
            factor = uniform(1, aug.pixel_noise_factor)
            extra_sd = ex.noise_sd.view(1, -1, 1, 1) * math.sqrt(factor**2 - 1)
            noise = torch.randn(image.shape, generator=generator)
            if aug.pixel_noise_grain_mm > 0:
                grain = tuple(uniform(0, aug.pixel_noise_grain_mm) / spacing for _ in range(2))
                noise = gaussian_blur(noise, grain)
                noise = noise / noise.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
            image = image + noise * extra_sd
        if uniform(0, 1) < aug.blur_probability and aug.blur_mm > 0:
            sigma = uniform(0, aug.blur_mm) / spacing
            if aug.anisotropic_blur:
                sigma = (sigma, uniform(0, aug.blur_mm) / spacing)
            image = gaussian_blur(image, sigma)
        if aug.background_sd > 0:
            image = image + uniform(0, aug.background_sd) * soft_channels * smooth_field(
                image.shape[2:], aug.background_cell_mm / spacing, generator
            )
        if cropped:
            image = (image - image.mean(dim=(2, 3), keepdim=True)) / image.std(
                dim=(2, 3), keepdim=True
            ).clamp_min(1e-6)
        channels = image.shape[1]
        gain = 1 + torch.empty(1, channels, 1, 1).uniform_(
            -aug.contrast, aug.contrast, generator=generator
        )
        noise = torch.randn(image.shape, generator=generator) * uniform(0, aug.noise_sd)
        image = image * gain + noise
        if aug.invert and uniform(0, 1) < 0.5:
            image = -image
        inputs.append(image)
        targets.append(target)
    return torch.cat(inputs), torch.cat(targets)


def smooth_field(
    shape: tuple[int, int], cell_px: float, generator: torch.Generator
) -> torch.Tensor:
    """A (1, 1, rows, cols) random field of unit SD that varies over about
    `cell_px` pixels: white noise on a coarse grid, upsampled bicubically."""
    coarse = (max(2, math.ceil(shape[0] / cell_px) + 1), max(2, math.ceil(shape[1] / cell_px) + 1))
    noise = torch.randn((1, 1, *coarse), generator=generator)
    field = F.interpolate(noise, size=tuple(shape), mode="bicubic", align_corners=True)
    field = field - field.mean()
    return field / field.std().clamp_min(1e-6)


def elastic_offsets(
    patch: tuple[int, int],
    source: tuple[int, int],
    sd_px: float,
    cell_px: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """A smooth random displacement (SD `sd_px` source pixels per axis, varying
    over about `cell_px`) on a `patch` grid, in grid_sample's normalised
    coordinates of a `source` image: shape (1, rows, cols, 2), x then y."""
    dx = smooth_field(patch, cell_px, generator)[0, 0] * sd_px * 2 / source[1]
    dy = smooth_field(patch, cell_px, generator)[0, 0] * sd_px * 2 / source[0]
    return torch.stack([dx, dy], dim=-1)[None]


def gaussian_blur(image: torch.Tensor, sigma_px: float | tuple[float, float]) -> torch.Tensor:
    """Separable Gaussian blur of (batch, channels, rows, cols), edges reflected;
    `sigma_px` is one SD or (rows, cols) SDs."""
    sigma_rows, sigma_cols = sigma_px if isinstance(sigma_px, tuple) else (sigma_px, sigma_px)
    channels = image.shape[1]
    for sigma, shape in ((sigma_cols, (1, 1, 1, -1)), (sigma_rows, (1, 1, -1, 1))):
        if sigma < 0.3:
            continue
        radius = max(1, math.ceil(3 * sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = (kernel / kernel.sum()).view(*shape).repeat(channels, 1, 1, 1)
        pad = (radius, radius, 0, 0) if shape[3] == -1 else (0, 0, radius, radius)
        image = F.conv2d(F.pad(image, pad, mode="reflect"), kernel, groups=channels)
    return image


def validation_dice(model: SegmentationModel, examples: list[Example]) -> dict[str, float]:
    """Mean Dice on the scans' own grids: the union, the mean over L1..L4 and
    each vertebra (a vertebra the network never predicts shows up here)."""
    model.module.eval()
    union, per_vertebra = [], {name: [] for name in VERTEBRAE.values()}
    for ex in examples:
        probabilities = predict_probabilities(model, ex.inputs.numpy())
        predicted = probabilities_to_labels(probabilities, ex.shape)
        union.append(dice(predicted > 0, ex.labels > 0))
        for label, name in VERTEBRAE.items():
            per_vertebra[name].append(dice(predicted == label, ex.labels == label))
    means = {f"val_dice_{name}": float(np.mean(values)) for name, values in per_vertebra.items()}
    return {
        "val_dice_union": float(np.mean(union)),
        "val_dice_vertebrae": float(np.mean(list(means.values()))),
        **means,
    }


def load_examples(files: list[Path], config: TrainConfig, progress=None) -> list[Example]:
    from dxaspine.io import read_scan

    examples = []
    task = progress.add_task("loading scans", total=len(files)) if progress else None
    for path in files:
        examples.append(make_example(read_scan(path), config))
        if progress:
            progress.advance(task)
    return examples


def read_split(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ScanError(str(path), f"cannot read split file: {exc}") from None
    if not isinstance(data, dict) or not {"train", "val"} <= set(data):
        raise ScanError(
            str(path), "split file must be JSON with 'train' and 'val' lists of scan ids"
        )
    return {name: [str(i) for i in data.get(name, [])] for name in SPLITS}


def _write_json(path: Path, data: Any) -> None:
    write_file_atomic(path, json.dumps(data, indent=2) + "\n")


def train(
    scans_dir: Path,
    run_dir: Path,
    config: TrainConfig = TrainConfig(),
    split_file: Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    name: str = "dxaspine",
    data_recipe: str = "",
) -> Path:
    """Train, validating every epoch; returns the path of the best model (best.pt)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from dxaspine.io import read_scan

    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and (run_dir / "config.json").exists():
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    elif not resume and last_path.exists():
        raise ScanError(str(run_dir), "holds a previous run; pass --resume or choose a new folder")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    files = scan_files(scans_dir)
    if not files:
        raise ScanError(str(scans_dir), "no scan files (NPZ or DICOM) found")
    ids: dict[str, tuple[Path, str]] = {}
    for path in files:
        scan = read_scan(path)
        ids[str(scan.scan_id or path.stem)] = (
            path,
            str(scan.patient_id or scan.scan_id or path.stem),
        )
    if (run_dir / "split.json").exists() and resume:
        split = read_split(run_dir / "split.json")
    elif split_file is not None:
        split = read_split(split_file)
    else:
        split = split_by_patient([(sid, pid) for sid, (_, pid) in ids.items()], config.seed)
    missing = [sid for name in SPLITS for sid in split[name] if sid not in ids]
    if missing:
        raise ScanError(
            str(split_file or run_dir), f"split names scans not in the folder: {missing[:3]}"
        )
    if not split["train"] or not split["val"]:
        raise ScanError(str(scans_dir), "need at least one training and one validation scan")
    _write_json(run_dir / "split.json", split)
    _write_json(run_dir / "config.json", config.to_dict())
    _write_json(
        run_dir / "labels.json", {"0": "background", **{str(k): v for k, v in VERTEBRAE.items()}}
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=quiet, transient=True) as progress:
        train_set = load_examples([ids[s][0] for s in split["train"]], config, progress)
        val_ids = split["val"][: config.max_val_scans] if config.max_val_scans else split["val"]
        val_set = load_examples([ids[s][0] for s in val_ids], config, progress)

    module = build_model(config.network)
    optimiser = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    model = SegmentationModel(config.network, config.preprocessing, module)
    history: list[dict[str, float]] = []
    start_epoch, best, stale = 0, -1.0, 0
    if resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        module.load_state_dict(state["module"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best, stale, history = (
            state["epoch"],
            state["best"],
            state["stale"],
            state["history"],
        )

    def log(message: str) -> None:
        if not quiet:
            from rich import print as rich_print

            rich_print(message)

    log(
        f"training {config.network.architecture} on {len(train_set)} scans, "
        f"validating on {len(val_set)}; run folder {run_dir}"
    )
    batches = math.ceil(len(train_set) / config.batch_size)
    for epoch in range(start_epoch, config.epochs):
        if stale >= config.patience:
            log(f"early stop: no better validation Dice for {stale} epochs")
            break
        started = time.perf_counter()
        learning_rate = config.learning_rate * (1 - epoch / config.epochs) ** 0.9
        for group in optimiser.param_groups:
            group["lr"] = learning_rate
        module.train()
        order = torch.randperm(len(train_set), generator=generator).tolist()
        losses = []
        with Progress(*columns, disable=quiet, transient=True) as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=batches)
            for b in range(batches):
                chosen = [
                    train_set[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]
                ]
                inputs, targets = augment_batch(chosen, config, generator)
                loss = soft_dice_loss(module(inputs), targets, config.loss)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
                progress.advance(task)
        row = {
            "epoch": epoch + 1,
            "learning_rate": learning_rate,
            "train_loss": float(np.mean(losses)),
        }
        row |= validation_dice(model, val_set)
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        improved = row["val_dice_vertebrae"] > best
        if improved:
            best, stale = row["val_dice_vertebrae"], 0
            model.info = {
                "name": name,
                "epoch": epoch + 1,
                "val_dice_vertebrae": best,
                "val_dice_union": row["val_dice_union"],
                "train_scans": len(train_set),
                "data_recipe": data_recipe,
                "versions": versions(),
            }
            model.save(best_path)
        else:
            stale += 1
        _write_metrics(run_dir / "metrics.csv", history)
        torch.save(
            {
                "module": module.state_dict(),
                "optimiser": optimiser.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "best": best,
                "stale": stale,
                "history": history,
            },
            run_dir / ".last.pt.tmp",
        )
        (run_dir / ".last.pt.tmp").replace(last_path)
        log(
            f"epoch {epoch + 1}: loss {row['train_loss']:.4f}  val Dice L1-L4 "
            f"{row['val_dice_vertebrae']:.4f} union {row['val_dice_union']:.4f}  "
            f"{row['seconds']:.0f} s{'  best' if improved else ''}"
        )
    return best_path


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in history for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(history)
    write_file_atomic(path, buffer.getvalue())
