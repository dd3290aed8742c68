"""Evaluation statistics: how a segmentation and its bone scores compare with
the reference, as pure functions of arrays.

`overlap_metrics` scores one predicted label map against the reference;
`agreement` compares a method's bone scores with those from the reference
masks (Pearson r, RMSD, RMSD % of the reference mean, Bland-Altman bias and
95% limits of agreement); `mean_sd` and `bootstrap_ci` summarise a cohort.

Whole cohorts: `dxaspine.pairing` pairs predictions with reference scans,
`dxaspine.cohort_evaluation` scores them all (`dxaspine evaluate`) and
`dxaspine.cohort_summary` turns the per-scan rows into the summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from dxaspine.labels import VERTEBRAE
from dxaspine.metrics import assd_mm, dice, hausdorff_mm


def overlap_metrics(
    predicted: np.ndarray, reference: np.ndarray, spacing_mm: tuple[float, float]
) -> dict[str, float]:
    """Dice, HD, HD95 and ASSD (mm) of the L1-L4 union, plus the mean Dice of
    L1..L4 taken one by one (a wrong vertebra label costs there, not in the union)."""
    pred_union, ref_union = predicted > 0, reference > 0
    per_vertebra = [dice(predicted == v, reference == v) for v in VERTEBRAE]
    return {
        "dice": dice(pred_union, ref_union),
        "dice_vertebrae": float(np.mean(per_vertebra)),
        "hausdorff_mm": hausdorff_mm(pred_union, ref_union, spacing_mm),
        "hd95_mm": hausdorff_mm(pred_union, ref_union, spacing_mm, percentile=95),
        "assd_mm": assd_mm(pred_union, ref_union, spacing_mm),
    }


@dataclass(frozen=True)
class Agreement:
    """Agreement of a method's values with reference values (same units).

    RMSD % is 100 x RMSD / mean(reference), the convention the published
    table's figures fit (0.028 g/cm2 = 2.56% of a mean BMD near 1.09).
    Limits of agreement are bias +- 1.96 SD of the differences.
    """

    n: int
    pearson_r: float
    rmsd: float
    rmsd_percent: float
    bias: float
    loa_low: float
    loa_high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def agreement(method: np.ndarray, reference: np.ndarray) -> Agreement:
    """Agreement over the pairs where both values are finite (nan where n < 2)."""
    method = np.asarray(method, np.float64)
    reference = np.asarray(reference, np.float64)
    if method.shape != reference.shape:
        raise ValueError(f"method {method.shape} and reference {reference.shape} differ in shape")
    keep = np.isfinite(method) & np.isfinite(reference)
    m, r = method[keep], reference[keep]
    n = int(keep.sum())
    if n < 2:
        nan = math.nan
        return Agreement(n, nan, nan, nan, nan, nan, nan)
    difference = m - r
    rmsd = float(np.sqrt(np.mean(difference**2)))
    spread = np.std(m) * np.std(r)
    pearson = float(np.corrcoef(m, r)[0, 1]) if spread > 0 else math.nan
    bias = float(difference.mean())
    sd = float(difference.std(ddof=1))
    return Agreement(
        n=n,
        pearson_r=pearson,
        rmsd=rmsd,
        rmsd_percent=100.0 * rmsd / float(np.mean(r)),
        bias=bias,
        loa_low=bias - 1.96 * sd,
        loa_high=bias + 1.96 * sd,
    )


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean and sample SD (n - 1 in the denominator, as the Bland-Altman limits
    and benchmarks/realism.py use; 0 for one value, nan for none) over the
    finite values, with how many were not finite."""
    array = np.asarray(values, np.float64)
    finite = array[np.isfinite(array)]
    sd = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "sd": sd if finite.size else math.nan,
        "n": int(finite.size),
        "n_not_finite": int(array.size - finite.size),
    }


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    values: np.ndarray | list,
    statistic: Callable[[np.ndarray], float],
    n: int = 1000,
    seed: int = 0,
    *,
    confidence: float = 0.95,
    groups: np.ndarray | list | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (default 95%).

    `values` is 1-D (one value per scan) or 2-D (one row per scan: pairs
    resampled together, e.g. method and reference). Rows with a non-finite
    value are dropped first. Draws `n` resamples of the rows with
    replacement from `numpy.random.default_rng(seed)`, so the same inputs
    give the same interval; resamples whose statistic is not finite are
    skipped. (nan, nan) when no row or no finite statistic is left.

    `groups` (one id per row, e.g. the patient) resamples groups instead,
    each with all its rows (a cluster bootstrap): scans of one patient are
    not independent, and resampling them one by one narrows the interval.
    When every group holds one row this is the plain bootstrap, draw for draw.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 resample, got {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    data = np.asarray(values, np.float64)
    if data.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D (rows resampled), got shape {data.shape}")
    finite = np.isfinite(data) if data.ndim == 1 else np.isfinite(data).all(axis=1)
    if groups is not None and len(groups) != data.shape[0]:
        raise ValueError(f"groups has {len(groups)} ids for {data.shape[0]} rows")
    data = data[finite]
    if data.shape[0] == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    members = None
    if groups is not None:
        ids = np.asarray(groups, dtype=str)[finite]
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        group_of = np.argsort(np.argsort(first))[inverse]  # numbered in order of appearance
        if group_of.max() + 1 < data.shape[0]:
            order = np.argsort(group_of, kind="stable")
            members = np.split(order, np.cumsum(np.bincount(group_of))[:-1])
    if members is None:
        draws = rng.integers(0, data.shape[0], size=(n, data.shape[0]))
        stats = np.array([statistic(data[rows]) for rows in draws], np.float64)
    else:
        draws = rng.integers(0, len(members), size=(n, len(members)))
        stats = np.array(
            [statistic(data[np.concatenate([members[g] for g in chosen])]) for chosen in draws],
            np.float64,
        )
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return (math.nan, math.nan)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return (float(low), float(high))
