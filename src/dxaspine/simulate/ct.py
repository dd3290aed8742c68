"""Real anatomy from CT: labelled CT volumes -> material areal densities.

A CT in Hounsfield units (HU) and a vertebra label volume on the same grid
are read with nibabel, turned to a fixed orientation from the NIfTI affine
(rows from head to feet, columns from the patient's right to left, depth from
posterior to anterior), converted voxel by voxel to bone mineral
(hydroxyapatite), lean and adipose tissue (g/cm3) and summed along the
posterior-anterior rays into areal densities (g/cm2). `simulate.ct_scan`
places the DXA field on these maps and applies the simulator's own physics
(`generate.acquire_materials`). docs/ct.md gives the conversion and its
assumptions.

Axis convention after `read_ct`: array axes (I, L, A), i.e. index 0 grows
towards the feet, index 1 towards the patient's left, index 2 towards the
front. A projection along axis 2 is then an AP image in the radiological
convention of docs/protocol.md (row 0 cranial, patient's right on the left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from dxaspine.simulate.tables import physics_tables

LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5")
"""Vertebrae a label map may name, top to bottom; L1..L4 are labelled 1..4."""
LUMBAR = ("L1", "L2", "L3", "L4")
PROJECTION_AXCODES = ("I", "L", "A")
FRONT_DEPTH_MM = 15.0
"""Depth of the front of a vertebra whose centroid follows the spine's axis."""
SLAB_ROWS = 16
"""Axial slices converted and projected at a time."""
GRID_TOLERANCE_MM = 1e-3
"""Largest difference between the CT's and the label volume's affines accepted as one grid."""


class CTError(ValueError):
    """A CT or label volume that cannot be used, with a message saying how to fix it."""


@dataclass(frozen=True)
class LabelMap:
    """Which label ids are which vertebra, and what else the label volume tells.

    `bone_labels` are other bones (mineral wherever their HU exceeds lean
    tissue). `soft_labels` are organs and vessels whose HU is capped at
    `HUCalibration.soft_cap_hu`, so that iodine contrast is not read as bone.
    """

    name: str
    vertebrae: dict[str, int]
    bone_labels: tuple[int, ...] = ()
    soft_labels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.vertebrae) - set(LEVELS))
        if unknown:
            raise CTError(f"label map '{self.name}': unknown vertebrae {unknown}; use {LEVELS}")
        if not set(LUMBAR) & set(self.vertebrae):
            raise CTError(f"label map '{self.name}' names none of L1-L4")
        ids = list(self.vertebrae.values())
        if len(set(ids)) != len(ids) or min(ids) < 1:
            raise CTError(f"label map '{self.name}': vertebra ids must be distinct and >= 1")


def _ids(*ranges: tuple[int, int]) -> tuple[int, ...]:
    return tuple(i for first, last in ranges for i in range(first, last + 1))


LABEL_MAPS: dict[str, LabelMap] = {
    # TotalSegmentator v2, task "total" (totalsegmentator/map_to_binary.py, class_map["total"]):
    # 25 sacrum, 26 S1, 27 L5 ... 31 L1, 32 T12 ... 50 C1; 69-78 limb and hip bones;
    # 91 skull, 92-115 ribs, 116 sternum, 117 costal cartilages.
    "totalsegmentator": LabelMap(
        "totalsegmentator",
        {"T12": 32, "L1": 31, "L2": 30, "L3": 29, "L4": 28, "L5": 27},
        bone_labels=_ids((25, 50), (69, 78), (91, 117)),
        soft_labels=_ids((1, 24), (51, 68), (79, 90)),
    ),
    # TotalSegmentator v1 (class_map["total_v1"]): 18 L5 ... 22 L1, 23 T12 ... 41 C1.
    "totalsegmentator-v1": LabelMap(
        "totalsegmentator-v1",
        {"T12": 23, "L1": 22, "L2": 21, "L3": 20, "L4": 19, "L5": 18},
        bone_labels=_ids((18, 41), (58, 92)),
        soft_labels=_ids((1, 17), (42, 57), (94, 104)),
    ),
    # VerSe'19/'20 (Sekuboyina et al. 2021, `*_seg-vert_msk.nii.gz`): 1-7 C1-C7,
    # 8-19 T1-T12, 20-25 L1-L6, 26 sacrum, 28 T13 (transitional vertebrae).
    "verse": LabelMap(
        "verse",
        {"T12": 19, "L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24},
        bone_labels=_ids((1, 18), (25, 26), (28, 28)),
    ),
    "simple": LabelMap("simple", {"L1": 1, "L2": 2, "L3": 3, "L4": 4}),
}
"""Label map presets. The CLI's `--label-map` takes these names or 'L1=31,L2=30,...'."""


def parse_label_map(text: str) -> LabelMap:
    """A preset name, or explicit ids such as 'T12=32,L1=31,L2=30,L3=29,L4=28,L5=27'."""
    if text in LABEL_MAPS:
        return LABEL_MAPS[text]
    if "=" not in text:
        raise CTError(
            f"unknown label map '{text}'; use one of {', '.join(LABEL_MAPS)} "
            "or explicit ids like 'L1=31,L2=30,L3=29,L4=28'"
        )
    vertebrae = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            vertebrae[name.strip().upper()] = int(value)
        except ValueError:
            raise CTError(f"label map entry '{part}' must read NAME=ID, e.g. L1=31") from None
    return LabelMap("custom", vertebrae)


@dataclass(frozen=True)
class HUCalibration:
    """HU -> material densities. Defaults: `derive_hu_calibration(70.0)`, rounded.

    - HU < `air_hu`: nothing (air, lung, gas, and everything outside the body).
    - `air_hu`..`adipose_hu`: adipose tissue diluted by gas, in proportion to
      (HU + 1000) / (adipose_hu + 1000).
    - `adipose_hu`..`lean_hu`: a volume mixture of adipose and lean tissue.
    - above `lean_hu`, in bone: lean tissue plus hydroxyapatite
      `mineral_mg_cm3_per_hu` * (HU - lean_hu) mg/cm3, the mineral displacing
      its own volume of lean tissue (the slope already includes that).
    - above `lean_hu`, not bone: lean tissue, denser in proportion to
      (1000 + HU) / (1000 + lean_hu).
    A voxel is bone when a label says so (any vertebra of the label map, or one
    of its `bone_labels`) or when its HU exceeds `bone_hu`.

    `marrow_fat_fraction` f > 0 fills the room the mineral leaves in bone
    voxels with marrow of that adipose volume fraction instead of lean
    tissue: the mineral then starts at the marrow's HU, f * adipose_hu +
    (1 - f) * lean_hu, not at lean_hu (the marrow-fat correction of QCT;
    the slope is kept). Vertebral marrow is 30-60 % fat in adults, rising
    with age; one CT cannot tell, so the default 0 keeps the lean marrow
    of earlier versions.
    """

    air_hu: float = -500.0
    adipose_hu: float = -103.0
    lean_hu: float = 33.0
    mineral_mg_cm3_per_hu: float = 0.771
    bone_hu: float = 200.0
    soft_cap_hu: float = 60.0
    effective_energy_keV: float = 70.0
    marrow_fat_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.marrow_fat_fraction < 1.0:
            raise ValueError(
                f"marrow_fat_fraction must be in [0, 1), got {self.marrow_fat_fraction}"
            )

    @property
    def marrow_hu(self) -> float:
        """HU of bone-free marrow: where a bone voxel's mineral starts."""
        f = self.marrow_fat_fraction
        return f * self.adipose_hu + (1 - f) * self.lean_hu

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def derive_hu_calibration(effective_energy_keV: float = 70.0) -> HUCalibration:
    """The HU of adipose and lean tissue and the mineral slope at one effective
    CT energy, from the simulator's own attenuation tables (ICRP adipose,
    skeletal muscle, hydroxyapatite at 3.16 g/cm3, water): HU = 1000 (mu -
    mu_water) / mu_water. 70 keV stands for a 120 kVp CT."""
    tables = physics_tables()
    i = tables.energy_index(effective_energy_keV)
    rho = tables.density_g_cm3
    mu_water = tables.mu_rho["water"][i] * rho["water"]

    def hu(material: str) -> float:
        return float(1000 * (tables.mu_rho[material][i] * rho[material] - mu_water) / mu_water)

    # 1 mg of mineral in 1 cm3 of lean tissue adds its own attenuation and removes
    # 1/3160 cm3 of lean tissue.
    per_mg = (
        tables.mu_rho["hydroxyapatite"][i]
        - tables.mu_rho["muscle"][i] * rho["muscle"] / rho["hydroxyapatite"]
    ) * 1e-3
    hu_per_mg = float(1000 * per_mg / mu_water)
    return HUCalibration(
        adipose_hu=hu("adipose"),
        lean_hu=hu("muscle"),
        mineral_mg_cm3_per_hu=1.0 / hu_per_mg,
        effective_energy_keV=float(effective_energy_keV),
    )


def hu_to_materials(
    hu: np.ndarray, bone: np.ndarray, calibration: HUCalibration | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mineral, lean, adipose) densities in g/cm3 of voxels of `hu` (float).

    `bone` marks bone voxels (same shape). The rules are in `HUCalibration`;
    voxels to ignore (outside the body) should be set below `air_hu` first.
    """
    cal = calibration or HUCalibration()
    rho = physics_tables().density_g_cm3
    hu = np.asarray(hu, dtype=np.float32)
    excess = np.maximum(hu - cal.lean_hu, 0.0)
    marrow_excess = np.maximum(hu - cal.marrow_hu, 0.0)
    mineral = np.where(bone, marrow_excess * (cal.mineral_mg_cm3_per_hu * 1e-3), 0.0)
    mineral = np.minimum(mineral, rho["hydroxyapatite"]).astype(np.float32)
    room = 1.0 - mineral / rho["hydroxyapatite"]
    lean_fraction = np.clip((hu - cal.adipose_hu) / (cal.lean_hu - cal.adipose_hu), 0.0, 1.0)
    lean_fraction = np.where(
        bone, np.minimum(lean_fraction, 1.0 - cal.marrow_fat_fraction), lean_fraction
    )
    diluted = np.clip((hu + 1000.0) / (cal.adipose_hu + 1000.0), 0.0, 1.0)
    denser = np.where(bone, 1.0, (1000.0 + cal.lean_hu + excess) / (1000.0 + cal.lean_hu))
    present = hu >= cal.air_hu
    lean = np.where(present, rho["muscle"] * lean_fraction * denser * room, 0.0)
    adipose = np.where(present, rho["adipose"] * (1 - lean_fraction) * diluted * room, 0.0)
    return mineral, lean.astype(np.float32), adipose.astype(np.float32)


@dataclass
class CTVolume:
    """A CT and its label volume in projection order (axes I, L, A; see module doc)."""

    hu: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    source_axcodes: tuple[str, str, str]
    ct_name: str = ""
    labels_name: str = ""
    obliquity_deg: float = 0.0


def _load(path: Path, what: str):
    import nibabel as nib

    if not Path(path).is_file():
        raise CTError(f"{path}: no such {what} file")
    try:
        image = nib.load(str(path))
    except Exception as exc:
        raise CTError(f"{path}: cannot read the {what} as NIfTI: {exc}") from None
    if len(image.shape) != 3:
        raise CTError(f"{path}: the {what} must be a 3-D volume, got shape {image.shape}")
    return image


def check_same_grid(ct_shape, ct_affine, label_shape, label_affine, labels_name: str) -> None:
    """CTError unless the label volume lies on the CT's voxel grid (shape and affine)."""
    if tuple(ct_shape) != tuple(label_shape):
        raise CTError(
            f"{labels_name}: label volume shape {tuple(label_shape)} does not match the CT "
            f"{tuple(ct_shape)}; resample the labels onto the CT grid (nearest neighbour)"
        )
    difference = float(np.max(np.abs(np.asarray(ct_affine) - np.asarray(label_affine))))
    if difference > GRID_TOLERANCE_MM:
        raise CTError(
            f"{labels_name}: label volume affine differs from the CT's by up to "
            f"{difference:.3g} mm (same shape, other position or orientation); resample the "
            "labels onto the CT grid (nearest neighbour)"
        )


def check_label_values(labels: np.ndarray, labels_name: str) -> np.ndarray:
    """The label volume as int32; CTError when it holds negative or fractional ids,
    as a CT given for its labels or labels resampled with interpolation do."""
    low, high = float(labels.min()), float(labels.max())
    if low < 0:
        raise CTError(
            f"{labels_name}: label ids run from {low:g} to {high:g}, but ids are never "
            "negative; is this the CT rather than its label volume?"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        fractional = np.abs(labels - rounded) > 1e-3
        if fractional.any():
            raise CTError(
                f"{labels_name}: {int(fractional.sum())} voxels hold fractional label ids "
                f"(e.g. {float(labels[fractional][0]):g}); labels resampled with "
                "interpolation mix the ids at every edge: resample with nearest neighbour"
            )
        labels = rounded
    return labels.astype(np.int32)


def reorient(array: np.ndarray, affine: np.ndarray, axcodes=PROJECTION_AXCODES):
    """(array, affine) turned to `axcodes` (nearest axis-aligned orientation, no resampling)."""
    from nibabel import orientations

    transform = orientations.ornt_transform(
        orientations.io_orientation(affine), orientations.axcodes2ornt(axcodes)
    )
    turned = orientations.apply_orientation(array, transform)
    return turned, affine @ orientations.inv_ornt_aff(transform, array.shape)


def totalsegmentator_mask_ids() -> dict[str, int]:
    """TotalSegmentator v2 'total' task: mask file name (without .nii.gz) -> label id."""
    import json

    path = Path(__file__).parent / "data" / "totalsegmentator_v2_total.json"
    return json.loads(path.read_text(encoding="utf-8"))["ids"]


def nifti_stem(path: Path | str) -> str:
    """The file name without .nii.gz, .nii or .gz (any case)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def masks_to_labels(folder: Path, ct_image) -> np.ndarray:
    """One label volume (TotalSegmentator v2 ids) from a folder of TotalSegmentator's
    per-structure masks (`segmentations/vertebrae_L1.nii.gz`, ...), as its `--ml`
    option would have written it. Each mask must lie on the CT's grid."""
    ids = totalsegmentator_mask_ids()
    files = {
        p: ids[nifti_stem(p)]
        for p in sorted(folder.iterdir())
        if p.name.endswith((".nii", ".nii.gz")) and nifti_stem(p) in ids
    }
    if not files:
        raise CTError(
            f"{folder}: no TotalSegmentator mask files (vertebrae_L1.nii.gz, ...) in this "
            "folder; give a label volume file, or the folder TotalSegmentator wrote"
        )
    labels = np.zeros(ct_image.shape, dtype=np.int32)
    for path, label_id in files.items():
        mask = _load(path, "mask")
        check_same_grid(ct_image.shape, ct_image.affine, mask.shape, mask.affine, str(path))
        labels[np.asarray(mask.dataobj) > 0] = label_id
    return labels


def read_ct(ct_path: Path | str, labels_path: Path | str) -> CTVolume:
    """Read a CT (HU) and a label volume (or a folder of TotalSegmentator masks);
    check they share a grid; orient them (I, L, A)."""
    import nibabel as nib

    ct_image = _load(Path(ct_path), "CT")
    if Path(labels_path).is_dir():
        labels = masks_to_labels(Path(labels_path), ct_image)
    else:
        label_image = _load(Path(labels_path), "label volume")
        check_same_grid(
            ct_image.shape, ct_image.affine, label_image.shape, label_image.affine, str(labels_path)
        )
        labels = check_label_values(np.asarray(label_image.dataobj), str(labels_path))
    hu = ct_image.get_fdata(dtype=np.float32)
    hu, affine = reorient(hu, ct_image.affine)
    labels, _ = reorient(labels, ct_image.affine)
    spacing = tuple(float(v) for v in nib.affines.voxel_sizes(affine))
    return CTVolume(
        hu=np.ascontiguousarray(hu),
        labels=np.ascontiguousarray(labels),
        spacing_mm=spacing,  # type: ignore[arg-type]
        source_axcodes=tuple(nib.aff2axcodes(ct_image.affine)),  # type: ignore[arg-type]
        ct_name=Path(ct_path).name,
        labels_name=Path(labels_path).name,
        obliquity_deg=float(np.degrees(np.max(nib.affines.obliquity(ct_image.affine)))),
    )


def body_mask(hu: np.ndarray, air_hu: float) -> np.ndarray:
    """The patient: the largest connected region above `air_hu` (drops the couch,
    the scanner's padding outside the reconstruction circle, and stray objects)."""
    solid = hu >= air_hu
    components, n = ndimage.label(solid)
    if n <= 1:
        return solid
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def body_cut_index(vertebra: np.ndarray, spacing_ap_mm: float) -> int:
    """Index along the AP axis (axis 2, growing anteriorly) where the vertebral body begins.

    The body is the front of the vertebra. Behind it the vertebra narrows to
    the two pedicles beside the spinal canal before the laminae and transverse
    processes widen it again, so the body's back is the fewest-voxel AP plane
    15-50 mm behind the vertebra's front (the first one, where several tie,
    e.g. a vertebra with no posterior elements: then all of it is body).
    """
    profile = vertebra.sum(axis=(0, 1)).astype(np.float64)
    present = np.flatnonzero(profile)
    front = int(present[-1])
    profile = ndimage.uniform_filter1d(profile, max(round(3.0 / spacing_ap_mm), 1))
    near = max(front - round(50.0 / spacing_ap_mm), 0)
    far = max(front - round(15.0 / spacing_ap_mm), 0)
    if far <= near:
        return int(present[0])
    window = profile[near : far + 1][::-1]  # from the front backwards
    return far - int(np.argmin(window))


@dataclass
class Projection:
    """Areal densities (g/cm2) and vertebra footprints of a CT seen from the front.

    Every image is (rows, cols) on the CT grid of axes I, L with `spacing_mm`.
    `vertebra_any[level]` is True where the ray crosses the vertebra's label,
    `vertebra_body[level]` where it crosses its body. `truncated` lists levels
    whose body touches the edge of the CT volume, `posterior_cut` levels whose
    body is whole but whose posterior elements touch it.
    """

    mineral: np.ndarray
    vertebral_mineral: np.ndarray
    lean: np.ndarray
    adipose: np.ndarray
    spacing_mm: tuple[float, float]
    vertebra_any: dict[str, np.ndarray] = field(default_factory=dict)
    vertebra_body: dict[str, np.ndarray] = field(default_factory=dict)
    truncated: tuple[str, ...] = ()
    posterior_cut: tuple[str, ...] = ()
    endplate_tilt_deg: dict[str, float] = field(default_factory=dict)
    posterior_share: dict[str, float] = field(default_factory=dict)
    """Share of each whole vertebra's mineral behind its body (`vertebral_body`)."""


def project(
    volume: CTVolume, label_map: LabelMap, calibration: HUCalibration | None = None
) -> Projection:
    """Sum the material densities of `volume` along the AP axis into areal densities."""
    cal = calibration or HUCalibration()
    hu, labels = volume.hu, volume.labels
    present = {name: i for name, i in label_map.vertebrae.items() if np.any(labels == i)}
    labelled = np.isin(labels, list(label_map.vertebrae.values()))
    hu = np.where(body_mask(hu, cal.air_hu), hu, -1000.0).astype(np.float32)
    if label_map.soft_labels:
        soft = np.isin(labels, label_map.soft_labels)
        hu = np.where(soft, np.minimum(hu, cal.soft_cap_hu), hu)
    bone = labelled | np.isin(labels, label_map.bone_labels) | (hu > cal.bone_hu)
    # Vertebral mineral: the labelled voxels and the bone of their one-voxel rim,
    # where a label drawn a little tight leaves part of the cortex outside.
    vertebral = bone & ndimage.binary_dilation(labelled, iterations=1)
    depth_cm = volume.spacing_mm[2] / 10.0
    maps = np.zeros((4, *hu.shape[:2]))  # mineral, vertebral mineral, lean, adipose
    for start in range(0, hu.shape[0], SLAB_ROWS):  # in slabs: bounded memory
        rows = slice(start, start + SLAB_ROWS)
        mineral, lean, adipose = hu_to_materials(hu[rows], bone[rows], cal)
        vertebral_mineral = np.where(vertebral[rows], mineral, 0.0)
        for k, density in enumerate((mineral, vertebral_mineral, lean, adipose)):
            maps[k, rows] = density.sum(axis=2, dtype=np.float64) * depth_cm
    result = Projection(
        mineral=maps[0],
        vertebral_mineral=maps[1],
        lean=maps[2],
        adipose=maps[3],
        spacing_mm=(volume.spacing_mm[0], volume.spacing_mm[1]),
    )
    centroids_mm = {}
    for name, label_id in present.items():
        own = labels == label_id
        body = vertebral_body(own, volume.spacing_mm[2])
        result.vertebra_any[name] = own.any(axis=2)
        result.vertebra_body[name] = body.any(axis=2)
        if _touches_edge(body):
            result.truncated += (name,)
            continue
        if _touches_edge(own):
            result.posterior_cut += (name,)
        else:
            result.posterior_share[name] = posterior_share(hu, bone, own, body, cal)
        centroids_mm[name] = front_centroid_mm(own, volume.spacing_mm)
    result.endplate_tilt_deg = endplate_tilt_deg(centroids_mm)
    return result


def posterior_share(
    hu: np.ndarray, bone: np.ndarray, vertebra: np.ndarray, body: np.ndarray, cal: HUCalibration
) -> float:
    """Share of a vertebra's mineral (its labelled voxels) outside its body: the
    posterior elements' part, 47-51 % in the literature (docs/physics.md)."""
    rows = np.flatnonzero(vertebra.any(axis=(1, 2)))
    box = slice(rows[0], rows[-1] + 1)
    mineral, _, _ = hu_to_materials(hu[box], bone[box], cal)
    total = float(mineral[vertebra[box]].sum())
    return round(1.0 - float(mineral[body[box]].sum()) / total, 4) if total > 0 else math.nan


def front_centroid_mm(vertebra: np.ndarray, spacing_mm: tuple[float, float, float]):
    """(inferior, anterior) mm centroid of the front FRONT_DEPTH_MM of a vertebra.

    The front of the body, free of posterior elements, whatever their size
    and however the vertebra leans: the line through these centroids follows
    the spine's axis (`vertebral_body`'s cut is less stable on a vertebra
    tilted by 20 deg or more).
    """
    voxels = np.argwhere(vertebra)
    front = voxels[:, 2] >= voxels[:, 2].max() - FRONT_DEPTH_MM / spacing_mm[2]
    return np.array(
        [voxels[front, 0].mean() * spacing_mm[0], voxels[front, 2].mean() * spacing_mm[2]]
    )


def spine_axis_deg(centroids_mm: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Lean of the local spine axis at each level, degrees, signed (positive:
    the axis runs forwards going down).

    The axis is the line through the centroids (inferior, anterior mm; see
    `front_centroid_mm`) of the nearest levels above and below, or of the
    level and its one neighbour at an end. Levels with no neighbour are left
    out.
    """
    ordered = [name for name in LEVELS if name in centroids_mm]
    axes = {}
    for k, name in enumerate(ordered):
        upper = ordered[max(k - 1, 0)]
        lower = ordered[min(k + 1, len(ordered) - 1)]
        if upper == lower:
            continue
        d_inferior = centroids_mm[lower][0] - centroids_mm[upper][0]
        d_anterior = centroids_mm[lower][1] - centroids_mm[upper][1]
        axes[name] = float(np.degrees(np.arctan2(d_anterior, d_inferior)))
    return axes


def endplate_tilt_deg(centroids_mm: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Tilt of each body's endplates against the AP beam, degrees, unsigned.

    The endplates are taken perpendicular to the local spine axis
    (`spine_axis_deg`). 0 means the beam runs along the endplates and sees
    the disc spaces edge-on; a body of depth d tilted by t smears its
    endplates over d tan(t). Levels with no whole neighbour are left out.
    """
    return {name: round(abs(lean), 2) for name, lean in spine_axis_deg(centroids_mm).items()}


def vertebral_body(vertebra: np.ndarray, spacing_ap_mm: float) -> np.ndarray:
    """The body of one vertebra's voxels: the part in front of `body_cut_index`,
    its largest connected piece (stray voxels of processes dropped)."""
    body = vertebra.copy()
    body[:, :, : body_cut_index(vertebra, spacing_ap_mm)] = False
    pieces, n = ndimage.label(body)
    if n > 1:
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        body = pieces == int(np.argmax(sizes))
    return body


def _touches_edge(mask: np.ndarray) -> bool:
    return any(
        np.take(mask, index, axis=axis).any() for axis in range(mask.ndim) for index in (0, -1)
    )
