"""PNG or TIFF pairs: `<stem>_low.png` + `<stem>_high.png` (or .tif/.tiff), 8- or
16-bit grayscale, with a JSON sidecar `<stem>.json` that gives the pixel
spacing, each energy's value = pixel * scale + offset, and the metadata.
Optional `<stem>_labels.png` and `<stem>_mask.png` hold the reference data."""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
from PIL import Image

from dxaspine.io._common import atomic_write, build_scan, dumps_json, one_line, quantise_u16
from dxaspine.scan import Scan, ScanError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
ENERGIES = ("low", "high")
REFERENCE = ("labels", "mask")
SCALE_KEYS = ("scale", "offset")
_ROLES = ENERGIES + REFERENCE
_IMAGE_ERRORS = (
    OSError, ValueError, TypeError, KeyError, IndexError, EOFError, MemoryError, struct.error,
    Image.DecompressionBombError,
)  # fmt: skip


def is_pair_file(path: Path) -> bool:
    """True for names this format uses: an image of a pair or a JSON sidecar."""
    return path.suffix.lower() in (*IMAGE_SUFFIXES, ".json")


def pair_paths(path: Path | str) -> tuple[Path, str]:
    """(stem path, image suffix) of the pair that `path` belongs to.

    `path` may be any image of the pair (`scan7_low.png`, `scan7_labels.tif`)
    or the sidecar (`scan7.json`); the suffix is the one the low image has.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        stem = path.with_suffix("")
        for candidate in IMAGE_SUFFIXES:
            if _role_path(stem, "low", candidate).exists():
                return stem, candidate
        raise ScanError(str(path), f"no {stem.name}_low.png/.tif/.tiff image beside this sidecar")
    if suffix in IMAGE_SUFFIXES:
        for role in _ROLES:
            if path.stem.endswith(f"_{role}"):
                return path.with_name(path.stem[: -len(role) - 1]), path.suffix
    raise ScanError(
        str(path),
        "not part of a pair: expected a <stem>_low/_high/_labels/_mask image or <stem>.json",
    )


def _role_path(stem: Path, role: str, suffix: str) -> Path:
    return stem.with_name(f"{stem.name}_{role}{suffix}")


def read_png_pair(path: Path | str) -> Scan:
    """Read a PNG or TIFF pair with its sidecar; raise ScanError naming the faulty file."""
    path = Path(path)
    stem, suffix = pair_paths(path)
    sidecar_path = Path(f"{stem}.json")
    if not sidecar_path.is_file():
        raise ScanError(str(path), f"missing JSON sidecar {sidecar_path.name}")
    sidecar = _read_sidecar(sidecar_path)
    images: dict[str, np.ndarray] = {}
    inputs = [sidecar_path]
    for role in _ROLES:
        image_path = _role_path(stem, role, suffix)
        if not image_path.is_file():
            if role in ENERGIES:
                raise ScanError(str(path), f"missing {role}-energy image {image_path.name}")
            continue
        images[role] = _read_image(image_path)
        inputs.append(image_path)
    energies = {}
    for role in ENERGIES:
        scale, offset = sidecar[role]["scale"], sidecar[role]["offset"]
        energies[role] = images[role].astype(np.float64) * scale + offset
    return build_scan(
        path,
        tuple(inputs),
        low=energies["low"],
        high=energies["high"],
        spacing_mm=sidecar["spacing_mm"],
        meta=sidecar["meta"],
        labels=images.get("labels"),
        mask=images.get("mask"),
    )


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScanError(str(path), f"unreadable JSON sidecar: {one_line(exc)}") from None
    if not isinstance(sidecar, dict):
        raise ScanError(str(path), "sidecar must be a JSON object")
    spacing = sidecar.get("spacing_mm")
    if not (isinstance(spacing, list) and len(spacing) == 2 and all(map(_is_number, spacing))):
        raise ScanError(str(path), "sidecar 'spacing_mm' must be a list of 2 numbers (row, col)")
    for role in ENERGIES:
        entry = sidecar.get(role)
        if not isinstance(entry, dict) or not all(_is_number(entry.get(k)) for k in SCALE_KEYS):
            raise ScanError(str(path), f"sidecar '{role}' must hold numbers 'scale' and 'offset'")
        if entry["scale"] == 0:
            raise ScanError(str(path), f"sidecar '{role}' scale must not be 0")
    meta = sidecar.setdefault("meta", {})
    if not isinstance(meta, dict):
        raise ScanError(str(path), "sidecar 'meta' must be a JSON object")
    return sidecar


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a bool, not an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _read_image(path: Path) -> np.ndarray:
    """A 2-D uint8 or uint16 image from PNG (Pillow) or TIFF (tifffile)."""
    try:
        if path.suffix.lower() == ".png":
            pixels = _read_png(path)
        else:
            pixels = _read_tiff(path)
    except ScanError:
        raise
    except _IMAGE_ERRORS as exc:
        raise ScanError(str(path), f"corrupt or truncated image: {one_line(exc)}") from None
    if pixels.ndim != 2:
        raise ScanError(str(path), f"image must be 2-D grayscale, got shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ScanError(str(path), f"image must be 8- or 16-bit unsigned, got {pixels.dtype}")
    return pixels


def _read_tiff(path: Path) -> np.ndarray:
    """tifffile.imread with its logged warnings muted: a bad file is reported once, by us."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        return tifffile.imread(path)
    finally:
        logger.setLevel(level)


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.format != "PNG":
            raise ScanError(str(path), f"not a PNG file (Pillow reads it as {image.format})")
        if image.mode not in ("L", "I", "I;16", "I;16B", "I;16L"):
            raise ScanError(str(path), f"PNG must be 8- or 16-bit grayscale, got mode {image.mode}")
        image.load()
        pixels = np.array(image)
    if pixels.dtype.kind == "i":
        if pixels.min() < 0 or pixels.max() > 65535:
            raise ScanError(str(path), "PNG values exceed the 16-bit range")
        pixels = pixels.astype(np.uint16)
    return pixels


def _png_writer(pixels: np.ndarray) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        Image.fromarray(pixels).save(handle, format="PNG")

    return write


def _tiff_writer(pixels: np.ndarray) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        tifffile.imwrite(handle, pixels, photometric="minisblack", metadata=None)

    return write


def write_png_pair(scan: Scan, path: Path | str, suffix: str = ".png") -> list[Path]:
    """Write `<stem>_low/_high` images, the sidecar and any labels/mask; return the paths.

    `path` names the stem, with or without an image or .json suffix
    (`out/scan7.png` -> `out/scan7_low.png`, ...). Each energy is scaled to
    16 bits over its own range: round-trip error at most 7.6e-6 of that range.
    Truth maps are not stored in this format.
    """
    path = Path(path)
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"image suffix must be one of {', '.join(IMAGE_SUFFIXES)}, got {suffix}")
    stem = path.with_suffix("") if path.suffix.lower() in (*IMAGE_SUFFIXES, ".json") else path
    scan.validate(source=str(path))
    make_writer = _png_writer if suffix == ".png" else _tiff_writer
    sidecar: dict[str, Any] = {"spacing_mm": list(scan.spacing_mm), "meta": scan.meta}
    writers: dict[Path, Callable[[BinaryIO], None]] = {}
    for role in ENERGIES:
        pixels, scale, offset = quantise_u16(getattr(scan, role))
        sidecar[role] = {"scale": scale, "offset": offset}
        writers[_role_path(stem, role, suffix)] = make_writer(pixels)
    for role in REFERENCE:
        image = getattr(scan, role)
        if image is not None:
            writers[_role_path(stem, role, suffix)] = make_writer(image.astype(np.uint8))
    text = dumps_json(sidecar, path, indent=2) + "\n"
    writers[Path(f"{stem}.json")] = lambda handle: handle.write(text.encode("utf-8"))
    return atomic_write(scan, writers)
