"""ONNX export: parity with eager torch, metadata round trip, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dxaspine.network import NetworkConfig, build_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from dxaspine.onnx_export import NETWORK_METADATA_KEY, OnnxNetwork, export_onnx  # noqa: E402

CONFIGS = {
    "dualpath": NetworkConfig("dualpath", ("low", "high"), base_filters=4, levels=3),
    "unet-low": NetworkConfig("unet", ("low",), base_filters=4, levels=3),
    "unet-low-high": NetworkConfig("unet", ("low", "high"), base_filters=4, levels=3),
    "dualpath-mean": NetworkConfig(
        "dualpath", ("low", "high"), base_filters=4, levels=3, skip_merge="mean"
    ),
    "unet-image": NetworkConfig("unet", ("image",), base_filters=4, levels=3),
}
SIZES = [(64, 48), (40, 96)]
"""Two (rows, cols) pairs, multiples of the divisor 8, neither the export example."""
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside torch.export
CALLER_METADATA = {"dxaspine.preprocessing": json.dumps({"normalise": "percentile"}), "note": "é"}


def seeded_model(config: NetworkConfig, seed: int = 0) -> torch.nn.Module:
    """A random-init network whose BatchNorm running stats are far from (0, 1)."""
    torch.manual_seed(seed)
    model = build_model(config).train()
    with torch.no_grad():
        for _ in range(4):
            model(3.0 * torch.rand(2, len(config.inputs), 32, 24) + 1.0)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny networks: one thread is faster than two, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Exported:
    def __init__(self, model: torch.nn.Module, path: Path, training_after: bool):
        self.model, self.path, self.training_after = model, path, training_after


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """name -> Exported, each network exported once per module."""
    cache: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in cache:
            config = CONFIGS[name]
            model = seeded_model(config)
            path = tmp_path_factory.mktemp(name) / "sub" / "model.onnx"
            written = export_onnx(model, config, path, metadata=CALLER_METADATA)
            assert written == path
            cache[name] = Exported(model, path, model.training)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnx_matches_eager(exported, name: str) -> None:
    item = exported(name)
    assert item.training_after, "export must put the model back in training mode"
    batch_norm = next(m for m in item.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert batch_norm.running_mean.abs().max() > 0.05  # the stats matter

    model = item.model.eval()
    network = OnnxNetwork(item.path)
    rng = np.random.default_rng(1)
    for rows, cols in SIZES:
        for batch in (1, 2):
            inputs = rng.uniform(0.5, 3.0, (batch, len(network.network.inputs), rows, cols))
            inputs = inputs.astype(np.float32)
            logits = network(inputs)
            with torch.no_grad():
                expected = model(torch.from_numpy(inputs)).numpy()
            assert logits.shape == (batch, 5, rows, cols)
            assert logits.dtype == np.float32
            assert np.abs(logits - expected).max() < 1e-4
            agree = (logits.argmax(axis=1) == expected.argmax(axis=1)).mean()
            assert agree > 0.999


def test_metadata_round_trips(exported) -> None:
    item = exported("dualpath")
    network = OnnxNetwork(item.path)
    assert network.network == CONFIGS["dualpath"]
    for key, value in CALLER_METADATA.items():
        assert network.metadata[key] == value
    assert json.loads(network.metadata[NETWORK_METADATA_KEY]) == CONFIGS["dualpath"].to_dict()
    proto = onnx.load(item.path)
    assert {op.domain: op.version for op in proto.opset_import}[""] == 18
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 2 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    assert not [p for p in item.path.parent.iterdir() if p.name != "model.onnx"]  # no temp files


def test_call_rejects_bad_inputs(exported) -> None:
    network = OnnxNetwork(exported("dualpath").path)
    with pytest.raises(ValueError, match="expected \\(batch, 2, rows, cols\\)"):
        network(np.zeros((1, 1, 64, 48), np.float32))
    with pytest.raises(ValueError, match="expected"):
        network(np.zeros((2, 64, 48), np.float32))
    with pytest.raises(ValueError, match="multiples of 8"):
        network(np.zeros((1, 2, 60, 48), np.float32))


def test_export_rejects_bad_arguments(tmp_path: Path) -> None:
    config = CONFIGS["unet-low"]
    model = build_model(config)
    with pytest.raises(ValueError, match="reserved"):
        export_onnx(model, config, tmp_path / "m.onnx", metadata={NETWORK_METADATA_KEY: "{}"})
    with pytest.raises(ValueError, match="str to str"):
        export_onnx(model, config, tmp_path / "m.onnx", metadata={"epochs": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="built from"):
        export_onnx(model, CONFIGS["unet-low-high"], tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ValueError, match=r"missing\.onnx"):
        OnnxNetwork(missing)

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match=r"garbage\.onnx"):
        OnnxNetwork(garbage)

    helper = onnx.helper
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [info("x", onnx.TensorProto.FLOAT, [1])],
        [info("y", onnx.TensorProto.FLOAT, [1])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), plain)
    with pytest.raises(ValueError, match=rf"plain\.onnx.*{NETWORK_METADATA_KEY}"):
        OnnxNetwork(plain)
