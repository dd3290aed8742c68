"""The shipped models segment fresh simulated scans (seeds never used in training).

These check behaviour, not the benchmark's figures: a few scans, loose bounds
that a broken model, preprocessing or packaging cannot meet.
"""

import numpy as np
import pytest

import dxaspine
from dxaspine.evaluate import overlap_metrics
from dxaspine.infer import load_model, shipped_model_path
from dxaspine.simulate.export import render_export
from dxaspine.simulate.generate import simulate_scan

TEST_SEED = 777  # the training cohorts use seeds 1001 and 1002


@pytest.mark.parametrize("kind", ["dual-energy", "single-image"])
def test_shipped_model_files_are_small_and_describe_themselves(kind):
    path = shipped_model_path(kind)
    assert path.stat().st_size < 10e6
    model = load_model(path)
    assert model.info["kind"] == kind and model.info["recipe"]
    expected_inputs = ("low", "high") if kind == "dual-energy" else ("image",)
    assert model.network.inputs == expected_inputs


@pytest.mark.parametrize("device", ["hologic-like", "lunar-like"])
def test_dual_energy_model_segments_fresh_scans(device):
    for index in range(2):
        scan = simulate_scan(TEST_SEED, index, device)
        segmentation = dxaspine.segment(scan, device="cpu")
        metrics = overlap_metrics(segmentation.labels, scan.labels, scan.spacing_mm)
        assert metrics["dice"] > 0.95, metrics
        assert metrics["dice_vertebrae"] > 0.9, metrics
        assert sorted(np.unique(segmentation.labels)) == [0, 1, 2, 3, 4]


def test_single_image_model_is_picked_for_exports_and_segments_them():
    rng = np.random.default_rng(5)
    for index in range(2):
        scan = render_export(simulate_scan(TEST_SEED, index, "hologic-like"), rng)
        assert not scan.is_dual_energy
        segmentation = dxaspine.segment(scan, device="cpu")
        assert "single-image" in segmentation.model
        metrics = overlap_metrics(segmentation.labels, scan.labels, scan.spacing_mm)
        assert metrics["dice"] > 0.9, metrics
