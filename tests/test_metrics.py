"""Tests for dxaspine.metrics: hand-worked pixels plus agreement with MONAI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from scipy import ndimage

from dxaspine.metrics import UNION, assd_mm, dice, hausdorff_mm, per_label


def _square(shape=(32, 32), top=10, left=10, side=10) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


# --- hand-worked cases -------------------------------------------------------


def test_identical_masks():
    m = _square()
    assert dice(m, m) == 1.0
    assert hausdorff_mm(m, m, (0.7, 1.3)) == 0.0
    assert hausdorff_mm(m, m, (0.7, 1.3), percentile=95) == 0.0
    assert assd_mm(m, m, (0.7, 1.3)) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_square_shifted_by_k_columns(k):
    ref = _square()
    pred = _square(left=10 + k)
    # Worst boundary pixel: a vertical edge moved k columns of 0.5 mm.
    assert hausdorff_mm(pred, ref, (1.0, 0.5)) == pytest.approx(k * 0.5, abs=1e-12)
    assert hausdorff_mm(ref, pred, (1.0, 0.5)) == pytest.approx(k * 0.5, abs=1e-12)
    assert dice(pred, ref) == pytest.approx(2 * 10 * (10 - k) / 200)


def test_anisotropy_changes_hausdorff():
    ref = _square()
    pred = _square(left=12)
    assert hausdorff_mm(pred, ref, (1.0, 0.5)) == pytest.approx(1.0)
    assert hausdorff_mm(pred, ref, (0.5, 1.0)) == pytest.approx(2.0)
    assert assd_mm(pred, ref, (1.0, 0.5)) != pytest.approx(assd_mm(pred, ref, (0.5, 1.0)))


def test_single_pixels_use_per_axis_spacing():
    a = np.zeros((12, 12), dtype=np.uint8)
    b = np.zeros((12, 12), dtype=np.uint8)
    a[5, 5] = 1
    b[5, 8] = 1  # 3 columns apart
    assert hausdorff_mm(a, b, (2.0, 0.5)) == pytest.approx(1.5)
    assert assd_mm(a, b, (2.0, 0.5)) == pytest.approx(1.5)
    b2 = np.zeros_like(b)
    b2[8, 5] = 1  # 3 rows apart
    assert hausdorff_mm(a, b2, (2.0, 0.5)) == pytest.approx(6.0)
    b3 = np.zeros_like(b)
    b3[8, 9] = 1  # 3 rows, 4 columns
    assert hausdorff_mm(a, b3, (1.0, 1.0)) == pytest.approx(5.0)


def test_border_pixels_are_boundary():
    # A full image has its outer ring as boundary (border_value=0).
    full = np.ones((5, 7), dtype=bool)
    inner = np.zeros_like(full)
    inner[2, 3] = True
    # Centre pixel is 2 rows from the top/bottom ring and 3 columns from the sides.
    assert hausdorff_mm(inner, full, (1.0, 1.0)) == pytest.approx(math.hypot(2, 3))
    assert assd_mm(inner, inner, (1.0, 1.0)) == 0.0


def test_disjoint_masks():
    a = _square(top=0, left=0, side=5)
    b = _square(top=20, left=20, side=5)
    assert dice(a, b) == 0.0
    assert hausdorff_mm(a, b, (1.0, 1.0)) > 0


def test_empty_masks_documented_values():
    empty = np.zeros((16, 16), dtype=bool)
    m = _square((16, 16), 4, 4, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dice(empty, empty) == 1.0
        assert dice(m, empty) == 0.0
        assert dice(empty, m) == 0.0
        for a, b in [(empty, empty), (m, empty), (empty, m)]:
            assert math.isnan(hausdorff_mm(a, b, (1.0, 1.0)))
            assert math.isnan(hausdorff_mm(a, b, (1.0, 1.0), percentile=95))
            assert math.isnan(assd_mm(a, b, (1.0, 1.0)))


# --- input validation --------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "ref", "match"),
    [
        (np.zeros((4, 4), bool), np.zeros((4, 5), bool), "same shape"),
        (np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool), "2-D"),
        (np.zeros((4, 4), float), np.zeros((4, 4), bool), "Threshold"),
        (np.full((4, 4), 3), np.zeros((4, 4), int), "per_label"),
    ],
)
def test_bad_masks_raise(pred, ref, match):
    with pytest.raises(ValueError, match=match):
        dice(pred, ref)
    with pytest.raises(ValueError, match=match):
        hausdorff_mm(pred, ref, (1.0, 1.0))


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (-1.0, 1.0), (1.0,), (1.0, 1.0, 1.0), (np.nan, 1)])
def test_bad_spacing_raises(spacing):
    m = _square()
    with pytest.raises(ValueError, match="spacing_mm"):
        hausdorff_mm(m, m, spacing)
    with pytest.raises(ValueError, match="spacing_mm"):
        assd_mm(m, m, spacing)


def test_bad_percentile_raises():
    m = _square()
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_mm(m, m, (1.0, 1.0), percentile=101)


# --- per_label ---------------------------------------------------------------


def test_per_label_and_union():
    ref = np.zeros((40, 20), dtype=np.uint8)
    for i, lab in enumerate((1, 2, 3, 4)):
        ref[2 + 9 * i : 9 + 9 * i, 5:15] = lab
    pred = ref.copy()
    pred[pred == 3] = 0  # L3 missed entirely
    pred[2:9, 15] = 1  # L1 one column too wide

    d = per_label(dice, pred, ref)
    assert set(d) == {1, 2, 3, 4, UNION}
    assert d[2] == d[4] == 1.0
    assert d[3] == 0.0
    assert d[1] == pytest.approx(2 * 70 / (77 + 70))
    assert d[UNION] == pytest.approx(dice(np.isin(pred, [1, 2, 3, 4]), ref > 0))

    hd = per_label(hausdorff_mm, pred, ref, spacing_mm=(1.0, 0.5))
    assert hd[1] == pytest.approx(0.5)
    assert hd[2] == 0.0
    assert math.isnan(hd[3])

    only_two = per_label(assd_mm, pred, ref, labels=(2,), spacing_mm=(1.0, 1.0))
    assert only_two == {2: 0.0, UNION: 0.0}


def test_per_label_validation():
    a = np.zeros((4, 4), dtype=int)
    with pytest.raises(ValueError, match="same shape"):
        per_label(dice, a, np.zeros((4, 5), dtype=int))
    with pytest.raises(ValueError, match="union key"):
        per_label(dice, a, a, labels=(0, 1))
    with pytest.raises(ValueError, match="integer labels"):
        per_label(dice, a.astype(float), a)


# --- agreement with MONAI ----------------------------------------------------


def _blob_pair(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Thresholded smoothed random fields; pred = ref field plus smooth noise."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(40, 80)), int(rng.integers(40, 80)))
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=4.0)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    thr = np.quantile(field, rng.uniform(0.5, 0.85))
    ref = field > thr
    pred = field + 0.5 * noise.std() / field.std() * noise > thr
    spacing = (float(rng.uniform(0.3, 1.5)), float(rng.uniform(0.3, 1.5)))
    return pred, ref, spacing


def _monai(fn, pred, ref, spacing, **kw) -> float:
    y_pred = torch.from_numpy(pred[None, None].astype(np.float32))
    y = torch.from_numpy(ref[None, None].astype(np.float32))
    return float(fn(y_pred, y, include_background=True, spacing=list(spacing), **kw)[0, 0])


# MONAI 1.6 warns about its own internal use of a deprecated argument.
@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_monai(seed):
    pred, ref, spacing = _blob_pair(seed)
    assert pred.any() and ref.any() and not np.array_equal(pred, ref)
    # MONAI works in float32 (worst case seen: HD95 via torch.quantile, 9.4e-7 relative).
    tol = {"rel": 1e-6, "abs": 1e-6}
    assert hausdorff_mm(pred, ref, spacing) == pytest.approx(
        _monai(compute_hausdorff_distance, pred, ref, spacing), **tol
    )
    assert hausdorff_mm(pred, ref, spacing, percentile=95) == pytest.approx(
        _monai(compute_hausdorff_distance, pred, ref, spacing, percentile=95), **tol
    )
    assert assd_mm(pred, ref, spacing) == pytest.approx(
        _monai(compute_average_surface_distance, pred, ref, spacing, symmetric=True), **tol
    )
