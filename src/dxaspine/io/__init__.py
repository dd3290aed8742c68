"""Reading and writing scans: one entry point each, the format found from the file.

NPZ is canonical (docs/formats.md); DICOM and PNG/TIFF pairs are for exchange;
single exported images (8-bit DICOM, PNG) are what most scanners give out.
Readers raise ScanError naming the file; writers replace targets atomically
and never replace a file the scan was read from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dxaspine.io._common import one_line, spacing_argument
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


def read_scan(path: Path | str, spacing_mm: tuple[float, float] | float | None = None) -> Scan:
    """Read one scan from an NPZ, a DICOM file, a folder of two DICOM files, a
    PNG/TIFF pair (any of its images or its JSON sidecar), or a single exported
    image (a single-frame CR/DX/Secondary Capture DICOM, or any other PNG/TIFF).

    The format comes from the content (zip signature, DICOM preamble), then
    from the suffix; anything else raises ScanError(path, problem).

    `spacing_mm` (row, col) in mm, or one number for square pixels, replaces
    the file's pixel spacing; exported images without one need it.
    `meta["spacing_source"]` says where a single image's spacing came from
    ("argument", "PixelSpacing", "ImagerPixelSpacing", "ExposedArea",
    "sidecar"); for other files it is set only when the argument was used.
    """
    from dxaspine.io import dicom, png

    path = Path(path)
    spacing = spacing_argument(spacing_mm, path)
    if path.is_dir():
        return dicom.read_dicom_folder(path, spacing)
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
        return read_npz(path, spacing)
    if dicom.is_dicom(path):
        return dicom.read_dicom(path, spacing)
    suffix = path.suffix.lower()
    if png.is_image_file(path):
        return png.read_image_file(path, spacing)
    if suffix in FORMATS["npz"]:
        return read_npz(path, spacing)
    if suffix in FORMATS["dicom"]:
        return dicom.read_dicom(path, spacing)
    raise ScanError(
        str(path),
        "not a scan: expected an NPZ, a DICOM file or folder, a PNG/TIFF pair with JSON "
        "sidecar, or an exported PNG/TIFF image",
    )


def format_for(path: Path | str) -> str:
    """The format a path's suffix selects; ValueError when none does."""
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    choices = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
    raise ValueError(f"{path}: cannot tell the format from '{suffix}'; use one of {choices}")


def write_scan(
    scan: Scan,
    path: Path | str,
    format: str | None = None,
    *,
    pixel_spacing: bool = True,
    photometric: str = "MONOCHROME2",
) -> list[Path]:
    """Write a scan; return the files written (one, or an image with its sidecar).

    `format` is 'npz', 'dicom', 'png' or 'tiff'; by default the suffix of
    `path` decides. A dual-energy scan goes to one two-frame DICOM file or a
    PNG/TIFF pair, for which `path` names the stem: `out/s7.png` writes
    `out/s7_low.png`, `out/s7_high.png` and `out/s7.json`. A single-image
    scan goes to one 8-bit Secondary Capture, or `out/s7.png` + `out/s7.json`.

    For single-image scans written as DICOM or PNG/TIFF, `pixel_spacing=False`
    leaves the spacing out of the file (as many real exports do) and
    `photometric="MONOCHROME1"` (DICOM only) stores the pixels inverted, as
    some scanners do; other combinations raise ValueError.
    """
    from dxaspine.io import dicom, dicom_image, png

    path = Path(path)
    format = format or format_for(path)
    if format not in FORMATS:
        raise ValueError(f"unknown format '{format}'; choose one of: {', '.join(FORMATS)}")
    exported = not scan.is_dual_energy and format != "npz"
    if not exported and (not pixel_spacing or photometric != "MONOCHROME2"):
        raise ValueError(
            "pixel_spacing=False and photometric apply only to single-image scans written as "
            "DICOM, PNG or TIFF"
        )
    if format == "npz":
        return [write_npz(scan, path)]
    if format == "dicom":
        if exported:
            return [dicom_image.write_dicom_image(scan, path, pixel_spacing, photometric)]
        return [dicom.write_dicom(scan, path)]
    suffix = path.suffix.lower()
    suffix = suffix if suffix in FORMATS[format] else FORMATS[format][0]
    if exported:
        if photometric != "MONOCHROME2":
            raise ValueError("photometric applies to DICOM only; PNG/TIFF store grey as shown")
        return png.write_single_image(scan, path, suffix=suffix, pixel_spacing=pixel_spacing)
    return png.write_png_pair(scan, path, suffix=suffix)


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
