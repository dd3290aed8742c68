"""benchmarks/qc.py: how the QC flags split a model's failures from its good labellings."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark_loader import load_benchmark
from dxaspine.qc import QCConfig

qc_benchmark = load_benchmark("qc")


def _row(
    min_dice: float,
    union_dice: float,
    predicted: list[str],
    reference: tuple[str, ...] = (),
    fracture: bool = False,
) -> dict:
    """One `assess` row."""
    return {
        "scan_id": "s",
        "device": "hologic-like",
        "union_dice": union_dice,
        "min_vertebra_dice": min_dice,
        "compression_fracture": fracture,
        "reference_findings": list(reference),
        "predicted_findings": predicted,
    }


# --------------------------------------------------------------------------- summarise


def test_summarise_flag_rates_and_failure_split():
    """Five labellings: a good unflagged one; a flagged fractured one at Dice 0.90
    exactly (good: the failure limit is strict); a flagged failure at 0.50 exactly
    (not gross); a flagged gross failure; an unflagged fractured gross failure.
    Codes count once per scan; shares are rounded to 4 decimals (2/3 -> 0.6667)."""
    rows = [
        _row(0.95, 0.98, []),
        _row(0.90, 0.97, ["area", "area"], ("area",), fracture=True),
        _row(0.50, 0.93, ["gap"]),
        _row(0.40, 0.80, ["neighbour_area", "gap"]),
        _row(0.30, 0.70, [], ("missing",), fracture=True),
    ]
    assert qc_benchmark.summarise(rows) == {
        "scans": 5,
        "reference_flagged": 0.4,
        "reference_codes": {"area": 1, "missing": 1},
        "predicted_flagged": 0.6,
        "predicted_codes": {"area": 1, "gap": 2, "neighbour_area": 1},
        "failures": 3,
        "failures_flagged": 0.6667,
        "gross_failures": 2,
        "gross_failures_flagged": 0.5,
        "compression_fractures": 2,
        "compression_fractures_flagged": 0.5,
        "good_flagged": 0.5,
        "union_dice_flagged": 0.9,
        "union_dice_unflagged": 0.84,
        "min_vertebra_dice_flagged": 0.6,
        "min_vertebra_dice_unflagged": 0.625,
    }


def test_summarise_empty_subsets_give_none_not_nan():
    """Only good, unflagged labellings: the failure, fracture and flagged shares have
    no scans to average over and are None (printed '-'), not nan or 0."""
    summary = qc_benchmark.summarise([_row(0.99, 0.99, []), _row(0.95, 0.97, [])])
    assert summary["failures"] == 0
    assert summary["gross_failures"] == 0
    assert summary["compression_fractures"] == 0
    for key in (
        "failures_flagged",
        "gross_failures_flagged",
        "compression_fractures_flagged",
        "union_dice_flagged",
        "min_vertebra_dice_flagged",
    ):
        assert summary[key] is None, key
    assert summary["good_flagged"] == 0.0
    assert summary["predicted_flagged"] == 0.0
    assert summary["union_dice_unflagged"] == 0.98
    assert summary["predicted_codes"] == {}


def test_summarise_no_rows():
    """An empty cohort (no CT given) summarises to zero scans and no shares."""
    summary = qc_benchmark.summarise([])
    assert summary["scans"] == 0
    assert summary["reference_flagged"] is None
    assert summary["predicted_flagged"] is None
    assert summary["reference_codes"] == {}


# --------------------------------------------------------------------------- assess


class FixedPredictor:
    """Stands in for `Predictor`: returns the given labels for any scan."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.seen = []

    def segment(self, scan) -> SimpleNamespace:
        self.seen.append(scan)
        return SimpleNamespace(labels=self.labels)


def test_assess_dice_and_findings_of_a_short_l2(make_scan):
    """The conftest scan holds L1 and L2 (rows 8-19 and 24-35, 288 px each, 0.003 cm2
    a pixel). The model's L2 stops at row 29 (144 px): L2 Dice 2/3, union Dice
    2 x 432 / (432 + 576) = 6/7. With a 0.5 cm2 area floor the reference trips only
    'missing' (L3, L4); the model's L2 (0.432 cm2, 3 mm high against 6) trips area,
    neighbour area and neighbour height too."""
    scan = make_scan(seed=3)
    predicted = scan.labels.copy()
    predicted[30:36] = 0
    predictor = FixedPredictor(predicted)
    row = qc_benchmark.assess(predictor, scan, QCConfig(min_area_cm2=0.5))
    assert predictor.seen == [scan]
    assert row["scan_id"] == "test-0003"
    assert row["device"] == "hologic-like"
    assert row["union_dice"] == pytest.approx(6 / 7)
    assert row["min_vertebra_dice"] == pytest.approx(2 / 3)
    assert row["compression_fracture"] is False
    assert row["reference_findings"] == ["missing"]
    assert row["predicted_findings"] == [
        "missing",
        "area",
        "neighbour_area",
        "neighbour_height",
    ]


def test_assess_ignores_vertebrae_the_reference_lacks(make_scan):
    """An extra L3 where the reference has none lowers the union Dice
    (2 x 576 / (864 + 576) = 0.8) but not the per-vertebra minimum, which is over
    the reference's vertebrae only. The fracture flag comes from the truth."""
    meta = {
        "scan_id": "s-7",
        "device": "lunar-like",
        "truth": {"flags": {"compression_fracture": True}},
    }
    scan = make_scan(meta=meta)
    predicted = scan.labels.copy()
    predicted[40:52, 12:36] = 3
    row = qc_benchmark.assess(FixedPredictor(predicted), scan, QCConfig())
    assert row["min_vertebra_dice"] == 1.0
    assert row["union_dice"] == pytest.approx(0.8)
    assert row["compression_fracture"] is True
    assert (row["scan_id"], row["device"]) == ("s-7", "lunar-like")


def test_assess_without_reference_vertebrae_gives_nan_minimum(make_scan):
    """A field holding none of L1-L4 (a CT cut above L1) has no per-vertebra Dice:
    the minimum is nan, not an error."""
    scan = make_scan()
    scan.labels[:] = 0
    row = qc_benchmark.assess(FixedPredictor(np.zeros_like(scan.labels)), scan, QCConfig())
    assert math.isnan(row["min_vertebra_dice"])


def test_ct_summaries_group_each_ct_with_its_dxa_pose_only():
    """ct-case1 holds its own two poses, not ct-case10's scans, whose id it prefixes."""
    rows = [
        dict(_row(0.99, 0.99, []), scan_id="ct-case1"),
        dict(_row(0.99, 0.99, ["gap"]), scan_id="ct-case1-dxa"),
        dict(_row(0.40, 0.20, ["gap"]), scan_id="ct-case10"),
    ]
    summaries = qc_benchmark.ct_summaries(rows)
    assert sorted(summaries) == ["ct-case1", "ct-case10"]
    assert summaries["ct-case1"]["scans"] == 2
    assert summaries["ct-case1"]["failures"] == 0
    assert summaries["ct-case10"]["scans"] == 1
    assert summaries["ct-case10"]["failures"] == 1
