"""PNG or TIFF files, in two forms.

- **Pairs**: `<stem>_low.png` + `<stem>_high.png` (or .tif/.tiff), 8- or 16-bit
  grayscale, with a JSON sidecar `<stem>.json` that gives the pixel spacing,
  each energy's value = pixel * scale + offset, and the metadata.
- **Single exported images**: `<stem>.png` (any other name), grayscale or
  colour, with an optional sidecar `<stem>.json` giving spacing and metadata.

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

from dxaspine.io._common import (
    SPACING_HINT,
    atomic_write,
    build_scan,
    dumps_json,
    grey_from_pixels,
    one_line,
    override_spacing,
    quantise_u8,
    quantise_u16,
)
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


EXPORT_MODES = ("L", "LA", "P", "1", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L")
"""Pillow modes a single exported PNG may have; colour becomes luma (LUMA_WEIGHTS)."""


def is_image_file(path: Path) -> bool:
    """True for names this format uses: an image (single or of a pair) or a JSON sidecar."""
    return path.suffix.lower() in (*IMAGE_SUFFIXES, ".json")


def read_image_file(path: Path | str, spacing_mm: tuple[float, float] | None = None) -> Scan:
    """Read a PNG/TIFF pair or a single exported image, whichever `path` belongs to.

    A `<stem>_low/_high` image, or a sidecar or `_labels/_mask` image beside
    one, is a pair; any other image (or a sidecar beside one) is single.
    `spacing_mm`, when given, replaces the sidecar's spacing.
    """
    path = Path(path)
    single = single_image_path(path)
    if single is not None:
        return read_single_image(single, spacing_mm)
    return read_png_pair(path, spacing_mm)


def single_image_path(path: Path) -> Path | None:
    """The single exported image `path` belongs to, or None when it is part of a pair."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        stem = path.with_suffix("")
        if any(_role_path(stem, "low", s).exists() for s in IMAGE_SUFFIXES):
            return None
        for candidate in IMAGE_SUFFIXES:
            if Path(f"{stem}{candidate}").exists():
                return Path(f"{stem}{candidate}")
        return None
    if suffix not in IMAGE_SUFFIXES:
        return None
    for role in _ROLES:
        if path.stem.endswith(f"_{role}"):
            if role in ENERGIES:
                return None
            stem = path.with_name(path.stem[: -len(role) - 1])
            if _role_path(stem, "low", path.suffix).exists():
                return None
            image = Path(f"{stem}{path.suffix}")
            return image if image.exists() else None
    return path


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
        raise ScanError(
            str(path),
            f"no {stem.name}_low.png/.tif/.tiff (pair) or {stem.name}.png/.tif/.tiff (single "
            "image) beside this sidecar",
        )
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


def read_png_pair(path: Path | str, spacing_mm: tuple[float, float] | None = None) -> Scan:
    """Read a PNG or TIFF pair with its sidecar; raise ScanError naming the faulty file."""
    path = Path(path)
    stem, suffix = pair_paths(path)
    sidecar_path = Path(f"{stem}.json")
    if not sidecar_path.is_file():
        raise ScanError(str(path), f"missing JSON sidecar {sidecar_path.name}")
    sidecar = _read_sidecar(sidecar_path)
    spacing = override_spacing(sidecar["spacing_mm"], sidecar["meta"], spacing_mm)
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
        spacing_mm=spacing,
        meta=sidecar["meta"],
        labels=images.get("labels"),
        mask=images.get("mask"),
    )


def read_single_image(path: Path | str, spacing_mm: tuple[float, float] | None = None) -> Scan:
    """A single-image Scan from one exported PNG or TIFF, grey = pixel / 255 (16-bit:
    / 65535), colour reduced to luma.

    Spacing: `spacing_mm` when given, else the sidecar `<stem>.json` (same
    schema as a pair's, energies not needed, spacing optional), else the
    file is refused. Polarity is never guessed: `meta["inverted"]` is only
    what the sidecar's metadata says.
    """
    path = Path(path)
    stem = path.with_suffix("")
    sidecar_path = Path(f"{stem}.json")
    inputs = [path]
    meta: dict[str, Any] = {}
    spacing = None
    if sidecar_path.is_file():
        sidecar = _read_sidecar(sidecar_path, energies=False)
        meta, spacing = sidecar["meta"], sidecar.get("spacing_mm")
        inputs.append(sidecar_path)
    image, described = _read_export(path)
    if spacing_mm is not None:
        spacing = override_spacing(spacing, meta, spacing_mm)
    elif spacing is not None:
        meta["spacing_source"] = "sidecar"
    else:
        raise ScanError(
            str(path),
            f"pixel size unknown: no sidecar {sidecar_path.name} with 'spacing_mm'; {SPACING_HINT}",
        )
    meta["source_image"] = described
    reference = {}
    for role in REFERENCE:
        role_path = _role_path(stem, role, path.suffix)
        if role_path.is_file():
            reference[role] = _read_image(role_path)
            inputs.append(role_path)
    return build_scan(path, tuple(inputs), image=image, spacing_mm=spacing, meta=meta, **reference)


def _read_export(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Grey values in 0..1 of an exported image, and what it was (format, mode, bits)."""
    try:
        if path.suffix.lower() == ".png":
            with Image.open(path) as image:
                if image.format != "PNG":
                    raise ScanError(
                        str(path), f"not a PNG file (Pillow reads it as {image.format})"
                    )
                mode = image.mode
                if mode not in EXPORT_MODES:
                    raise ScanError(
                        str(path), f"PNG mode {mode} is not supported; save as grayscale or RGB"
                    )
                image.load()
                if mode in ("P", "1"):
                    image = image.convert("RGB" if mode == "P" else "L")
                pixels = np.array(image)
            described = {"format": "PNG", "mode": mode}
        else:
            pixels = _read_tiff(path)
            described = {"format": "TIFF", "dtype": str(pixels.dtype)}
    except ScanError:
        raise
    except _IMAGE_ERRORS as exc:
        raise ScanError(str(path), f"corrupt or truncated image: {one_line(exc)}") from None
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise ScanError(str(path), f"image must be grayscale or RGB, got shape {pixels.shape}")
    if pixels.dtype.kind == "i" and pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
        raise ScanError(str(path), "image values exceed the 16-bit range")
    if pixels.dtype == np.uint8:
        max_value = 255
    elif pixels.dtype.kind in "iu" and pixels.dtype.itemsize <= 4:
        max_value = 65535
    else:
        raise ScanError(str(path), f"image must be 8- or 16-bit unsigned, got {pixels.dtype}")
    described["bits"] = 8 if max_value == 255 else 16
    described["samples"] = 1 if pixels.ndim == 2 else int(pixels.shape[2])
    return grey_from_pixels(pixels, max_value), described


def _read_sidecar(path: Path, energies: bool = True) -> dict[str, Any]:
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScanError(str(path), f"unreadable JSON sidecar: {one_line(exc)}") from None
    if not isinstance(sidecar, dict):
        raise ScanError(str(path), "sidecar must be a JSON object")
    spacing = sidecar.get("spacing_mm")
    optional = not energies and spacing is None
    valid = isinstance(spacing, list) and len(spacing) == 2 and all(map(_is_number, spacing))
    if not (optional or valid):
        raise ScanError(str(path), "sidecar 'spacing_mm' must be a list of 2 numbers (row, col)")
    for role in ENERGIES if energies else ():
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


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() in (*IMAGE_SUFFIXES, ".json") else path


def _reference_writers(
    scan: Scan, stem: Path, suffix: str, make_writer: Callable[[np.ndarray], Any]
) -> dict[Path, Callable[[BinaryIO], None]]:
    writers = {}
    for role in REFERENCE:
        image = getattr(scan, role)
        if image is not None:
            writers[_role_path(stem, role, suffix)] = make_writer(image.astype(np.uint8))
    return writers


def write_single_image(
    scan: Scan, path: Path | str, suffix: str = ".png", pixel_spacing: bool = True
) -> list[Path]:
    """Write a scan's `image` as one 8-bit `<stem>.png` (or .tif), a sidecar
    `<stem>.json` and any `<stem>_labels/_mask` images; return the paths.

    Grey values are rounded to 8 bits (error at most 1/510). The sidecar holds
    `spacing_mm` and `meta`; `pixel_spacing=False` leaves the spacing out, as
    for an export whose pixel size the reader must be told.
    """
    path = Path(path)
    suffix = _check_suffix(suffix)
    stem = _stem(path)
    scan.validate(source=str(path))
    if scan.image is None:
        raise ValueError(f"{path}: the scan has no exported 'image' to write")
    make_writer = _png_writer if suffix == ".png" else _tiff_writer
    writers: dict[Path, Callable[[BinaryIO], None]] = {
        Path(f"{stem}{suffix}"): make_writer(quantise_u8(scan.image))
    }
    writers.update(_reference_writers(scan, stem, suffix, make_writer))
    sidecar: dict[str, Any] = {"meta": scan.meta}
    if pixel_spacing:
        sidecar["spacing_mm"] = list(scan.spacing_mm)
    text = dumps_json(sidecar, path, indent=2) + "\n"
    writers[Path(f"{stem}.json")] = lambda handle: handle.write(text.encode("utf-8"))
    return atomic_write(scan, writers)


def _check_suffix(suffix: str) -> str:
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"image suffix must be one of {', '.join(IMAGE_SUFFIXES)}, got {suffix}")
    return suffix


def write_png_pair(scan: Scan, path: Path | str, suffix: str = ".png") -> list[Path]:
    """Write `<stem>_low/_high` images, the sidecar and any labels/mask; return the paths.

    `path` names the stem, with or without an image or .json suffix
    (`out/scan7.png` -> `out/scan7_low.png`, ...). Each energy is scaled to
    16 bits over its own range: round-trip error at most 7.6e-6 of that range.
    Truth maps are not stored in this format.
    """
    path = Path(path)
    suffix = _check_suffix(suffix)
    stem = _stem(path)
    scan.validate(source=str(path))
    if not scan.is_dual_energy:
        raise ValueError(f"{path}: a single-image scan has no energies; use write_single_image")
    make_writer = _png_writer if suffix == ".png" else _tiff_writer
    sidecar: dict[str, Any] = {"spacing_mm": list(scan.spacing_mm), "meta": scan.meta}
    writers: dict[Path, Callable[[BinaryIO], None]] = {}
    for role in ENERGIES:
        pixels, scale, offset = quantise_u16(getattr(scan, role))
        sidecar[role] = {"scale": scale, "offset": offset}
        writers[_role_path(stem, role, suffix)] = make_writer(pixels)
    writers.update(_reference_writers(scan, stem, suffix, make_writer))
    text = dumps_json(sidecar, path, indent=2) + "\n"
    writers[Path(f"{stem}.json")] = lambda handle: handle.write(text.encode("utf-8"))
    return atomic_write(scan, writers)
