"""Preview images: the scan as a DXA viewer shows it, with labels overlaid.

The display image of a dual-energy scan is the scanner-style processed bone
image Q = low - k*high, with k the soft-tissue attenuation ratio taken from
the image itself (the median ratio over the darkest half of Q, where bone is
absent), windowed between percentiles to 8 bits: bone bright, soft tissue
grey, gas dark. A single-image scan already is that picture: its `image`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dxaspine.labels import COLOURS_RGB
from dxaspine.scan import Scan


def soft_tissue_ratio(scan: Scan) -> float:
    """k = low/high of soft tissue, estimated from the image's bone-free half.

    A first k from all pixels ranks them by Q = low - k*high; the darker half
    of Q holds no bone, and its median ratio is the returned k. Needs both
    energies: ValueError for a single-image scan.
    """
    if not scan.is_dual_energy:
        raise ValueError("the soft-tissue ratio needs both energies; this is a single image")
    ratio = scan.low / np.maximum(scan.high, 1e-6)
    q = scan.low - float(np.median(ratio)) * scan.high
    return float(np.median(ratio[q <= np.median(q)]))


def bone_image(scan: Scan, k: float | None = None) -> np.ndarray:
    """The processed bone image (float32): Q = low - k*high, k from the image by
    default; for a single-image scan, its exported `image` (k is not used)."""
    if not scan.is_dual_energy:
        return np.asarray(scan.image, dtype=np.float32)
    k = soft_tissue_ratio(scan) if k is None else k
    return (scan.low - k * scan.high).astype(np.float32)


def to_8bit(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Window an image to uint8: percentiles, with headroom above the high one.

    Percentiles, not min/max, so metal or gas cannot wash the bone out.
    """
    lo, hi = np.percentile(image, [low_pct, high_pct])
    hi = hi + 0.15 * (hi - lo)
    scaled = (image - lo) / max(hi - lo, 1e-9)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def overlay(grey: np.ndarray, labels: np.ndarray | None, alpha: float = 0.35) -> np.ndarray:
    """RGB image: grey background with each vertebra label tinted in its colour."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if labels is not None:
        for label, colour in COLOURS_RGB.items():
            where = labels == label
            rgb[where] = (1 - alpha) * rgb[where] + alpha * np.array(colour, np.float32)
    return rgb.round().astype(np.uint8)


def square_pixels(image: np.ndarray, spacing_mm: tuple[float, float]) -> Image.Image:
    """Resample to square pixels so anatomy is shown in true proportions."""
    pil = Image.fromarray(image)
    size_mm = (image.shape[1] * spacing_mm[1], image.shape[0] * spacing_mm[0])
    pixel_mm = min(spacing_mm)
    return pil.resize(
        (round(size_mm[0] / pixel_mm), round(size_mm[1] / pixel_mm)), Image.Resampling.BILINEAR
    )


def scan_tile(scan: Scan) -> Image.Image:
    """Bone image and label overlay side by side, in true proportions."""
    grey = to_8bit(bone_image(scan))
    left = square_pixels(np.repeat(grey[..., None], 3, axis=2), scan.spacing_mm)
    right = square_pixels(overlay(grey, scan.labels), scan.spacing_mm)
    tile = Image.new("RGB", (left.width * 2 + 4, left.height), (0, 0, 0))
    tile.paste(left, (0, 0))
    tile.paste(right, (left.width + 4, 0))
    return tile


def montage(scans: list[Scan], path: Path, columns: int = 4) -> Path:
    """Write a PNG grid of scan tiles (deterministic bytes)."""
    tiles = [scan_tile(s) for s in scans]
    width = max(t.width for t in tiles)
    height = max(t.height for t in tiles)
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (min(columns, len(tiles)) * (width + 6), rows * (height + 6)))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * (width + 6), (i // columns) * (height + 6)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG", optimize=False)
    return path
