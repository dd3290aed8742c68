"""The shipped models segment fresh simulated scans (seeds never used in training).

These check behaviour, not the benchmark's figures: a few scans, loose bounds
that a broken model, preprocessing or packaging cannot meet.
"""

import numpy as np
import pytest

import dxaspine
from dxaspine.evaluate import overlap_metrics
from dxaspine.infer import DEFAULT_MODELS, SHIPPED_MODELS, Predictor, load_model, shipped_model_path
from dxaspine.simulate.export import render_export
from dxaspine.simulate.generate import simulate_scan

TEST_SEED = 777  # the training cohorts use seeds 1001 and 1002


EXPECTED_INPUTS = {
    "dual-energy": ("low", "high"),
    "single-image": ("image",),
    "dual-energy-bone": ("low", "high", "bone"),
}


@pytest.mark.parametrize("kind", sorted(SHIPPED_MODELS))
def test_shipped_model_files_are_small_and_describe_themselves(kind):
    path = shipped_model_path(kind)
    assert path.stat().st_size < 10e6
    model = load_model(path)
    assert model.info["kind"] == kind and model.info["recipe"]
    assert model.network.inputs == EXPECTED_INPUTS[kind]


def test_shipped_models_load_by_name_and_a_missing_file_is_a_clear_error(tmp_path):
    assert load_model("dual-energy-bone").network.inputs == ("low", "high", "bone")
    with pytest.raises(ValueError, match="no such model file"):
        load_model(tmp_path / "dual-energy-bone.pt")


def test_defaults_are_the_bone_model_for_dual_energy_and_the_image_model_for_exports():
    assert DEFAULT_MODELS == {"dual-energy": "dual-energy-bone", "single-image": "single-image"}
    predictor = Predictor(device="cpu")
    scan = simulate_scan(TEST_SEED, 0, "hologic-like")
    assert predictor.model_for(scan).network.inputs == ("low", "high", "bone")
    export = render_export(scan, np.random.default_rng(0))
    assert predictor.model_for(export).network.inputs == ("image",)
    assert shipped_model_path() == shipped_model_path("dual-energy-bone")


def test_low_high_model_segments_fresh_scans_by_name():
    """The former default, kept by name, on both device profiles."""
    for index, device in enumerate(["hologic-like", "lunar-like"]):
        scan = simulate_scan(TEST_SEED, index, device)
        segmentation = dxaspine.segment(scan, model_path="dual-energy", device="cpu")
        metrics = overlap_metrics(segmentation.labels, scan.labels, scan.spacing_mm)
        assert metrics["dice"] > 0.95, metrics
        assert metrics["dice_vertebrae"] > 0.9, metrics


@pytest.mark.parametrize("device", ["hologic-like", "lunar-like"])
def test_default_model_segments_fresh_scans(device):
    for index in range(2):
        scan = simulate_scan(TEST_SEED, index, device)
        segmentation = dxaspine.segment(scan, device="cpu")
        assert "bone" in segmentation.model
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
