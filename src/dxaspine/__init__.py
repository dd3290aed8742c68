"""dxaspine: lumbar-spine segmentation, bone scores and simulation for DXA scans."""

from dxaspine.scan import Scan, ScanError

__version__ = "0.1.0"
__all__ = ["Scan", "ScanError", "__version__"]
