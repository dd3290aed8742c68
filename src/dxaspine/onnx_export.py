"""ONNX export of a segmentation network, and an onnxruntime twin of it.

`export_onnx` writes one self-contained `.onnx` file: the eval-mode network
(BatchNorm on its running statistics) with a dynamic batch size and dynamic
rows and cols, which must be multiples of `network.size_divisor` (the file
holds only the network; padding to that multiple is the caller's job, as it
is for the predictor). The network config is stored as JSON under the
metadata key "dxaspine.network", beside any metadata of the caller (e.g. the
preprocessing settings), so the file describes itself.

`OnnxNetwork` loads such a file once and is called like the torch network:
float32 (batch, len(network.inputs), rows, cols) -> (batch, 5, rows, cols)
logits, as numpy arrays.

Needs the `onnx` extra (onnx, onnxscript, onnxruntime); imported lazily.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from dxaspine.network import NetworkConfig

NETWORK_METADATA_KEY = "dxaspine.network"
INPUT_NAME = "inputs"
OUTPUT_NAME = "logits"


def _require(module: str) -> ModuleType:
    """Import an optional dependency, saying how to install it if missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"ONNX support needs {module!r}: pip install 'dxaspine[onnx]'") from None


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"metadata must map str to str (JSON-encode other values), got {key!r}: {value!r}"
            )
    if NETWORK_METADATA_KEY in metadata:
        raise ValueError(
            f"metadata key {NETWORK_METADATA_KEY!r} is reserved for the network config"
        )
    return metadata


def export_onnx(
    model: torch.nn.Module,
    network: NetworkConfig,
    path: Path | str,
    metadata: dict[str, str] | None = None,
    opset: int = 18,
) -> Path:
    """Write `model` (built from `network`) as ONNX to `path`, atomically.

    The model is exported in eval mode and put back in the mode it was in.
    Inputs are named "inputs" (batch, channels, rows, cols) and outputs
    "logits" (batch, n_classes, rows, cols); batch, rows and cols are dynamic,
    with rows and cols multiples of `network.size_divisor`. `metadata` (str to
    str) is stored in the file's metadata_props beside "dxaspine.network".
    Returns the path written.
    """
    onnx = _require("onnx")
    _require("onnxscript")  # the dynamo exporter needs it; fail before tracing
    metadata = _check_metadata(metadata)
    config = getattr(model, "config", None)
    if isinstance(config, NetworkConfig) and config != network:
        raise ValueError(f"model was built from {config}, not from the given {network}")
    path = Path(path)

    divisor = network.size_divisor
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    # Example sides of 3 and 2 blocks: distinct and > 1, so export specialises neither.
    example = torch.zeros(2, len(network.inputs), 3 * divisor, 2 * divisor, device=device)
    dim = torch.export.Dim
    dynamic_shapes = (
        {
            0: dim("batch", min=1),
            2: divisor * dim("row_blocks", min=1),
            3: divisor * dim("col_blocks", min=1),
        },
    )
    modes = {module: module.training for module in model.modules()}  # mixed modes too
    model.eval()
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            verbose=False,
        )
    finally:
        for module, training in modes.items():
            module.training = training
    proto = program.model_proto

    props = {entry.key: entry.value for entry in proto.metadata_props}
    props.update(metadata)
    props[NETWORK_METADATA_KEY] = json.dumps(network.to_dict(), sort_keys=True)
    onnx.helper.set_model_props(proto, props)

    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would carry over to the model file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(proto, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


class OnnxNetwork:
    """Load-once onnxruntime session with the same call shape as the torch network.

    `network` is rebuilt from the file's "dxaspine.network" metadata;
    `metadata` holds all of its metadata_props (str to str).
    """

    network: NetworkConfig
    metadata: dict[str, str]

    def __init__(self, path: Path | str):
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such ONNX model file")
        try:
            self._session: Any = ort.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ValueError(
                f"{self.path}: not a readable ONNX model ({type(exc).__name__}: {exc})"
            ) from None
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        if NETWORK_METADATA_KEY not in self.metadata:
            raise ValueError(
                f"{self.path}: no {NETWORK_METADATA_KEY!r} metadata; "
                "export the model with dxaspine.onnx_export.export_onnx"
            )
        try:
            self.network = NetworkConfig(**json.loads(self.metadata[NETWORK_METADATA_KEY]))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{self.path}: bad {NETWORK_METADATA_KEY!r} metadata ({exc})"
            ) from None
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 (batch, channels, rows, cols) -> (batch, n_classes, rows, cols) logits;
        rows and cols must be multiples of `network.size_divisor` (pad first)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        channels = len(self.network.inputs)
        if batch.ndim != 4 or batch.shape[1] != channels:
            raise ValueError(
                f"expected (batch, {channels}, rows, cols) for inputs {self.network.inputs}, "
                f"got shape {batch.shape}"
            )
        divisor = self.network.size_divisor
        if batch.shape[2] % divisor or batch.shape[3] % divisor:
            raise ValueError(
                f"rows and cols must be multiples of {divisor}, got {batch.shape[2:]}; "
                "pad the inputs first"
            )
        return self._session.run([self._output], {self._input: batch})[0]

    def __repr__(self) -> str:
        return f"OnnxNetwork({str(self.path)!r}, {self.network})"
