"""dxaspine: lumbar-spine segmentation, bone scores and simulation for DXA scans."""

from typing import Any

from dxaspine.scan import Scan, ScanError

__version__ = "0.7.4"
__all__ = ["Predictor", "Scan", "ScanError", "Segmentation", "__version__", "segment"]


def __getattr__(name: str) -> Any:
    """`dxaspine.segment`, `Predictor` and `Segmentation` import PyTorch only when used."""
    if name in ("segment", "Predictor", "Segmentation"):
        from dxaspine import infer

        return getattr(infer, name)
    raise AttributeError(f"module 'dxaspine' has no attribute {name!r}")
