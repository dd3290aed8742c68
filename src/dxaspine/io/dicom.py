"""DICOM scans: one two-frame file (frame 1 low energy, frame 2 high energy) or a
pair of single-frame files. Pixel values pass through RescaleSlope/Intercept
to log attenuation. A single-frame CR, DX or Secondary Capture file without
an energy label is a scanner's exported image (io/dicom_image.py). Masks and
labels are not stored in DICOM: they travel as NPZ. The conventions are set
out in docs/formats.md."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from dxaspine.io._common import (
    SPACING_HINT,
    atomic_write,
    build_scan,
    dumps_json,
    loads_meta,
    one_line,
    override_spacing,
    quantise_u16,
)
from dxaspine.scan import Scan, ScanError

META_GROUP = 0x0011
META_CREATOR = "DXASPINE 1"
META_ELEMENT = 0x01
"""The metadata JSON lives in private block (0011,xx01), creator 'DXASPINE 1', VR UT."""
LOW_LABEL, HIGH_LABEL = "LOW_ENERGY", "HIGH_ENERGY"
"""ImageType / FrameLabelVector values that name the energy of a file or frame."""
_EMPTY_TYPE2 = (
    "PatientName", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
    "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
)  # fmt: skip
"""Attributes the IOD requires present but that a derived scan leaves empty."""


def is_dicom(path: Path) -> bool:
    """True when the file has the DICOM Part 10 preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def read_dicom(path: Path | str, spacing_mm: tuple[float, float] | None = None) -> Scan:
    """Read one DICOM file: a two-frame dual-energy scan (frame 1 low, frame 2 high
    unless FrameLabelVector says), or a single-frame exported image.

    A single-frame file is an exported image when its ImageType names no
    energy and its SOP class is CR, DX or Secondary Capture (see
    dicom_image.read_dicom_image). `spacing_mm`, when given, replaces the
    file's pixel spacing; meta records `spacing_source` "argument".
    """
    from dxaspine.io import dicom_image

    path = Path(path)
    ds = _load(path)
    if _frame_count(ds) == 1 and _energy_label(ds) is None:
        return dicom_image.read_dicom_image(ds, path, spacing_mm)
    frames = _frames(ds, path)
    if frames.shape[0] == 1:
        raise ScanError(
            str(path),
            "single-frame DICOM with no partner: pass the folder holding it and its partner "
            "energy, or call read_dicom_pair(low_path, high_path)",
        )
    if frames.shape[0] != 2:
        raise ScanError(str(path), f"has {frames.shape[0]} frames; a scan needs 2 (low, high)")
    labels = [str(v).upper() for v in _values(ds.get("FrameLabelVector"))]
    low, high = (1, 0) if labels == [HIGH_LABEL, LOW_LABEL] else (0, 1)
    meta = dataset_meta(ds, path)
    return build_scan(
        path,
        (path,),
        low=frames[low],
        high=frames[high],
        spacing_mm=_spacing(ds, path, meta, spacing_mm),
        meta=meta,
    )


def read_dicom_pair(
    low_path: Path | str, high_path: Path | str, spacing_mm: tuple[float, float] | None = None
) -> Scan:
    """Read two single-frame DICOM files whose energies the caller states."""
    low_path, high_path = Path(low_path), Path(high_path)
    return _pair_scan(low_path, _load(low_path), high_path, _load(high_path), spacing_mm)


def read_dicom_folder(folder: Path | str, spacing_mm: tuple[float, float] | None = None) -> Scan:
    """Read a folder holding exactly two single-frame DICOM files, one per energy.

    Which is which: ImageType containing LOW_ENERGY / HIGH_ENERGY decides;
    failing that, the file with the lower KVP is the low energy.
    """
    folder = Path(folder)
    try:
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.name != "DICOMDIR" and is_dicom(p)
        )
    except OSError as exc:
        raise ScanError(str(folder), f"cannot list folder: {one_line(exc)}") from None
    if len(files) != 2:
        raise ScanError(
            str(folder),
            f"a DICOM scan folder must hold exactly 2 DICOM files (one per energy), "
            f"found {len(files)}",
        )
    (path_a, path_b), (ds_a, ds_b) = files, [_load(p) for p in files]
    labels = (_energy_label(ds_a), _energy_label(ds_b))
    kvps = (_kvp(ds_a), _kvp(ds_b))
    if set(labels) == {"low", "high"}:
        swap = labels[0] == "high"
    elif None not in kvps and kvps[0] != kvps[1]:
        swap = kvps[0] > kvps[1]
    else:
        raise ScanError(
            str(folder),
            "cannot tell low from high energy: give ImageType a LOW_ENERGY / HIGH_ENERGY value, "
            "or KVP values that differ",
        )
    if swap:
        path_a, path_b, ds_a, ds_b = path_b, path_a, ds_b, ds_a
    return _pair_scan(path_a, ds_a, path_b, ds_b, spacing_mm, source=folder)


def _pair_scan(
    low_path: Path,
    low_ds: Dataset,
    high_path: Path,
    high_ds: Dataset,
    spacing_mm: tuple[float, float] | None = None,
    source: Path | None = None,
) -> Scan:
    for path, ds, energy in ((low_path, low_ds, "low"), (high_path, high_ds, "high")):
        label = _energy_label(ds)
        if label is not None and label != energy:
            raise ScanError(
                str(path), f"ImageType says {label} energy, but it was passed as {energy}"
            )
    low, high = _frames(low_ds, low_path), _frames(high_ds, high_path)
    for path, frames in ((low_path, low), (high_path, high)):
        if frames.shape[0] != 1:
            raise ScanError(str(path), f"has {frames.shape[0]} frames; a pair needs single frames")
    meta = dataset_meta(low_ds, low_path)
    spacing = _spacing(low_ds, low_path, meta, spacing_mm)
    if spacing_mm is None and not np.allclose(
        spacing, _spacing(high_ds, high_path, {}, None), rtol=1e-6, atol=0
    ):
        raise ScanError(str(high_path), f"pixel spacing differs from {low_path.name}")
    return build_scan(
        source or f"{low_path} + {high_path}",
        (low_path, high_path),
        low=low[0],
        high=high[0],
        spacing_mm=spacing,
        meta=meta,
    )


def _load(path: Path) -> Dataset:
    if not is_dicom(path):
        raise ScanError(str(path), "not a DICOM file (no 'DICM' preamble) or unreadable")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            for _ in ds.iterall():
                pass
    except Exception as exc:  # pydicom raises many types on corrupt input; all mean "bad file"
        raise ScanError(str(path), f"corrupt or truncated DICOM: {one_line(exc)}") from None
    return ds


def _values(element_value: object) -> list:
    if element_value is None:
        return []
    if isinstance(element_value, str | bytes | int | float):
        return [element_value]
    return list(element_value)


def _frames(ds: Dataset, path: Path) -> np.ndarray:
    """Pixel data as float64 (frames, rows, cols) log attenuations, rescale applied."""
    if "PixelData" not in ds:
        raise ScanError(str(path), "DICOM holds no pixel data; not an image")
    if ds.get("SamplesPerPixel", 1) != 1:
        raise ScanError(str(path), "colour DICOM; a scan frame must be grayscale")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = np.asarray(ds.pixel_array, dtype=np.float64)
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
    except Exception as exc:  # decoders and plugins raise many types; all mean "undecodable"
        raise ScanError(str(path), f"cannot decode pixel data: {one_line(exc)}") from None
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    if pixels.ndim != 3:
        raise ScanError(str(path), f"pixel data has shape {pixels.shape}; expected frames of 2-D")
    return pixels * slope + intercept


def _frame_count(ds: Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return 1


def tag_spacing(ds: Dataset, path: Path) -> tuple[tuple[float, ...], str] | None:
    """(spacing, keyword) from PixelSpacing, else ImagerPixelSpacing; None without either."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _values(ds.get(keyword))
        if values:
            try:
                return tuple(float(v) for v in values), keyword
            except (TypeError, ValueError):
                raise ScanError(str(path), f"{keyword} {values} is not numeric") from None
    return None


def _spacing(
    ds: Dataset, path: Path, meta: dict, argument: tuple[float, float] | None
) -> tuple[float, ...]:
    """A dual-energy file's spacing: the argument when given, else its spacing tag."""
    found = tag_spacing(ds, path)
    spacing = override_spacing(None if found is None else found[0], meta, argument)
    if spacing is None:
        raise ScanError(
            str(path),
            f"no PixelSpacing or ImagerPixelSpacing; pixel size unknown: {SPACING_HINT}",
        )
    return spacing


def dataset_meta(ds: Dataset, path: Path) -> dict:
    """Metadata JSON from the private block; without it, what standard tags give."""
    try:
        value = ds.private_block(META_GROUP, META_CREATOR)[META_ELEMENT].value
    except (KeyError, ValueError):
        patient_id = str(ds.get("PatientID", "") or "")
        return {"patient_id": patient_id} if patient_id else {}
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return loads_meta(str(value), path)


def _energy_label(ds: Dataset) -> str | None:
    values = {str(v).upper() for v in _values(ds.get("ImageType"))}
    if LOW_LABEL in values and HIGH_LABEL not in values:
        return "low"
    if HIGH_LABEL in values and LOW_LABEL not in values:
        return "high"
    return None


def _kvp(ds: Dataset) -> float | None:
    try:
        return float(ds.KVP) if ds.get("KVP") not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _ds(value: float) -> float:
    """A float rounded to what a DICOM DS string (16 characters) can hold."""
    return float(format_number_as_ds(float(value)))


def _uid_seed(scan: Scan, source: Path | str) -> str:
    """Scan id, or a digest of the content when there is none: same scan, same UIDs."""
    if scan.scan_id:
        return str(scan.scan_id)
    digest = hashlib.sha256()
    for pixels in (scan.low, scan.high, scan.image):
        if pixels is not None:
            digest.update(pixels.tobytes())
    digest.update(dumps_json([scan.spacing_mm, scan.meta], source).encode())
    return digest.hexdigest()


def base_dataset(scan: Scan, sop_class: str, role: str, path: Path) -> Dataset:
    """What every file dxaspine writes shares: file meta, deterministic UIDs,
    empty type-2 patient and study attributes, orientation and the metadata block.

    `role` ('both', 'low', 'high' or 'image') keeps the instance UIDs apart.
    """
    seed = _uid_seed(scan, path)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[seed, "instance", role])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    for keyword in _EMPTY_TYPE2:
        setattr(ds, keyword, "")
    ds.PatientID = str(scan.patient_id or "")
    ds.SeriesNumber = 1
    ds.InstanceNumber = {"high": 2}.get(role, 1)
    ds.PatientOrientation = ["L", "F"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = scan.shape
    block = ds.private_block(META_GROUP, META_CREATOR, create=True)
    block.add_new(META_ELEMENT, "UT", dumps_json(scan.meta, path))
    return ds


def _dataset(
    scan: Scan, pixels: np.ndarray, scale: float, offset: float, role: str, path: Path
) -> Dataset:
    """A Secondary Capture dataset for one energy file; role is 'both', 'low' or 'high'."""
    multi = role == "both"
    sop_class = SecondaryCaptureImageStorage
    if multi:
        sop_class = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds = base_dataset(scan, sop_class, role, path)
    if not multi:
        ds.ImageType = ["DERIVED", "SECONDARY", f"{role.upper()}_ENERGY"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
        ds.FrameIncrementPointer = tag_for_keyword("FrameLabelVector")
        ds.FrameLabelVector = [LOW_LABEL, HIGH_LABEL]
    ds.PixelSpacing = [format_number_as_ds(float(s)) for s in scan.spacing_mm]
    ds.RescaleIntercept = format_number_as_ds(offset)
    ds.RescaleSlope = format_number_as_ds(scale)
    ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def writer(ds: Dataset) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        pydicom.dcmwrite(handle, ds, enforce_file_format=True)

    return write


def _require_dual_energy(scan: Scan, path: Path) -> None:
    if not scan.is_dual_energy:
        raise ValueError(
            f"{path}: a single-image scan has no energies; write it with write_scan(..., "
            "format='dicom') or dicom_image.write_dicom_image"
        )


def write_dicom(scan: Scan, path: Path | str) -> Path:
    """Write one two-frame DICOM file (frame 1 low, frame 2 high); return its path.

    Both frames share one RescaleSlope/Intercept spanning their joint range,
    so the round-trip error is at most half a step, about 7.6e-6 of that range.
    """
    path = Path(path)
    scan.validate(source=str(path))
    _require_dual_energy(scan, path)
    pixels, scale, offset = quantise_u16(np.stack([scan.low, scan.high]), represent=_ds)
    ds = _dataset(scan, pixels, scale, offset, "both", path)
    return atomic_write(scan, {path: writer(ds)})[0]


def write_dicom_pair(scan: Scan, low_path: Path | str, high_path: Path | str) -> list[Path]:
    """Write the energies as two single-frame files, ImageType LOW_ENERGY / HIGH_ENERGY."""
    paths = {"low": Path(low_path), "high": Path(high_path)}
    scan.validate(source=str(paths["low"]))
    _require_dual_energy(scan, paths["low"])
    writers = {}
    for role, path in paths.items():
        pixels, scale, offset = quantise_u16(getattr(scan, role), represent=_ds)
        writers[path] = writer(_dataset(scan, pixels, scale, offset, role, path))
    return atomic_write(scan, writers)
