"""DXA positioning of a CT: the lumbar curve flattened, as on the DXA table.

A CT is taken lying flat with the legs straight, so the lumbar spine keeps
its lordosis and the vertebral endplates lean against a posterior-anterior
beam: the bodies overlap in projection and the disc spaces vanish. For a
spine DXA the patient's legs rest on a block, which flattens the lordosis
and opens the disc spaces. `straighten_spine` imitates that on the CT: each
vertebra is turned rigidly in the sagittal plane about the centroid of its
front (`ct.front_centroid_mm`) until its local spine axis (the line through
its neighbours' front centroids, `ct.spine_axis_deg`) runs head to feet,
and moved along that axis so that neighbouring centroids keep their
distance. Only the
labelled vertebrae (with the bone of their one-voxel rim) move; discs, soft
tissue, organs and ribs stay where the CT has them, and the voxels a
vertebra leaves become soft tissue. It is a model of the positioning, not
a biomechanical one: docs/ct.md says what it leaves out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
from scipy import ndimage

from dxaspine.simulate.ct import (
    LEVELS,
    CTVolume,
    HUCalibration,
    LabelMap,
    _touches_edge,
    front_centroid_mm,
    spine_axis_deg,
    vertebral_body,
)

POSES = ("ct", "dxa")
"""'ct': as the CT was taken; 'dxa': lordosis flattened (`straighten_spine`)."""
FILL_HU = 40.0
"""HU of the voxels a moved vertebra leaves: soft tissue (disc, muscle)."""


def straighten_spine(
    volume: CTVolume,
    label_map: LabelMap,
    calibration: HUCalibration | None = None,
    fill_hu: float = FILL_HU,
) -> tuple[CTVolume, dict[str, float]]:
    """The CT with its spine straightened; also the turn applied per level (deg, signed).

    A vertebra whose body the CT cuts moves with its nearest whole
    neighbour. With fewer than two whole vertebrae there is no axis to
    straighten, and the volume comes back unchanged.
    """
    cal = calibration or HUCalibration()
    sa = volume.spacing_mm[2]
    masks = {name: volume.labels == i for name, i in label_map.vertebrae.items() if name in LEVELS}
    own = {name: mask for name, mask in masks.items() if mask.any()}
    centroids = {
        name: front_centroid_mm(mask, volume.spacing_mm)
        for name, mask in own.items()
        if not _touches_edge(vertebral_body(mask, sa))
    }
    whole = [name for name in LEVELS if name in centroids]
    if len(whole) < 2:
        return volume, {}

    # Turn angle and new centroid of each whole vertebra, top to bottom.
    angle = {name: math.radians(lean) for name, lean in spine_axis_deg(centroids).items()}
    target = {whole[0]: centroids[whole[0]]}
    for upper, name in itertools.pairwise(whole):
        step = float(np.linalg.norm(centroids[name] - centroids[upper]))
        target[name] = target[upper] + np.array([step, 0.0])
    # A cut vertebra follows its nearest whole neighbour rigidly.
    moves = {}
    for name in own:
        anchor = min(whole, key=lambda w: abs(LEVELS.index(w) - LEVELS.index(name)))
        moves[name] = (angle[anchor], centroids[anchor], target[anchor])

    hu = volume.hu.copy()
    labels = volume.labels.copy()
    carried = {}
    for name, mask in own.items():
        # The vertebra and the bone of its one-voxel rim (a tight label leaves
        # cortex outside it, which must not stay behind as a ghost endplate).
        rim = ndimage.binary_dilation(mask) & (volume.hu > cal.bone_hu) & (volume.labels == 0)
        region = mask | rim
        carried[name] = region
        hu[region] = fill_hu
        labels[mask] = 0
    for name, mask in own.items():
        turn, centre, new_centre = moves[name]
        label_id = label_map.vertebrae[name]
        _paste(volume, hu, labels, mask, carried[name], label_id, turn, centre, new_centre)
    turned = {name: round(math.degrees(moves[name][0]), 2) for name in own}
    return replace(volume, hu=hu, labels=labels), turned


def _paste(volume, hu, labels, mask, region, label_id, turn, centre, new_centre) -> None:
    """Write one vertebra, turned by -`turn` about `centre` and moved to `new_centre`,
    into `hu` and `labels` (in place)."""
    si, _, sa = volume.spacing_mm
    cos, sin = math.cos(turn), math.sin(turn)
    idx = np.argwhere(region)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    # Where the region's bounding box lands: its corners, turned and moved.
    corners_i = np.array([lo[0], hi[0], lo[0], hi[0]]) * si - centre[0]
    corners_a = np.array([lo[2], lo[2], hi[2], hi[2]]) * sa - centre[1]
    new_i = cos * corners_i + sin * corners_a + new_centre[0]
    new_a = -sin * corners_i + cos * corners_a + new_centre[1]
    shape = volume.hu.shape
    i0, i1 = max(int(new_i.min() / si) - 1, 0), min(int(new_i.max() / si) + 2, shape[0])
    a0, a1 = max(int(new_a.min() / sa) - 1, 0), min(int(new_a.max() / sa) + 2, shape[2])
    if i0 >= i1 or a0 >= a1:
        return  # moved out of the CT entirely
    l0, l1 = lo[1], hi[1] + 1
    gi, gl, ga = np.meshgrid(
        np.arange(i0, i1) * si - new_centre[0],
        np.arange(l0, l1),
        np.arange(a0, a1) * sa - new_centre[1],
        indexing="ij",
    )
    # Inverse map: destination voxel -> source voxel (turn back by +turn).
    source = np.stack(
        [
            (cos * gi - sin * ga + centre[0]) / si,
            gl.astype(float),
            (sin * gi + cos * ga + centre[1]) / sa,
        ]
    )
    # Nearest neighbour: every moved voxel keeps its HU, so the mineral is
    # conserved (interpolated edges would drop below the bone threshold).
    inside_region = ndimage.map_coordinates(region, source, order=0).astype(bool)
    inside_label = ndimage.map_coordinates(mask, source, order=0).astype(bool)
    values = ndimage.map_coordinates(volume.hu, source, order=0, mode="nearest")
    box = (slice(i0, i1), slice(l0, l1), slice(a0, a1))
    hu[box] = np.where(inside_region, values, hu[box])
    labels[box] = np.where(inside_label, label_id, labels[box])
