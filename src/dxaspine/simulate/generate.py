"""Render a sampled `Case` into a `Scan`: anatomy -> areal densities ->
dual-energy physics -> noisy log attenuations, with labels and ground truth
following docs/protocol.md."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dxaspine import __version__
from dxaspine.scan import Scan
from dxaspine.simulate import structures
from dxaspine.simulate.case import VERTEBRA_NAMES, AnatomyRanges, ArtefactRates, Case, sample_case
from dxaspine.simulate.devices import DeviceProfile, get_device
from dxaspine.simulate.physics import acquire
from dxaspine.simulate.soft_tissue import remove_tissue, soft_tissue
from dxaspine.simulate.spine import block_mean, extent_mm, place_vertebrae, render_vertebra
from dxaspine.simulate.tables import physics_tables
from dxaspine.simulate.texture import trabecular_texture

SUBSAMPLE = 3
"""Each pixel is rendered at SUBSAMPLE x SUBSAMPLE points (protocol §5)."""
TEXTURE_AMPLITUDE = 0.30
"""Relative standard deviation of the projected trabecular mineral."""
TEXTURE_CORRELATION_MM = 4.0
"""Distance over which the trabecular pattern stops correlating."""


@dataclass(frozen=True)
class RenderOptions:
    """Switches for tests and studies; defaults are the full simulation."""

    noise: bool = True
    blur: bool = True
    texture: bool = True
    truth_maps: bool = False


def simulate_scan(
    seed: int,
    index: int,
    device: str | DeviceProfile = "hologic-like",
    ranges: AnatomyRanges | None = None,
    rates: ArtefactRates | None = None,
    options: RenderOptions | None = None,
) -> Scan:
    """Simulate scan `index` of the cohort `seed`: the same arguments give the same scan.

    The patient depends on (seed, index) only, so one seed gives the same
    patients on every device profile.
    """
    case = sample_case(np.random.default_rng([seed, index]), f"s{seed}-{index:05d}", ranges, rates)
    noise_rng = np.random.default_rng([seed, index, 1])
    return render_case(
        case, get_device(device) if isinstance(device, str) else device, noise_rng, options
    )


def pixel_grid(device: DeviceProfile, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample-centre coordinates (y, x) in mm, `factor` samples per pixel side."""
    rows, cols = device.shape
    y = (np.arange(rows * factor) + 0.5) / factor * device.spacing_mm[0]
    x = (np.arange(cols * factor) + 0.5) / factor * device.spacing_mm[1]
    return y, x


def render_case(
    case: Case,
    device: DeviceProfile,
    noise_rng: np.random.Generator | None,
    options: RenderOptions | None = None,
) -> Scan:
    """Render one case on one device. `noise_rng` drives photon noise only."""
    options = options or RenderOptions()
    rows, cols = device.shape
    f = SUBSAMPLE
    y_sub, x_sub = pixel_grid(device, f)
    y_px, x_px = pixel_grid(device, 1)
    places = place_vertebrae(case, device.field_of_view_mm[1])
    rotation = np.deg2rad(case.spine.axial_rotation_deg)
    texture_rng = np.random.default_rng(case.texture_seed)

    owner_body = np.full((rows * f, cols * f), -1, dtype=np.int8)
    owner_posterior = np.full_like(owner_body, -1)
    owner_distance = np.full(owner_body.shape, np.inf, dtype=np.float32)
    body_distance = np.full(owner_body.shape, np.inf, dtype=np.float32)
    pieces = []
    for i, (vertebra, place) in enumerate(zip(case.vertebrae, places, strict=True)):
        radius = extent_mm(vertebra, place)
        r0 = max(int((place.centre_y_mm - radius) / device.spacing_mm[0]), 0)
        r1 = min(int((place.centre_y_mm + radius) / device.spacing_mm[0]) + 1, rows)
        c0 = max(int((place.centre_x_mm - radius) / device.spacing_mm[1]), 0)
        c1 = min(int((place.centre_x_mm + radius) / device.spacing_mm[1]) + 1, cols)
        if r1 <= r0 or c1 <= c0:
            pieces.append(None)
            continue
        sub = np.s_[r0 * f : r1 * f, c0 * f : c1 * f]
        bone = render_vertebra(vertebra, place, rotation, y_sub[sub[0], None], x_sub[None, sub[1]])
        # Tilted bodies can overlap in projection: the nearer centre along the axis wins.
        closer = bone.body & (bone.axial_mm < body_distance[sub])
        owner_body[sub][closer] = i
        body_distance[sub][closer] = bone.axial_mm[closer]
        closer = bone.posterior_in_column & (bone.axial_mm < owner_distance[sub])
        owner_posterior[sub][closer] = i
        owner_distance[sub][closer] = bone.axial_mm[closer]
        pieces.append(
            (
                np.s_[r0:r1, c0:c1],
                block_mean(bone.trabecular, f),
                block_mean(bone.structural, f),
                block_mean(bone.degenerative, f),
            )
        )

    owner = np.where(owner_body >= 0, owner_body, owner_posterior)
    owner_px = np.full((rows, cols), -1, dtype=np.int8)
    for i in range(len(case.vertebrae)):
        owner_px[block_mean(owner == i, f) > 0.5] = i
    labels = np.zeros((rows, cols), dtype=np.uint8)
    body_labels = np.zeros_like(labels)
    for i, vertebra in enumerate(case.vertebrae):
        if vertebra.label:
            labels[owner_px == i] = vertebra.label
            if options.truth_maps:
                body = block_mean(owner_body == i, f) > 0.5
                body_labels[(owner_px == i) & body] = vertebra.label

    vertebral = _scaled_vertebral_mineral(case, pieces, owner_px, device, texture_rng, options)
    other = block_mean(
        structures.ribs(case, places, y_sub[:, None], x_sub[None, :])
        + structures.iliac_crests(case, places, y_sub[:, None], x_sub[None, :])
        + structures.aortic_calcification(case, places, y_sub[:, None], x_sub[None, :]),
        f,
    )
    titanium = block_mean(structures.metal(case, places, y_sub[:, None], x_sub[None, :]), f)
    mineral = vertebral + other
    yy, xx = np.meshgrid(y_px, x_px, indexing="ij")
    lean, adipose = soft_tissue(case, places, yy, xx, device.spacing_mm, texture_rng)
    densities = physics_tables().density_g_cm3
    displaced = mineral / densities["hydroxyapatite"] + titanium / densities["titanium"]
    lean, adipose = remove_tissue(lean, adipose, displaced)

    low, high = acquire_materials(mineral, lean, adipose, device, noise_rng, options, titanium)
    truth = _ground_truth(case, labels, vertebral, lean + adipose, device)
    truth["tbs"] = reference_tbs(low, high, labels, device)
    meta = {
        "scan_id": case.scan_id,
        "patient_id": case.patient_id,
        "device": device.name,
        "source": "dxaspine.simulate",
        "simulator_version": __version__,
        "truth": truth,
    }
    maps = {}
    if options.truth_maps:
        maps = {
            "bone_g_cm2": mineral,
            "vertebral_bone_g_cm2": vertebral,
            "lean_g_cm2": lean,
            "adipose_g_cm2": adipose,
            "titanium_g_cm2": titanium,
            "body_labels": body_labels,
        }
        maps = {k: v.astype(np.float32) for k, v in maps.items()}
    return Scan(
        low=low,
        high=high,
        spacing_mm=device.spacing_mm,
        meta=meta,
        mask=(labels > 0).astype(np.uint8),
        labels=labels,
        truth_maps=maps,
    )


def reference_tbs(
    low: np.ndarray, high: np.ndarray, labels: np.ndarray, device: DeviceProfile
) -> dict[str, float | None] | None:
    """The scan's reference TBS: open TBS measured with the reference labels on
    the scan's own (noisy) image, by the rule `dxaspine score` uses
    (`report.bmd_and_tbs`), per vertebra and total; as an expert's TBS, it is
    a measurement, not a property of the bone. None for a device profile
    without a shipped calibration."""
    from dxaspine.report import bmd_and_tbs
    from dxaspine.scores import bone_areal_density, device_calibration

    try:
        calibration = device_calibration(device.name)
    except (KeyError, ValueError, FileNotFoundError):
        return None
    scan = Scan(low=low, high=high, spacing_mm=device.spacing_mm, meta={"device": device.name})
    _, values = bmd_and_tbs(scan, labels, calibration, bone_areal_density(scan, calibration))
    return {name: round(float(v), 6) if np.isfinite(v) else None for name, v in values.items()}


def acquire_materials(
    mineral_g_cm2: np.ndarray,
    lean_g_cm2: np.ndarray,
    adipose_g_cm2: np.ndarray,
    device: DeviceProfile,
    noise_rng: np.random.Generator | None,
    options: RenderOptions | None = None,
    titanium_g_cm2: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) log-attenuation images from material areal densities (g/cm2).

    The one path from anatomy to image for every source of anatomy: procedural
    cases (`render_case`) and CT volumes (`simulate.ct`). Mineral is
    hydroxyapatite, lean is skeletal muscle, adipose is ICRP adipose; the maps
    already have the tissue that bone displaces removed. Physics, PSF and
    photon noise follow `options` (noise needs `noise_rng`).
    """
    options = options or RenderOptions()
    materials = {"hydroxyapatite": mineral_g_cm2, "muscle": lean_g_cm2, "adipose": adipose_g_cm2}
    if titanium_g_cm2 is not None:
        materials["titanium"] = titanium_g_cm2
    return acquire(materials, device, noise_rng if options.noise else None, blur=options.blur)


def _scaled_vertebral_mineral(
    case: Case,
    pieces: list,
    owner_px: np.ndarray,
    device: DeviceProfile,
    texture_rng: np.random.Generator,
    options: RenderOptions,
) -> np.ndarray:
    """All vertebral mineral (g/cm2), each vertebra scaled to its drawn BMD.

    Posterior elements of one vertebra project into its neighbours' masks, so
    the scales solve a small linear system: over each vertebra's footprint,
    the mineral of all vertebrae averages to that vertebra's target BMD.
    Degenerative mineral (osteophytes, sclerosis) is added on top, unscaled,
    as it raises measured BMD above the patient's bone status.
    """
    rows, cols = owner_px.shape
    own_maps, degenerative = [], np.zeros((rows, cols))
    for vertebra, piece in zip(case.vertebrae, pieces, strict=True):
        own = np.zeros((rows, cols))
        if piece is not None:
            window, trabecular, structural, degen = piece
            if options.texture:
                field = trabecular_texture(
                    trabecular.shape,
                    device.spacing_mm,
                    vertebra.texture_hurst,
                    texture_rng,
                    correlation_mm=TEXTURE_CORRELATION_MM,
                )
                trabecular = trabecular * np.clip(1 + TEXTURE_AMPLITUDE * field, 0, None)
            own[window] = trabecular + structural
            degenerative[window] += degen
        own_maps.append(own)
    n = len(own_maps)
    footprints = [owner_px == i for i in range(n)]
    visible = [i for i in range(n) if footprints[i].any()]
    system = np.array([[own_maps[j][footprints[i]].sum() for j in visible] for i in visible])
    targets = np.array([case.vertebrae[i].bmd_target_g_cm2 * footprints[i].sum() for i in visible])
    scales = np.linalg.solve(system, targets)
    vertebral = degenerative
    for scale, i in zip(scales, visible, strict=True):
        vertebral = vertebral + scale * own_maps[i]
    return vertebral


def _ground_truth(
    case: Case, labels: np.ndarray, vertebral: np.ndarray, soft: np.ndarray, device: DeviceProfile
) -> dict:
    """Per-vertebra true BMD (protocol §7), patient facts and artefact flags."""
    pixel_area_cm2 = device.spacing_mm[0] * device.spacing_mm[1] / 100
    vertebrae = {}
    total_bmc = total_area = 0.0
    for vertebra in case.vertebrae:
        if not vertebra.label:
            continue
        mask = labels == vertebra.label
        area = float(mask.sum() * pixel_area_cm2)
        bmc = float(vertebral[mask].sum() * pixel_area_cm2)
        total_bmc, total_area = total_bmc + bmc, total_area + area
        vertebrae[vertebra.name] = {
            "bmd_g_cm2": round(bmc / area, 6) if area else None,
            "bmc_g": round(bmc, 6),
            "area_cm2": round(area, 6),
            "bmd_target_g_cm2": round(vertebra.bmd_target_g_cm2, 6),
            "texture_hurst": round(vertebra.texture_hurst, 6),
            "endplate_tilt_deg": round(abs(vertebra.sagittal_tilt_deg), 2),
            "posterior_share": None
            if vertebra.posterior_fraction is None
            else round(vertebra.posterior_fraction, 4),
            "fractured": vertebra.height_loss > 0,
            "osteophytes": bool(vertebra.osteophytes),
            "sclerosis": vertebra.sclerosis > 0,
        }
    spine_soft = soft[labels > 0]
    return {
        "age_years": case.age_years,
        "sex": case.sex,
        "bmi_kg_m2": case.bmi_kg_m2,
        "soft_tissue_g_cm2": round(float(np.median(spine_soft)) if spine_soft.size else 0.0, 4),
        "fat_fraction": round(case.soft.fat_fraction, 4),
        "tilt_deg": round(case.spine.tilt_deg, 3),
        "scoliosis_deg": round(case.spine.scoliosis_deg, 3),
        "axial_rotation_deg": round(case.spine.axial_rotation_deg, 3),
        "vertebrae": vertebrae,
        "total_bmd_g_cm2": round(total_bmc / total_area, 6) if total_area else None,
        "flags": {name: bool(value) for name, value in case.flags.items()},
        "vertebra_names": list(VERTEBRA_NAMES),
    }
