"""Reading and writing scans: one entry point each, the format found from the file.

NPZ is canonical (docs/formats.md); DICOM and PNG/TIFF pairs are for exchange.
Readers raise ScanError naming the file; writers replace targets atomically
and never replace a file the scan was read from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dxaspine.io._common import one_line
from dxaspine.io.npz import is_npz, read_npz, write_npz
from dxaspine.scan import Scan, ScanError

FORMATS: dict[str, tuple[str, ...]] = {
    "npz": (".npz",),
    "dicom": (".dcm", ".dicom"),
    "png": (".png",),
    "tiff": (".tif", ".tiff"),
}
"""Writable format name -> file suffixes that select it."""

__all__ = ["FORMATS", "read_labels", "read_scan", "write_scan"]


def read_scan(path: Path | str) -> Scan:
    """Read one scan from an NPZ, a DICOM file, a folder of two DICOM files, or a
    PNG/TIFF pair (any of its images or its JSON sidecar).

    The format comes from the content (zip signature, DICOM preamble), then
    from the suffix; anything else raises ScanError(path, problem).
    """
    from dxaspine.io import dicom, png

    path = Path(path)
    if path.is_dir():
        return dicom.read_dicom_folder(path)
    if not path.exists():
        raise ScanError(str(path), "no such file or folder")
    if not path.is_file():
        raise ScanError(str(path), "not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ScanError(str(path), f"cannot open: {one_line(exc)}") from None
    if is_npz(path):
        return read_npz(path)
    if dicom.is_dicom(path):
        return dicom.read_dicom(path)
    suffix = path.suffix.lower()
    if png.is_pair_file(path):
        return png.read_png_pair(path)
    if suffix in FORMATS["npz"]:
        return read_npz(path)
    if suffix in FORMATS["dicom"]:
        return dicom.read_dicom(path)
    raise ScanError(
        str(path),
        "not a scan: expected an NPZ, a DICOM file or folder, or a PNG/TIFF pair with JSON sidecar",
    )


def format_for(path: Path | str) -> str:
    """The format a path's suffix selects; ValueError when none does."""
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    choices = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
    raise ValueError(f"{path}: cannot tell the format from '{suffix}'; use one of {choices}")


def write_scan(scan: Scan, path: Path | str, format: str | None = None) -> list[Path]:
    """Write a scan; return the files written (one, or a pair's images and sidecar).

    `format` is 'npz', 'dicom' (one two-frame file), 'png' or 'tiff'; by
    default the suffix of `path` decides. For pairs `path` names the stem:
    `out/s7.png` writes `out/s7_low.png`, `out/s7_high.png` and `out/s7.json`.
    """
    from dxaspine.io import dicom, png

    path = Path(path)
    format = format or format_for(path)
    if format == "npz":
        return [write_npz(scan, path)]
    if format == "dicom":
        return [dicom.write_dicom(scan, path)]
    if format in ("png", "tiff"):
        suffix = path.suffix.lower()
        suffix = suffix if suffix in FORMATS[format] else FORMATS[format][0]
        return png.write_png_pair(scan, path, suffix=suffix)
    raise ValueError(f"unknown format '{format}'; choose one of: {', '.join(FORMATS)}")


def read_labels(path: Path | str, shape: tuple[int, int]) -> np.ndarray:
    """A reference mask or label image for a scan of `shape`, as uint8.

    Accepts an NPZ (its `labels` key, else its `mask` key: a scan NPZ works)
    or an 8/16-bit PNG or TIFF. Values must be 0..4 (0 background, 1..4 =
    L1..L4); a 0/1 image is a binary mask. Raises ScanError naming the file.
    """
    from dxaspine.io import png

    path = Path(path)
    if not path.is_file():
        raise ScanError(str(path), "no such file")
    if is_npz(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = [k for k in ("labels", "mask") if k in data.files]
                if not keys:
                    raise ScanError(str(path), "NPZ has neither a 'labels' nor a 'mask' key")
                labels = np.asarray(data[keys[0]])
        except ScanError:
            raise
        except Exception as exc:
            raise ScanError(str(path), f"cannot read NPZ: {one_line(exc)}") from None
    elif path.suffix.lower() in (".png", ".tif", ".tiff"):
        labels = png._read_image(path)
    else:
        raise ScanError(str(path), "a mask must be an NPZ (labels or mask key), PNG or TIFF")
    if labels.shape != tuple(shape):
        raise ScanError(str(path), f"mask shape {labels.shape} does not match the scan {shape}")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ScanError(str(path), f"mask must be an integer image, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 4):
        found = f"{labels.min()}..{labels.max()}"
        raise ScanError(str(path), f"mask values must lie in 0..4, got {found}")
    return labels.astype(np.uint8)
