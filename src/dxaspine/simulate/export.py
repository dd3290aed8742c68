"""What a DXA scanner exports: the processed bone image as one 8-bit picture.

Most users cannot get both energies out of their scanner; they have its
exported image (docs/dxa-domain notes §3b): the processed bone image
Q = low - k*high, smoothed or sharpened a little by the vendor, windowed to
8 bits, sometimes inverted, often with the ROI outline and intervertebral
lines burned in, and often resampled to square pixels. `render_export` turns
a simulated dual-energy scan into such an export, with its labels carried
over, so a single-image model can be trained on it. Every choice is drawn
from the caller's generator and recorded in `meta["export"]`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from dxaspine.labels import VERTEBRAE
from dxaspine.preview import soft_tissue_ratio
from dxaspine.scan import MIN_SIZE_PX, Scan

OVERLAY_VALUE = 255
"""Burned-in graphics are drawn at full white, as vendors do."""
GLYPH_SHAPE = (5, 3)
"""Rows x cols of one text-like glyph before scaling."""


@dataclass(frozen=True)
class ExportOptions:
    """Rates and ranges of the vendor habits an export shows (defaults, not sourced
    figures: each is a plausible spread; rates are per-scan probabilities and
    (low, high) ranges are drawn uniformly)."""

    ratio_jitter: float = 0.03
    """Relative spread of the vendor's soft-tissue ratio k around the image's own."""
    smooth_rate: float = 0.35
    """Probability of Gaussian smoothing (else, with sharpen_rate, unsharp masking)."""
    smooth_sigma_px: tuple[float, float] = (0.4, 1.0)
    sharpen_rate: float = 0.35
    sharpen_amount: tuple[float, float] = (0.3, 1.2)
    sharpen_sigma_px: tuple[float, float] = (0.8, 2.0)
    resample_rate: float = 0.5
    """Probability that the export has its own square pixel size."""
    export_spacing_mm: tuple[float, float] = (0.5, 1.0)
    window_low_pct: tuple[float, float] = (0.0, 3.0)
    """Percentile of the bone image mapped to black."""
    window_high_pct: tuple[float, float] = (97.0, 99.9)
    """Percentile mapped to white, before headroom."""
    window_headroom: tuple[float, float] = (0.0, 0.25)
    """Extra range above the high percentile, as a fraction of the window."""
    gamma: tuple[float, float] = (0.8, 1.25)
    invert_rate: float = 0.3
    """Probability of a bone-dark export."""
    overlay_rate: float = 0.4
    """Probability of burned-in ROI box, intervertebral lines and text."""
    line_thickness_px: tuple[int, int] = (1, 2)
    line_jitter_px: int = 2
    """Intervertebral lines land within this many pixels of the labels' gap."""
    box_margin_px: tuple[int, int] = (1, 6)
    """ROI box sides lie this far outside the labels' bounding box."""
    text_glyphs: tuple[int, int] = (4, 12)
    """Number of text-like glyphs written in one corner."""
    omit_spacing_rate: float = 0.5
    """Probability that the exported file carries no pixel spacing (see write_export)."""


def render_export(
    scan: Scan, rng: np.random.Generator, options: ExportOptions | None = None
) -> Scan:
    """The single-image export of a dual-energy `scan`, drawn with `rng`.

    Returns a single-image Scan: `image` in 0..1 on the 8-bit grid (k/255),
    labels and mask carried over (nearest neighbour when the grid changed),
    the export's spacing, truth maps dropped, `meta` copied with
    `meta["export"]` recording every choice and `meta["inverted"]` whether
    the image is bone-dark. The same scan and generator state give the same
    export.
    """
    options = options or ExportOptions()
    if not scan.is_dual_energy:
        raise ValueError("render_export needs a dual-energy scan (low and high)")
    record: dict[str, Any] = {
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()}
    }

    k = soft_tissue_ratio(scan) * (1 + rng.uniform(-1, 1) * options.ratio_jitter)
    bone = scan.low.astype(np.float64) - k * scan.high.astype(np.float64)
    record["soft_tissue_ratio"] = _round(k)

    bone, record["processing"] = _vendor_processing(bone, rng, options)

    spacing = scan.spacing_mm
    labels, mask = scan.labels, scan.mask
    resample = bool(rng.random() < options.resample_rate)
    record["source_spacing_mm"] = [_round(s) for s in spacing]
    if resample:
        target = float(rng.uniform(*options.export_spacing_mm))
        shape, spacing = export_grid(scan.shape, scan.spacing_mm, target)
        bone = resample_image(bone, scan.spacing_mm, shape, spacing, order=1)
        labels = _resample_or_none(labels, scan.spacing_mm, shape, spacing)
        mask = _resample_or_none(mask, scan.spacing_mm, shape, spacing)
        record["target_spacing_mm"] = _round(target)
    record["resampled"] = resample
    record["spacing_mm"] = [_round(s) for s in spacing]

    pixels, record["window"] = _window(bone, rng, options)
    inverted = bool(rng.random() < options.invert_rate)
    if inverted:
        pixels = 255 - pixels
    record["inverted"] = inverted

    record["overlay"] = None
    if rng.random() < options.overlay_rate:
        record["overlay"] = draw_overlay(pixels, labels, rng, options)
    record["spacing_in_file"] = bool(rng.random() >= options.omit_spacing_rate)

    meta = copy.deepcopy(scan.meta)
    meta["export"] = record
    meta["inverted"] = inverted
    return Scan(
        spacing_mm=spacing,
        image=(pixels.astype(np.float32) / 255.0),
        meta=meta,
        mask=mask,
        labels=labels,
    )


def _round(value: float) -> float:
    return round(float(value), 6)


def _vendor_processing(
    bone: np.ndarray, rng: np.random.Generator, options: ExportOptions
) -> tuple[np.ndarray, dict[str, Any]]:
    """Smooth, sharpen (unsharp mask) or leave the image, at random."""
    draw = rng.random()
    if draw < options.smooth_rate:
        sigma = float(rng.uniform(*options.smooth_sigma_px))
        return ndimage.gaussian_filter(bone, sigma, mode="nearest"), {
            "kind": "smooth",
            "sigma_px": _round(sigma),
        }
    if draw < options.smooth_rate + options.sharpen_rate:
        amount = float(rng.uniform(*options.sharpen_amount))
        sigma = float(rng.uniform(*options.sharpen_sigma_px))
        blurred = ndimage.gaussian_filter(bone, sigma, mode="nearest")
        return bone + amount * (bone - blurred), {
            "kind": "sharpen",
            "amount": _round(amount),
            "sigma_px": _round(sigma),
        }
    return bone, {"kind": "none"}


def export_grid(
    shape: tuple[int, int], spacing_mm: tuple[float, float], target_mm: float
) -> tuple[tuple[int, int], tuple[float, float]]:
    """(shape, spacing) of a grid of about `target_mm` square pixels over the same extent.

    The spacing is the extent divided by the rounded pixel count, so the
    field of view is kept exactly and each side is at least MIN_SIZE_PX.
    """
    extent = (shape[0] * spacing_mm[0], shape[1] * spacing_mm[1])
    new_shape = tuple(max(MIN_SIZE_PX, round(e / target_mm)) for e in extent)
    new_spacing = (extent[0] / new_shape[0], extent[1] / new_shape[1])
    return (int(new_shape[0]), int(new_shape[1])), new_spacing


def resample_image(
    image: np.ndarray,
    spacing_mm: tuple[float, float],
    shape: tuple[int, int],
    new_spacing_mm: tuple[float, float],
    order: int,
) -> np.ndarray:
    """Resample onto a grid with the same origin (pixel centres at (i + 0.5) * spacing).

    order 1 is linear with a Gaussian anti-alias filter when shrinking;
    order 0 is nearest neighbour, for labels (values kept, dtype kept).
    """
    factor = np.asarray(new_spacing_mm) / np.asarray(spacing_mm)
    source = image
    if order > 0:
        sigma = np.maximum(0.0, (factor - 1) / 2)
        if sigma.any():
            source = ndimage.gaussian_filter(image.astype(np.float64), sigma, mode="nearest")
    return ndimage.affine_transform(
        source,
        factor,
        offset=0.5 * factor - 0.5,
        output_shape=shape,
        order=order,
        mode="nearest",
    )


def _resample_or_none(
    labels: np.ndarray | None,
    spacing_mm: tuple[float, float],
    shape: tuple[int, int],
    new_spacing_mm: tuple[float, float],
) -> np.ndarray | None:
    if labels is None:
        return None
    return resample_image(labels, spacing_mm, shape, new_spacing_mm, order=0).astype(np.uint8)


def _window(
    bone: np.ndarray, rng: np.random.Generator, options: ExportOptions
) -> tuple[np.ndarray, dict[str, Any]]:
    """8-bit display window: percentiles with headroom, then a gamma."""
    low_pct = float(rng.uniform(*options.window_low_pct))
    high_pct = float(rng.uniform(*options.window_high_pct))
    headroom = float(rng.uniform(*options.window_headroom))
    gamma = float(rng.uniform(*options.gamma))
    lo, hi = np.percentile(bone, [low_pct, high_pct])
    hi = hi + headroom * (hi - lo)
    scaled = np.clip((bone - lo) / max(hi - lo, 1e-9), 0.0, 1.0) ** gamma
    pixels = np.rint(scaled * 255).astype(np.uint8)
    return pixels, {
        "low_pct": _round(low_pct),
        "high_pct": _round(high_pct),
        "headroom": _round(headroom),
        "gamma": _round(gamma),
        "black": _round(lo),
        "white": _round(hi),
    }


def gap_rows(labels: np.ndarray) -> dict[int, float]:
    """Row of the disc space between each labelled vertebra k and k+1 (key k).

    Between the two vertebrae's centroid rows, the rows holding the fewest
    pixels of either are the gap; the middle of them is returned.
    """
    rows = np.arange(labels.shape[0])
    gaps = {}
    for k in VERTEBRAE:
        upper, lower = labels == k, labels == k + 1
        if not upper.any() or not lower.any():
            continue
        top = int(np.average(rows, weights=upper.sum(axis=1)))
        bottom = int(np.average(rows, weights=lower.sum(axis=1)))
        if bottom <= top:
            continue
        counts = (upper | lower)[top : bottom + 1].sum(axis=1)
        fewest = np.flatnonzero(counts == counts.min()) + top
        gaps[k] = float(np.median(fewest))
    return gaps


def draw_overlay(
    pixels: np.ndarray,
    labels: np.ndarray | None,
    rng: np.random.Generator,
    options: ExportOptions,
) -> dict[str, Any]:
    """Burn the scanner's ROI graphics into `pixels` (in place); return what was drawn.

    With labels: a box around L1-L4 and a horizontal line through each disc
    space, `line_jitter_px` at most from the labels' gap. Always: text-like
    glyphs in one corner. Everything at OVERLAY_VALUE.
    """
    rows, cols = pixels.shape
    thickness = int(rng.integers(options.line_thickness_px[0], options.line_thickness_px[1] + 1))
    drawn: dict[str, Any] = {"thickness_px": thickness, "box": None, "lines": []}
    if labels is not None and labels.any():
        inside = np.flatnonzero(labels.any(axis=1)), np.flatnonzero(labels.any(axis=0))
        margins = rng.integers(options.box_margin_px[0], options.box_margin_px[1] + 1, size=4)
        top = max(0, int(inside[0][0]) - int(margins[0]))
        bottom = min(rows - thickness, int(inside[0][-1]) + int(margins[1]))
        left = max(0, int(inside[1][0]) - int(margins[2]))
        right = min(cols - thickness, int(inside[1][-1]) + int(margins[3]))
        pixels[top : top + thickness, left : right + thickness] = OVERLAY_VALUE
        pixels[bottom : bottom + thickness, left : right + thickness] = OVERLAY_VALUE
        pixels[top : bottom + thickness, left : left + thickness] = OVERLAY_VALUE
        pixels[top : bottom + thickness, right : right + thickness] = OVERLAY_VALUE
        drawn["box"] = {"top": top, "bottom": bottom, "left": left, "right": right}
        for k, gap in gap_rows(labels).items():
            jitter = int(rng.integers(-options.line_jitter_px, options.line_jitter_px + 1))
            row = int(np.clip(round(gap) + jitter, 0, rows - thickness))
            pixels[row : row + thickness, left : right + thickness] = OVERLAY_VALUE
            drawn["lines"].append({"between": [k, k + 1], "row": row, "gap_row": _round(gap)})
    drawn["text"] = _draw_text(pixels, rng, options)
    return drawn


def _draw_text(pixels: np.ndarray, rng: np.random.Generator, options: ExportOptions) -> dict:
    """A line of random 5x3 glyphs (scale 1 or 2) in a random corner."""
    rows, cols = pixels.shape
    count = int(rng.integers(options.text_glyphs[0], options.text_glyphs[1] + 1))
    scale = int(rng.integers(1, 3))
    corner = ["top-left", "top-right", "bottom-left", "bottom-right"][int(rng.integers(4))]
    margin = int(rng.integers(2, 7))
    glyph_rows, glyph_cols = GLYPH_SHAPE[0] * scale, GLYPH_SHAPE[1] * scale
    count = max(1, min(count, (cols - 2 * margin) // (glyph_cols + scale)))
    width = count * (glyph_cols + scale) - scale
    top = margin if corner.startswith("top") else rows - margin - glyph_rows
    left = margin if corner.endswith("left") else cols - margin - width
    for i in range(count):
        glyph = rng.random(GLYPH_SHAPE) < 0.55
        glyph = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        x = left + i * (glyph_cols + scale)
        pixels[top : top + glyph_rows, x : x + glyph_cols][glyph] = OVERLAY_VALUE
    return {
        "corner": corner,
        "glyphs": count,
        "scale": scale,
        "box": {"top": top, "left": left, "rows": glyph_rows, "cols": width},
    }


def write_export(scan: Scan, path: Path | str, format: str | None = None) -> list[Path]:
    """Write an export as a scanner would: PixelSpacing (or the PNG sidecar's
    spacing) only when `meta["export"]["spacing_in_file"]` says so.

    NPZ always keeps the spacing (it is the training format).
    """
    from dxaspine.io import format_for, write_scan

    format = format or format_for(path)
    in_file = bool(scan.meta.get("export", {}).get("spacing_in_file", True))
    if format == "npz":
        return write_scan(scan, path, format)
    return write_scan(scan, path, format, pixel_spacing=in_file)
