"""Inference: model files, the predictor, and ONNX parity through the predictor."""

import numpy as np
import pytest
import torch

from dxaspine.infer import (
    Predictor,
    SegmentationModel,
    export_model_onnx,
    load_model,
    resolve_device,
)
from dxaspine.network import NetworkConfig, build_model
from dxaspine.preprocess import Preprocessing


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    torch.manual_seed(0)
    config = NetworkConfig(base_filters=4, levels=3)
    module = build_model(config)
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(2, len(config.inputs), 48, 40))
    module.eval()
    model = SegmentationModel(config, Preprocessing(spacing_mm=1.5), module, {"name": "tiny"})
    return model.save(tmp_path_factory.mktemp("model") / "tiny.pt")


def test_predictor_returns_labels_on_the_scan_grid(tiny_model_path, make_scan):
    scan = make_scan(shape=(70, 50), spacing_mm=(0.9, 0.6))
    predictor = Predictor(tiny_model_path, "cpu")
    raw = predictor.raw_labels(scan)
    assert raw.shape == scan.shape and raw.dtype == np.uint8 and raw.max() <= 4
    segmentation = predictor.segment(scan)
    assert segmentation.labels.shape == scan.shape
    assert segmentation.model == "tiny" and segmentation.scan_id == scan.scan_id
    np.testing.assert_array_equal(segmentation.mask, segmentation.labels > 0)


def test_onnx_model_gives_the_same_labels(tiny_model_path, make_scan, tmp_path):
    model = load_model(tiny_model_path)
    onnx_path = export_model_onnx(model, tmp_path / "tiny.onnx")
    scans = [make_scan(seed=s, shape=(70, 50), spacing_mm=(0.9, 0.6)) for s in range(2)]
    eager, onnx = Predictor(tiny_model_path, "cpu"), Predictor(onnx_path, "cpu")
    assert onnx.model_for(scans[0]).preprocessing.spacing_mm == 1.5
    for scan in scans:
        agreement = (eager.raw_labels(scan) == onnx.raw_labels(scan)).mean()
        assert agreement > 0.999


def test_device_choice():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
