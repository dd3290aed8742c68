"""Figures for the evaluation report, each returned as PNG bytes.

`score_figure`: a method-vs-reference scatter plot (identity line) and one
Bland-Altman plot per method (difference method - reference against their
mean, with the bias and the 95% limits of agreement). `dice_figure`: the
distribution of per-scan Dice. `overlay_thumbnail`: one scan's bone image
with the predicted vertebrae filled in their colours and the reference
contour in white.

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend
change), imported only when a plot is drawn. PNGs carry no software or date
metadata, so the same rows give the same bytes.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from dxaspine.evaluate import agreement
from dxaspine.labels import COLOURS_RGB, VERTEBRAE
from dxaspine.scan import Scan

DPI = 80
METHOD_STYLE = {
    "dxaspine": {"suffix": "pred", "prefix": "", "colour": "#1f77b4", "marker": "o"},
    "baseline": {"suffix": "baseline", "prefix": "baseline_", "colour": "#d95f02", "marker": "x"},
}
METHOD_NAMES = {"dxaspine": "dxaspine", "baseline": "scanner-style baseline"}
SCORE_AXES = {
    "bmd": ("bmd_g_cm2", "BMD L1-L4 (g/cm2)"),
    "tbs": ("tbs", "open TBS L1-L4"),
}
REFERENCE_CONTOUR_RGB = (255, 255, 255)


def number(value: Any) -> float:
    """A CSV cell or JSON value as a float: '', None and text that is not a number give nan."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """One column of the per-scan rows as floats (nan where empty or absent)."""
    return np.array([number(row.get(key)) for row in rows], np.float64)


def _figure(width_in: float, height_in: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise ImportError(
            "the HTML report's plots need matplotlib: pip install matplotlib"
        ) from None
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def score_figure(rows: list[dict[str, Any]], score: str, methods: list[str]) -> bytes | None:
    """Scatter of each method against the reference, then a Bland-Altman plot
    per method, for `score` 'bmd' or 'tbs'. None when no scan has a finite
    pair (e.g. BMD without a calibration)."""
    key, label = SCORE_AXES[score]
    reference = column(rows, f"{key}_ref")
    series = {}
    for method in methods:
        values = column(rows, f"{key}_{METHOD_STYLE[method]['suffix']}")
        keep = np.isfinite(values) & np.isfinite(reference)
        if keep.sum() >= 1:
            series[method] = (reference[keep], values[keep])
    if not series:
        return None
    figure = _figure(4.0 * (1 + len(series)), 3.6)
    axes = figure.subplots(1, 1 + len(series), squeeze=False)[0]
    scatter = axes[0]
    everything = np.concatenate([np.concatenate(pair) for pair in series.values()])
    low, high = float(everything.min()), float(everything.max())
    pad = 0.05 * (high - low or 1.0)
    scatter.plot([low - pad, high + pad], [low - pad, high + pad], color="0.5", lw=1, ls="--")
    for method, (ref, values) in series.items():
        style = METHOD_STYLE[method]
        scatter.scatter(
            ref, values, s=14, c=style["colour"], marker=style["marker"], label=METHOD_NAMES[method]
        )
    scatter.set(
        xlabel=f"{label}, reference labels",
        ylabel=f"{label}, method",
        title=f"{score.upper()}: method vs reference",
        xlim=(low - pad, high + pad),
        ylim=(low - pad, high + pad),
    )
    scatter.legend(fontsize="small", loc="upper left")
    for axis, (method, (ref, values)) in zip(axes[1:], series.items(), strict=True):
        style = METHOD_STYLE[method]
        stats = agreement(values, ref)
        axis.scatter(
            (values + ref) / 2, values - ref, s=14, c=style["colour"], marker=style["marker"]
        )
        if math.isfinite(stats.bias):
            axis.axhline(stats.bias, color="k", lw=1, label=f"bias {stats.bias:+.4f}")
            for limit in (stats.loa_low, stats.loa_high):
                axis.axhline(limit, color="k", lw=1, ls="--")
            axis.legend(fontsize="small", loc="upper left", title="dashed: 95% limits")
        axis.axhline(0.0, color="0.6", lw=0.8, ls=":")
        axis.set(
            xlabel="mean of method and reference",
            ylabel="method - reference",
            title=f"Bland-Altman: {METHOD_NAMES[method]}",
        )
    return _png(figure)


def dice_figure(rows: list[dict[str, Any]], methods: list[str]) -> bytes | None:
    """Histogram of per-scan Dice (L1-L4 union) for each method; None without rows."""
    series = {m: column(rows, f"{METHOD_STYLE[m]['prefix']}dice") for m in methods}
    series = {m: v[np.isfinite(v)] for m, v in series.items() if np.isfinite(v).any()}
    if not series:
        return None
    figure = _figure(6.0, 3.2)
    axis = figure.subplots()
    low = min(float(v.min()) for v in series.values())
    bins = np.linspace(min(low, 0.9), 1.0, 41)
    for method, values in series.items():
        axis.hist(
            values,
            bins=bins,
            alpha=0.6,
            color=METHOD_STYLE[method]["colour"],
            label=f"{METHOD_NAMES[method]} (n={values.size})",
        )
    axis.set(xlabel="Dice, L1-L4 union", ylabel="scans", title="Per-scan Dice")
    axis.legend(fontsize="small", loc="upper left")
    return _png(figure)


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def overlay_thumbnail(
    scan: Scan, reference: np.ndarray, predicted: np.ndarray, height_px: int = 260
) -> bytes:
    """The scan's bone image in true proportions, `height_px` high: predicted
    vertebrae filled in their label colours, each predicted vertebra outlined
    in its colour and each reference vertebra outlined in white on top."""
    from dxaspine.preview import bone_image, overlay, to_8bit

    grey = to_8bit(bone_image(scan))
    rows, cols = grey.shape
    width_mm, height_mm = cols * scan.spacing_mm[1], rows * scan.spacing_mm[0]
    size = (max(1, round(height_px * width_mm / height_mm)), height_px)
    grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR))

    def resized(labels: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.asarray(labels, np.uint8))
        return np.asarray(image.resize(size, Image.Resampling.NEAREST))

    predicted, reference = resized(predicted), resized(reference)
    rgb = overlay(grey, predicted, alpha=0.3)
    for label in VERTEBRAE:
        rgb[_boundary(predicted == label)] = COLOURS_RGB[label]
    for label in VERTEBRAE:
        rgb[_boundary(reference == label)] = REFERENCE_CONTOUR_RGB
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
