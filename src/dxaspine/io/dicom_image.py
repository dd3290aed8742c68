"""Exported DICOM images: the single picture a DXA scanner exports (CR, DX or
Secondary Capture, usually 8-bit, sometimes inverted or in colour, often
without PixelSpacing), read as a single-image Scan, and written as an 8-bit
Secondary Capture. The rules are set out in docs/formats.md."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
)
from pydicom.valuerep import format_number_as_ds

from dxaspine.io._common import (
    SPACING_HINT,
    atomic_write,
    build_scan,
    grey_from_pixels,
    one_line,
    quantise_u8,
)
from dxaspine.io.dicom import base_dataset, dataset_meta, writer
from dxaspine.scan import Scan, ScanError

EXPORT_SOP_CLASSES = {
    ComputedRadiographyImageStorage: "CR",
    DigitalXRayImageStorageForPresentation: "DX for presentation",
    DigitalXRayImageStorageForProcessing: "DX for processing",
    SecondaryCaptureImageStorage: "Secondary Capture",
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage: "Secondary Capture",
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage: "Secondary Capture",
    MultiFrameTrueColorSecondaryCaptureImageStorage: "Secondary Capture",
}
"""SOP classes a single-frame exported image may have (multi-frame SC with one frame too)."""
PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422")
"""Photometric interpretations read; YBR arrives as RGB from pydicom, colour becomes luma."""
EXPOSED_AREA_SPACING_MM = (0.2, 1.5)
"""Plausible pixel size (mm) from ExposedArea; outside it the tag describes something
else (some exports repeat the whole scan-table area, 520 mm, in every image)."""


def read_dicom_image(
    ds: Dataset, path: Path, spacing_mm: tuple[float, float] | None = None
) -> Scan:
    """A single-image Scan from a loaded single-frame CR/DX/Secondary Capture dataset.

    Grey = stored value / (2**BitsStored - 1) (signed pixels shifted first),
    flipped for MONOCHROME1, colour reduced to luma. Spacing: `spacing_mm`
    when given, else PixelSpacing, else ImagerPixelSpacing, else ExposedArea
    divided by (Columns, Rows); with none of them the file is refused.
    """
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in EXPORT_SOP_CLASSES:
        name = UID(sop_class).name if sop_class else "none"
        raise ScanError(
            str(path),
            f"single-frame DICOM of SOP class {name}: dxaspine reads exported images from CR, "
            "DX or Secondary Capture files, and dual-energy scans as two-frame files or pairs",
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in PHOTOMETRICS:
        raise ScanError(
            str(path),
            f"photometric interpretation '{photometric}' is not supported; "
            f"expected one of {', '.join(PHOTOMETRICS)}",
        )
    image = _grey(ds, path, photometric)
    spacing, spacing_source = _image_spacing(ds, path, image.shape, spacing_mm)
    meta = dataset_meta(ds, path)
    meta["spacing_source"] = spacing_source
    meta["dicom"] = {
        "sop_class": EXPORT_SOP_CLASSES[sop_class],
        "sop_class_uid": sop_class,
        "modality": str(ds.get("Modality", "") or ""),
        "photometric_interpretation": photometric,
        "bits_stored": int(ds.get("BitsStored", 8) or 8),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
    }
    return build_scan(path, (path,), image=image, spacing_mm=spacing, meta=meta)


def _grey(ds: Dataset, path: Path, photometric: str) -> np.ndarray:
    if "PixelData" not in ds:
        raise ScanError(str(path), "DICOM holds no pixel data; not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = np.asarray(ds.pixel_array)
        bits = int(ds.get("BitsStored") or ds.BitsAllocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except Exception as exc:  # decoders and plugins raise many types; all mean "undecodable"
        raise ScanError(str(path), f"cannot decode pixel data: {one_line(exc)}") from None
    colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
    if pixels.ndim == (4 if colour else 3) and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != (3 if colour else 2):
        raise ScanError(str(path), f"pixel data has shape {pixels.shape}; expected one image")
    values = pixels.astype(np.float64)
    if signed:
        values = values + 2.0 ** (bits - 1)
    return grey_from_pixels(values, 2.0**bits - 1, inverted=photometric == "MONOCHROME1")


def _image_spacing(
    ds: Dataset, path: Path, shape: tuple[int, ...], argument: tuple[float, float] | None
) -> tuple[tuple[float, float], str]:
    """(spacing, where it came from): the argument, a spacing tag or ExposedArea."""
    if argument is not None:
        return argument, "argument"
    unusable = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = ds.get(keyword)
        if values is None or values == "":
            continue
        spacing = _positive_pair(values)
        if spacing is not None:
            return spacing, keyword
        unusable.append(f"{keyword} {_text(values)}")
    area = ds.get("ExposedArea")
    if area is not None and area != "":
        # (0040,0303), mm at the detector: "row dimension followed by column", i.e. the
        # length of a row (width) first, as GE Lunar exports show on non-square images.
        size = _positive_pair(area)
        if size is not None:
            spacing = (size[1] / shape[0], size[0] / shape[1])
            low, high = EXPOSED_AREA_SPACING_MM
            if low <= min(spacing) and max(spacing) <= high:
                return spacing, "ExposedArea"
        unusable.append(f"ExposedArea {_text(area)} mm over {shape[1]} x {shape[0]} px")
    found = f" (ignored as implausible: {'; '.join(unusable)})" if unusable else ""
    raise ScanError(
        str(path),
        f"no PixelSpacing, ImagerPixelSpacing or ExposedArea{found}; pixel size unknown: "
        f"{SPACING_HINT}",
    )


def _positive_pair(values: object) -> tuple[float, float] | None:
    try:
        numbers = [float(v) for v in values]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if len(numbers) != 2 or not all(np.isfinite(numbers)) or min(numbers) <= 0:
        return None
    return (numbers[0], numbers[1])


def _text(values: object) -> str:
    try:
        return "\\".join(str(v) for v in values)  # type: ignore[union-attr]
    except TypeError:
        return str(values)


def write_dicom_image(
    scan: Scan,
    path: Path | str,
    pixel_spacing: bool = True,
    photometric: str = "MONOCHROME2",
) -> Path:
    """Write a scan's `image` as an 8-bit Secondary Capture, as a scanner exports it.

    `pixel_spacing=False` leaves PixelSpacing out (as many exports do: the
    reader then needs --spacing-mm). `photometric` "MONOCHROME1" stores
    255 - pixel, so a reader that undoes MONOCHROME1 gets the same image back.
    Grey values are rounded to 8 bits (error at most 1/510); the metadata
    travels in the private block as for dual-energy files.
    """
    path = Path(path)
    scan.validate(source=str(path))
    if scan.image is None:
        raise ValueError(f"{path}: the scan has no exported 'image' to write")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    pixels = quantise_u8(scan.image)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    ds = base_dataset(scan, SecondaryCaptureImageStorage, "image", path)
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if pixel_spacing:
        ds.PixelSpacing = [format_number_as_ds(float(s)) for s in scan.spacing_mm]
    data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    return atomic_write(scan, {path: writer(ds)})[0]
