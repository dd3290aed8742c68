"""Evaluation statistics: overlap of label maps, agreement of bone scores, bootstrap."""

import math

import numpy as np
import pytest

from dxaspine.evaluate import agreement, bootstrap_ci, mean_sd, overlap_metrics


def _spine(shift_cols: int = 0) -> np.ndarray:
    labels = np.zeros((100, 60), np.uint8)
    for i, top in enumerate((10, 30, 50, 70)):
        labels[top : top + 16, 20 + shift_cols : 40 + shift_cols] = i + 1
    return labels


def test_identical_maps_are_perfect():
    result = overlap_metrics(_spine(), _spine(), (1.0, 0.5))
    assert result["dice"] == 1.0 and result["dice_vertebrae"] == 1.0
    assert result["hausdorff_mm"] == 0.0 and result["assd_mm"] == 0.0


def test_a_known_shift_gives_the_expected_hausdorff_in_mm():
    result = overlap_metrics(_spine(shift_cols=2), _spine(), (1.0, 0.5))
    assert result["hausdorff_mm"] == pytest.approx(1.0)  # 2 columns x 0.5 mm
    assert result["dice"] == pytest.approx(18 / 20)


def test_swapped_vertebra_labels_cost_per_vertebra_dice_only():
    swapped = _spine()
    swapped[_spine() == 1], swapped[_spine() == 2] = 2, 1
    result = overlap_metrics(swapped, _spine(), (1.0, 1.0))
    assert result["dice"] == 1.0
    assert result["dice_vertebrae"] == pytest.approx(0.5)


def test_agreement_of_identical_values_and_of_a_known_offset():
    reference = np.array([0.8, 0.9, 1.0, 1.1, 1.2])
    same = agreement(reference, reference)
    assert same.rmsd == 0 and same.pearson_r == pytest.approx(1.0) and same.bias == 0
    shifted = agreement(reference + 0.05, reference)
    assert shifted.rmsd == pytest.approx(0.05)
    assert shifted.rmsd_percent == pytest.approx(5.0)
    assert shifted.bias == pytest.approx(0.05)
    assert shifted.loa_low == pytest.approx(0.05) and shifted.loa_high == pytest.approx(0.05)


def test_agreement_limits_follow_the_spread_and_skip_nan():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.7, 1.3, 2000)
    method = reference + rng.normal(0.01, 0.02, reference.size)
    method[0] = np.nan
    result = agreement(method, reference)
    assert result.n == 1999
    assert result.loa_high - result.loa_low == pytest.approx(2 * 1.96 * 0.02, rel=0.08)
    assert agreement(np.array([1.0]), np.array([1.0])).n == 1
    assert math.isnan(agreement(np.array([1.0]), np.array([1.0])).rmsd)
    with pytest.raises(ValueError, match="shape"):
        agreement(np.ones(3), np.ones(4))


def test_mean_sd_counts_non_finite_values():
    stats = mean_sd([1.0, 3.0, math.nan])
    assert stats == {"mean": 2.0, "sd": pytest.approx(math.sqrt(2)), "n": 2, "n_not_finite": 1}
    assert mean_sd([0.9])["sd"] == 0.0 and math.isnan(mean_sd([math.nan])["sd"])


def test_bootstrap_ci_contains_the_mean_and_repeats_with_its_seed():
    values = np.random.default_rng(1).normal(10.0, 2.0, 60)
    low, high = bootstrap_ci(values, np.mean, 500, seed=3)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(60), rel=0.25)
    assert bootstrap_ci(values, np.mean, 500, seed=3) == (low, high)
    assert bootstrap_ci(values, np.mean, 500, seed=4) != (low, high)
    with_nan = np.append(values, np.nan)
    assert bootstrap_ci(with_nan, np.mean, 500, seed=3) == (low, high)
    pairs = np.column_stack([values, values + 1.0])
    assert bootstrap_ci(pairs, lambda p: float(np.mean(p[:, 1] - p[:, 0])), 50, 0) == (
        pytest.approx(1.0),
        pytest.approx(1.0),
    )
    assert all(math.isnan(v) for v in bootstrap_ci([math.nan], np.mean, 10, 0))
    with pytest.raises(ValueError, match="at least 1"):
        bootstrap_ci(values, np.mean, 0, 0)


def test_bootstrap_over_patients_resamples_each_patient_with_all_its_scans():
    rng = np.random.default_rng(3)
    patient_values = rng.normal(0.95, 0.02, size=30)
    scans = np.repeat(patient_values, 4)  # four scans per patient, all alike
    patients = np.repeat([f"p{i}" for i in range(30)], 4)
    clustered = bootstrap_ci(scans, np.mean, 500, seed=1, groups=patients)
    # Resampling patients is resampling the 30 patient values, draw for draw.
    assert clustered == pytest.approx(bootstrap_ci(patient_values, np.mean, 500, seed=1))
    # Resampling the 120 scans one by one pretends to four times the data: about half as wide.
    naive = bootstrap_ci(scans, np.mean, 500, seed=1)
    assert (naive[1] - naive[0]) < 0.65 * (clustered[1] - clustered[0])
    # One scan per patient: the plain bootstrap, draw for draw.
    singles = [f"p{i}" for i in range(30)]
    assert bootstrap_ci(patient_values, np.mean, 200, 2, groups=singles) == bootstrap_ci(
        patient_values, np.mean, 200, 2
    )
    with pytest.raises(ValueError, match="groups has 3 ids for 120 rows"):
        bootstrap_ci(scans, np.mean, 10, groups=["a", "b", "c"])
