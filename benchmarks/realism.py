"""Realism of the procedural simulator against anatomy projected from labelled CTs.
Every figure is from SIMULATED DXA scans: both kinds go through the same
physics (generate.acquire_materials); only the anatomy differs.

    .venv/bin/python benchmarks/realism.py --ct CT.nii.gz --labels SEG.nii.gz
        [--ct CT2.nii.gz --labels SEG2.nii.gz ...] [--label-map totalsegmentator]
        [--n 40] [--seed 3001] [--device hologic-like --device lunar-like]
        [--model dual-energy --model MODEL.pt ...] [--control-scans 10] [--marrow-fat 0.0]
        [--noise-draws 8] [--dose-factors 0.25,1,4,16] [--dose-draws 3]
        [--blur-factors 1,16] [--blur-mm 1.25]
        [--provenance TEXT] [--out benchmarks/results]

`--ct DIR --labels DIR` pairs the NIfTI files of two folders by file name;
`--ct-list FILE` reads a CT list as `dxaspine simulate --ct-list` does
(labels may be folders of TotalSegmentator masks; per-CT summaries then go
by case id). Nothing is downloaded: the CTs are the user's.

Per device profile and per vertebra (L1-L4), for the procedural cohort (fresh
seed) and for every CT-derived scan: vertebral width (widest mask row), height
(tallest mask column) and area; true BMD; endplate tilt against the beam
(meta truth `endplate_tilt_deg`: the drawn lordosis tilt, or for a CT the
lean of the line through the centroids of the vertebrae's fronts);
posterior-element share of the vertebra's mineral (meta truth
`posterior_share`: the drawn share, or for a CT the labelled mineral behind
the body, whole vertebrae only); bone-to-soft contrast (median over
the mask minus median over a background band 15-35 mm beside it, same rows,
in the low-energy image and in the calibrated bone image); disc visibility
(`disc_contrast`: the dip of the true mineral between neighbouring vertebrae,
1 for an empty gap, 0 for none); soft tissue (lean + adipose, g/cm2:
5th/50th/95th percentile over the field, median over the spine, fat fraction
there); per-pixel noise (noisy minus noise-free render
of the same scan, in the background band); open TBS (dxaspine.tbs). Vertebrae
whose body the CT cuts are left out of the anatomy figures. A CT value outside
the procedural cohort's min..max is flagged. Each model (`--model`, default
the two shipped dual-energy models) segments every scan: Dice and Hausdorff
per vertebra, BMD error against the true BMD, how far its masks reach
sideways beyond the visible bone (`predicted_edge_offset_mm`, as
`label_edge_offset_mm` for the labels; `body_waist`, how much narrower a
body is at mid-height than at its widest row, says how much room the column
leaves beside it), and where they depart from the
reference (`miss_breakdown`: missed body pixels, missed posterior-element
pixels beside the body and elsewhere, added pixels; from the truth map
`body_labels`); and, to tell whether a failure
comes from the bone or from the soft tissue, the anatomy swap
(`anatomy_swap`: CT bone over procedural soft tissue and the reverse, union
Dice); and the resolution control (`resolution_control`): procedural scans
without metal (the first --control-scans per device) averaged over each CT's
voxel (feet-head x right-left) with their labels as a label volume of that
voxel gives them, so a CT-derived Dice can be read against what the CT's
voxels alone allow (`ceiling`: the exact masks' Dice against those labels).
Every CT-derived figure above is from one photon-noise draw; the
`noise_draws` (`--noise-draws`, draw 0 being that scan) repeat each
CT-derived scan with new noise and give each model's union Dice per draw,
per scan and as the mean over each CT's scans, so that a difference
between models can be read against what the noise alone moves; the
`dose_response` (`--dose-factors`, `--dose-draws`) renders each CT-derived
scan at other doses (incident photons x factor) and gives each model's
union Dice at each, to tell whether the noise holds a model back; the
`blur_response` (`--blur-factors`, `--blur-mm`) segments each CT-derived
scan at those doses with both energies blurred along its rows, and along
its columns, to tell which direction's fine detail misleads a model. The
networks' own view of the noise: `input_noise_low/high/bone`, each input's
per-pixel noise SD in the normalised units the network sees
(`preprocess.pixel_noise_sd` on the 1 mm working grid).
BMD measured with the reference mask (`bmd_error_reference_mask_percent`)
tells the measurement's error on the anatomy apart from the model's. Each
CT is projected in both poses (`--pose`): 'ct' as scanned (scan id
ct-<name>) and 'dxa' with its lordosis flattened as on the DXA table
(ct-<name>-dxa; simulate.ct_pose). Prints tables and writes
benchmarks/results/realism.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import platform
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table
from scipy import ndimage

from dxaspine import __version__
from dxaspine.infer import Predictor, model_file
from dxaspine.metrics import dice, hausdorff_mm
from dxaspine.preprocess import Preprocessing, network_input, pixel_noise_sd
from dxaspine.scores import bone_areal_density, device_calibration, score_bmd
from dxaspine.simulate.ct import CTError, HUCalibration
from dxaspine.simulate.ct_cohort import CTCase, read_ct_list
from dxaspine.simulate.ct_pose import POSES
from dxaspine.simulate.ct_scan import (
    at_voxel_resolution,
    ct_scan_id,
    labels_at_voxel_resolution,
    posed_id,
    project_ct,
    scan_from_projection,
)
from dxaspine.simulate.devices import DEVICES, DeviceProfile, get_device
from dxaspine.simulate.generate import RenderOptions, acquire_materials, simulate_scan
from dxaspine.tbs import tbs

LUMBAR = ("L1", "L2", "L3", "L4")
NOISY = RenderOptions(truth_maps=True)
CLEAN = RenderOptions(noise=False, truth_maps=True)
BAND_MM = (15.0, 35.0)
ANATOMY_KEYS = (
    "width_mm",
    "height_mm",
    "area_cm2",
    "bmd_true_g_cm2",
    "endplate_tilt_deg",
    "posterior_share",
    "bmd_error_reference_mask_percent",
    "label_edge_offset_mm",
    "body_waist",
    "tbs",
)
MISS_KEYS = (
    "missed_body_cm2",
    "missed_beside_body_cm2",
    "missed_other_posterior_cm2",
    "added_cm2",
    "reference_posterior_cm2",
    "reference_beside_body_cm2",
)
SCAN_KEYS = (
    "contrast_low",
    "contrast_bone_g_cm2",
    "noise_low",
    "noise_high",
    "noise_bone_g_cm2",
    "soft_p5_g_cm2",
    "soft_p50_g_cm2",
    "soft_p95_g_cm2",
    "soft_spine_g_cm2",
    "fat_fraction_spine",
    "disc_contrast",
    "tbs_total",
    "input_noise_low",
    "input_noise_high",
    "input_noise_bone",
)
NETWORK_INPUTS = ("low", "high", "bone")


def background_band(labels: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Non-spine pixels 15-35 mm from the L1-L4 mask, in the mask's rows."""
    mask = labels > 0
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing_mm)
    rows = np.zeros_like(mask)
    rows[np.flatnonzero(mask.any(axis=1))] = True
    return rows & (distance >= BAND_MM[0]) & (distance <= BAND_MM[1])


def vertebra_sizes(labels: np.ndarray, spacing_mm: tuple[float, float]) -> dict[str, dict]:
    sr, sc = spacing_mm
    sizes = {}
    for label, name in enumerate(LUMBAR, start=1):
        mask = labels == label
        if mask.any():
            sizes[name] = {
                "width_mm": float(mask.sum(axis=1).max() * sc),
                "height_mm": float(mask.sum(axis=0).max() * sr),
                "area_cm2": float(mask.sum() * sr * sc / 100),
            }
    return sizes


def body_waist(body_labels: np.ndarray) -> dict[str, float]:
    """How much narrower each vertebral body is at mid-height than at its widest
    row: 1 - (median width over the middle third of its rows) / (widest row).
    Where the body is waisted, the column (protocol §2, set by the widest point)
    holds posterior-element pixels beside the body's side."""
    waists = {}
    for label, name in enumerate(LUMBAR, start=1):
        widths = (body_labels == label).sum(axis=1)
        widths = widths[widths > 0]
        if len(widths) < 6:
            continue
        third = len(widths) // 3
        waists[name] = float(1 - np.median(widths[third : len(widths) - third]) / widths.max())
    return waists


def disc_contrast(bone: np.ndarray, labels: np.ndarray) -> float:
    """How visible the disc spaces are: 1 - (lowest row mean between two neighbouring
    vertebra centres) / (mean of the rows at the two centres), averaged over the
    neighbouring pairs. The row means are taken over the middle half of the
    vertebral column's width. 1: an empty gap; 0: no dip at all. Only neighbours
    both present count (a missing L2 pairs neither L1 nor L3); nan without a pair."""
    cols = np.flatnonzero((labels > 0).any(axis=0))
    if cols.size == 0:
        return math.nan
    quarter = (cols.max() - cols.min()) // 4
    profile = bone[:, cols.min() + quarter : cols.max() - quarter + 1].mean(axis=1)
    centres = {
        v: round(np.nonzero(labels == v)[0].mean()) for v in (1, 2, 3, 4) if (labels == v).any()
    }
    values = []
    for upper, lower in itertools.pairwise((1, 2, 3, 4)):
        if upper in centres and lower in centres:
            top, bottom = centres[upper], centres[lower]
            bodies = 0.5 * (profile[top] + profile[bottom])
            values.append(1.0 - profile[top : bottom + 1].min() / bodies)
    return float(np.mean(values)) if values else math.nan


def label_edge_offset_mm(
    mineral: np.ndarray, labels: np.ndarray, col_mm: float, reach_mm: float = 10.0
) -> dict[str, float]:
    """How far each vertebra's label reaches sideways beyond its visible bone (mm).

    In each row of the middle half of the vertebra's height, the bone's edges
    are the outermost columns (searched inwards from `reach_mm` outside the
    label) where `mineral` reaches half the median of the label's middle half
    of that row; the offset is the mean of the two label edges' distances
    outside them. Median over the rows. The bodies' rounded sides put the
    half-maximum inside the true edge, so exact labels read a few mm too;
    compare like with like (the resolution control gives procedural labels
    at a CT's voxel size).
    """
    reach = round(reach_mm / col_mm)
    offsets: dict[str, float] = {}
    for label, name in enumerate(LUMBAR, start=1):
        rows = np.flatnonzero((labels == label).any(axis=1))
        if len(rows) < 4:
            continue
        top, bottom = rows.min(), rows.max()
        quarter = 0.25 * (bottom - top)
        per_row = []
        for row in rows[(rows >= top + quarter) & (rows <= bottom - quarter)]:
            cols = np.flatnonzero(labels[row] == label)
            left, right = int(cols.min()), int(cols.max())
            inner = (right - left) // 4
            half = 0.5 * float(np.median(mineral[row, left + inner : right - inner + 1]))
            line = mineral[row]
            if half <= 0:
                continue
            bone_right = min(right + reach, len(line) - 1)
            while bone_right > left and line[bone_right] < half:
                bone_right -= 1
            bone_left = max(left - reach, 0)
            while bone_left < right and line[bone_left] < half:
                bone_left += 1
            per_row.append(0.5 * ((right - bone_right) + (bone_left - left)) * col_mm)
        if per_row:
            offsets[name] = float(np.median(per_row))
    return offsets


def beside_body(labels: np.ndarray, body_labels: np.ndarray) -> np.ndarray:
    """Posterior-element label pixels beside their own vertebra's body: in a row
    that the body crosses, outside the body's extent there (transverse-process
    roots and pedicle walls inside the column, where the body's side is waisted
    or narrower than its widest point)."""
    columns = np.arange(labels.shape[1])
    beside = np.zeros(labels.shape, dtype=bool)
    for label in range(1, len(LUMBAR) + 1):
        body = body_labels == label
        crossed = body.any(axis=1)
        if not crossed.any():
            continue
        first = np.where(body, columns, columns.size).min(axis=1)
        last = np.where(body, columns, -1).max(axis=1)
        outside = (columns < first[:, None]) | (columns > last[:, None])
        beside |= (labels == label) & outside & crossed[:, None]
    return beside


def miss_breakdown(
    predicted: np.ndarray, labels: np.ndarray, body_labels: np.ndarray, spacing_mm
) -> dict[str, float]:
    """Where a model's mask departs from the reference, in cm2: reference pixels
    it leaves out, split into vertebral body, posterior elements beside the body
    (`beside_body`) and other posterior elements (in the disc spaces, over the
    body's ends); pixels it adds; and how much of the reference is posterior
    elements, and beside the body."""
    pixel_cm2 = spacing_mm[0] * spacing_mm[1] / 100
    missed = (labels > 0) & (predicted == 0)
    body = body_labels > 0
    posterior = (labels > 0) & ~body
    beside = beside_body(labels, body_labels)
    return {
        "missed_body_cm2": float((missed & body).sum() * pixel_cm2),
        "missed_beside_body_cm2": float((missed & beside).sum() * pixel_cm2),
        "missed_other_posterior_cm2": float((missed & posterior & ~beside).sum() * pixel_cm2),
        "added_cm2": float(((predicted > 0) & (labels == 0)).sum() * pixel_cm2),
        "reference_posterior_cm2": float(posterior.sum() * pixel_cm2),
        "reference_beside_body_cm2": float(beside.sum() * pixel_cm2),
    }


def vertebral_mineral(clean) -> np.ndarray:
    """The noise-free vertebral mineral map (g/cm2): CT scans keep it apart from
    other bone; procedural truth maps hold all mineral (ribs lie outside the
    L1-L4 labels' rows' middle halves)."""
    maps = clean.truth_maps
    return maps["vertebral_bone_g_cm2"] if "vertebral_bone_g_cm2" in maps else maps["bone_g_cm2"]


def reference_mask_bmd(scan) -> tuple[np.ndarray, dict[str, float]]:
    """The PSF-corrected bone image of a scan and the BMD per vertebra its
    reference labels read there, computed once per scan for `measure` and
    every model's `model_results`."""
    calibration = device_calibration(scan.device)
    bone = bone_areal_density(scan, calibration, correct_psf=True)
    if not scan.labels.any():
        return bone, {}
    scores = score_bmd(scan, scan.labels, calibration, bone_g_cm2=bone)
    return bone, {v.name: v.bmd_g_cm2 for v in scores.vertebrae}


def measure(noisy, clean, reference: dict[str, float]) -> dict:
    """Anatomy, contrast, soft tissue, noise and TBS of one scan (noisy and noise-free
    renders); `reference` is the noisy scan's reference-mask BMD (`reference_mask_bmd`)."""
    labels, spacing = clean.labels, clean.spacing_mm
    calibration = device_calibration(clean.device)
    band = background_band(labels, spacing)
    mask = labels > 0
    bone_clean = bone_areal_density(clean, calibration)
    bone_noisy = bone_areal_density(noisy, calibration)
    soft = clean.truth_maps["lean_g_cm2"] + clean.truth_maps["adipose_g_cm2"]
    fat = clean.truth_maps["adipose_g_cm2"] / np.maximum(soft, 1e-6)
    truth = clean.meta["truth"]["vertebrae"]
    cut = set(clean.meta.get("anatomy", {}).get("truncated_vertebrae", []))
    tbs_values = tbs(bone_noisy, labels, spacing)
    inputs = network_input(noisy, NETWORK_INPUTS, Preprocessing())
    input_noise = {
        f"input_noise_{name}": pixel_noise_sd(channel)
        for name, channel in zip(NETWORK_INPUTS, inputs, strict=True)
    }
    edges = label_edge_offset_mm(vertebral_mineral(clean), labels, spacing[1])
    waists = body_waist(clean.truth_maps["body_labels"])
    vertebrae = {}
    for name, sizes in vertebra_sizes(labels, spacing).items():
        if name in cut:
            continue
        vertebrae[name] = sizes | {
            "bmd_true_g_cm2": truth[name]["bmd_g_cm2"],
            "endplate_tilt_deg": truth[name].get("endplate_tilt_deg", math.nan),
            "posterior_share": math.nan
            if truth[name].get("posterior_share") is None
            else truth[name]["posterior_share"],
            "bmd_error_reference_mask_percent": 100
            * (reference.get(name, math.nan) / truth[name]["bmd_g_cm2"] - 1),
            "label_edge_offset_mm": edges.get(name, math.nan),
            "body_waist": waists.get(name, math.nan),
            "tbs": tbs_values[name],
        }
    scan = {
        "contrast_low": float(np.median(clean.low[mask]) - np.median(clean.low[band])),
        "contrast_bone_g_cm2": float(np.median(bone_clean[mask]) - np.median(bone_clean[band])),
        "noise_low": float(np.std((noisy.low - clean.low)[band])),
        "noise_high": float(np.std((noisy.high - clean.high)[band])),
        "noise_bone_g_cm2": float(np.std((bone_noisy - bone_clean)[band])),
        "soft_p5_g_cm2": float(np.percentile(soft, 5)),
        "soft_p50_g_cm2": float(np.percentile(soft, 50)),
        "soft_p95_g_cm2": float(np.percentile(soft, 95)),
        "soft_spine_g_cm2": float(np.median(soft[mask])),
        "fat_fraction_spine": float(np.median(fat[mask])),
        "disc_contrast": disc_contrast(clean.truth_maps["bone_g_cm2"], labels),
        "tbs_total": float(np.nanmean([v["tbs"] for v in vertebrae.values()] or [math.nan])),
        **input_noise,
    }
    return {"scan_id": clean.scan_id, "device": clean.device, "scan": scan, "vertebrae": vertebrae}


def has_metal(scan) -> bool:
    """Clips or an implant in the scan (they break BMD)."""
    flags = scan.meta["truth"].get("flags", {})
    return bool(flags.get("implant") or flags.get("clips"))


def model_results(
    predictor: Predictor, scan, bone: np.ndarray, reference: dict[str, float]
) -> dict:
    """The shipped model on one scan: Dice, Hausdorff, BMD error per vertebra.
    `bone` and `reference` are the scan's `reference_mask_bmd`."""
    predicted = predictor.segment(scan).labels
    measured = {"reference": reference, "model": {}}
    if predicted.any():
        scores = score_bmd(scan, predicted, device_calibration(scan.device), bone_g_cm2=bone)
        measured["model"] = {v.name: v.bmd_g_cm2 for v in scores.vertebrae}
    truth = scan.meta["truth"]["vertebrae"]
    cut = set(scan.meta.get("anatomy", {}).get("truncated_vertebrae", []))
    reach = label_edge_offset_mm(vertebral_mineral(scan), predicted, scan.spacing_mm[1])
    vertebrae = {}
    for label, name in enumerate(LUMBAR, start=1):
        if name not in truth:
            continue
        reference = scan.labels == label
        mine = predicted == label
        true_bmd = truth[name]["bmd_g_cm2"]
        vertebrae[name] = {
            "dice": dice(mine, reference),
            "hausdorff_mm": hausdorff_mm(mine, reference, scan.spacing_mm),
            "bmd_true_g_cm2": true_bmd,
            "bmd_model_g_cm2": measured["model"].get(name, math.nan),
            "bmd_reference_mask_g_cm2": measured["reference"].get(name, math.nan),
            "bmd_error_model_percent": 100
            * (measured["model"].get(name, math.nan) - true_bmd)
            / true_bmd,
            "body_cut_by_ct": name in cut,
            "predicted_edge_offset_mm": reach.get(name, math.nan),
        }
    return {
        "scan_id": scan.scan_id,
        "device": scan.device,
        "metal": has_metal(scan),
        "dice_union": dice(predicted > 0, scan.labels > 0),
        "predicted_labels": sorted(int(v) for v in np.unique(predicted) if v),
        "misses": miss_breakdown(
            predicted, scan.labels, scan.truth_maps["body_labels"], scan.spacing_mm
        ),
        "vertebrae": vertebrae,
    }


def noise_draw_dice(
    predictor: Predictor,
    projection,
    source: dict,
    device: str | DeviceProfile,
    draws: int,
    blur: tuple[int, float] | None = None,
):
    """Union Dice of `predictor` on one CT-derived scan under photon-noise draws
    0..draws-1 (draw 0 is the scan the other figures use), and its mean L1-L4
    Dice (`mean_vertebra_dice`): {"union": [...], "vertebrae": [...]}. `blur`
    (axis, SD mm) smooths both energies along rows (0) or columns (1) before
    segmenting."""
    values: dict[str, list[float]] = {"union": [], "vertebrae": []}
    for seed in range(draws):
        scan = scan_from_projection(projection, source, device, seed, RenderOptions())
        seen = scan
        if blur is not None:
            axis, sd_mm = blur
            sd_px = sd_mm / scan.spacing_mm[axis]
            seen = dataclasses.replace(
                scan,
                low=ndimage.gaussian_filter1d(scan.low, sd_px, axis=axis),
                high=ndimage.gaussian_filter1d(scan.high, sd_px, axis=axis),
            )
        predicted = predictor.segment(seen).labels
        values["union"].append(dice(predicted > 0, scan.labels > 0))
        values["vertebrae"].append(mean_vertebra_dice(predicted, scan.labels))
    return values


def mean_vertebra_dice(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean Dice over the levels L1-L4 that `labels` holds: unlike union Dice it
    counts a vertebra given another level's label as missed (nan without any)."""
    levels = [v for v in range(1, len(LUMBAR) + 1) if (labels == v).any()]
    if not levels:
        return math.nan
    return float(np.mean([dice(predicted == v, labels == v) for v in levels]))


BLUR_AXES = {"rows": 0, "columns": 1}


def at_dose(device: str, factor: float) -> DeviceProfile:
    """The device profile with its incident photons per pixel times `factor`
    (photon-noise SD / sqrt(factor))."""
    profile = get_device(device)
    return dataclasses.replace(profile, photons_per_pixel=profile.photons_per_pixel * factor)


def blur_response_dice(
    predictor: Predictor, projection, source: dict, device: str, factors, draws: int, sd_mm: float
) -> dict[str, list[float]]:
    """Union Dice of `predictor` on one CT-derived scan at each dose factor with
    both energies blurred along rows or along columns (Gaussian SD `sd_mm`), mean
    over noise draws: which direction's fine detail holds the model back."""
    out: dict[str, list[float]] = {direction: [] for direction in BLUR_AXES}
    for factor in factors:
        dosed = at_dose(device, factor)
        for direction, axis in BLUR_AXES.items():
            draws_dice = noise_draw_dice(
                predictor, projection, source, dosed, draws, blur=(axis, sd_mm)
            )
            out[direction].append(float(np.mean(draws_dice["union"])))
    return out


def dose_response_dice(
    predictor: Predictor, projection, source: dict, device: str, factors, draws: int
) -> list[float]:
    """Union Dice of `predictor` on one CT-derived scan rendered at each dose
    factor (incident photons x factor: noise SD / sqrt(factor)), mean over
    photon-noise draws 0..draws-1."""
    means = []
    for factor in factors:
        draws_dice = noise_draw_dice(predictor, projection, source, at_dose(device, factor), draws)
        means.append(float(np.mean(draws_dice["union"])))
    return means


def noise_draw_summary(rows: list[dict]) -> dict:
    """Per CT (its file name, or with a CT list its case id, `ct_case`): the mean
    union Dice over its scans (poses x devices) for each noise draw, and its
    mean, SD, min and max over the draws; where the rows carry it
    (`vertebra_dice`, since 0.7.3), the mean L1-L4 Dice over its scans and
    draws too."""
    by_ct: dict[str, list[dict]] = {}
    for row in rows:
        by_ct.setdefault(row.get("ct_case", row["ct_file"]), []).append(row)
    summary = {}
    for ct_file, ct_rows in by_ct.items():
        per_draw = np.mean(np.array([r["union_dice"] for r in ct_rows]), axis=0)
        summary[ct_file] = {
            "scans": len(ct_rows),
            "mean_union_dice_per_draw": per_draw.tolist(),
            **distribution(per_draw.tolist()),
        }
        if all("vertebra_dice" in r for r in ct_rows):
            per_scan = [np.mean(r["vertebra_dice"]) for r in ct_rows]
            summary[ct_file]["mean_vertebra_dice"] = float(np.mean(per_scan))
    return summary


def rendered(template, materials, labels: np.ndarray, rng: np.random.Generator):
    """`template` (a scan) with new (bone, lean, adipose) areal densities rendered
    through its device's physics with photon noise, and new labels."""
    low, high = acquire_materials(*materials, get_device(template.device), rng)
    return dataclasses.replace(
        template,
        low=low.astype(np.float32),
        high=high.astype(np.float32),
        labels=labels,
        mask=(labels > 0).astype(np.uint8),
        truth_maps={},
    )


def anatomy_swap(predictor: Predictor, ct_clean, procedural_clean, seed: int = 0) -> dict:
    """Which half of the anatomy the model fails on. From the noise-free truth maps
    of a CT-derived scan and of a procedural scan (rows aligned at L1's top), four
    scans go through the same physics with photon noise: each as it is, CT bone
    over procedural soft tissue, and procedural bone over CT soft tissue. Returns
    the model's union Dice on each ({} when the fields do not line up)."""
    rows, cols = ct_clean.shape
    if procedural_clean.shape[1] != cols or procedural_clean.shape[0] < rows:
        return {}
    ct_top = int(np.flatnonzero((ct_clean.labels == 1).any(axis=1))[0])
    proc_top = int(np.flatnonzero((procedural_clean.labels == 1).any(axis=1))[0])
    start = int(np.clip(proc_top - ct_top, 0, procedural_clean.shape[0] - rows))
    window = slice(start, start + rows)
    ct = ct_clean.truth_maps
    proc = {k: v[window] for k, v in procedural_clean.truth_maps.items()}
    proc_labels = procedural_clean.labels[window]

    def union_dice(bone, lean, adipose, labels) -> float:
        scan = rendered(ct_clean, (bone, lean, adipose), labels, np.random.default_rng(seed))
        return dice(predictor.segment(scan).labels > 0, labels > 0)

    ct_bone, ct_soft = ct["bone_g_cm2"], (ct["lean_g_cm2"], ct["adipose_g_cm2"])
    proc_bone, proc_soft = proc["bone_g_cm2"], (proc["lean_g_cm2"], proc["adipose_g_cm2"])
    return {
        "procedural_scan": procedural_clean.scan_id,
        "ct_as_is": union_dice(ct_bone, *ct_soft, ct_clean.labels),
        "ct_bone_procedural_soft": union_dice(ct_bone, *proc_soft, ct_clean.labels),
        "procedural_bone_ct_soft": union_dice(proc_bone, *ct_soft, proc_labels),
        "procedural_as_is": union_dice(proc_bone, *proc_soft, proc_labels),
    }


def resolution_control(predictor: Predictor, procedural_clean: list, voxel_mm) -> dict:
    """What a CT's voxels alone cost: procedural scans (noise-free truth maps)
    averaged over `voxel_mm` (feet-head, right-left) and rendered with noise, and
    their labels as a label volume of that voxel gives them
    (`ct_scan.at_voxel_resolution`, `labels_at_voxel_resolution`). `ceiling` is
    a perfect model's Dice against those labels (the exact masks); `model` the
    model's Dice against them. Union and mean per-vertebra Dice over the scans;
    `label_edge_offset_mm`, the labels' mean reach beyond the visible bone
    (`label_edge_offset_mm`) at that voxel size, and `misses`, where the model's
    masks depart from those labels (`miss_breakdown`), to compare with the CTs'."""
    ceiling, model = {"union": [], "vertebra": []}, {"union": [], "vertebra": []}
    edge_offsets, misses = [], []
    for index, clean in enumerate(procedural_clean):
        spacing = clean.spacing_mm
        maps = [
            at_voxel_resolution(clean.truth_maps[key], spacing, voxel_mm)
            for key in ("bone_g_cm2", "lean_g_cm2", "adipose_g_cm2")
        ]
        labels = labels_at_voxel_resolution(clean.labels, spacing, voxel_mm)
        bodies = labels_at_voxel_resolution(
            clean.truth_maps["body_labels"].astype(np.uint8), spacing, voxel_mm
        )
        bodies[bodies != labels] = 0
        edges = label_edge_offset_mm(maps[0], labels, spacing[1])
        edge_offsets.append(float(np.mean(list(edges.values()))) if edges else math.nan)
        scan = rendered(clean, maps, labels, np.random.default_rng([index, 0, 2]))
        predicted = predictor.segment(scan).labels
        misses.append(miss_breakdown(predicted, labels, bodies, spacing))
        for out, mine in ((ceiling, clean.labels), (model, predicted)):
            out["union"].append(dice(mine > 0, labels > 0))
            out["vertebra"].append(np.mean([dice(mine == k, labels == k) for k in (1, 2, 3, 4)]))
    return {
        "voxel_mm": list(voxel_mm),
        "scans": len(procedural_clean),
        "ceiling": {k: distribution(v) for k, v in ceiling.items()},
        "model": {k: distribution(v) for k, v in model.items()},
        "label_edge_offset_mm": distribution(edge_offsets),
        "misses": {key: distribution([m[key] for m in misses]) for key in MISS_KEYS},
    }


def procedural_summary(rows_per_device: dict[str, list[dict]]) -> dict:
    """Per device: the model's per-vertebra Dice, Hausdorff, absolute BMD error
    and reach beyond the visible bone, and where its masks depart (`miss_breakdown`)."""
    summary = {}
    for device, rows in rows_per_device.items():
        per = [v for r in rows for v in r["vertebrae"].values()]
        no_metal = [v for r in rows if not r["metal"] for v in r["vertebrae"].values()]
        summary[device] = {
            "dice": distribution([v["dice"] for v in per]),
            "hausdorff_mm": distribution([v["hausdorff_mm"] for v in per]),
            "bmd_error_model_percent_abs": distribution(
                [abs(v["bmd_error_model_percent"]) for v in no_metal]
            ),
            "bmd_error_note": "scans with clips or implants left out (metal breaks BMD)",
            "predicted_edge_offset_mm": distribution([v["predicted_edge_offset_mm"] for v in per]),
            "misses": {key: distribution([r["misses"][key] for r in rows]) for key in MISS_KEYS},
        }
    return summary


def distribution(values: list[float]) -> dict:
    values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if values.size == 0:
        return {"n": 0}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "p2_5": float(np.percentile(values, 2.5)),
        "p97_5": float(np.percentile(values, 97.5)),
        "max": float(values.max()),
    }


def compare(procedural: list[dict], ct: list[dict]) -> dict:
    """Procedural distribution vs CT values, per scan figure and per vertebra figure."""
    rows = {}
    for key in SCAN_KEYS:
        rows[key] = (
            [m["scan"][key] for m in procedural],
            [(m["scan_id"], m["scan"][key]) for m in ct],
        )
    for name in LUMBAR:
        for key in ANATOMY_KEYS:
            rows[f"{name} {key}"] = (
                [m["vertebrae"][name][key] for m in procedural if name in m["vertebrae"]],
                [(m["scan_id"], m["vertebrae"][name][key]) for m in ct if name in m["vertebrae"]],
            )
    out = {}
    for key, (proc, ct_values) in rows.items():
        d = distribution(proc)
        outside = [
            scan_id
            for scan_id, v in ct_values
            if d["n"] and np.isfinite(v) and not d["min"] <= v <= d["max"]
        ]
        out[key] = {
            "procedural": d,
            "ct": {scan_id: v for scan_id, v in ct_values},
            "ct_outside_procedural_range": outside,
        }
    return out


def pair_inputs(cts: list[Path], labels: list[Path]) -> list[tuple[Path, Path]]:
    if len(cts) == 1 and cts[0].is_dir():
        if len(labels) != 1 or not labels[0].is_dir():
            raise SystemExit("--ct DIR needs --labels DIR (files paired by name)")
        files = sorted(p for p in cts[0].iterdir() if p.name.endswith((".nii", ".nii.gz")))
        missing = [p.name for p in files if not (labels[0] / p.name).is_file()]
        if missing:
            raise SystemExit(f"{labels[0]} lacks the labels of: {', '.join(missing)}")
        return [(p, labels[0] / p.name) for p in files]
    if len(cts) != len(labels):
        raise SystemExit("give one --labels per --ct, in the same order")
    return list(zip(cts, labels, strict=True))


def ct_cases(cts: list[Path] | None, labels: list[Path] | None, ct_list: Path | None):
    """The CTs to project, as (CTCase, group name) pairs: from `--ct-list` (grouped by
    case id, since datasets often name every CT ct.nii.gz), or from `--ct`/`--labels`
    (grouped by CT file name, as before 0.7.4)."""
    if ct_list is not None:
        if cts or labels:
            raise SystemExit("give either --ct-list or --ct/--labels, not both")
        try:
            return [(case, case.case_id) for case in read_ct_list(ct_list)]
        except CTError as exc:
            raise SystemExit(str(exc)) from None
    if not cts or not labels:
        raise SystemExit("give --ct CT --labels SEG (repeatable, or folders) or --ct-list FILE")
    return [
        (CTCase(ct, seg, ct_scan_id(ct), ct_scan_id(ct)), ct.name)
        for ct, seg in pair_inputs(cts, labels)
    ]


def sha256(path: Path) -> str:
    """Of a file; of a folder of masks, of its files' names and digests."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(f"{file.name} {sha256(file)}\n".encode())
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fmt(value: float, digits: int = 3) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def print_tables(results: dict, console: Console) -> None:
    for device, comparison in results["comparison"].items():
        table = Table(title=f"SIMULATED scans, {device}: procedural cohort vs CT-derived")
        for column in ("figure", "procedural mean (SD)", "procedural min..max", "CT", "outside"):
            table.add_column(column, justify="right")
        for key, row in comparison.items():
            d = row["procedural"]
            if not d["n"] and not row["ct"]:
                continue
            ct_text = ", ".join(fmt(v) for v in row["ct"].values()) or "-"
            table.add_row(
                key,
                f"{fmt(d.get('mean'))} ({fmt(d.get('sd'))})" if d["n"] else "-",
                f"{fmt(d.get('min'))}..{fmt(d.get('max'))}" if d["n"] else "-",
                ct_text,
                "yes" if row["ct_outside_procedural_range"] else "",
            )
        console.print(table)
    for name, model in results["models"].items():
        print_model_tables(name, model, console)


def print_model_tables(name: str, model: dict, console: Console) -> None:
    table = Table(title=f"Model {name} on SIMULATED scans (CT-derived anatomy unless noted)")
    columns = ("scan", "device", "vertebra", "Dice", "HD mm", "true BMD", "BMD error %")
    for column in (*columns, "with reference mask %"):
        table.add_column(column, justify="right")
    for row in model["ct"]:
        for level, v in row["vertebrae"].items():
            table.add_row(
                row["scan_id"],
                row["device"],
                level + (" (body cut)" if v["body_cut_by_ct"] else ""),
                fmt(v["dice"]),
                fmt(v["hausdorff_mm"], 1),
                fmt(v["bmd_true_g_cm2"]),
                fmt(v["bmd_error_model_percent"], 1),
                fmt(100 * (v["bmd_reference_mask_g_cm2"] / v["bmd_true_g_cm2"] - 1), 1),
            )
        table.add_row(row["scan_id"], row["device"], "union", fmt(row["dice_union"]), *[""] * 4)
    for device, s in model["procedural_summary"].items():
        table.add_row(
            "procedural cohort",
            device,
            "L1-L4 (mean)",
            fmt(s["dice"]["mean"]),
            fmt(s["hausdorff_mm"]["mean"], 1),
            "",
            fmt(s["bmd_error_model_percent_abs"]["mean"], 1) + " (mean abs, no metal)",
            "",
        )
    console.print(table)
    print_noise_draw_table(name, model, console)
    print_dose_table(name, model, console)
    print_blur_table(name, model, console)
    print_miss_table(name, model, console)
    table = Table(title=f"Anatomy swap on SIMULATED scans: {name}'s union Dice")
    columns = ("ct_as_is", "ct_bone_procedural_soft", "procedural_bone_ct_soft", "procedural_as_is")
    for column in ("scan", "device", *columns):
        table.add_column(column.replace("_", " "), justify="right")
    for row in model["anatomy_swap"]:
        table.add_row(row["scan_id"], row["device"], *(fmt(row.get(c, math.nan)) for c in columns))
    console.print(table)
    table = Table(
        title=f"Procedural SIMULATED scans at the CTs' voxel size: {name}'s Dice "
        "against labels at that size (ceiling: the exact masks)"
    )
    for column in ("voxel mm", "device", "scans", "ceiling union", "ceiling L1-L4"):
        table.add_column(column, justify="right")
    table.add_column("model union", justify="right")
    table.add_column("model L1-L4 (min)", justify="right")
    table.add_column("label edge offset mm (min..max)", justify="right")
    for row in model["resolution_control"]:
        edge = row["label_edge_offset_mm"]
        table.add_row(
            " x ".join(fmt(v, 2) for v in row["voxel_mm"]),
            row["device"],
            str(row["scans"]),
            fmt(row["ceiling"]["union"]["mean"]),
            fmt(row["ceiling"]["vertebra"]["mean"]),
            fmt(row["model"]["union"]["mean"]),
            f"{fmt(row['model']['vertebra']['mean'])} ({fmt(row['model']['vertebra']['min'])})",
            f"{fmt(edge['mean'], 1)} ({fmt(edge['min'], 1)}..{fmt(edge['max'], 1)})",
        )
    console.print(table)


def print_noise_draw_table(name: str, model: dict, console: Console) -> None:
    draws = model["noise_draws"]
    table = Table(
        title=f"{name}'s union and L1-L4 Dice on CT-derived SIMULATED scans over "
        f"{draws['draws']} photon-noise draws"
    )
    for column in ("scan", "device", "mean (SD)", "min..max", "L1-L4 Dice, mean"):
        table.add_column(column, justify="right")
    rows = [(r["scan_id"], r["device"], r) for r in draws["scans"]]
    for ct_file, r in draws["by_ct"].items():
        rows.append((f"{ct_file}, mean over its {r['scans']} scans", "", r))
    for scan_id, device, r in rows:
        table.add_row(
            scan_id,
            device,
            f"{fmt(r.get('mean'))} ({fmt(r.get('sd'))})",
            f"{fmt(r.get('min'))}..{fmt(r.get('max'))}",
            fmt(r.get("mean_vertebra_dice")),
        )
    console.print(table)


def print_dose_table(name: str, model: dict, console: Console) -> None:
    dose = model["dose_response"]
    print_scan_table(
        f"{name}'s union Dice on CT-derived SIMULATED scans at other doses "
        f"(incident photons x factor; mean of {dose['draws']} noise draws)",
        [f"x{f:g}" for f in dose["factors"]],
        [(r, r["union_dice_by_factor"]) for r in dose["scans"]],
        console,
    )


def print_blur_table(name: str, model: dict, console: Console) -> None:
    blur = model["blur_response"]
    print_scan_table(
        f"{name}'s union Dice on CT-derived SIMULATED scans with both energies blurred "
        f"(Gaussian SD {blur['sd_mm']:g} mm; mean of {blur['draws']} noise draws)",
        [f"{d} x{f:g}" for d in BLUR_AXES for f in blur["factors"]],
        [(r, [v for d in BLUR_AXES for v in r[d]]) for r in blur["scans"]],
        console,
    )


def print_scan_table(title: str, columns: list[str], rows, console: Console) -> None:
    """One row per CT-derived scan (scan id, device, then `columns`); nothing
    when there are no columns (the figure was skipped)."""
    if not columns:
        return
    table = Table(title=title)
    for column in ("scan", "device", *columns):
        table.add_column(column, justify="right")
    for r, values in rows:
        table.add_row(r["scan_id"], r["device"], *(fmt(v) for v in values))
    console.print(table)


def print_miss_table(name: str, model: dict, console: Console) -> None:
    """Where the model's masks depart from the reference, CT-derived scans against
    procedural ones (as generated and at the CTs' voxel size): means for cohorts."""
    table = Table(
        title=f"Where {name}'s masks depart from the reference on SIMULATED scans, cm2 "
        "(reference posterior elements beside the body in brackets)"
    )
    columns = ("missed body", "missed beside body", "missed other posterior", "added")
    for column in ("scans", "device", *columns, "reference posterior (beside body)"):
        table.add_column(column, justify="right")
    keys = MISS_KEYS[:4]  # the reference's own figures go in the last column

    def add(scans: str, device: str, values: dict) -> None:
        table.add_row(
            scans,
            device,
            *(fmt(values[k], 1) for k in keys),
            f"{fmt(values['reference_posterior_cm2'], 1)} "
            f"({fmt(values['reference_beside_body_cm2'], 1)})",
        )

    for row in model["ct"]:
        add(row["scan_id"], row["device"], row["misses"])
    for device, summary in model["procedural_summary"].items():
        add(
            "procedural cohort (mean)", device, {k: v["mean"] for k, v in summary["misses"].items()}
        )
    for row in model["resolution_control"]:
        voxel = " x ".join(fmt(v, 2) for v in row["voxel_mm"])
        add(
            f"procedural at {voxel} mm (mean)",
            row["device"],
            {k: v["mean"] for k, v in row["misses"].items()},
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=Path, action="append")
    parser.add_argument("--labels", type=Path, action="append")
    parser.add_argument(
        "--ct-list",
        type=Path,
        help="CSV of CTs instead of --ct/--labels (columns ct, labels; optional case_id, "
        "patient_id, label_map: `dxaspine simulate --ct-list`'s format)",
    )
    parser.add_argument("--label-map", default="totalsegmentator")
    parser.add_argument("--n", type=int, default=40, help="procedural scans per device")
    parser.add_argument("--seed", type=int, default=3001, help="procedural cohort seed")
    parser.add_argument("--device", action="append", default=None, choices=list(DEVICES))
    parser.add_argument(
        "--pose",
        action="append",
        default=None,
        choices=list(POSES),
        help="CT poses to project (default both: 'ct' as scanned, 'dxa' lordosis flattened)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="model file or shipped name to run (default: dual-energy and dual-energy-bone)",
    )
    parser.add_argument(
        "--marrow-fat",
        type=float,
        default=0.0,
        help="adipose volume fraction of the marrow in the CTs' bone voxels (HUCalibration)",
    )
    parser.add_argument(
        "--control-scans",
        type=int,
        default=10,
        help="procedural scans per device (without metal) for the swap and the resolution control",
    )
    parser.add_argument(
        "--noise-draws",
        type=int,
        default=8,
        help="photon-noise draws of each CT-derived scan for the models' union Dice spread",
    )
    parser.add_argument(
        "--dose-factors",
        default="0.25,1,4,16",
        help="dose factors (incident photons x factor) for the models' dose response on the "
        "CT-derived scans; '' skips it",
    )
    parser.add_argument(
        "--dose-draws", type=int, default=3, help="photon-noise draws per dose factor"
    )
    parser.add_argument(
        "--blur-factors",
        default="1,16",
        help="dose factors at which each CT-derived scan is also segmented blurred along its "
        "rows and along its columns; '' skips it",
    )
    parser.add_argument("--blur-mm", type=float, default=1.25, help="that blur's Gaussian SD")
    parser.add_argument("--provenance", default="", help="where the CTs come from (recorded)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    devices = args.device or list(DEVICES)
    poses = args.pose or list(POSES)
    cases = ct_cases(args.ct, args.labels, args.ct_list)
    calibration = HUCalibration(marrow_fat_fraction=args.marrow_fat)
    models = args.model or ["dual-energy", "dual-energy-bone"]
    predictors = {name: Predictor(name, "cpu") for name in models}
    dose_factors = [float(f) for f in args.dose_factors.split(",") if f.strip()]
    blur_factors = [float(f) for f in args.blur_factors.split(",") if f.strip()]

    ct_sources, ct_measures = [], {d: [] for d in devices}
    ct_model = {name: [] for name in models}
    ct_draws = {name: [] for name in models}
    ct_dose = {name: [] for name in models}
    ct_blur = {name: [] for name in models}
    ct_clean = {d: [] for d in devices}
    for (case, group), pose in itertools.product(cases, poses):
        ct_path, labels_path = case.ct_path, case.labels_path
        projection, source = project_ct(
            ct_path, labels_path, case.label_map or args.label_map, calibration, pose=pose
        )
        source |= {
            "scan_id": posed_id(case.case_id, pose),
            "patient_id": case.patient_id,
        }
        ct_sources.append(
            {
                "ct": str(ct_path),
                "labels": str(labels_path),
                "ct_sha256": sha256(ct_path),
                "labels_sha256": sha256(labels_path),
                **source,
            }
        )
        for device in devices:
            noisy = scan_from_projection(projection, source, device, 0, NOISY)
            clean = scan_from_projection(projection, source, device, 0, CLEAN)
            bone, reference = reference_mask_bmd(noisy)
            ct_measures[device].append(measure(noisy, clean, reference))
            for name, predictor in predictors.items():
                ct_model[name].append(model_results(predictor, noisy, bone, reference))
                scan_row = {
                    "scan_id": noisy.scan_id,
                    "device": device,
                    "ct_file": source["ct_file"],
                    "ct_case": group,
                }
                draws = noise_draw_dice(predictor, projection, source, device, args.noise_draws)
                ct_draws[name].append(
                    scan_row
                    | {"union_dice": draws["union"], **distribution(draws["union"])}
                    | {
                        "vertebra_dice": draws["vertebrae"],
                        "mean_vertebra_dice": float(np.mean(draws["vertebrae"])),
                    }
                )
                dose = dose_response_dice(
                    predictor, projection, source, device, dose_factors, args.dose_draws
                )
                ct_dose[name].append(scan_row | {"union_dice_by_factor": dose})
                blurred = blur_response_dice(
                    predictor,
                    projection,
                    source,
                    device,
                    blur_factors,
                    args.dose_draws,
                    args.blur_mm,
                )
                ct_blur[name].append(scan_row | blurred)
            ct_clean[device].append(clean)
            ct_sources[-1].setdefault("coverage", {})[device] = {
                k: noisy.meta["anatomy"][k]
                for k in (
                    "vertebrae_labelled",
                    "missing_vertebrae",
                    "truncated_vertebrae",
                    "posterior_cut_vertebrae",
                    "field_cropped_px",
                )
            }

    proc_measures = {d: [] for d in devices}
    proc_model = {name: {d: [] for d in devices} for name in models}
    without_metal = {d: [] for d in devices}
    for device in devices:
        for i in track(range(args.n), description=f"procedural {device}", console=console):
            noisy = simulate_scan(args.seed, i, device, options=NOISY)
            clean = simulate_scan(args.seed, i, device, options=CLEAN)
            bone, reference = reference_mask_bmd(noisy)
            proc_measures[device].append(measure(noisy, clean, reference))
            for name, predictor in predictors.items():
                proc_model[name][device].append(model_results(predictor, noisy, bone, reference))
            if not has_metal(noisy) and len(without_metal[device]) < args.control_scans:
                without_metal[device].append(clean)
    swap_partner = {d: scans[0] for d, scans in without_metal.items() if scans}
    voxels = sorted({tuple(source["ct_voxel_mm"][:2]) for source in ct_sources})

    model_summary = {}
    for name, predictor in predictors.items():
        swaps = [
            {"scan_id": clean.scan_id, "device": device}
            | anatomy_swap(predictor, clean, swap_partner[device])
            for device in devices
            if device in swap_partner
            for clean in ct_clean[device]
        ]
        model_summary[name] = {
            "path": str(model_file(name)),
            "ct": ct_model[name],
            "noise_draws": {
                "draws": args.noise_draws,
                "scans": ct_draws[name],
                "by_ct": noise_draw_summary(ct_draws[name]),
            },
            "dose_response": {
                "factors": dose_factors,
                "draws": args.dose_draws,
                "scans": ct_dose[name],
            },
            "blur_response": {
                "factors": blur_factors,
                "sd_mm": args.blur_mm,
                "draws": args.dose_draws,
                "scans": ct_blur[name],
            },
            "procedural_summary": procedural_summary(proc_model[name]),
            "anatomy_swap": swaps,
            "resolution_control": [
                {"device": device} | resolution_control(predictor, without_metal[device], voxel)
                for voxel in voxels
                for device in devices
                if without_metal[device]
            ],
        }
    results = {
        "simulated": True,
        "note": "All figures are from SIMULATED DXA scans. CT-derived scans take their anatomy "
        "from real CT volumes and their image from the simulator's physics; procedural scans "
        "take both from the simulator.",
        "dxaspine": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "ct_sources": ct_sources,
        "ct_provenance": args.provenance,
        "procedural_cohort": {"seed": args.seed, "scans_per_device": args.n},
        "ct_poses": poses,
        "devices": devices,
        "background_band_mm": BAND_MM,
        "models": model_summary,
        "comparison": {d: compare(proc_measures[d], ct_measures[d]) for d in devices},
        "per_scan": {"ct": ct_measures, "procedural": proc_measures},
    }
    print_tables(results, console)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "realism.json"
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
