"""A DXA scan simulated from a labelled CT: the field of view placed on the
CT's projection, labels by docs/protocol.md, the simulator's physics, ground truth.

The anatomy comes from `simulate.ct` (areal densities on the CT grid); the
image comes from `generate.acquire_materials`, the same physics, PSF and
photon noise as procedural scans. `simulate_from_ct` is the Python twin of
`dxaspine simulate --from-ct CT --labels SEG`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from dxaspine import __version__
from dxaspine.scan import MIN_SIZE_PX, Scan
from dxaspine.simulate.ct import (
    LEVELS,
    LUMBAR,
    CTError,
    HUCalibration,
    LabelMap,
    Projection,
    nifti_stem,
    parse_label_map,
    project,
    read_ct,
)
from dxaspine.simulate.ct_pose import POSES, straighten_spine
from dxaspine.simulate.devices import DeviceProfile, get_device
from dxaspine.simulate.generate import RenderOptions, acquire_materials, reference_tbs

DEFAULT_PITCH_MM = 38.0
"""Centre-to-centre distance of lumbar vertebrae (body ~28 mm + disc ~10 mm), used
to place the field when only one vertebra is in the CT."""
NOISE_STREAM = 1
"""A CT scan's photon noise uses numpy.random.default_rng([seed, 0, NOISE_STREAM])."""


@dataclass(frozen=True)
class Field:
    """Where the device's pixels fall on the CT projection: pixel-centre
    coordinates in mm (rows from the CT's top slice, cols from its right edge)."""

    rows_mm: np.ndarray
    cols_mm: np.ndarray
    spacing_mm: tuple[float, float]
    cropped_px: tuple[int, int]
    """Rows and columns of the device's field that fall outside the CT and were dropped."""


def body_centres_mm(projection: Projection) -> dict[str, tuple[float, float]]:
    """(row, col) mm centroid of each vertebral body's projection, by level."""
    sr, sc = projection.spacing_mm
    centres = {}
    for name, body in projection.vertebra_body.items():
        rows, cols = np.nonzero(body)
        if rows.size:
            centres[name] = (float(rows.mean() * sr), float(cols.mean() * sc))
    return centres


def place_field(projection: Projection, device: DeviceProfile) -> Field:
    """The device's field of view centred on L1-L4, as in a clinical scan.

    Vertically the field is centred between L1 and L4, found by fitting the
    body centres against their level (so a CT without L4 still places it
    where L4 would be); laterally on the mean of the lumbar body centres.
    The parts of the field outside the CT are cropped off.
    """
    centres = body_centres_mm(projection)
    whole = {n: c for n, c in centres.items() if n not in projection.truncated} or centres
    if not whole:
        raise CTError("no vertebra of the label map has any voxel in the label volume")
    levels = np.array([LEVELS.index(n) for n in whole], dtype=float)
    rows = np.array([c[0] for c in whole.values()])
    if len(whole) >= 2:
        pitch, intercept = np.polyfit(levels, rows, 1)
    else:
        pitch, intercept = DEFAULT_PITCH_MM, float(rows[0] - DEFAULT_PITCH_MM * levels[0])
    centre_row = intercept + pitch * (LEVELS.index("L1") + LEVELS.index("L4")) / 2
    lumbar = [c[1] for n, c in centres.items() if n in LUMBAR] or [c[1] for c in centres.values()]
    centre_col = float(np.mean(lumbar))
    n_rows, n_cols = device.shape
    sr, sc = device.spacing_mm
    rows_mm = centre_row + (np.arange(n_rows) - (n_rows - 1) / 2) * sr
    cols_mm = centre_col + (np.arange(n_cols) - (n_cols - 1) / 2) * sc
    height = (projection.mineral.shape[0] - 1) * projection.spacing_mm[0]
    width = (projection.mineral.shape[1] - 1) * projection.spacing_mm[1]
    keep_rows = rows_mm[(rows_mm >= 0) & (rows_mm <= height)]
    keep_cols = cols_mm[(cols_mm >= 0) & (cols_mm <= width)]
    if min(keep_rows.size, keep_cols.size) < MIN_SIZE_PX:
        raise CTError(
            f"the CT covers only {keep_rows.size} x {keep_cols.size} pixels of the "
            f"{device.name} field around L1-L4; it needs at least {MIN_SIZE_PX} each way"
        )
    return Field(
        keep_rows,
        keep_cols,
        (sr, sc),
        (n_rows - keep_rows.size, n_cols - keep_cols.size),
    )


def resample(image: np.ndarray, spacing_mm: tuple[float, float], field: Field) -> np.ndarray:
    """`image` (on a grid of `spacing_mm`) at the field's pixel centres, float64.

    Bilinear; where a device pixel is larger than a CT voxel the image is
    first box-averaged over about one device pixel, so the value is the
    pixel's mean, not one sample.
    """
    image = np.asarray(image, dtype=np.float64)
    size = [max(round(dst / src), 1) for dst, src in zip(field.spacing_mm, spacing_mm, strict=True)]
    if max(size) > 1:
        image = ndimage.uniform_filter(image, size, mode="nearest")
    rr, cc = np.meshgrid(
        field.rows_mm / spacing_mm[0], field.cols_mm / spacing_mm[1], indexing="ij"
    )
    return ndimage.map_coordinates(image, [rr, cc], order=1, mode="nearest")


def at_voxel_resolution(
    image: np.ndarray, spacing_mm: tuple[float, float], voxel_mm: tuple[float, float]
) -> np.ndarray:
    """A map on a grid of `spacing_mm` as a CT of `voxel_mm` voxels (rows:
    feet-head, cols: right-left) would give it: averaged over each voxel and
    interpolated back bilinearly from the voxel centres (what `project_ct` and
    `resample` do). Procedural scans at a CT's resolution are the control for
    what the CT's voxels alone cost a model."""
    voxels = _voxel_means(image, spacing_mm, voxel_mm)
    return _from_voxels(voxels, np.shape(image), spacing_mm, voxel_mm)


def labels_at_voxel_resolution(
    labels: np.ndarray, spacing_mm: tuple[float, float], voxel_mm: tuple[float, float]
) -> np.ndarray:
    """A label map as a label volume of `voxel_mm` voxels would give it: a voxel
    carries a label that covers at least half of it, and a pixel the label whose
    voxels cover at least half of it (protocol §5, as `protocol_labels`)."""
    out = np.zeros(labels.shape, dtype=labels.dtype)
    for label in np.unique(labels[labels > 0]):
        voxels = _voxel_means(labels == label, spacing_mm, voxel_mm) >= 0.5
        pixels = _from_voxels(voxels.astype(float), labels.shape, spacing_mm, voxel_mm) >= 0.5
        out[pixels & (out == 0)] = label
    return out


def _voxel_means(
    image: np.ndarray, spacing_mm: tuple[float, float], voxel_mm: tuple[float, float]
) -> np.ndarray:
    """Means of `image` over voxels of `voxel_mm`, tiling the grid from its corner."""
    size = [max(round(v / s), 1) for v, s in zip(voxel_mm, spacing_mm, strict=True)]
    box = ndimage.uniform_filter(np.asarray(image, dtype=np.float64), size, mode="nearest")
    centres = (
        np.arange(v / 2, n * s, v) / s - 0.5
        for v, n, s in zip(voxel_mm, box.shape, spacing_mm, strict=True)
    )
    return ndimage.map_coordinates(
        box, np.meshgrid(*centres, indexing="ij"), order=1, mode="nearest"
    )


def _from_voxels(
    voxels: np.ndarray,
    shape: tuple[int, ...],
    spacing_mm: tuple[float, float],
    voxel_mm: tuple[float, float],
) -> np.ndarray:
    """Voxel values at the pixel centres of a grid of `shape` and `spacing_mm`
    that starts at the voxels' corner: `resample`, the CT path's own step."""
    rows_mm, cols_mm = (
        (np.arange(n) + 0.5) * s - v / 2
        for n, s, v in zip(shape, spacing_mm, voxel_mm, strict=True)
    )
    return resample(voxels, voxel_mm, Field(rows_mm, cols_mm, spacing_mm, (0, 0)))


def protocol_labels(projection: Projection, field: Field) -> np.ndarray:
    """L1..L4 labels (uint8) on the field by docs/protocol.md.

    A pixel is covered by a vertebra (or its body) when at least half of it is
    (protocol §5). Each vertebra's column is the band between the lateral
    edges of its body across the local spine axis (the line through the
    neighbouring body centres); its bone outside the column (the transverse
    processes) is background. Ownership (§3): a body pixel belongs to that
    body; other bone inside a column to the vertebra it belongs to; where
    several compete, to the one whose body centre is nearest along the axis.
    T12 and L5 take part in ownership but are not labelled.
    """
    centres = body_centres_mm(projection)
    names = [n for n in LEVELS if n in centres]
    rr, cc = np.meshgrid(field.rows_mm, field.cols_mm, indexing="ij")
    shape = rr.shape
    best_body = np.full(shape, np.inf)
    best_other = np.full(shape, np.inf)
    owner_body = np.full(shape, -1, dtype=np.int8)
    owner_other = np.full(shape, -1, dtype=np.int8)
    for k, name in enumerate(names):
        before = centres[names[k - 1]] if k > 0 else centres[name]
        after = centres[names[k + 1]] if k + 1 < len(names) else centres[name]
        axis = np.subtract(after, before)
        axis = axis / np.hypot(*axis) if np.hypot(*axis) > 0 else np.array([1.0, 0.0])
        across = np.array([-axis[1], axis[0]])
        dr, dc = rr - centres[name][0], cc - centres[name][1]
        along = np.abs(dr * axis[0] + dc * axis[1])
        lateral = dr * across[0] + dc * across[1]
        body = resample(projection.vertebra_body[name], projection.spacing_mm, field) >= 0.5
        bone = resample(projection.vertebra_any[name], projection.spacing_mm, field) >= 0.5
        if not body.any():
            continue
        inside = (lateral >= lateral[body].min()) & (lateral <= lateral[body].max())
        closer = body & (along < best_body)
        owner_body[closer], best_body[closer] = k, along[closer]
        closer = bone & inside & ~body & (along < best_other)
        owner_other[closer], best_other[closer] = k, along[closer]
    owner = np.where(owner_body >= 0, owner_body, owner_other)
    labels = np.zeros(shape, dtype=np.uint8)
    for k, name in enumerate(names):
        if name in LUMBAR:
            labels[owner == k] = LUMBAR.index(name) + 1
    return labels


def body_labels(projection: Projection, field: Field, labels: np.ndarray) -> np.ndarray:
    """The labels' vertebral-body pixels alone (uint8, 1..4): those of each
    labelled vertebra that its body covers at least half of; the rest of a
    label is posterior elements inside the column."""
    bodies = np.zeros_like(labels)
    for label, name in enumerate(LUMBAR, start=1):
        if name in projection.vertebra_body:
            body = resample(projection.vertebra_body[name], projection.spacing_mm, field) >= 0.5
            bodies[(labels == label) & body] = label
    return bodies


def ground_truth(
    labels: np.ndarray,
    vertebral_mineral: np.ndarray,
    soft: np.ndarray,
    spacing_mm: tuple[float, float],
    truncated: tuple[str, ...] = (),
    posterior_cut: tuple[str, ...] = (),
    endplate_tilt_deg: dict[str, float] | None = None,
    posterior_share: dict[str, float] | None = None,
) -> dict:
    """True BMD per vertebra (protocol §7): the vertebral mineral projecting on its
    mask over the mask's area; the L1-L4 total; soft tissue over the spine.
    `truncated` names vertebrae whose body the CT cuts, `posterior_cut` those
    whose posterior elements it cuts; `endplate_tilt_deg` (ct.endplate_tilt_deg)
    and `posterior_share` (ct.posterior_share) are recorded per vertebra where
    known."""
    pixel_area_cm2 = spacing_mm[0] * spacing_mm[1] / 100
    vertebrae = {}
    total_bmc = total_area = 0.0
    for label, name in enumerate(LUMBAR, start=1):
        mask = labels == label
        if not mask.any():
            continue
        area = float(mask.sum() * pixel_area_cm2)
        bmc = float(vertebral_mineral[mask].sum() * pixel_area_cm2)
        total_bmc, total_area = total_bmc + bmc, total_area + area
        vertebrae[name] = {
            "bmd_g_cm2": round(bmc / area, 6),
            "bmc_g": round(bmc, 6),
            "area_cm2": round(area, 6),
            "truncated": name in truncated,
            "posterior_cut": name in posterior_cut,
        }
        if endplate_tilt_deg and name in endplate_tilt_deg:
            vertebrae[name]["endplate_tilt_deg"] = endplate_tilt_deg[name]
        if posterior_share and name in posterior_share:
            vertebrae[name]["posterior_share"] = posterior_share[name]
    spine_soft = soft[labels > 0]
    return {
        "anatomy_source": "ct",
        "soft_tissue_g_cm2": round(float(np.median(spine_soft)) if spine_soft.size else 0.0, 4),
        "vertebrae": vertebrae,
        "total_bmd_g_cm2": round(total_bmc / total_area, 6) if total_area else None,
        "flags": {},
        "vertebra_names": list(vertebrae),
    }


def ct_scan_id(ct_path: Path | str) -> str:
    """'ct-<file name without .nii/.nii.gz>'."""
    return f"ct-{nifti_stem(ct_path)}"


def posed_id(stem: str, pose: str) -> str:
    """A CT scan's id in `pose`: the stem, with '-dxa' in the 'dxa' pose."""
    return stem + ("-dxa" if pose == "dxa" else "")


def project_ct(
    ct_path: Path | str,
    labels_path: Path | str,
    label_map: str | LabelMap = "totalsegmentator",
    calibration: HUCalibration | None = None,
    pose: str = "ct",
) -> tuple[Projection, dict]:
    """Read, check and project a labelled CT (the slow, device-independent step).

    `pose` 'ct' projects the spine as the CT shows it, 'dxa' with its
    lordosis flattened first (`ct_pose.straighten_spine`; the scan id gets
    '-dxa', the patient id stays the CT's, so both poses count as one patient
    when a training run splits by patient). Returns the projection and the
    description of its source that `scan_from_projection` stores in
    `meta["anatomy"]`. Raises CTError for a label volume off the CT grid, an
    unknown label map or pose, or no L1-L4 in the labels.
    """
    if pose not in POSES:
        raise CTError(f"unknown pose '{pose}'; use one of {', '.join(POSES)}")
    label_map = parse_label_map(label_map) if isinstance(label_map, str) else label_map
    if Path(labels_path).is_dir() and label_map.name != "totalsegmentator":
        raise CTError(
            f"{labels_path}: a folder of masks is read as TotalSegmentator v2 masks, whose ids "
            f"the 'totalsegmentator' label map names; label map '{label_map.name}' does not fit"
        )
    calibration = calibration or HUCalibration()
    volume = read_ct(ct_path, labels_path)
    turned: dict[str, float] = {}
    if pose == "dxa":
        volume, turned = straighten_spine(volume, label_map, calibration)
    projection = project(volume, label_map, calibration)
    if not set(projection.vertebra_any) & set(LUMBAR):
        ids = {n: label_map.vertebrae[n] for n in LUMBAR if n in label_map.vertebrae}
        raise CTError(
            f"{volume.labels_name}: no voxel carries an L1-L4 id of label map "
            f"'{label_map.name}' {ids}; pick the label map that matches the file (--label-map)"
        )
    source = {
        "source": "ct",
        "scan_id": posed_id(ct_scan_id(ct_path), pose),
        "patient_id": ct_scan_id(ct_path),
        "ct_file": volume.ct_name,
        "labels_file": volume.labels_name,
        "label_map": label_map.name,
        "label_ids": dict(label_map.vertebrae),
        "source_axcodes": "".join(volume.source_axcodes),
        "ct_voxel_mm": [round(v, 4) for v in volume.spacing_mm],
        "obliquity_deg": round(volume.obliquity_deg, 3),
        "hu_calibration": calibration.to_dict(),
        "pose": pose,
        "pose_turn_deg": turned,
    }
    return projection, source


def scan_from_ct(
    ct_path: Path | str,
    labels_path: Path | str,
    device: str | DeviceProfile = "hologic-like",
    seed: int = 0,
    label_map: str | LabelMap = "totalsegmentator",
    calibration: HUCalibration | None = None,
    options: RenderOptions | None = None,
    pose: str = "ct",
) -> Scan:
    """Simulate the DXA scan of a labelled CT on one device (same seed, same bytes).

    `pose`: 'ct' (the spine as the CT has it) or 'dxa' (lordosis flattened).
    Raises CTError for a label volume off the CT grid, an unknown label map
    or pose, no L1-L4 in the labels, or a CT too small for the field.
    """
    projection, source = project_ct(ct_path, labels_path, label_map, calibration, pose)
    return scan_from_projection(projection, source, device, seed, options)


def scan_from_projection(
    projection: Projection,
    source: dict,
    device: str | DeviceProfile = "hologic-like",
    seed: int = 0,
    options: RenderOptions | None = None,
) -> Scan:
    """The scan of a projected CT (`project_ct`) on one device: field, labels,
    physics (`acquire_materials`), ground truth and metadata."""
    options = options or RenderOptions()
    device = get_device(device) if isinstance(device, str) else device
    field = place_field(projection, device)
    maps = {
        name: resample(getattr(projection, name), projection.spacing_mm, field)
        for name in ("mineral", "vertebral_mineral", "lean", "adipose")
    }
    labels = protocol_labels(projection, field)
    noise_rng = np.random.default_rng([seed, 0, NOISE_STREAM]) if options.noise else None
    low, high = acquire_materials(
        maps["mineral"], maps["lean"], maps["adipose"], device, noise_rng, options
    )
    present = [n for n in LUMBAR if n in projection.vertebra_any]
    missing = [n for n in LUMBAR if n not in projection.vertebra_any]
    truncated = [n for n in present if n in projection.truncated]
    posterior_cut = [n for n in present if n in projection.posterior_cut]
    labelled = [n for i, n in enumerate(LUMBAR, start=1) if (labels == i).any()]
    scan_id = source["scan_id"]
    anatomy = {
        **{k: v for k, v in source.items() if k not in ("scan_id", "patient_id")},
        "vertebrae_present": present,
        "vertebrae_labelled": labelled,
        "missing_vertebrae": missing,
        "truncated_vertebrae": truncated,
        "posterior_cut_vertebrae": posterior_cut,
        "partial_coverage": bool(missing or truncated or posterior_cut),
        "field_cropped_px": list(field.cropped_px),
    }
    truth = ground_truth(
        labels,
        maps["vertebral_mineral"],
        maps["lean"] + maps["adipose"],
        device.spacing_mm,
        projection.truncated,
        projection.posterior_cut,
        projection.endplate_tilt_deg,
        projection.posterior_share,
    )
    truth["tbs"] = reference_tbs(low, high, labels, device) if labels.any() else None
    truth["flags"] = {"partial_coverage": anatomy["partial_coverage"]}
    truth["ct_file"] = source["ct_file"]
    meta = {
        "scan_id": scan_id,
        "patient_id": source.get("patient_id", scan_id),
        "device": device.name,
        "source": "dxaspine.simulate.ct",
        "simulated": True,
        "simulator_version": __version__,
        "anatomy": anatomy,
        "truth": truth,
    }
    truth_maps = {}
    if options.truth_maps:
        truth_maps = {
            "bone_g_cm2": maps["mineral"],
            "vertebral_bone_g_cm2": maps["vertebral_mineral"],
            "lean_g_cm2": maps["lean"],
            "adipose_g_cm2": maps["adipose"],
            "body_labels": body_labels(projection, field, labels),
        }
        truth_maps = {k: v.astype(np.float32) for k, v in truth_maps.items()}
    return Scan(
        low=low,
        high=high,
        spacing_mm=device.spacing_mm,
        meta=meta,
        mask=(labels > 0).astype(np.uint8),
        labels=labels,
        truth_maps=truth_maps,
    )


def coverage_note(scan: Scan) -> str:
    """One line on which of L1-L4 the CT gave, for the CLI and logs ('' when all, whole)."""
    anatomy = scan.meta["anatomy"]
    parts = []
    if anatomy["missing_vertebrae"]:
        parts.append(f"not in the CT: {', '.join(anatomy['missing_vertebrae'])}")
    if anatomy["truncated_vertebrae"]:
        parts.append(f"body cut by the CT's edge: {', '.join(anatomy['truncated_vertebrae'])}")
    if anatomy["posterior_cut_vertebrae"]:
        cut = ", ".join(anatomy["posterior_cut_vertebrae"])
        parts.append(f"posterior elements cut by the CT's edge: {cut}")
    if not parts:
        return ""
    return f"partial coverage ({'; '.join(parts)}): labelled {anatomy['vertebrae_labelled']}"


def simulate_from_ct(
    ct_path: Path | str,
    labels_path: Path | str,
    out: Path | str,
    device: str = "hologic-like",
    seed: int = 0,
    label_map: str | LabelMap = "totalsegmentator",
    truth_maps: bool = False,
    preview: bool = False,
    pose: str = "ct",
    calibration: HUCalibration | None = None,
) -> tuple[Path, Scan]:
    """Simulate and write `out/ct-<name>.npz` (`ct-<name>-dxa.npz` in the 'dxa' pose,
    and a preview PNG); return (path, scan)."""
    from dxaspine.io import write_scan

    scan = scan_from_ct(
        ct_path,
        labels_path,
        device,
        seed,
        label_map,
        calibration,
        options=RenderOptions(truth_maps=truth_maps),
        pose=pose,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{scan.scan_id}.npz"
    write_scan(scan, path)
    if preview:
        from dxaspine.simulate.cohort import write_previews

        write_previews(out, [path.name])
    return path, scan
