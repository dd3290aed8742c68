"""NPZ, the canonical scan format: a zip of .npy arrays that plain numpy reads
with allow_pickle=False. docs/formats.md holds the contract other tools write to."""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dxaspine.io._common import (
    atomic_write,
    build_scan,
    dumps_json,
    loads_meta,
    one_line,
    override_spacing,
)
from dxaspine.scan import Scan, ScanError

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
"""First bytes of a zip archive (with members / empty)."""
TRUTH_PREFIX = "truth_"
REQUIRED_KEYS = ("low", "high", "spacing_mm")
"""Keys of a dual-energy NPZ; a single-image NPZ needs only `image` and `spacing_mm`."""
OPTIONAL_KEYS = ("image", "meta", "mask", "labels")
IMAGE_INTEGER_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
"""Integer `image` dtypes a reader accepts, and the value that maps to grey 1.0."""
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_TRUTH_NAME = re.compile(r"[A-Za-z0-9_]+")
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    MemoryError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
)


def is_npz(path: Path) -> bool:
    """True when the file starts with the zip signature."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in ZIP_MAGICS
    except OSError:
        return False


def read_npz(path: Path | str, spacing_mm: tuple[float, float] | None = None) -> Scan:
    """Read a scan from an NPZ file; raise ScanError naming the file on any fault.

    A `spacing_mm` given here replaces the stored one (meta records it as
    `spacing_source` "argument" and the stored value as `file_spacing_mm`).
    """
    path = Path(path)
    if not is_npz(path):
        raise ScanError(str(path), "not an NPZ file (no zip signature): empty or another format")
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            present = set(data.files)
            required = ("spacing_mm",) if "image" in present else REQUIRED_KEYS
            missing = [key for key in required if key not in present]
            if missing:
                raise ScanError(
                    str(path),
                    f"missing key(s) {', '.join(missing)}; an NPZ scan needs low, high, "
                    "spacing_mm (dual-energy) or image, spacing_mm (single-image)",
                )
            wanted = [k for k in data.files if k in REQUIRED_KEYS + OPTIONAL_KEYS]
            wanted += [k for k in data.files if k.startswith(TRUTH_PREFIX)]
            arrays = {key: data[key] for key in wanted}
    except ScanError:
        raise
    except _READ_ERRORS as exc:
        raise ScanError(
            str(path), f"cannot load NPZ (corrupt, truncated or pickled): {one_line(exc)}"
        ) from None
    return _scan_from_arrays(arrays, path, spacing_mm)


def _scan_from_arrays(
    arrays: dict[str, np.ndarray], path: Path, spacing_argument: tuple[float, float] | None
) -> Scan:
    spacing = arrays["spacing_mm"]
    if spacing.shape != (2,) or spacing.dtype.kind not in "iuf":
        raise ScanError(
            str(path),
            f"'spacing_mm' must be 2 real numbers (row, col) in mm, got shape {spacing.shape} "
            f"dtype {spacing.dtype}",
        )
    meta = {}
    if "meta" in arrays:
        text = arrays["meta"]
        if text.shape != () or text.dtype.kind != "U":
            raise ScanError(
                str(path),
                f"'meta' must be a 0-d unicode array holding JSON, got shape {text.shape} "
                f"dtype {text.dtype}",
            )
        meta = loads_meta(str(text), path)
    truth_maps = {}
    for key, image in arrays.items():
        if not key.startswith(TRUTH_PREFIX):
            continue
        if image.dtype.kind != "f":
            raise ScanError(str(path), f"'{key}' must be a float image, got {image.dtype}")
        truth_maps[key[len(TRUTH_PREFIX) :]] = image.astype(np.float32, copy=False)
    image = arrays.get("image")
    if image is not None and image.dtype in IMAGE_INTEGER_MAX:
        image = image.astype(np.float32) / IMAGE_INTEGER_MAX[image.dtype]
    spacing = override_spacing(spacing, meta, spacing_argument)
    return build_scan(
        path,
        (path,),
        low=arrays.get("low"),
        high=arrays.get("high"),
        image=image,
        spacing_mm=spacing,
        meta=meta,
        mask=arrays.get("mask"),
        labels=arrays.get("labels"),
        truth_maps=truth_maps,
    )


def npz_arrays(scan: Scan, source: Path | str = "") -> dict[str, np.ndarray]:
    """The arrays an NPZ holds for this scan, in the order they are written."""
    arrays: dict[str, np.ndarray] = {}
    if scan.is_dual_energy:
        arrays["low"] = scan.low.astype(np.float32, copy=False)
        arrays["high"] = scan.high.astype(np.float32, copy=False)
    if scan.image is not None:
        arrays["image"] = scan.image.astype(np.float32, copy=False)
    arrays["spacing_mm"] = np.asarray(scan.spacing_mm, dtype=np.float64)
    arrays["meta"] = np.array(dumps_json(scan.meta, source))
    if scan.mask is not None:
        arrays["mask"] = scan.mask.astype(np.uint8, copy=False)
    if scan.labels is not None:
        arrays["labels"] = scan.labels.astype(np.uint8, copy=False)
    for name in sorted(scan.truth_maps):
        if not isinstance(name, str) or not _TRUTH_NAME.fullmatch(name):
            raise ScanError(str(source), f"truth map name {name!r} must match [A-Za-z0-9_]+")
        arrays[TRUTH_PREFIX + name] = np.asarray(scan.truth_maps[name], dtype=np.float32)
    return arrays


def write_npz(scan: Scan, path: Path | str) -> Path:
    """Write a scan as NPZ, byte-for-byte reproducible; return the path written.

    The zip is assembled here rather than by np.savez_compressed so that member
    timestamps and attributes are fixed by us, not by the numpy version.
    """
    path = Path(path)
    scan.validate(source=str(path))
    arrays = npz_arrays(scan, path)

    def write(handle: BinaryIO) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key, array in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(
                        member, np.asarray(array, order="C"), allow_pickle=False
                    )

    return atomic_write(scan, {path: write})[0]
