"""Inference: a saved model, loaded once, turns scans into `Segmentation`s.

A model file (`.pt`) holds the network config, the preprocessing settings
and the weights, so it rebuilds itself (nnU-Net's "plans as data"). The
package ships two: one for dual-energy scans and one for single exported
images; `segment()` picks the one that fits the scan.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.torch_version import TorchVersion

from dxaspine import __version__
from dxaspine.network import NetworkConfig, build_model
from dxaspine.preprocess import Preprocessing, network_input, probabilities_to_labels
from dxaspine.scan import Scan

if TYPE_CHECKING:
    from dxaspine.postprocess import PostprocessConfig
    from dxaspine.qc import Finding, QCConfig

MODEL_FORMAT = "dxaspine-model/1"
PREPROCESSING_KEY = "dxaspine.preprocessing"
INFO_KEY = "dxaspine.info"
SHIPPED_MODELS = {
    "dual-energy": "dual_energy.pt",
    "single-image": "single_image.pt",
    "dual-energy-bone": "dual_energy_bone.pt",
}
"""Shipped model name -> file in dxaspine/models; any of them can be named
(`--model dual-energy`)."""
DEFAULT_MODELS = {"dual-energy": "dual-energy-bone", "single-image": "single-image"}
"""Scan kind -> the shipped model used when none is named. Dual-energy scans get
"dual-energy-bone" (low, high and their soft-tissue-cancelled difference): level
with "dual-energy" (low, high) on simulated scans and far better on anatomy
projected from real CTs (docs/model.md, docs/ct.md)."""


@dataclass
class SegmentationModel:
    """A network with the settings it was trained with."""

    network: NetworkConfig
    preprocessing: Preprocessing
    module: torch.nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    """Provenance: training data recipe, epochs, validation Dice, versions."""

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.network.architecture))

    def save(self, path: Path | str, half: bool = False) -> Path:
        """Write the model file atomically; `half` stores float16 weights (half the size)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            key: (value.half() if half and value.is_floating_point() else value)
            for key, value in self.module.state_dict().items()
        }
        payload = {
            "format": MODEL_FORMAT,
            "network": self.network.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "info": self.info,
            "state_dict": state,
        }
        temporary = path.with_name(f".{path.name}.tmp")
        torch.save(payload, temporary)
        temporary.replace(path)
        return path


def load_model(path: Path | str, device: str = "cpu") -> SegmentationModel:
    """Load a model file written by `SegmentationModel.save`, an ONNX file from
    `dxaspine export-onnx` (then it runs on onnxruntime, CPU), or a shipped
    model by name (`model_file`)."""
    path = model_file(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path)
    try:
        # TorchVersion: a str subclass that files from before 0.2 hold in their info.
        with torch.serialization.safe_globals([TorchVersion]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a dxaspine model file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a dxaspine model file (expected format {MODEL_FORMAT})")
    # Files written before `skip_merge` existed used the mean merge.
    network = NetworkConfig(**{"skip_merge": "mean", **payload["network"]})
    module = build_model(network)
    module.load_state_dict(
        {
            key: value.float() if value.is_floating_point() else value
            for key, value in payload["state_dict"].items()
        }
    )
    module.to(device).eval()
    return SegmentationModel(
        network, Preprocessing(**payload["preprocessing"]), module, dict(payload.get("info", {}))
    )


def _load_onnx(path: Path) -> SegmentationModel:
    from dxaspine.onnx_export import OnnxNetwork

    runner = OnnxNetwork(path)
    try:
        preprocessing = Preprocessing(**json.loads(runner.metadata[PREPROCESSING_KEY]))
        info = json.loads(runner.metadata.get(INFO_KEY, "{}"))
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ValueError(f"{path}: ONNX file has no dxaspine preprocessing metadata") from None
    return SegmentationModel(runner.network, preprocessing, runner, info)


def export_model_onnx(model: SegmentationModel, path: Path | str) -> Path:
    """The model as one ONNX file carrying its network and preprocessing settings."""
    from dxaspine.onnx_export import export_onnx

    metadata = {
        PREPROCESSING_KEY: json.dumps(model.preprocessing.to_dict()),
        INFO_KEY: json.dumps(model.info, default=str),
    }
    return export_onnx(model.module, model.network, path, metadata)


def model_file(path: Path | str) -> Path:
    """The file behind a model argument: a shipped model's name (`SHIPPED_MODELS`)
    where no file of that name exists, else the path itself."""
    if str(path) in SHIPPED_MODELS and not Path(path).exists():
        return shipped_model_path(str(path))
    return Path(path)


def shipped_model_path(name: str = DEFAULT_MODELS["dual-energy"]) -> Path:
    """The file of a shipped model (`SHIPPED_MODELS`); default: the dual-energy default."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"shipped model must be one of {tuple(SHIPPED_MODELS)}, got {name!r}")
    return Path(str(resources.files("dxaspine") / "models" / SHIPPED_MODELS[name]))


def resolve_device(device: str = "auto") -> str:
    """ "cpu", "cuda" or "auto" (cuda when available) -> a torch device name."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")
    return device


@torch.no_grad()
def predict_probabilities(model: SegmentationModel, inputs: np.ndarray) -> np.ndarray:
    """(channels, rows, cols) normalised inputs -> (classes, rows, cols) softmax."""
    if not isinstance(model.module, torch.nn.Module):
        return _predict_onnx(model, inputs)
    device = next(model.module.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None].to(device)
    return model.module(batch).softmax(dim=1)[0].cpu().numpy()


def _predict_onnx(model: SegmentationModel, inputs: np.ndarray) -> np.ndarray:
    """onnxruntime path: pad to the size divisor (the graph has no padding), crop back."""
    rows, cols = inputs.shape[1:]
    divisor = model.network.size_divisor
    padded = np.pad(inputs, ((0, 0), (0, (-rows) % divisor), (0, (-cols) % divisor)), mode="edge")
    logits = model.module(padded[None].astype(np.float32))[0, :, :rows, :cols]
    return torch.from_numpy(np.ascontiguousarray(logits)).softmax(dim=0).numpy()


@dataclass
class Segmentation:
    """The result for one scan: L1..L4 label map on the scan's grid."""

    labels: np.ndarray
    spacing_mm: tuple[float, float]
    scan_id: str | None = None
    model: str = ""
    seconds: float = 0.0

    @property
    def mask(self) -> np.ndarray:
        """Binary L1-L4 mask: the union of the vertebra labels."""
        return (self.labels > 0).astype(np.uint8)

    def qc(self, config: QCConfig | None = None) -> list[Finding]:
        """Reasons to review these labels (`dxaspine.qc`); empty when they look plausible."""
        from dxaspine.qc import check_labels

        return check_labels(self.labels, self.spacing_mm, config)


class Predictor:
    """Loads models once and segments many scans (nnU-Net's predictor pattern).

    With no model path, it uses the shipped default for each scan's kind
    (`DEFAULT_MODELS`: dual-energy-bone or single-image).
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        device: str = "auto",
        postprocessing: PostprocessConfig | None = None,
    ):
        from dxaspine.postprocess import PostprocessConfig

        self.device = resolve_device(device)
        self.postprocessing = postprocessing or PostprocessConfig()
        self._fixed = load_model(model_path, self.device) if model_path else None
        self._shipped: dict[str, SegmentationModel] = {}

    def model_for(self, scan: Scan) -> SegmentationModel:
        if self._fixed is not None:
            return self._fixed
        kind = "dual-energy" if getattr(scan, "is_dual_energy", True) else "single-image"
        name = DEFAULT_MODELS[kind]
        if name not in self._shipped:
            self._shipped[name] = load_model(shipped_model_path(name), self.device)
        return self._shipped[name]

    def raw_labels(self, scan: Scan, model: SegmentationModel | None = None) -> np.ndarray:
        """The network's label map on the scan grid, before post-processing."""
        model = model or self.model_for(scan)
        inputs = network_input(scan, model.network.inputs, model.preprocessing)
        return probabilities_to_labels(predict_probabilities(model, inputs), scan.shape)

    def segment(self, scan: Scan) -> Segmentation:
        from dxaspine.postprocess import postprocess

        start = time.perf_counter()
        model = self.model_for(scan)
        labels = postprocess(self.raw_labels(scan, model), scan.spacing_mm, self.postprocessing)
        return Segmentation(
            labels, scan.spacing_mm, scan.scan_id, model.name, time.perf_counter() - start
        )


_DEFAULT_PREDICTOR: Predictor | None = None


def segment(scan: Scan, model_path: Path | str | None = None, device: str = "auto") -> Segmentation:
    """Segment one scan with the shipped model (or `model_path`): the Python
    twin of `dxaspine segment`. The default predictor is kept between calls."""
    global _DEFAULT_PREDICTOR
    if model_path is not None:
        return Predictor(model_path, device).segment(scan)
    if _DEFAULT_PREDICTOR is None or _DEFAULT_PREDICTOR.device != resolve_device(device):
        _DEFAULT_PREDICTOR = Predictor(None, device)
    return _DEFAULT_PREDICTOR.segment(scan)


def versions() -> dict[str, str]:
    import platform

    return {
        "dxaspine": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
