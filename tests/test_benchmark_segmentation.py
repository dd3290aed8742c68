"""benchmarks/segmentation.py: the cohort summary per method and the issue's targets."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from benchmark_loader import load_benchmark

segmentation = load_benchmark("segmentation")

NAN = math.nan


def _scores(dice, dice_vertebrae, hd, hd95, assd, bmd, tbs, failed=None) -> dict:
    """One method's figures on one scan, as `evaluate` stores them."""
    out = {
        "dice": dice,
        "dice_vertebrae": dice_vertebrae,
        "hausdorff_mm": hd,
        "hd95_mm": hd95,
        "assd_mm": assd,
        "bmd": bmd,
        "tbs": tbs,
    }
    if failed is not None:
        out["failed"] = failed
    return out


def _rows() -> list[dict]:
    """Three scans: the model does well, then poorly, then the baseline refuses the
    third scan (Dice 0, distances and scores nan, as `evaluate` records it)."""
    return [
        {
            "reference": {"bmd": 1.0, "tbs": 1.0},
            "model": _scores(1.0, 0.8, 4.0, 3.0, 1.0, 1.1, 1.2),
            "baseline": _scores(0.9, 0.9, 7.0, 6.0, 2.0, 1.0, 1.0),
        },
        {
            "reference": {"bmd": 1.0, "tbs": 1.2},
            "model": _scores(0.5, 0.4, 6.0, 5.0, 2.0, 0.9, 1.4),
            "baseline": _scores(0.8, 0.8, 9.0, 8.0, 3.0, 1.0, 1.2),
        },
        {
            "reference": {"bmd": 1.0, "tbs": 1.1},
            "model": _scores(0.0, 0.0, NAN, NAN, NAN, NAN, NAN),
            "baseline": _scores(0.0, 0.0, NAN, NAN, NAN, NAN, NAN, failed="cannot type scan"),
        },
    ]


# --------------------------------------------------------------------------- summarise


def test_summarise_overlap_means_over_finite_values():
    """Dice 1, 0.5, 0: mean 0.5, sample SD 0.5; the distances skip the nan of the
    third scan (HD 4 and 6: mean 5, SD sqrt(2), one not finite)."""
    s = segmentation.summarise(_rows(), "model")
    assert s["dice"] == pytest.approx({"mean": 0.5, "sd": 0.5, "n": 3, "n_not_finite": 0})
    assert s["dice_vertebrae"] == pytest.approx(
        {"mean": 0.4, "sd": math.sqrt(0.32 / 2), "n": 3, "n_not_finite": 0}
    )
    root2 = math.sqrt(2)
    assert s["hausdorff_mm"] == pytest.approx({"mean": 5.0, "sd": root2, "n": 2, "n_not_finite": 1})
    assert s["hd95_mm"] == pytest.approx({"mean": 4.0, "sd": root2, "n": 2, "n_not_finite": 1})
    assert s["assd_mm"] == pytest.approx({"mean": 1.5, "sd": root2 / 2, "n": 2, "n_not_finite": 1})


def test_summarise_score_agreement_against_the_reference_masks():
    """BMD 1.1 and 0.9 against 1.0 (the nan pair dropped): RMSD 0.1 = 10 % of the
    reference mean, no bias, limits +-1.96 x SD(0.1, -0.1); r is nan as the
    reference does not vary. TBS 1.2 and 1.4 against 1.0 and 1.2: a constant
    +0.2 bias, RMSD 0.2 = 100 x 0.2 / 1.1 %, r = 1."""
    s = segmentation.summarise(_rows(), "model")
    bmd = s["bmd_agreement"]
    assert bmd["n"] == 2
    assert math.isnan(bmd["pearson_r"])
    limit = 1.96 * math.sqrt(0.02)
    assert {k: v for k, v in bmd.items() if k != "pearson_r"} == pytest.approx(
        {
            "n": 2,
            "rmsd": 0.1,
            "rmsd_percent": 10.0,
            "bias": 0.0,
            "loa_low": -limit,
            "loa_high": limit,
        }
    )
    assert s["tbs_agreement"] == pytest.approx(
        {
            "n": 2,
            "pearson_r": 1.0,
            "rmsd": 0.2,
            "rmsd_percent": 100 * 0.2 / 1.1,
            "bias": 0.2,
            "loa_low": 0.2,
            "loa_high": 0.2,
        }
    )


def test_summarise_counts_failures_of_the_method_asked_for():
    """Only the baseline refused a scan: one failure for it, none for the model
    (whose third scan is as poor but not marked failed); each method's own column
    is summarised (baseline HD 7 and 9 -> mean 8)."""
    rows = _rows()
    assert segmentation.summarise(rows, "model")["failures"] == 0
    baseline = segmentation.summarise(rows, "baseline")
    assert baseline["failures"] == 1
    assert baseline["hausdorff_mm"]["mean"] == pytest.approx(8.0)
    assert set(baseline) == {
        "dice",
        "dice_vertebrae",
        "hausdorff_mm",
        "hd95_mm",
        "assd_mm",
        "bmd_agreement",
        "tbs_agreement",
        "failures",
    }


# --------------------------------------------------------------------------- targets_met


def _results(dice: float, hd: float, bmd_rmsd: float, tbs_rmsd: float, seconds: float) -> dict:
    """The parts of the benchmark's results `targets_met` reads, for method 'm'."""
    return {
        "summary": {
            "all": {
                "m": {
                    "dice": {"mean": dice},
                    "hausdorff_mm": {"mean": hd},
                    "bmd_agreement": {"rmsd_percent": bmd_rmsd},
                    "tbs_agreement": {"rmsd_percent": tbs_rmsd},
                }
            }
        },
        "seconds_per_scan_median": {"m": {"segment_and_score": seconds, "inference": 0.01}},
    }


def test_targets_met_when_every_figure_beats_its_target():
    """Dice 0.98 >= 0.975, HD 4.2 < 5 mm, BMD RMSD 1.0 < 1.5 %, TBS RMSD 1.0 < 1.3 %,
    0.1 s < 0.2 s per scan (segment and score): all met, values passed through."""
    met = segmentation.targets_met(_results(0.98, 4.2, 1.0, 1.0, 0.1), "m")
    assert met == {
        "dice": {"value": 0.98, "met": True},
        "hausdorff_mm": {"value": 4.2, "met": True},
        "bmd_rmsd_percent": {"value": 1.0, "met": True},
        "tbs_rmsd_percent": {"value": 1.0, "met": True},
        "seconds_per_scan": {"value": 0.1, "met": True},
    }


def test_targets_met_at_the_limits():
    """Dice exactly 0.975 meets its target (at least); HD exactly 5 mm, BMD RMSD
    exactly 1.5 % and 0.2 s do not (below, strictly); TBS RMSD 1.31 % misses 1.3 %."""
    met = segmentation.targets_met(_results(0.975, 5.0, 1.5, 1.31, 0.2), "m")
    assert {key: figure["met"] for key, figure in met.items()} == {
        "dice": True,
        "hausdorff_mm": False,
        "bmd_rmsd_percent": False,
        "tbs_rmsd_percent": False,
        "seconds_per_scan": False,
    }
    assert all(type(figure["met"]) is bool for figure in met.values())


def test_targets_met_treats_nan_as_not_met():
    """A figure that could not be computed (nan) never meets its target."""
    met = segmentation.targets_met(_results(NAN, NAN, NAN, NAN, 0.1), "m")
    assert [figure["met"] for figure in met.values()] == [False, False, False, False, True]


# --------------------------------------------------------------------------- describe


def test_describe_reports_file_network_size_and_info(monkeypatch):
    """`describe` loads the file on the CPU and reports its network settings, its
    parameter count (a 3 -> 2 linear layer: 3 x 2 weights + 2 biases = 8) and its
    info less the name, which it reports on its own."""
    calls = []

    def fake_load_model(path, device):
        calls.append((path, device))
        return SimpleNamespace(
            name="unet16",
            network=SimpleNamespace(to_dict=lambda: {"channels": 16}),
            module=torch.nn.Linear(3, 2),
            info={"name": "unet16", "training_seed": 1},
        )

    monkeypatch.setattr(segmentation, "load_model", fake_load_model)
    assert segmentation.describe("models/m.pt") == {
        "path": "models/m.pt",
        "name": "unet16",
        "network": {"channels": 16},
        "parameters": 8,
        "info": {"training_seed": 1},
    }
    assert calls == [("models/m.pt", "cpu")]
