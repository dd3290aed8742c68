"""The lumbar spine in projection: vertebra layout, 2.5-D bone model, and the
ownership rules of docs/protocol.md that turn bone into labels.

Each vertebra is drawn in its own frame (u lateral, v along the spine axis,
mm, origin at the body centre). The body is a rectangle with slightly
rounded corners, a lateral waist (its sides flare towards the endplates'
rims) and concave endplates; its AP depth is an elliptical cross-
section with a cortical shell, so the projected mineral is
rho_trab * L_inner + rho_cortex * (L_outer - L_inner). Lordosis tilts the
body against the beam (`Vertebra.sagittal_tilt_deg`), which smears its
endplates over a band of height depth * tan(tilt). Posterior elements
are tubes and plates projected on the body, shifted sideways by axial
rotation; all but the transverse processes are scaled so that together
they carry `Vertebra.posterior_fraction` of the vertebra's mineral, and
they carry the trabecular texture like the body's cancellous bone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dxaspine.simulate.case import Case, Vertebra

TRABECULAR_HA_G_CM3 = 0.15
CORTICAL_HA_G_CM3 = 1.05
ENDPLATE_MM = 1.3
TILT_STEP_MM = 0.5
"""Largest height step between the AP slabs of a tilted body."""
BODY_EXPONENT = 8
"""Superellipse exponent of the body's outline in projection: nearly square
corners, as AP radiographs and CT projections show them (4, rounder, before 0.7)."""


def corner_rounding(t):
    """Share of the outline's half width left at height t (from the centre,
    over the half height) by the superellipse's rounded corners."""
    return (1 - np.abs(t) ** BODY_EXPONENT) ** (1 / BODY_EXPONENT)


def _flare_table(points: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    """Visible waist (1 - mid-height width / widest row) for each rim-flare
    amplitude of `outline_half_width`, on the rounded outline."""
    t = np.linspace(0.0, 1.0, points)
    amplitudes = np.linspace(0.0, 1.0, 1001)
    flared = 1 + amplitudes[:, None] * (1 - (1 - t**2) ** 2)
    widest = (flared * corner_rounding(t)).max(axis=1)
    return 1 - 1 / widest, amplitudes


_VISIBLE_WAIST, _FLARE = _flare_table()


def widest_half_width_mm(vertebra: Vertebra) -> float:
    """Half the body's width at its widest row: the column of protocol §2."""
    return vertebra.half_width_mm / (1 - vertebra.waist)


def outline_half_width(vertebra: Vertebra, v, hh: float, hw: float):
    """Half width of the body's outline at height v, before its corners are
    rounded: `hw` at mid-height, flaring towards the endplates' rims so that
    the rounded outline's widest row is hw / (1 - waist)."""
    flare = float(np.interp(vertebra.waist, _VISIBLE_WAIST, _FLARE))
    t = np.clip(np.asarray(v) / hh, -1, 1)
    return hw * (1 + flare * (1 - (1 - t**2) ** 2))


@dataclass(frozen=True)
class Placement:
    """Where a vertebra sits: centre (y, x) in mm and axis angle from vertical."""

    centre_y_mm: float
    centre_x_mm: float
    angle_rad: float
    disc_above_mm: float
    disc_below_mm: float


@dataclass
class VertebraBone:
    """One vertebra rendered on a patch of sub-samples (g/cm2 and supports).

    `trabecular` is the mineral that carries the trabecular texture: the
    body's trabecular bone and the posterior elements (cancellous cores in
    cortical shells, drawn as one profile). `structural` is the body's
    cortex and endplates."""

    trabecular: np.ndarray
    structural: np.ndarray
    degenerative: np.ndarray
    body: np.ndarray
    posterior_in_column: np.ndarray
    axial_mm: np.ndarray


def place_vertebrae(case: Case, field_width_mm: float) -> list[Placement]:
    """Lay the vertebrae along the spine curve (tilt + scoliosis), T12 first."""
    spine = case.spine
    step = 0.5
    s = np.arange(0.0, 320.0, step)
    theta = np.deg2rad(spine.tilt_deg) + np.deg2rad(spine.scoliosis_deg) * np.sin(
        2 * np.pi * s / spine.scoliosis_wavelength_mm + spine.scoliosis_phase
    )
    y = spine.top_mm + np.concatenate([[0.0], np.cumsum(np.cos(theta[:-1]) * step)])
    x = np.concatenate([[0.0], np.cumsum(np.sin(theta[:-1]) * step)])
    heights = [v.half_height_mm * (1 - v.height_loss) for v in case.vertebrae]
    discs = spine.disc_heights_mm
    arc = [0.0]
    for i in range(1, len(case.vertebrae)):
        arc.append(arc[-1] + heights[i - 1] + discs[i - 1] + heights[i])
    # Centre the spine laterally at mid-lumbar (between L2 and L3).
    mid = 0.5 * (arc[2] + arc[3])
    x_shift = field_width_mm / 2 + spine.centre_x_mm - float(np.interp(mid, s, x))
    placements = []
    for i, arc_mm in enumerate(arc):
        placements.append(
            Placement(
                centre_y_mm=float(np.interp(arc_mm, s, y)),
                centre_x_mm=float(np.interp(arc_mm, s, x)) + x_shift,
                angle_rad=float(np.interp(arc_mm, s, theta)),
                disc_above_mm=discs[i - 1] if i > 0 else discs[0],
                disc_below_mm=discs[i] if i < len(discs) else discs[-1],
            )
        )
    return placements


def extent_mm(vertebra: Vertebra, place: Placement) -> float:
    """Radius (mm) of a circle around the centre holding all of the vertebra's bone."""
    lateral = widest_half_width_mm(vertebra) + max(vertebra.tp_length_mm, 10.0) + 4.0
    axial = vertebra.half_height_mm + max(place.disc_above_mm, place.disc_below_mm) + 4.0
    return float(np.hypot(lateral, axial))


def render_vertebra(
    vertebra: Vertebra, place: Placement, rotation_rad: float, y_mm: np.ndarray, x_mm: np.ndarray
) -> VertebraBone:
    """Project one vertebra onto sample points (y_mm, x_mm): mineral maps and supports."""
    dy, dx = y_mm - place.centre_y_mm, x_mm - place.centre_x_mm
    cos_a, sin_a = np.cos(place.angle_rad), np.sin(place.angle_rad)
    v = dy * cos_a + dx * sin_a
    u = -dy * sin_a + dx * cos_a
    hh = vertebra.half_height_mm * (1 - vertebra.height_loss)
    hw = vertebra.half_width_mm

    trabecular, structural, degenerative, body = _tilted_body(vertebra, u, v, hh, hw)
    # Spurs grow from the rounded body corner, so they start at the corner's edge.
    corner_v = (hh - 2.5) / hh
    corner_u = outline_half_width(vertebra, hh - 2.5, hh, hw) * corner_rounding(corner_v)
    widest = widest_half_width_mm(vertebra)
    for side, end, length in vertebra.osteophytes:
        out = side * u - widest
        centre_v = end * (hh - 2.5 + 0.5 * np.clip(out, 0, None))
        half_thick = 2.2 * (1 - np.clip(out, 0, length) / length) + 0.4
        spur = (
            (out >= corner_u - widest - 1.0)
            & (out <= length)
            & (np.abs(v - centre_v) <= half_thick)
        )
        degenerative += np.where(
            spur & ~body, 0.6 * (1 - 0.5 * np.clip(out, 0, length) / length), 0
        )
        body = body | spur

    posterior, transverse, support = _posterior_elements(
        vertebra, place, u, v, hh, hw, rotation_rad
    )
    trabecular = trabecular + posterior * posterior_scale(vertebra, place) + transverse
    return VertebraBone(
        trabecular=trabecular,
        structural=structural,
        degenerative=degenerative,
        body=body,
        posterior_in_column=support & (np.abs(u) <= widest) & ~body,
        axial_mm=np.abs(v),
    )


def posterior_scale(vertebra: Vertebra, place: Placement) -> float:
    """Factor on the drawn posterior elements, all but the transverse processes,
    that gives the posterior elements with them `vertebra.posterior_fraction`
    of the vertebra's mineral (1 when None). The transverse processes, thin
    flat plates, keep their drawn mineral.

    Measured on the vertebra's own frame at 0.5 mm, untilted and unrotated
    (neither changes the mineral), so a vertebra cut by the field's edge gets
    the same factor as a whole one.
    """
    if vertebra.posterior_fraction is None:
        return 1.0
    radius = extent_mm(vertebra, place)
    grid = np.arange(-radius, radius, 0.5)
    v, u = np.meshgrid(grid, grid, indexing="ij")
    hh = vertebra.half_height_mm * (1 - vertebra.height_loss)
    hw = vertebra.half_width_mm
    trabecular, structural, _, _ = _body_slab(vertebra, u, v, hh, hw)
    posterior, transverse, _ = _posterior_elements(vertebra, place, u, v, hh, hw, 0.0)
    share = vertebra.posterior_fraction
    body = trabecular.sum() + structural.sum()
    scale = (share * body - (1 - share) * transverse.sum()) / ((1 - share) * posterior.sum())
    return float(max(scale, 0.0))  # a share below the transverse processes' own is not drawn


def _body_slab(vertebra: Vertebra, u, v, hh, hw):
    """The untilted body at (u, v): projected trabecular, cortical and
    sclerotic mineral (g/cm2), and its support."""
    half_width_at_v = outline_half_width(vertebra, v, hh, hw)
    half_height_at_u = hh * (1 - vertebra.concavity * (1 - np.clip(u / hw, -1, 1) ** 2))
    body = (np.abs(u) / half_width_at_v) ** BODY_EXPONENT + (
        np.abs(v) / half_height_at_u
    ) ** BODY_EXPONENT <= 1.0
    t = vertebra.cortex_mm
    outer = vertebra.depth_mm * np.sqrt(np.clip(1 - (u / half_width_at_v) ** 2, 0, None))
    inner = (vertebra.depth_mm - 2 * t) * np.sqrt(
        np.clip(1 - (u / (half_width_at_v - t)) ** 2, 0, None)
    )
    to_endplate = half_height_at_u - np.abs(v)
    endplate = to_endplate < ENDPLATE_MM
    trabecular = np.where(body & ~endplate, TRABECULAR_HA_G_CM3 * inner / 10, 0.0)
    structural = np.where(
        body,
        CORTICAL_HA_G_CM3 * (outer - inner) / 10 + endplate * 0.5 * CORTICAL_HA_G_CM3 * inner / 10,
        0.0,
    )
    degenerative = np.zeros_like(trabecular)
    if vertebra.sclerosis > 0:
        band = body & ~endplate & (to_endplate < 5.0)
        degenerative += np.where(
            band, vertebra.sclerosis * 1.5 * TRABECULAR_HA_G_CM3 * inner / 10, 0.0
        )
    return trabecular, structural, degenerative, body


def _tilted_body(vertebra: Vertebra, u, v, hh, hw):
    """The body tilted by `sagittal_tilt_deg` against the beam.

    A body tilted in the sagittal plane projects its front and back at
    different heights: the slab at AP depth z lands shifted by z tan(tilt).
    The body is cut into AP slabs (shifts at most TILT_STEP_MM apart), each
    slab carries its share of the untilted projection, and the shares are
    summed; the support is where any slab projects (protocol §2: any bone of
    the body). Untilted, this is the plain projection.
    """
    shift_span = vertebra.depth_mm * abs(np.tan(np.deg2rad(vertebra.sagittal_tilt_deg)))
    n_slabs = int(np.clip(np.ceil(shift_span / TILT_STEP_MM), 1, 64))
    if n_slabs == 1:
        return _body_slab(vertebra, u, v, hh, hw)
    # Only sample points that any slab can reach are evaluated.
    widest = widest_half_width_mm(vertebra)
    reach = (np.abs(u) <= widest + 0.5) & (np.abs(v) <= hh + shift_span / 2 + 0.5)
    u_in, v_in = u[reach], v[reach]
    chord = np.sqrt(np.clip(1 - (u_in / widest) ** 2, 0, None))
    tan_tilt = np.tan(np.deg2rad(vertebra.sagittal_tilt_deg))
    depth_fraction = (np.arange(n_slabs) + 0.5) / n_slabs - 0.5
    parts = [np.zeros(u_in.shape) for _ in range(3)]
    support = np.zeros(u_in.shape, dtype=bool)
    for z in depth_fraction:
        slab = _body_slab(vertebra, u_in, v_in - z * vertebra.depth_mm * chord * tan_tilt, hh, hw)
        for total, part in zip(parts, slab[:3], strict=True):
            total += part / n_slabs
        support |= slab[3]
    out = []
    for part in parts:
        full = np.zeros(u.shape)
        full[reach] = part
        out.append(full)
    body = np.zeros(u.shape, dtype=bool)
    body[reach] = support
    return out[0], out[1], out[2], body


def _tube(u, v, cu, cv, ru, rv, peak):
    """Projected mineral of an elliptical rod seen end-on, and its support."""
    r2 = ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2
    return peak * np.sqrt(np.clip(1 - r2, 0, None)), r2 < 1


def _pedicle_oval(vertebra: Vertebra, hh: float, hw: float) -> tuple[float, float, float, float]:
    """Where a pedicle projects, seen end-on: lateral centre, centre along the
    axis (its top 1.5 mm below the upper endplate) and the two radii, mm.

    The pedicle, smeared sideways by its convergence, stays inside the body's
    outline at its height (the waist narrows it there); without sized
    pedicles the pre-0.6 shape is kept.
    """
    ru, half_height = vertebra.pedicle_half_width_mm, vertebra.pedicle_half_height_mm
    centre = vertebra.pedicle_centre_mm
    if ru is None or half_height is None or centre is None:
        return 0.6 * hw, -0.3 * hh, 0.17 * hw, 0.27 * hh
    rv = min(half_height, 0.6 * hh)
    centre_v = -hh + 1.5 + rv
    half_width_there = float(
        outline_half_width(vertebra, centre_v, hh, hw) * corner_rounding(centre_v / hh)
    )
    reach = ru + vertebra.pedicle_smear_mm / 2
    centre_u = min(centre, half_width_there - reach)
    return centre_u, centre_v, ru, rv


def _pedicle_ring(u, v, centre_u, centre_v, ru, rv, smear_mm):
    """Projected mineral of one pedicle seen end-on, and its support: a
    cortical ring whose axis converges medially, so the beam sees its
    cross-section shift sideways by `smear_mm` from one end to the other
    (the mean of the shifted rings; its top and bottom walls stay sharp)."""
    steps = int(np.ceil(smear_mm / 0.25)) + 1
    shifts = np.linspace(-0.5, 0.5, steps) if steps > 1 else np.zeros(1)
    # Only sample points that a shifted ring can reach are evaluated.
    near = (np.abs(u - centre_u) < ru + smear_mm / 2) & (np.abs(v - centre_v) < rv)
    u_in, v_in = u[near], v[near]
    values = np.zeros(u_in.shape)
    inside = np.zeros(u_in.shape, dtype=bool)
    for shift in shifts * smear_mm:
        r2 = ((u_in - centre_u - shift) / ru) ** 2 + ((v_in - centre_v) / rv) ** 2
        ring = 0.5 * (0.35 + 0.9 * np.exp(-(((np.sqrt(r2) - 0.82) / 0.13) ** 2)))
        values += np.where(r2 < 1, ring, 0.0) / len(shifts)
        inside |= r2 < 1
    mineral = np.zeros(np.shape(u))
    support = np.zeros(np.shape(u), dtype=bool)
    mineral[near], support[near] = values, inside
    return mineral, support


def _posterior_elements(vertebra, place, u, v, hh, hw, rotation_rad):
    """Projected mineral of the pedicles, laminae, spinous and articular
    processes; that of the transverse processes; and the support of all."""
    shift = np.sin(rotation_rad)
    du_pedicle, du_lamina, du_spinous = 20 * shift, 30 * shift, 42 * shift
    below, above = place.disc_below_mm, place.disc_above_mm
    mineral = np.zeros_like(u)
    transverse = np.zeros_like(u)
    support = np.zeros(u.shape, dtype=bool)

    def add(values, where):
        nonlocal mineral, support
        mineral = mineral + values
        support = support | where

    pedicle_u, pedicle_v, pedicle_ru, pedicle_rv = _pedicle_oval(vertebra, hh, hw)
    for side in (-1, 1):
        add(
            *_pedicle_ring(
                u,
                v,
                side * pedicle_u + du_pedicle,
                pedicle_v,
                pedicle_ru,
                pedicle_rv,
                vertebra.pedicle_smear_mm,
            )
        )
        add(
            *_tube(
                u,
                v,
                side * 0.5 * hw + du_lamina,
                -hh - 0.25 * above,
                0.11 * hw,
                0.35 * above + 0.12 * hh,
                0.3,
            )
        )
        add(
            *_tube(
                u,
                v,
                side * 0.4 * hw + du_lamina,
                hh + 0.35 * below,
                0.11 * hw,
                0.35 * below + 0.12 * hh,
                0.3,
            )
        )
        if vertebra.tp_length_mm > 0:
            reach = 0.5 * hw + vertebra.tp_length_mm
            along = side * u - 0.5 * hw
            half_thick = 0.17 * hh * (1 - 0.45 * np.clip(along, 0, reach) / reach)
            centre = -0.12 * hh - 0.08 * np.clip(along, 0, None)
            across = np.clip(1 - ((v - centre) / half_thick) ** 2, 0, None)
            tip = np.clip(
                1 - (np.clip(along - reach + half_thick, 0, None) / half_thick) ** 2, 0, None
            )
            inside = (along >= 0) & (along <= reach) & (across > 0) & (tip > 0)
            transverse = transverse + np.where(inside, 0.28 * np.sqrt(across * tip), 0.0)
            support = support | inside

    top, bottom = 0.05 * hh, hh + 0.45 * below
    frac = np.clip((v - top) / (bottom - top), 0, 1)
    width = 0.55 * hw * (1 - 0.55 * frac)
    lamina_across = np.clip(1 - ((u - du_lamina) / width) ** 2, 0, None)
    laminae = (v >= top) & (v <= bottom) & (lamina_across > 0)
    add(np.where(laminae, 0.2 * np.sqrt(lamina_across), 0.0), laminae)

    centre_v, radius_v = 0.55 * hh + 0.2 * below, 0.6 * hh
    radius_u = 0.12 * hw * np.clip(1.15 - 0.5 * (v - centre_v) / radius_v, 0.3, None)
    add(*_tube(u, v, du_spinous, centre_v, radius_u, radius_v, 0.55))
    return mineral, transverse, support


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping factor x factor blocks (sub-samples -> pixels)."""
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    return image.reshape(rows, factor, cols, factor).mean(axis=(1, 3))
