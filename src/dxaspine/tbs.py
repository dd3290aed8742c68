"""Trabecular bone score: an OPEN, variogram-based TBS.

This is not the commercial, calibrated TBS (TBS iNsight): that product's lag
range, pre-processing and scaling are proprietary. Ours is the plain
log-log slope of the experimental variogram of the bone image inside each
vertebra, over fixed physical lags (`TBSConfig.lags_mm`), with no scaling:
for a fractional Brownian texture of Hurst exponent H it equals 2H. Its
values are therefore on a different scale from the commercial TBS, and the
clinical cut-offs (1.200 / 1.350) do not apply to it.

Conventions:

- The variogram is the semivariogram gamma(h) = mean((z(p) - z(q))^2) / 2
  over pixel pairs at separation h with BOTH pixels inside the mask. The
  factor 1/2 does not change the slope.
- Pairs are taken along the two image axes only (rows and columns). A lag
  in mm becomes a whole-pixel offset per axis, round(lag / spacing); a lag
  that rounds to 0 on an axis is skipped there, and the fit uses the actual
  distance offset x spacing, so both directions are pooled on true mm
  distances and the result does not depend on the pixel size.
- The slope is the unweighted least-squares slope of log gamma against
  log distance over all (lag, axis) points.
- Per-vertebra TBS needs at least `min_pixels` mask pixels, else it is nan.
  'total' is the mean of the available vertebra TBS values (as the
  commercial TBS averages over vertebrae), nan if none is available.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dxaspine.labels import VERTEBRAE

VARIOGRAM_COLUMNS = ("distance_mm", "semivariance", "n_pairs")
"""Columns of the array returned by `variogram`."""


def _offsets(spacing_mm: tuple[float, float], lags_mm: tuple[float, ...]) -> list[tuple[int, int]]:
    """Distinct (axis, pixel offset) pairs for the lags, in lag order."""
    seen: list[tuple[int, int]] = []
    for lag in lags_mm:
        for axis in (0, 1):
            offset = int(np.floor(lag / spacing_mm[axis] + 0.5))
            if offset >= 1 and (axis, offset) not in seen:
                seen.append((axis, offset))
    return seen


def _check(image: np.ndarray, mask: np.ndarray, spacing_mm, lags_mm) -> tuple:
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(
            f"mask shape {mask.shape} does not match image shape {image.shape}; "
            "pass a mask of the same rows x cols"
        )
    if not mask.any():
        raise ValueError("mask is empty: no pixels to compute a variogram on")
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
    if min(spacing) <= 0:
        raise ValueError(f"spacing_mm must be positive (row, col) mm, got {spacing_mm}")
    lags = tuple(float(lag) for lag in lags_mm)
    if not lags or min(lags) <= 0:
        raise ValueError(f"lags_mm must be a non-empty sequence of positive mm, got {lags_mm}")
    if not np.isfinite(image[mask]).all():
        raise ValueError("image has non-finite values inside the mask")
    return image, mask, spacing, lags


def variogram(
    image: np.ndarray,
    mask: np.ndarray,
    spacing_mm: tuple[float, float],
    lags_mm: tuple[float, ...],
) -> np.ndarray:
    """Experimental semivariogram inside `mask` along rows and columns.

    Returns a float array of shape (k, 3), columns `VARIOGRAM_COLUMNS`:
    actual distance in mm (offset x spacing), semivariance
    mean((z(p) - z(q))^2) / 2 over pairs with both pixels in the mask, and
    the number of pairs. One row per distinct (axis, pixel offset) reached
    by `lags_mm` (lags rounding to 0 pixels on an axis are skipped there;
    lags rounding to the same offset are counted once). Rows with no pairs
    are kept with semivariance nan and n_pairs 0.
    """
    image, mask, spacing, lags = _check(image, mask, spacing_mm, lags_mm)
    rows = []
    for axis, offset in _offsets(spacing, lags):
        n = image.shape[axis]
        if offset >= n:
            rows.append((offset * spacing[axis], np.nan, 0.0))
            continue
        head = [slice(None), slice(None)]
        tail = [slice(None), slice(None)]
        head[axis], tail[axis] = slice(offset, None), slice(None, n - offset)
        both = mask[tuple(head)] & mask[tuple(tail)]
        count = int(both.sum())
        if count == 0:
            rows.append((offset * spacing[axis], np.nan, 0.0))
            continue
        diff = image[tuple(head)][both] - image[tuple(tail)][both]
        rows.append((offset * spacing[axis], 0.5 * float(np.mean(diff * diff)), float(count)))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def variogram_slope(
    image: np.ndarray,
    mask: np.ndarray,
    spacing_mm: tuple[float, float],
    lags_mm: tuple[float, ...],
    min_pairs: int = 20,
) -> float:
    """Least-squares slope of log semivariance vs log distance (actual mm distances).

    Points with fewer than `min_pairs` pixel pairs are dropped. Raises
    ValueError if fewer than two distinct distances remain (mask too small
    or lags too few for this pixel size) or if the image is constant over a
    lag (semivariance 0, log undefined). For fBm of Hurst exponent H the
    slope is 2H.
    """
    image, mask, spacing, lags = _check(image, mask, spacing_mm, lags_mm)
    table = variogram(image, mask, spacing, lags)
    axes = np.array([axis for axis, _ in _offsets(spacing, lags)])
    keep = table[:, 2] >= min_pairs
    distance, gamma, axes = table[keep, 0], table[keep, 1], axes[keep]
    usable = [a for a in (0, 1) if np.unique(distance[axes == a]).size >= 2]
    if not usable:
        raise ValueError(
            f"too few pixel pairs: {int(keep.sum())} of {len(table)} lag/axis points have "
            f">= {min_pairs} pairs inside the mask, need 2 distinct distances on one axis; "
            "use a larger mask, more lags or a smaller min_pairs"
        )
    if (gamma[np.isin(axes, usable)] <= 0).any():
        raise ValueError("image is constant inside the mask at some lag: log variogram undefined")
    # One common slope, one intercept per axis: anisotropic structure may shift
    # one direction's level, which must not leak into the slope.
    design = [np.log(distance)] + [(axes == a).astype(float) for a in usable]
    use = np.isin(axes, usable)
    coef, *_ = np.linalg.lstsq(np.stack(design, axis=1)[use], np.log(gamma)[use], rcond=None)
    return float(coef[0])


@dataclass(frozen=True)
class TBSConfig:
    """Settings of the open TBS; record them with every result.

    `lags_mm`: physical lags of the fit. 1.0-3.0 mm spans at least two
    distinct pixel offsets on every axis for pixels of 0.5-1.2 mm (at 1.2 mm:
    1, 2 and 3 pixels), and starts above one pixel at typical DXA spacing,
    where photon noise (which flattens the slope) and the PSF (which
    steepens it) matter most.
    `min_pixels`: a vertebra with fewer mask pixels gets nan.
    `min_pairs`: passed to `variogram_slope`.
    No scaling: TBS = slope (2H for fBm).
    """

    lags_mm: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0)
    min_pixels: int = 100
    min_pairs: int = 20


def tbs(
    bone_image: np.ndarray,
    labels: np.ndarray,
    spacing_mm: tuple[float, float],
    config: TBSConfig | None = None,
) -> dict[str, float]:
    """Open TBS per vertebra ('L1'..'L4') and 'total' (mean of the available ones).

    `bone_image` is the processed bone image (e.g. `dxaspine.preview.bone_image`),
    `labels` the vertebra map (1..4 = L1..L4). A vertebra that is absent,
    has fewer than `config.min_pixels` pixels, or too few pairs gets nan.
    """
    config = config or TBSConfig()
    bone_image = np.asarray(bone_image)
    labels = np.asarray(labels)
    if labels.shape != bone_image.shape:
        raise ValueError(
            f"labels shape {labels.shape} does not match image shape {bone_image.shape}"
        )
    out: dict[str, float] = {}
    for label, name in VERTEBRAE.items():
        mask = labels == label
        value = float("nan")
        if mask.sum() >= config.min_pixels:
            try:
                value = variogram_slope(
                    bone_image, mask, spacing_mm, config.lags_mm, config.min_pairs
                )
            except ValueError:
                value = float("nan")
        out[name] = value
    values = [v for v in out.values() if np.isfinite(v)]
    out["total"] = float(np.mean(values)) if values else float("nan")
    return out
