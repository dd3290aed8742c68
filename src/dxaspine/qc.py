"""Quality control: is an L1-L4 labelling anatomically plausible?

A network can fail without knowing it: on anatomy it was not trained on
(docs/ct.md) it may run L1 into L2 or squeeze four labels into three
vertebrae, and the scores of such a labelling look like any other. These
checks read only the label map and its pixel spacing, and name what a
reviewer should look at. They flag; they never change the labels or the
scores. The limits are anatomy's (docs/qc.md), wide enough that a normal
spine passes, and a flag means "look at this scan", not "this is wrong":
a compression fracture also makes a vertebra much smaller than its
neighbour, and ISCD asks for it to be reviewed and excluded too.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from dxaspine.labels import VERTEBRAE


@dataclass(frozen=True)
class QCConfig:
    """Limits of a plausible labelling (defaults: docs/qc.md)."""

    min_area_cm2: float = 6.0
    """Smallest plausible projected vertebra area (L1-L4 are 12-18 cm2 in adults)."""
    max_area_cm2: float = 30.0
    """Largest plausible projected vertebra area."""
    min_neighbour_ratio: float = 0.6
    """Smallest plausible ratio of a vertebra's area, or height, to its neighbour's."""
    max_gap_mm: float = 20.0
    """Widest plausible gap between neighbouring vertebrae (a disc is 8-12 mm)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_area_cm2 < self.max_area_cm2:
            raise ValueError("QCConfig: need 0 < min_area_cm2 < max_area_cm2")
        if not 0 < self.min_neighbour_ratio < 1:
            raise ValueError("QCConfig: min_neighbour_ratio must lie in (0, 1)")
        if self.max_gap_mm <= 0:
            raise ValueError("QCConfig: max_gap_mm must be positive")


@dataclass(frozen=True)
class Finding:
    """One reason to review a labelling: a code, the vertebrae concerned, a sentence."""

    code: str
    vertebrae: tuple[str, ...]
    message: str

    def to_dict(self) -> dict:
        return {**asdict(self), "vertebrae": list(self.vertebrae)}


CODES = {
    "missing": "a vertebra of L1-L4 has no label",
    "at_image_edge": "a vertebra touches the image's edge, so the image may cut it",
    "area": "a vertebra's area lies outside the plausible range",
    "neighbour_area": "a vertebra's area is far from its neighbour's",
    "neighbour_height": "a vertebra's height is far from its neighbour's",
    "gap": "neighbouring vertebrae lie further apart than a disc",
}
"""Every finding code and what it means."""
VERTEBRAE_ORDER = {name: i for i, name in VERTEBRAE.items()}


def vertebra_height_mm(mask: np.ndarray, row_spacing_mm: float) -> float:
    """Median height (mm) of the mask's columns over the middle half of its width:
    the body's height, little moved by tilt or by the transverse processes."""
    cols = np.flatnonzero(mask.any(axis=0))
    first, last = int(cols[0]), int(cols[-1])
    quarter = (last - first) // 4
    middle = mask[:, first + quarter : last - quarter + 1]
    heights = middle.sum(axis=0)
    return float(np.median(heights[heights > 0])) * row_spacing_mm


def gap_mm(upper: np.ndarray, lower: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    """Shortest distance (mm) between the two masks' pixel centres (0 where they overlap)."""
    distance = ndimage.distance_transform_edt(~upper, sampling=spacing_mm)
    return float(distance[lower].min())


def check_labels(
    labels: np.ndarray, spacing_mm: tuple[float, float], config: QCConfig | None = None
) -> list[Finding]:
    """Findings on an L1..L4 label map (0 background, 1..4 = L1..L4), in check order."""
    config = config or QCConfig()
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D map, got shape {labels.shape}")
    row_mm, col_mm = (float(s) for s in spacing_mm)
    pixel_cm2 = row_mm * col_mm / 100
    masks = {name: labels == i for i, name in VERTEBRAE.items()}
    present = {name: mask for name, mask in masks.items() if mask.any()}
    findings = []
    missing = tuple(name for name in VERTEBRAE.values() if name not in present)
    if missing:
        findings.append(Finding("missing", missing, f"no label for {', '.join(missing)}"))
    edge = np.ones(labels.shape, dtype=bool)
    edge[1:-1, 1:-1] = False
    cut = tuple(name for name, mask in present.items() if (mask & edge).any())
    if cut:
        findings.append(
            Finding(
                "at_image_edge",
                cut,
                f"{', '.join(cut)} {'touches' if len(cut) == 1 else 'touch'} the image's "
                f"edge: the image may cut {'it' if len(cut) == 1 else 'them'}, and area "
                "and BMD be incomplete",
            )
        )
    areas = {name: float(mask.sum()) * pixel_cm2 for name, mask in present.items()}
    for name, area in areas.items():
        if not config.min_area_cm2 <= area <= config.max_area_cm2:
            findings.append(
                Finding(
                    "area",
                    (name,),
                    f"{name} covers {area:.1f} cm2, outside "
                    f"{config.min_area_cm2:g}-{config.max_area_cm2:g} cm2",
                )
            )
    heights = {name: vertebra_height_mm(mask, row_mm) for name, mask in present.items()}
    names = list(present)
    for upper, lower in itertools.pairwise(names):
        if VERTEBRAE_ORDER[lower] - VERTEBRAE_ORDER[upper] != 1:
            continue
        for code, what, values, unit in (
            ("neighbour_area", "area", areas, "cm2"),
            ("neighbour_height", "height", heights, "mm"),
        ):
            small, large = sorted((values[upper], values[lower]))
            if small < config.min_neighbour_ratio * large:
                findings.append(
                    Finding(
                        code,
                        (upper, lower),
                        f"{upper} and {lower} differ in {what} ({values[upper]:.1f} vs "
                        f"{values[lower]:.1f} {unit}): a label may run into the next "
                        "vertebra, or a vertebra be fractured",
                    )
                )
        distance = gap_mm(present[upper], present[lower], (row_mm, col_mm))
        if distance > config.max_gap_mm:
            findings.append(
                Finding(
                    "gap",
                    (upper, lower),
                    f"{upper} and {lower} lie {distance:.0f} mm apart, more than a disc: "
                    "a vertebra may be missed between them",
                )
            )
    return findings


def qc_report(findings: list[Finding]) -> dict:
    """The `qc` entry of a score report: whether to review, and why."""
    return {"review": bool(findings), "findings": [f.to_dict() for f in findings]}
