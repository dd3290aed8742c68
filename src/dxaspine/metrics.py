"""Segmentation metrics for 2-D masks: Dice, Hausdorff distance and ASSD.

Pure numpy/scipy functions, one value per call, in the spirit of MONAI's
``compute_*`` functions and DeepMind's surface-distance. Distances are in
millimetres, with anisotropic pixel spacing given as ``spacing_mm = (row, col)``.

Conventions (see docs/dxa-domain section 6; they match MONAI 1.x with
``spacing=`` and the default ``use_subvoxels=False``, which the tests check):

* Masks are 2-D boolean or integer arrays holding only 0 and 1. Label maps go
  through :func:`per_label`.
* Boundary = mask XOR its binary erosion, using
  ``scipy.ndimage.binary_erosion`` with the 3x3 cross (4-connected) structure
  and ``border_value=0``: a foreground pixel on the image edge is a boundary
  pixel.
* Surface distances: for each boundary pixel of one mask, the Euclidean
  distance in mm to the nearest boundary pixel of the other, from
  ``scipy.ndimage.distance_transform_edt(..., sampling=spacing_mm)``.
* HD = max of the two directed maxima. HD at ``percentile=p`` (HD95 for p=95)
  = max of the two directed p-th percentiles (linear interpolation, as
  ``numpy.percentile``); this is MONAI's convention, medpy instead takes the
  percentile of the pooled distances.
* ASSD = mean of the pooled distances of both directions (MONAI
  ``symmetric=True``, medpy ``assd``).
* Empty masks: Dice is 1.0 when both masks are empty and 0.0 when only one
  is. HD and ASSD are ``nan`` when either mask is empty (a distance to nothing
  is undefined); they never raise or warn for empty masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["UNION", "assd_mm", "dice", "hausdorff_mm", "per_label"]

#: Key of the union of all requested labels in the dict from :func:`per_label`.
#: Label 0 is background everywhere else, so it cannot clash with a vertebra.
UNION = 0

_CROSS = ndimage.generate_binary_structure(2, 1)


def _as_mask(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask (rows, cols); got shape {arr.shape}.")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must be a boolean or integer mask; got dtype {arr.dtype}. "
            "Threshold probabilities first, e.g. `prob > 0.5`."
        )
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"{name} must hold only 0 and 1; got values in [{arr.min()}, {arr.max()}]. "
            "For a label map use per_label(metric, pred_labels, ref_labels)."
        )
    return arr.astype(bool)


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_mask(pred, "pred")
    r = _as_mask(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(
            f"pred and ref must have the same shape; got {p.shape} and {r.shape}. "
            "Resample the prediction onto the reference grid first."
        )
    return p, r


def _check_spacing(spacing_mm: Sequence[float]) -> tuple[float, float]:
    sp = np.asarray(spacing_mm, dtype=float)
    if sp.shape != (2,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(
            f"spacing_mm must be two positive finite numbers (row_mm, col_mm); got {spacing_mm!r}."
        )
    return float(sp[0]), float(sp[1])


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Mask XOR its 4-connected erosion (image border counts as background)."""
    return mask ^ ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _directed_mm(src: np.ndarray, dst: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Distances (mm) from each boundary pixel of ``src`` to the boundary of ``dst``."""
    dist_to_dst = ndimage.distance_transform_edt(~dst, sampling=spacing)
    return np.asarray(dist_to_dst[src], dtype=np.float64)


def _surface_distances_mm(
    pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Both directed distance sets, or None when either mask is empty."""
    p, r = _check_pair(pred, ref)
    spacing = _check_spacing(spacing_mm)
    if not p.any() or not r.any():
        return None
    bp, br = _boundary(p), _boundary(r)
    return _directed_mm(bp, br, spacing), _directed_mm(br, bp, spacing)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice overlap 2|P∩R| / (|P|+|R|) of two binary masks, in [0, 1].

    Both masks empty -> 1.0 (perfect agreement that nothing is there);
    exactly one empty -> 0.0.
    """
    p, r = _check_pair(pred, ref)
    total = int(p.sum()) + int(r.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / total


def hausdorff_mm(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing_mm: Sequence[float],
    percentile: float = 100,
) -> float:
    """Symmetric Hausdorff distance in mm between the boundaries of two masks.

    ``percentile=100`` gives the classic HD (max of the two directed maxima);
    ``percentile=95`` gives HD95 as the max of the two directed 95th
    percentiles (MONAI convention). Returns nan if either mask is empty.
    See the module docstring for the boundary and distance conventions.
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100]; got {percentile}.")
    dists = _surface_distances_mm(pred, ref, spacing_mm)
    if dists is None:
        return float("nan")
    return float(max(np.percentile(d, percentile) for d in dists))


def assd_mm(pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Average symmetric surface distance in mm: mean of both directions pooled.

    Returns nan if either mask is empty. See the module docstring for the
    boundary and distance conventions.
    """
    dists = _surface_distances_mm(pred, ref, spacing_mm)
    if dists is None:
        return float("nan")
    return float(np.concatenate(dists).mean())


def per_label(
    metric: Callable[..., float],
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    labels: Iterable[int] = (1, 2, 3, 4),
    **kwargs: object,
) -> dict[int, float]:
    """Apply a binary ``metric`` to each label of two label maps, plus their union.

    Returns ``{label: value}`` for every label in ``labels`` (default L1..L4 =
    1..4) and ``{UNION (= 0): value}`` for the union of all those labels
    (``pred_labels in labels`` vs ``ref_labels in labels``). Extra keyword
    arguments go to ``metric``, e.g. ``spacing_mm=(0.5, 0.5), percentile=95``.
    A label absent from both maps yields the metric's empty-mask value
    (Dice 1.0, HD/ASSD nan).
    """
    pl, rl = np.asarray(pred_labels), np.asarray(ref_labels)
    for name, arr in (("pred_labels", pl), ("ref_labels", rl)):
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D label map; got shape {arr.shape}.")
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise ValueError(f"{name} must hold integer labels; got dtype {arr.dtype}.")
    if pl.shape != rl.shape:
        raise ValueError(
            f"pred_labels and ref_labels must have the same shape; got {pl.shape} and {rl.shape}."
        )
    label_list = [int(v) for v in labels]
    if not label_list or UNION in label_list:
        raise ValueError(
            f"labels must be non-empty foreground ids (not {UNION}, the union key); "
            f"got {label_list}."
        )
    out = {lab: float(metric(pl == lab, rl == lab, **kwargs)) for lab in label_list}
    out[UNION] = float(metric(np.isin(pl, label_list), np.isin(rl, label_list), **kwargs))
    return out
