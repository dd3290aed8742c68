"""Open variogram TBS: exact fBm fields of known H, input checks, simulator response."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from dxaspine.preview import bone_image
from dxaspine.simulate.case import sample_case
from dxaspine.simulate.devices import get_device
from dxaspine.simulate.generate import render_case
from dxaspine.simulate.texture import exact_fbm_field
from dxaspine.tbs import TBSConfig, tbs, variogram, variogram_slope

HURSTS = (0.2, 0.35, 0.5, 0.65, 0.8)
LAGS = TBSConfig().lags_mm


def _notched_disk(n: int) -> np.ndarray:
    """A disk of radius 0.47 n with a vertical notch from the top to the centre."""
    yy, xx = np.mgrid[:n, :n] + 0.5
    c = n / 2
    disk = (yy - c) ** 2 + (xx - c) ** 2 < (0.47 * n) ** 2
    notch = (np.abs(xx - c) < n / 16) & (yy < c)
    return disk & ~notch


def test_variogram_hand_worked():
    image = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    table = variogram(image, mask, (2.0, 1.0), (1.0, 2.0))
    # lag 1 mm: rows floor(0.5 + 0.5) = 1 px -> 2 mm; cols 1 px -> 1 mm.
    # lag 2 mm: rows 1 px (duplicate, dropped); cols 2 px -> 2 mm.
    assert table[:, 0].tolist() == [2.0, 1.0, 2.0]
    # rows, offset 1, pairs with both in mask: (0,0)-(1,0): 2, (0,1)-(1,1): 1.
    assert table[0, 1] == pytest.approx((4 + 1) / 2 / 2)
    # cols, offset 1: (0,0)-(0,1): 1, (0,1)-(0,2): 2, (1,0)-(1,1): 0.
    assert table[1, 1] == pytest.approx((1 + 4 + 0) / 3 / 2)
    assert table[2].tolist() == [2.0, 4.5, 1.0]


def test_exact_fbm_embedding_is_nonnegative_definite():
    rng = np.random.default_rng(0)
    for hurst in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.76, 0.8):
        for shape in ((16, 16), (64, 40)):
            # Raises if any eigenvalue < -1e-10 x the largest.
            field = exact_fbm_field(shape, hurst, rng, tolerance=1e-10)
            assert field.shape == shape and field[0, 0] == 0.0


def test_exact_fbm_variogram_is_power_law():
    rng = np.random.default_rng(1)
    for hurst in (0.3, 0.8):
        fields = np.array([exact_fbm_field((32, 32), hurst, rng) for _ in range(300)])
        for k in (1, 4):
            v = np.mean((fields[:, :, k:] - fields[:, :, :-k]) ** 2) / k ** (2 * hurst)
            w = np.mean((fields[:, k:, :] - fields[:, :-k, :]) ** 2) / k ** (2 * hurst)
            assert v == pytest.approx(1.0, abs=0.06) and w == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("hurst", HURSTS)
def test_recovers_hurst_at_two_spacings_and_in_a_mask(hurst):
    """One physical field, 256 px at 0.5 mm and every 2nd pixel (128 px) at 1.0 mm."""
    rng = np.random.default_rng([2, int(hurst * 100)])
    fine_mask = _notched_disk(256)
    coarse_mask = _notched_disk(128)
    estimates = {key: [] for key in ("0.5", "0.5 mask", "1.0", "1.0 mask")}
    for _ in range(8):
        fine = exact_fbm_field((256, 256), hurst, rng)
        coarse = fine[::2, ::2]
        full = np.ones_like(fine, bool)
        estimates["0.5"].append(variogram_slope(fine, full, (0.5, 0.5), LAGS) / 2)
        estimates["0.5 mask"].append(variogram_slope(fine, fine_mask, (0.5, 0.5), LAGS) / 2)
        estimates["1.0"].append(variogram_slope(coarse, full[::2, ::2], (1.0, 1.0), LAGS) / 2)
        estimates["1.0 mask"].append(variogram_slope(coarse, coarse_mask, (1.0, 1.0), LAGS) / 2)
    for key, values in estimates.items():
        assert abs(np.mean(values) - hurst) < 0.03, (key, np.mean(values), np.std(values))


def test_variogram_slope_input_checks():
    image = np.zeros((20, 20))
    mask = np.ones((20, 20), bool)
    with pytest.raises(ValueError, match="does not match"):
        variogram_slope(image, mask[:10], (1.0, 1.0), LAGS)
    with pytest.raises(ValueError, match="empty"):
        variogram_slope(image, np.zeros_like(mask), (1.0, 1.0), LAGS)
    tiny = np.zeros_like(mask)
    tiny[5:7, 5:7] = True
    with pytest.raises(ValueError, match="too few pixel pairs"):
        variogram_slope(np.random.default_rng(0).random((20, 20)), tiny, (1.0, 1.0), LAGS)
    with pytest.raises(ValueError, match="constant"):
        variogram_slope(image, mask, (1.0, 1.0), LAGS)
    with pytest.raises(ValueError, match="spacing_mm"):
        variogram_slope(image, mask, (0.0, 1.0), LAGS)


def test_tbs_per_vertebra_and_total():
    rng = np.random.default_rng(3)
    image = exact_fbm_field((128, 128), 0.5, rng)
    labels = np.zeros((128, 128), np.uint8)
    labels[10:50, 10:50] = 1
    labels[60:100, 10:50] = 2
    labels[60:100, 60:100] = 3
    labels[0:5, 0:5] = 4  # too small: nan
    out = tbs(image, labels, (1.0, 1.0))
    assert set(out) == {"L1", "L2", "L3", "L4", "total"}
    assert np.isnan(out["L4"])
    assert out["total"] == pytest.approx(np.mean([out["L1"], out["L2"], out["L3"]]))


def _simulated_totals(noise: bool) -> list[float]:
    case = sample_case(np.random.default_rng([7, 0]), "tbs-test")
    device = get_device("hologic-like")
    totals = []
    for hurst in (0.2, 0.35, 0.5, 0.65):
        vertebrae = tuple(dataclasses.replace(v, texture_hurst=hurst) for v in case.vertebrae)
        scan = render_case(
            dataclasses.replace(case, vertebrae=vertebrae),
            device,
            np.random.default_rng(3) if noise else None,
        )
        totals.append(tbs(bone_image(scan), scan.labels, scan.spacing_mm)["total"])
    return totals


MIN_TBS_RISE = 0.05
"""Texture from the worst to the best bone must move TBS by at least 5 %
(clinical TBS spans about 1.2 to 1.45): a monotone but tiny rise is no signal."""


@pytest.mark.parametrize("noise", [False, True])
def test_simulator_tbs_increases_with_hurst(noise):
    totals = _simulated_totals(noise)
    assert all(b > a for a, b in itertools.pairwise(totals)), totals
    assert totals[-1] > (1 + MIN_TBS_RISE) * totals[0], totals
