"""The abdomen around the spine: lean and adipose areal densities (g/cm2).

Thickness is largest at the midline and falls toward the flanks (an
elliptical abdomen), fat fraction rises toward the flanks (subcutaneous fat)
and drops over the spine (its lean muscles), the psoas muscles replace fat
beside the spine and widen downwards, slow random fields vary both, and
bowel gas pockets remove tissue.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import zoom

from dxaspine.simulate.case import Case
from dxaspine.simulate.spine import Placement
from dxaspine.simulate.texture import fbm_field

SPINE_COLUMN_TAPER_MM = 15.0
"""The fat deficit over the spine fades out over this distance beyond the
vertebral bodies' lateral edges (cosine taper)."""


def _smooth_field(
    shape: tuple[int, int], spacing_mm: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """A slowly varying unit-variance field (synthesised coarse, then interpolated)."""
    coarse_shape = (max(shape[0] // 8, 4), max(shape[1] // 8, 4))
    coarse = fbm_field(coarse_shape, (spacing_mm[0] * 8, spacing_mm[1] * 8), 0.95, rng)
    factors = (shape[0] / coarse_shape[0], shape[1] / coarse_shape[1])
    return zoom(coarse, factors, order=1, mode="nearest")[: shape[0], : shape[1]]


def spine_column(distance_mm: np.ndarray, half_width_mm: np.ndarray) -> np.ndarray:
    """1 over the vertebral bodies (lateral distance from the spine's axis within
    their half-width), falling to 0 over `SPINE_COLUMN_TAPER_MM` beyond them."""
    beyond = np.clip((distance_mm - half_width_mm) / SPINE_COLUMN_TAPER_MM, 0.0, 1.0)
    return np.cos(0.5 * np.pi * beyond) ** 2


def soft_tissue(
    case: Case,
    places: list[Placement],
    y: np.ndarray,
    x: np.ndarray,
    spacing_mm: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Lean and adipose areal densities (g/cm2) at pixel centres (y, x in mm, 2-D)."""
    soft = case.soft
    centres_y = np.array([p.centre_y_mm for p in places])
    spine_x = np.interp(y, centres_y, [p.centre_x_mm for p in places])
    midline = places[2].centre_x_mm
    half_width_mm = soft.half_width_cm * 10
    lateral = (x - midline) / half_width_mm
    field_mid = 0.5 * (y.max() + y.min())
    thickness = soft.centre_g_cm2 * np.sqrt(np.clip(1 - lateral**2, 0.05, None))
    thickness = thickness * (1 + soft.vertical_gradient * (y - field_mid) / 100)
    thickness = thickness * (1 + 0.02 * _smooth_field(y.shape, spacing_mm, rng))
    fat = soft.fat_fraction + 0.10 * lateral**2 + 0.03 * _smooth_field(y.shape, spacing_mm, rng)
    half_width = np.interp(y, centres_y, [v.half_width_mm for v in case.vertebrae])
    fat = fat * (1 - soft.paraspinal_fat_deficit * spine_column(np.abs(x - spine_x), half_width))
    fat = np.clip(fat, 0.03, 0.8)
    adipose = thickness * fat
    lean = thickness - adipose

    # Psoas: lean muscle beside the spine, from L1 (narrow) to L5 (wide), replacing fat.
    growth = np.clip((y - centres_y[1]) / max(centres_y[5] - centres_y[1], 1.0), 0, 1)
    psoas_half = 4 + 14 * growth
    psoas_centre = half_width * 0.8 + psoas_half
    across = (np.abs(x - spine_x) - psoas_centre) / psoas_half
    muscle = soft.psoas_cm * np.sqrt(np.clip(1 - across**2, 0, None)) * (y >= centres_y[1] - 10)
    moved = np.minimum(adipose, muscle * fat)
    adipose, lean = adipose - moved, lean + moved

    gas = np.zeros_like(thickness)
    for k, (gy, gx, radius, elongation, depth_cm) in enumerate(soft.gas_pockets):
        angle = np.arctan2(y - gy, x - gx)
        wobble = 1 + 0.25 * np.sin(3 * angle + k)
        r2 = (((x - gx) / (radius * elongation)) ** 2 + ((y - gy) / radius) ** 2) / wobble**2
        gas = np.maximum(gas, depth_cm * np.sqrt(np.clip(1 - r2, 0, None)))
    return remove_tissue(lean, adipose, gas)


def remove_tissue(
    lean: np.ndarray, adipose: np.ndarray, removed_g_cm2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Take `removed_g_cm2` of soft tissue away in proportion to its make-up.

    Used for gas pockets and for the volume that bone mineral and metal
    displace (a projected path cannot hold tissue and bone in the same place).
    """
    total = lean + adipose
    keep = np.clip(1 - removed_g_cm2 / np.maximum(total, 1e-6), 0.0, 1.0)
    return lean * keep, adipose * keep
