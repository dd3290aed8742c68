"""What every format module shares: building a Scan whose errors name the file,
strict metadata JSON, 16-bit quantisation and all-or-nothing writes."""

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
