"""The scanner-style comparator: L1-L4 the way DXA software finds it today.

Two pure functions:

- `label_vertebrae(mask, scan)` splits a binary L1-L4 mask into L1..L4 at the
  three intervertebral gaps, with cut lines perpendicular to the local spine
  axis (docs/protocol.md §3, without the ownership rule for posterior
  elements, which a mask alone cannot tell).
- `baseline_segmentation(scan)` reproduces the classic pipeline of scanner
  software (dxa-domain.md §2): processed bone image Q = low - k*high, an
  automatic rectangular ROI, point typing above the soft-tissue peak of the Q
  histogram, a per-row soft-tissue baseline, cleanup, and horizontal
  intervertebral lines. It is rough on purpose: a comparator, not a model.

Every constant below is a fixed rule from anatomy or the scanner literature,
not fitted to reference masks.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage
from scipy.signal import find_peaks

from dxaspine.scan import Scan

VERTEBRA_HEIGHT_MM = 28.0
"""Expected lumbar body height (dxa-domain.md §3)."""
DISC_HEIGHT_MM = 10.0
"""Expected disc height, middle of the 8-12 mm default."""
L4_WIDTH_MM = 50.0
"""Expected coronal width of L4 (default, dxa-domain.md §3)."""
MIN_GAP_SEPARATION = 0.8
"""Two gaps lie at least this fraction of VERTEBRA_HEIGHT_MM apart (22 mm):
more than half a vertebra's pitch (body + disc, about 38 mm), so the dip of
bone mass at a body's waist, between its pedicles and its spinous process,
loses to the disc dip beside it (0.6 let it split bodies once the posterior
elements carry half the mineral), and less than the pitch of a body that
lost 40 % of its height."""
GAP_PROMINENCE = 0.2
"""A gap is a dip of the row profile at least this fraction of the profile's
typical (median) level below its neighbouring peaks."""
PROFILE_SIGMA_MM = 2.0
"""Gaussian smoothing of the profile along the spine axis (a disc is 8-12 mm)."""
AXIS_SIGMA_MM = 12.0
"""Gaussian smoothing of the spine axis (per-row centroids) in mm."""

SOFT_TISSUE_CALIBRATION_G_CM2 = 20.0
"""Soft-tissue thickness at which k is read from the device calibration table."""
ROI_WIDTH_FACTOR = 2.2
"""ROI width = this x L4_WIDTH_MM: the spine plus soft tissue on both sides."""
ROI_MARGIN_MM = 3.0
"""Rows dropped at the top and bottom edge of the image."""
SOFT_TISSUE_STRIP_MM = 35.0
"""Soft tissue is read beside the spine, as scanners take their soft-tissue
reference there: the typing threshold's soft-tissue peak and each row's
baseline come from the ROI's columns at least this far from its centre
(0.7 x L4_WIDTH_MM; the widest lumbar body rows are 50-66 mm, half of it at
most 33 mm). From every untyped point of the ROI instead, a wide, faint
spine's untyped bone raised the baseline and the peak."""
TYPING_SMOOTH_MM = 1.0
"""Gaussian smoothing of Q before point typing (scanners type a filtered image)."""
TYPING_SDS = 3.0
"""Bone threshold = soft-tissue peak + this many robust SDs of the soft mode."""
BONE_EDGE_FRACTION = 0.25
"""A bone point also stands at least this fraction of the spine's typical
excess over the baseline (the ROI's 90th percentile of baseline-corrected
Q) above it: an edge rule relative to the bone's own contrast, as edge
detection on a blurred step is. Without it a soft tissue leaner over the
spine than beside it (0.5 simulator) passes the typing threshold where
noise is low. Chosen once (a quarter), not fitted to reference masks."""
MIN_VERTEBRA_FRACTION = 0.5
"""A complete vertebra is at least this fraction of VERTEBRA_HEIGHT_MM tall
(a partial T12 or L5 in the field is shorter; a compressed body is taller)."""
MERGED_PITCH_FACTOR = 1.6
"""A segment between gaps taller than this x the expected pitch (body + disc,
38 mm: 61 mm) holds two vertebrae whose disc left no dip deep enough (a
narrowed disc, endplates tilted against the beam), where one lumbar
pitch is 35-47 mm: it is split at its lowest bone-mass row, as an operator
moves the missing line."""
MIN_COMPONENT_MM2 = 100.0
"""Bone components smaller than this (in mm2) are noise or gas edges."""


# ---------------------------------------------------------------- gap finder


def _smooth_1d(values: np.ndarray, sigma_px: float) -> np.ndarray:
    return ndimage.gaussian_filter1d(values.astype(np.float64), max(sigma_px, 0.5), mode="nearest")


def find_gaps(profile: np.ndarray, step_mm: float, n_gaps: int | None = None) -> list[int]:
    """Indices of intervertebral gaps: significant minima of a smoothed bone profile.

    `profile` is bone amount per position along the spine (rows, or bins of
    the axial coordinate), `step_mm` the spacing of its samples. A gap is a
    local minimum, strictly inside the bone extent, with prominence at least
    GAP_PROMINENCE x the median profile level over the bone extent, and at
    least MIN_GAP_SEPARATION x VERTEBRA_HEIGHT_MM from any other gap. With
    `n_gaps` the most prominent `n_gaps` are kept (fewer if fewer exist).
    Returned sorted top to bottom.
    """
    smooth = _smooth_1d(profile, PROFILE_SIGMA_MM / step_mm)
    inside = np.flatnonzero(np.asarray(profile) > 0)
    if inside.size < 3:
        return []
    first, last = int(inside[0]), int(inside[-1])
    level = float(np.median(smooth[first : last + 1]))
    if level <= 0:
        return []
    distance = max(round(MIN_GAP_SEPARATION * VERTEBRA_HEIGHT_MM / step_mm), 1)
    peaks, props = find_peaks(
        -smooth[first : last + 1], prominence=GAP_PROMINENCE * level, distance=distance
    )
    # A gap needs bone on both sides: the ends of the extent are not gaps.
    edge = max(round(0.25 * VERTEBRA_HEIGHT_MM / step_mm), 1)
    keep = (peaks >= edge) & (peaks <= last - first - edge)
    peaks, prominence = peaks[keep] + first, props["prominences"][keep]
    if n_gaps is not None and peaks.size > n_gaps:
        peaks = peaks[np.sort(np.argsort(-prominence, kind="stable")[:n_gaps])]
    return [int(p) for p in np.sort(peaks)]


# ---------------------------------------------------------- label_vertebrae


def _spine_axis(mask: np.ndarray, spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row axis column x(r) (smoothed mask centroid) and its slope dx/dr in px/px."""
    rows, cols = mask.shape
    count = mask.sum(axis=1).astype(np.float64)
    moment = (mask * np.arange(cols)[None, :]).sum(axis=1).astype(np.float64)
    sigma = AXIS_SIGMA_MM / spacing_mm[0]
    weight = _smooth_1d(count, sigma)
    centre = _smooth_1d(moment, sigma) / np.maximum(weight, 1e-9)
    has = weight > 1e-6 * max(weight.max(), 1e-9)
    idx = np.arange(rows)
    centre = np.interp(idx, idx[has], centre[has])
    return centre, np.gradient(centre)


def _axial_coordinate_mm(mask: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Position of every pixel along the spine axis in mm (arc length from row 0).

    Each pixel is projected onto the axis tangent at its own row: cut lines of
    constant axial coordinate are then perpendicular to the local axis.
    """
    sy, sx = spacing_mm
    centre, slope = _spine_axis(mask, spacing_mm)
    dx_mm = slope * sx  # lateral mm per row
    step = np.hypot(sy, dx_mm)
    arc = np.concatenate([[0.0], np.cumsum(0.5 * (step[1:] + step[:-1]))])
    tangent_x = dx_mm / step  # lateral component of the unit tangent
    cols = np.arange(mask.shape[1])[None, :]
    return arc[:, None] + (cols - centre[:, None]) * sx * tangent_x[:, None]


def label_vertebrae(mask: np.ndarray, scan: Scan) -> np.ndarray:
    """Split a binary L1-L4 mask into L1..L4 (uint8, 0 background, 1..4 top to bottom).

    The bone area along the spine axis (mask pixels per axial bin of one row
    spacing, axis = smoothed per-row centroid) is smoothed and its three most
    prominent interior minima, at least 0.6 x the expected 28 mm body height
    apart, are the intervertebral gaps. Each pixel is labelled by where its
    axial coordinate falls between the cuts, so the cuts run perpendicular to
    the local axis. Raises ValueError when four vertebrae cannot be found.
    """
    mask = np.asarray(mask)
    if mask.shape != scan.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the scan shape {scan.shape}")
    binary = mask > 0
    if not binary.any():
        raise ValueError("cannot label vertebrae: the mask is empty")
    axial = _axial_coordinate_mm(binary, scan.spacing_mm)
    step = scan.spacing_mm[0]
    values = axial[binary]
    lo = float(values.min())
    bins = np.floor((values - lo) / step).astype(int)
    profile = np.bincount(bins).astype(np.float64)
    gaps = find_gaps(profile, step, n_gaps=3)
    if len(gaps) < 3:
        raise ValueError(
            f"cannot split the mask into L1-L4: found {len(gaps)} intervertebral gap(s) "
            "along the spine axis, need 3; is the mask the L1-L4 column with disc spaces?"
        )
    cuts = lo + (np.asarray(gaps) + 0.5) * step
    labels = np.zeros(mask.shape, np.uint8)
    labels[binary] = (np.searchsorted(cuts, values) + 1).astype(np.uint8)
    return labels


# ----------------------------------------------------- baseline_segmentation


def _split_merged(profile: np.ndarray, gaps: list[int], step_mm: float) -> list[int]:
    """`gaps` plus a cut in each segment of the bone extent taller than
    MERGED_PITCH_FACTOR pitches: at its smoothed profile's lowest row in the
    segment's middle half."""
    inside = np.flatnonzero(profile > 0)
    if inside.size == 0:
        return gaps
    smooth = _smooth_1d(profile, PROFILE_SIGMA_MM / step_mm)
    longest = MERGED_PITCH_FACTOR * (VERTEBRA_HEIGHT_MM + DISC_HEIGHT_MM) / step_mm
    cuts = list(gaps)
    for top, bottom in itertools.pairwise([int(inside[0]), *gaps, int(inside[-1])]):
        if bottom - top > longest:
            quarter = (bottom - top) // 4
            middle = smooth[top + quarter : bottom - quarter + 1]
            cuts.append(top + quarter + int(np.argmin(middle)))
    return sorted(cuts)


def device_k(device_name: str) -> float:
    """Soft-tissue ratio k = low/high of the device's calibration table at bone 0
    and SOFT_TISSUE_CALIBRATION_G_CM2 of soft tissue (KeyError if unknown)."""
    from dxaspine.simulate.devices import get_device
    from dxaspine.simulate.physics import shipped_calibration

    table = shipped_calibration(get_device(device_name))
    low, high, bone, soft = table.T
    rows = np.flatnonzero(bone == 0)
    i = rows[np.argmin(np.abs(soft[rows] - SOFT_TISSUE_CALIBRATION_G_CM2))]
    return float(low[i] / high[i])


def soft_tissue_k(scan: Scan) -> float:
    """k for Q = low - k*high: from the device calibration table, else from the image."""
    if scan.device:
        try:
            return device_k(scan.device)
        except (KeyError, FileNotFoundError):
            pass
    from dxaspine.preview import soft_tissue_ratio

    return soft_tissue_ratio(scan)


def _roi_columns(q: np.ndarray, spacing_mm: tuple[float, float]) -> tuple[int, int, int]:
    """(first, stop, peak) columns of the ROI centred on the column of maximal Q."""
    _rows, cols = q.shape
    profile = _smooth_1d(np.median(q, axis=0), 0.25 * L4_WIDTH_MM / spacing_mm[1])
    peak = int(np.argmax(profile))
    # The spine must stand out of the column profile: a bone column is far above
    # the profile's spread (uniform noise or soft tissue alone gives no such peak).
    spread = float(np.percentile(profile, 75) - np.percentile(profile, 25))
    noise = float(np.median(np.abs(np.diff(np.median(q, axis=0))))) / np.sqrt(2)
    if profile[peak] - np.median(profile) <= max(spread, 3 * noise, 1e-9):
        raise ValueError(
            "no bone-like column found in the processed image Q = low - k*high; "
            "is this an AP lumbar-spine DXA scan with the spine in the field?"
        )
    half = round(0.5 * ROI_WIDTH_FACTOR * L4_WIDTH_MM / spacing_mm[1])
    return max(peak - half, 0), min(peak + half + 1, cols), peak


def _soft_threshold(values: np.ndarray) -> float:
    """Just above the soft-tissue peak: mode + TYPING_SDS robust SDs of the soft mode."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    hist, edges = np.histogram(values, bins=128, range=(lo, hi))
    hist = _smooth_1d(hist.astype(np.float64), 1.5)
    centres = 0.5 * (edges[1:] + edges[:-1])
    mode = float(centres[np.argmax(hist)])
    below = values[values <= mode]
    # Below the mode the soft-tissue mode is a half-normal: its median distance
    # from the mode is 0.6745 sigma, hence the factor 1.4826.
    sd = 1.4826 * float(np.median(mode - below)) if below.size else 0.0
    return mode + TYPING_SDS * max(sd, 1e-9)


def _type_points(q_roi: np.ndarray, beside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point typing with a per-row soft-tissue baseline (two passes; the second
    also needs `BONE_EDGE_FRACTION` of the spine's excess): the bone points
    and Q above the baseline. Both thresholds are read from the soft-tissue
    peak of the columns `beside` the spine (SOFT_TISSUE_STRIP_MM)."""
    if not beside.any():
        beside = np.ones(q_roi.shape[1], bool)
    bone = q_roi > _soft_threshold(q_roi[:, beside].ravel())
    baseline = np.empty(q_roi.shape[0])
    for r in range(q_roi.shape[0]):
        soft = q_roi[r][beside & ~bone[r]]
        baseline[r] = np.median(soft) if soft.size else np.nan
    if np.isnan(baseline).all():
        raise ValueError("no soft-tissue points in the ROI: cannot set a baseline")
    idx = np.arange(baseline.size)
    good = ~np.isnan(baseline)
    baseline = np.interp(idx, idx[good], baseline[good])
    corrected = q_roi - baseline[:, None]
    edge = BONE_EDGE_FRACTION * float(np.percentile(corrected, 90))
    threshold = _soft_threshold(corrected[:, beside].ravel())
    return corrected > max(threshold, edge), corrected


def _clean(bone: np.ndarray, peak_col: int, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Drop small components, keep those crossing the spine column, fill holes."""
    pixel_mm2 = spacing_mm[0] * spacing_mm[1]
    bone = ndimage.binary_opening(bone, structure=np.ones((3, 3), bool))
    lab, n = ndimage.label(bone)
    if n == 0:
        return bone
    sizes = np.bincount(lab.ravel(), minlength=n + 1) * pixel_mm2
    band = round(0.25 * L4_WIDTH_MM / spacing_mm[1])
    column = lab[:, max(peak_col - band, 0) : peak_col + band + 1]
    on_spine = np.zeros(n + 1, bool)
    on_spine[np.unique(column)] = True
    keep = on_spine & (sizes >= MIN_COMPONENT_MM2)
    keep[0] = False
    bone = keep[lab]
    return ndimage.binary_fill_holes(bone)


def _body_columns(bone: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Trim each row to the vertebral column: the transverse processes, ribs and
    crests stick out sideways; a row keeps the run of bone through the smoothed
    spine centre, limited to the segment's median half-width (the body width)."""
    rows, cols = bone.shape
    out = np.zeros_like(bone)
    centre, _ = _spine_axis(bone, spacing_mm)
    half = np.zeros(rows)
    for r in range(rows):
        c = round(centre[r])
        if not 0 <= c < cols or not bone[r, c]:
            continue
        run = np.flatnonzero(~bone[r])
        left = run[run < c]
        right = run[run > c]
        a = int(left[-1]) + 1 if left.size else 0
        b = int(right[0]) if right.size else cols
        half[r] = max(c - a, b - c)
    # Body half-width: robust over a window of one vertebra height.
    win = max(round(VERTEBRA_HEIGHT_MM / spacing_mm[0]), 3)
    body = ndimage.median_filter(np.where(half > 0, half, np.nan), size=win, mode="nearest")
    body = np.where(np.isnan(body), 0, body)
    for r in range(rows):
        c = centre[r]
        if body[r] <= 0:
            continue
        a, b = int(np.floor(c - body[r])), int(np.ceil(c + body[r])) + 1
        out[r, max(a, 0) : min(b, cols)] = bone[r, max(a, 0) : min(b, cols)]
    return out


def baseline_segmentation(scan: Scan, k: float | None = None) -> np.ndarray:
    """Scanner-style L1-L4 labels (uint8, 0 background, 1..4 = L1..L4).

    Steps, each a fixed rule (module constants): Q = low - k*high with k
    from the device calibration table (or the image); an ROI of 2.2 x the L4
    width around the column of maximal Q, full height minus 3 mm margins;
    point typing at the soft-tissue peak + 3 robust SDs of smoothed Q, the
    peak read beside the spine (35 mm or more from the ROI's centre); a
    per-row baseline from non-bone points and re-typing, also at a quarter
    of the spine's typical excess; opening, removal of
    components under 1 cm2 or off the spine column, hole filling; rows
    trimmed to the body width; horizontal intervertebral lines at the row
    profile's gaps, and at the lowest row of a segment too tall for one
    vertebra (`MERGED_PITCH_FACTOR`). Vertebra choice: the field holds the lower half of T12
    (cut by the top edge), L1-L4 and the top of L5, so segments that touch
    the ROI's top or bottom edge, or shorter than half the expected body
    height, are partial and dropped, and L1-L4 are the
    first four complete segments from the top (L1 = the first complete one
    below T12). How much of L5 shows varies with the patient, so counting
    from the bottom is less reliable; the iliac-crest rule of scanners (L4 =
    first vertebra above the crests) is not implemented. Raises
    ValueError when no bone column or fewer than four complete vertebrae are
    found, or for a single-image scan (the baseline types points on Q, which
    needs both energies).
    """
    if not scan.is_dual_energy:
        raise ValueError("the scanner-style baseline needs both energies; this is a single image")
    k = soft_tissue_k(scan) if k is None else float(k)
    q = (scan.low - k * scan.high).astype(np.float64)
    sy, sx = scan.spacing_mm
    q = ndimage.gaussian_filter(q, (TYPING_SMOOTH_MM / sy, TYPING_SMOOTH_MM / sx))
    rows, cols = q.shape
    c0, c1, peak = _roi_columns(q, scan.spacing_mm)
    margin = round(ROI_MARGIN_MM / sy)
    r0, r1 = margin, rows - margin
    beside = np.abs(np.arange(c0, c1) - peak) * sx >= SOFT_TISSUE_STRIP_MM
    bone_roi, excess_roi = _type_points(q[r0:r1, c0:c1], beside)
    bone = np.zeros((rows, cols), bool)
    bone[r0:r1, c0:c1] = bone_roi
    excess = np.zeros((rows, cols))
    excess[r0:r1, c0:c1] = np.clip(excess_roi, 0, None)
    bone = _clean(bone, peak, scan.spacing_mm)
    bone = _body_columns(bone, scan.spacing_mm)
    if not bone.any():
        raise ValueError("no bone points along the spine column after point typing")

    # Bone mass per row, not bone points: a disc seen through tilted endplates
    # still holds bone points, but thin ones.
    profile = (bone * excess).sum(axis=1)
    gaps = _split_merged(profile, find_gaps(profile, sy), sy)
    edges = [r0 - 1, *gaps, r1]
    complete = []
    for top, bottom in itertools.pairwise(edges):
        seg = slice(top + 1, bottom)
        rows_with_bone = np.flatnonzero(profile[seg] > 0) + top + 1
        if rows_with_bone.size == 0:
            continue
        touches = rows_with_bone[0] <= r0 or rows_with_bone[-1] >= r1 - 1
        height_mm = (rows_with_bone[-1] - rows_with_bone[0] + 1) * sy
        if not touches and height_mm >= MIN_VERTEBRA_FRACTION * VERTEBRA_HEIGHT_MM:
            complete.append((top + 1, bottom))
    if len(complete) < 4:
        raise ValueError(
            f"found {len(complete)} complete vertebra(e) in the spine column, need 4 (L1-L4); "
            "the field of view should hold half of T12, L1-L4 and the top of L5"
        )
    labels = np.zeros((rows, cols), np.uint8)
    for label, (top, bottom) in enumerate(complete[:4], start=1):
        labels[top:bottom][bone[top:bottom]] = label
    return labels
