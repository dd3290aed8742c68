"""What every format module shares: building a Scan whose errors name the file,
strict metadata JSON, 16-bit quantisation, grey-image conversion, the
spacing argument and all-or-nothing writes."""

from __future__ import annotations

import json
import os
import secrets
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dxaspine.scan import Scan, ScanError

U16_MAX = 65535
U8_MAX = 255
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights (R, G, B): colour exports become grey as Pillow's "L" does."""
SPACING_HINT = "pass the pixel size with --spacing-mm ROW,COL (Python: spacing_mm=(row, col))"
_SOURCES: dict[int, frozenset[Path]] = {}


def one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line (library errors can span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def build_scan(source: Path | str, inputs: tuple[Path, ...] = (), **fields: Any) -> Scan:
    """Construct and validate a Scan; a failed check is re-raised naming `source`.

    `inputs` are the files it was read from: writers refuse to replace them.
    """
    try:
        scan = Scan(**fields)
    except ScanError as exc:
        raise ScanError(str(source), exc.problem) from None
    if inputs:
        key = id(scan)
        _SOURCES[key] = frozenset(Path(p).resolve() for p in inputs)
        weakref.finalize(scan, _SOURCES.pop, key, None)
    return scan


def spacing_argument(spacing_mm: Any, source: Path | str = "") -> tuple[float, float] | None:
    """A caller's spacing: None, one number (square pixels) or (row, col) in mm, validated."""
    if spacing_mm is None:
        return None
    values = np.asarray(spacing_mm, dtype=np.float64).ravel() if _numeric(spacing_mm) else None
    if values is not None and values.size == 1:
        values = np.repeat(values, 2)
    if values is None or values.size != 2 or not np.isfinite(values).all() or (values <= 0).any():
        raise ScanError(
            str(source),
            f"spacing_mm must be one or two positive numbers (row, col) in mm, got {spacing_mm!r}",
        )
    return (float(values[0]), float(values[1]))


def _numeric(value: Any) -> bool:
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def override_spacing(
    spacing: Any, meta: dict[str, Any], argument: tuple[float, float] | None
) -> Any:
    """The spacing to use: the caller's `argument` when given, else the file's.

    With an argument, `meta` records `spacing_source` "argument" and the
    file's own value as `file_spacing_mm` (None when the file had none).
    """
    if argument is None:
        return spacing
    meta["spacing_source"] = "argument"
    meta["file_spacing_mm"] = None if spacing is None else np.asarray(spacing).tolist()
    return argument


def grey_from_pixels(pixels: np.ndarray, max_value: float, inverted: bool = False) -> np.ndarray:
    """Stored pixels (rows, cols) or colour (rows, cols, 3 or 4) -> float32 grey in 0..1.

    Colour becomes luma (LUMA_WEIGHTS; alpha ignored); `max_value` is the
    stored value that means white; `inverted` flips the scale (MONOCHROME1).
    """
    values = np.asarray(pixels, dtype=np.float64)
    if values.ndim == 3:
        values = values[..., :3] @ np.asarray(LUMA_WEIGHTS)
    grey = np.clip(values / max_value, 0.0, 1.0)
    return (1.0 - grey if inverted else grey).astype(np.float32)


def quantise_u8(image: np.ndarray) -> np.ndarray:
    """Grey values in 0..1 -> uint8 0..255 (round to nearest): error at most 1/510."""
    return np.clip(np.rint(np.asarray(image, np.float64) * U8_MAX), 0, U8_MAX).astype(np.uint8)


def _plain(value: Any) -> Any:
    """json.dumps fallback: numpy scalars and arrays become plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dumps_json(value: Any, source: Path | str, indent: int | None = None) -> str:
    """Strict JSON text (sorted keys, no NaN) so the same scan always gives the same bytes."""
    try:
        return json.dumps(
            value,
            sort_keys=True,
            ensure_ascii=False,
            allow_nan=False,
            indent=indent,
            default=_plain,
        )
    except (TypeError, ValueError) as exc:
        raise ScanError(
            str(source), f"meta must be strict JSON (no NaN/inf, string keys): {one_line(exc)}"
        ) from None


def loads_meta(text: str, source: Path | str) -> dict[str, Any]:
    """Parse stored metadata; it must be a JSON object."""
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ScanError(str(source), f"meta is not valid JSON: {one_line(exc)}") from None
    if not isinstance(meta, dict):
        raise ScanError(str(source), f"meta must be a JSON object, got {type(meta).__name__}")
    return meta


def quantise_u16(
    image: np.ndarray, represent: Callable[[float], float] = float
) -> tuple[np.ndarray, float, float]:
    """Map floats to uint16 with value = pixel * scale + offset; return (pixels, scale, offset).

    The scale spreads the value range over 65534 steps (one spare, so a
    `represent` that rounds the scale for storage cannot push the top value
    past 65535), so the round-trip error is at most scale / 2, about 7.6e-6
    of the range. `represent` rounds scale and offset to what the format
    stores (DICOM DS strings); quantising with the stored values keeps the
    bound exact.
    """
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    offset = represent(low)
    scale = represent((high - low) / (U16_MAX - 1)) if high > low else 1.0
    if not scale > 0:
        scale = 1.0
    pixels = np.clip(np.rint((values - offset) / scale), 0, U16_MAX).astype(np.uint16)
    return pixels, scale, offset


def check_not_input(scan: Scan, targets: list[Path]) -> None:
    """Refuse to replace a file this scan was read from (it may hold data we did not load)."""
    sources = _SOURCES.get(id(scan), frozenset())
    for target in targets:
        if target.resolve() in sources:
            raise FileExistsError(
                f"{target}: is the file this scan was read from; write to another path"
            )


def atomic_write(scan: Scan, writers: Mapping[Path, Callable[[BinaryIO], None]]) -> list[Path]:
    """Write every target to a temporary file beside it, then rename them all into place.

    A failure removes the temporaries, so it leaves no partial output and any
    earlier file at a target untouched. Parent folders are created.
    """
    targets = [Path(p) for p in writers]
    check_not_input(scan, targets)
    temporaries: dict[Path, Path] = {}
    try:
        for target, write in zip(targets, writers.values(), strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
            temporaries[target] = temporary
            with open(temporary, "xb") as handle:
                write(handle)
        for target, temporary in temporaries.items():
            os.replace(temporary, target)
    except BaseException:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        raise
    return targets


def write_file_atomic(path: Path, data: bytes | str) -> Path:
    """Write bytes or UTF-8 text to `path` through a temporary file beside it,
    so a reader never sees half a file and an interruption leaves the old one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(temporary, path)
    return path
