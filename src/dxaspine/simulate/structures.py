"""Bone and objects around the lumbar spine: ribs, iliac crests, aortic
calcification, surgical clips and spinal implants. None of them is part of
L1-L4 (docs/protocol.md §2); all of them change the attenuation."""

from __future__ import annotations

import numpy as np

from dxaspine.simulate.case import Case
from dxaspine.simulate.spine import Placement

TITANIUM_G_CM3 = 4.5


def _rim_profile(distance: np.ndarray, half_width: float, peak: float) -> np.ndarray:
    """A hollow bone (cortical rim, lighter core) seen across its width."""
    r = np.abs(distance) / half_width
    core = 0.55 * np.sqrt(np.clip(1 - r**2, 0, None))
    rim = 0.6 * np.exp(-(((r - 0.85) / 0.15) ** 2))
    return np.where(r < 1, peak * (core + rim), 0.0)


def ribs(case: Case, places: list[Placement], y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The 12th and 11th ribs, leaving T12 and T11 down and out to the flanks (g/cm2 HA)."""
    t12, vertebra = places[0], case.vertebrae[0]
    mineral = np.zeros(np.broadcast(y, x).shape)
    for k, side in enumerate((-1, 1)):
        drop, length = case.artefacts.rib_drop_mm[k], case.artefacts.rib_length_mm[k]
        for start_y, extra_drop, extra_length in (
            (t12.centre_y_mm - 2, 0.0, 0.0),
            (t12.centre_y_mm - 36, 0.3, 60.0),
        ):
            start_x = t12.centre_x_mm + side * (vertebra.half_width_mm + 3)
            lateral = side * (x - start_x)
            slope = drop + extra_drop
            centre = start_y + slope * lateral + 0.002 * lateral**2
            across = (y - centre) / np.sqrt(1 + slope**2)
            along = (lateral >= 0) & (lateral <= length + extra_length)
            mineral += np.where(along, _rim_profile(across, 5.5, 0.32), 0.0)
    return mineral


def iliac_crests(case: Case, places: list[Placement], y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The iliac wings rising from the lower corners to about the L4/L5 disc (g/cm2 HA)."""
    l4, l5 = places[4], places[5]
    top = 0.5 * (l4.centre_y_mm + l5.centre_y_mm) + case.artefacts.iliac_crest_offset_mm
    half_width = case.vertebrae[5].half_width_mm
    peak = case.artefacts.iliac_peak_lateral_mm
    mineral = np.zeros(np.broadcast(y, x).shape)
    for side in (-1, 1):
        lateral = side * (x - l5.centre_x_mm)
        crest = top + 0.012 * (lateral - peak) ** 2
        below = y - crest
        medial = np.maximum(half_width + 24 - 0.35 * (y - top), half_width + 6)
        inside_medial = lateral - medial
        inside = (below >= 0) & (inside_medial >= 0)
        plate = 0.32 + 0.42 * np.exp(-below / 4.0) + 0.28 * np.exp(-inside_medial / 4.0)
        mineral += np.where(inside, plate * np.clip(below / 1.5, 0, 1), 0.0)
    return mineral


def aortic_calcification(
    case: Case, places: list[Placement], y: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Calcified plaques along the walls of the abdominal aorta, left of the spine (g/cm2 HA).

    The aorta runs in front of the left side of the bodies (image right in the
    radiological convention) from L1 to its bifurcation at L4.
    """
    mineral = np.zeros(np.broadcast(y, x).shape)
    if not case.artefacts.calcification:
        return mineral
    l1, l4 = places[1], places[4]
    start = l1.centre_y_mm - case.vertebrae[1].half_height_mm
    for fraction, wall, length, density in case.artefacts.calcification:
        plaque_y = start + fraction * (l4.centre_y_mm - start)
        spine_x = np.interp(
            plaque_y, [l1.centre_y_mm, l4.centre_y_mm], [l1.centre_x_mm, l4.centre_x_mm]
        )
        plaque_x = spine_x + 14.0 + wall * 9.0
        r2 = ((x - plaque_x) / 1.3) ** 2 + ((y - plaque_y) / (length / 2)) ** 2
        mineral += density * np.sqrt(np.clip(1 - r2, 0, None))
    return mineral


def metal(case: Case, places: list[Placement], y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Titanium in the beam (g/cm2): surgical clips and pedicle-screw/rod implants."""
    titanium = np.zeros(np.broadcast(y, x).shape)
    for clip_y, clip_x, angle in case.artefacts.clips:
        along = (y - clip_y) * np.cos(angle) + (x - clip_x) * np.sin(angle)
        across = -(y - clip_y) * np.sin(angle) + (x - clip_x) * np.cos(angle)
        titanium += np.where(
            (np.abs(along) <= 4.0) & (np.abs(across) <= 1.0), 0.1 * TITANIUM_G_CM3, 0
        )
    levels = [i for i, v in enumerate(case.vertebrae) if v.name in case.artefacts.implant_levels]
    if levels:
        top, bottom = places[levels[0]], places[levels[-1]]
        for i in levels:
            place, vertebra = places[i], case.vertebrae[i]
            for side in (-1, 1):
                screw_x = place.centre_x_mm + side * 0.6 * vertebra.half_width_mm
                r2 = (
                    (x - screw_x) ** 2
                    + (y - place.centre_y_mm + 0.3 * vertebra.half_height_mm) ** 2
                ) / 3.2**2
                titanium += np.where(
                    r2 < 1, 4.5 * TITANIUM_G_CM3 * np.sqrt(np.clip(1 - r2, 0, None)), 0
                )
        for side in (-1, 1):
            rod_x = (
                np.interp(
                    y, [top.centre_y_mm, bottom.centre_y_mm], [top.centre_x_mm, bottom.centre_x_mm]
                )
                + side * 0.75 * case.vertebrae[levels[0]].half_width_mm
            )
            span = (y >= top.centre_y_mm - 8) & (y <= bottom.centre_y_mm + 8)
            chord = 2 * np.sqrt(np.clip(3.0**2 - (x - rod_x) ** 2, 0, None)) / 10
            titanium += np.where(span, TITANIUM_G_CM3 * chord, 0.0)
    return titanium
