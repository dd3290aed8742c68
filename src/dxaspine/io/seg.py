"""DICOM SEG for vertebra label maps: write a highdicom BINARY Segmentation of
L1..L4 on the grid of the DICOM image a scan was read from, and read one back.

The SEG references one source frame: the low-energy frame of a two-frame
dxaspine file (frame 1 unless FrameLabelVector says otherwise), or the single
frame of a one-frame file (for a pair, pass the low-energy file). Each label
present becomes one segment, numbered 1.. in label order, labelled "L1".."L4"
and typed with the SNOMED CT code of that vertebra, so a reader maps segments
back by their code (or label), never by their number.
"""

from __future__ import annotations

import copy
import hashlib
import os
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from pydicom.valuerep import format_number_as_ds

from dxaspine import __version__
from dxaspine.io._common import one_line
from dxaspine.io.dicom import HIGH_LABEL, LOW_LABEL, is_dicom, tag_spacing
from dxaspine.labels import BACKGROUND, COLOURS_RGB, VERTEBRAE
from dxaspine.scan import ScanError

if TYPE_CHECKING:
    import highdicom

PROPERTY_TYPES = {label: getattr(codes.SCT, f"{name}Vertebra") for label, name in VERTEBRAE.items()}
"""Label id -> SNOMED CT code of that vertebra (SCT 66794005 'L1 vertebra', ...; CID 7151)."""
PROPERTY_CATEGORY = codes.SCT.AnatomicalStructure
"""SCT 91723000 'Anatomical Structure' (CID 7150)."""
MANUFACTURER = "dxaspine"
SERIES_NUMBER = 100
"""Series number of every SEG dxaspine writes (scans it writes are series 1)."""


def write_dicom_seg(
    labels: np.ndarray,
    source: Dataset | Path | str,
    path: Path | str,
    *,
    algorithm_name: str = "dxaspine",
    algorithm_version: str = __version__,
    series_description: str = "dxaspine L1-L4",
    spacing_mm: tuple[float, float] | None = None,
) -> Path:
    """Write `labels` (rows x cols, 0 background, 1..4 = L1..L4) as a DICOM SEG
    of `source` (the DICOM file the scan was read from, or its dataset); return `path`.

    One BINARY segment per label present. Pixel spacing comes from the
    source's PixelSpacing, else ImagerPixelSpacing; `spacing_mm` (row, col)
    replaces it and is needed when the source has neither. UIDs are derived
    from the source's SOPInstanceUID, the algorithm and the label map: same
    inputs, same UIDs (creation timestamps still differ). The file is written
    to a temporary beside `path`, then renamed into place.

    Raises ValueError (one line) when the labels are not a 2-D integer map of
    the source's Rows x Columns, hold values outside 0..4, or are all zero: a
    SEG needs at least one segment, so an empty map is refused rather than
    written as a file no viewer can show.
    """
    import highdicom as hd

    path = Path(path)
    ds = _source_dataset(source)
    labels = _check_labels(labels, ds)
    frame = _source_frame(ds)
    present = [int(v) for v in np.unique(labels) if v != BACKGROUND]
    spacing = _pixel_spacing(ds, spacing_mm)
    pixel_measures = hd.PixelMeasuresSequence(pixel_spacing=spacing, slice_thickness=1.0)
    instance_uid = generate_uid(
        entropy_srcs=[
            str(ds.SOPInstanceUID),
            str(frame),
            "seg-instance",
            algorithm_name,
            algorithm_version,
            hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest(),
            str(labels.shape),
        ]
    )
    series_uid = generate_uid(
        entropy_srcs=[str(ds.SOPInstanceUID), "seg-series", algorithm_name, algorithm_version]
    )
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name,
        family=codes.cid7162.ArtificialIntelligence,
        version=algorithm_version,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=VERTEBRAE[label],
            segmented_property_category=PROPERTY_CATEGORY,
            segmented_property_type=PROPERTY_TYPES[label],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*COLOURS_RGB[label]),
        )
        for number, label in enumerate(present, start=1)
    ]
    stacked = np.stack([labels == label for label in present], axis=-1)[np.newaxis]
    try:
        seg = hd.seg.Segmentation(
            source_images=[_highdicom_view(ds, pixel_measures)],
            pixel_array=stacked.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=SERIES_NUMBER,
            sop_instance_uid=instance_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=algorithm_name,
            software_versions=algorithm_version,
            device_serial_number="0",
            content_label="VERTEBRAE",
            content_description="Lumbar vertebrae L1-L4",
            pixel_measures=pixel_measures,
        )
    except Exception as exc:  # highdicom raises many types on sources it cannot use
        raise ValueError(
            f"{_name(source)}: highdicom cannot build a SEG: {one_line(exc)}"
        ) from None
    _finish(seg, ds, frame, series_description)
    return _atomic_save(seg, path, source)


def read_dicom_seg(path: Path | str) -> np.ndarray:
    """A DICOM SEG of one source image as a uint8 label map (0 background, 1..4 = L1..L4).

    Segments map to labels by their SNOMED CT property type (L1..L4 vertebra),
    else by their label "L1".."L4", so SEGs from other tools read too.
    FRACTIONAL segments count where they reach 0.5. Raises ScanError naming
    the file when it is not a SEG, references more than one image, has a
    segment that is not L1..L4, or has segments of different vertebrae that
    overlap.
    """
    import highdicom as hd

    path = Path(path)
    if not is_dicom(path):
        raise ScanError(str(path), "not a DICOM file (no 'DICM' preamble) or unreadable")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(path)
    except Exception as exc:  # highdicom raises many types on a non-SEG or corrupt file
        raise ScanError(str(path), f"not a readable DICOM SEG: {one_line(exc)}") from None
    instances = sorted({uids[2] for uids in seg.get_source_image_uids()})
    if len(instances) != 1:
        raise ScanError(
            str(path), f"references {len(instances)} source images; a dxaspine SEG references one"
        )
    numbers = list(seg.segment_numbers)
    label_ids = [_label_of(seg.get_segment_description(n), n, path) for n in numbers]
    try:
        masks = seg.get_pixels_by_source_instance(
            instances, segment_numbers=numbers, combine_segments=False
        )[0]
    except Exception as exc:  # highdicom raises many types on inconsistent frames
        raise ScanError(str(path), f"cannot assemble the SEG frames: {one_line(exc)}") from None
    out = np.zeros(masks.shape[:2], np.uint8)
    for index, label in enumerate(label_ids):
        inside = masks[..., index] >= 0.5
        if np.any((out[inside] != BACKGROUND) & (out[inside] != label)):
            raise ScanError(str(path), f"segment {numbers[index]} overlaps another vertebra")
        out[inside] = label
    return out


def _name(source: Dataset | Path | str) -> str:
    if isinstance(source, Dataset):
        return str(getattr(source, "filename", None) or "source dataset")
    return str(source)


def _source_dataset(source: Dataset | Path | str) -> Dataset:
    """The source's metadata (pixels are not needed); a path is read without pixel data."""
    if isinstance(source, Dataset):
        ds = source
    else:
        source = Path(source)
        if not is_dicom(source):
            raise ValueError(f"{source}: the SEG source must be a DICOM file (no 'DICM' preamble)")
        try:
            ds = pydicom.dcmread(source, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types on corrupt input
            raise ValueError(f"{source}: cannot read the SEG source: {one_line(exc)}") from None
    missing = [
        k
        for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                  "Rows", "Columns")
        if not ds.get(k)
    ]  # fmt: skip
    if missing:
        raise ValueError(f"{_name(source)}: the SEG source lacks {', '.join(missing)}")
    return ds


def _check_labels(labels: Any, ds: Dataset) -> np.ndarray:
    labels = np.asarray(labels)
    expected = (int(ds.Rows), int(ds.Columns))
    if labels.shape != expected:
        raise ValueError(
            f"labels have shape {labels.shape} but the source image is {expected[0]} x "
            f"{expected[1]} (Rows x Columns); segment the scan read from this file"
        )
    if labels.dtype != bool and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer map (uint8 0..4), got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > max(VERTEBRAE)):
        raise ValueError(
            f"labels must lie in 0..{max(VERTEBRAE)} (0 background, 1..4 = L1..L4), "
            f"got {labels.min()}..{labels.max()}"
        )
    if not labels.any():
        raise ValueError(
            "labels are all zero: a DICOM SEG needs at least one segment; none written"
        )
    return labels.astype(np.uint8)


def _source_frame(ds: Dataset) -> int | None:
    """1-based frame the SEG references in a multi-frame source; None for a single-frame one."""
    if "NumberOfFrames" not in ds:
        return None
    try:
        frames = int(ds.NumberOfFrames)
    except (TypeError, ValueError):
        raise ValueError(
            f"{_name(ds)}: NumberOfFrames {ds.NumberOfFrames!r} is not a number"
        ) from None
    if frames > 2:
        raise ValueError(
            f"{_name(ds)}: source has {frames} frames; a dxaspine SEG references a two-frame "
            "scan's low-energy frame or a single-frame image"
        )
    values = ds.get("FrameLabelVector") or []
    values = [str(v).upper() for v in ([values] if isinstance(values, str) else values)]
    if frames == 2 and values == [HIGH_LABEL, LOW_LABEL]:
        return 2
    return 1


def _pixel_spacing(ds: Dataset, spacing_mm: tuple[float, float] | None) -> list[str]:
    if spacing_mm is not None:
        values = tuple(float(v) for v in np.ravel(spacing_mm))
    else:
        found = tag_spacing(ds, Path(_name(ds)))  # ScanError (a ValueError) when not numeric
        if found is None:
            raise ValueError(
                f"{_name(ds)}: source has no PixelSpacing or ImagerPixelSpacing; "
                "pass spacing_mm=(row, col)"
            )
        values = found[0]
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"pixel spacing must be two positive numbers (row, col) in mm, got {values}"
        )
    return [format_number_as_ds(v) for v in values]


def _highdicom_view(ds: Dataset, pixel_measures: highdicom.PixelMeasuresSequence) -> Dataset:
    """What highdicom accepts as the source: the metadata of one frame.

    highdicom refuses a multi-frame source without a Frame of Reference, and
    reads a multi-frame source's pixel measures from its shared functional
    groups; the view has one frame and those groups. The UIDs and SOP class
    are the source's, so the references it writes are right (the frame number
    is added afterwards by _finish).
    """
    view = Dataset()
    for element in ds:
        if element.keyword not in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            view.add(copy.deepcopy(element))
    if "NumberOfFrames" in view:
        view.NumberOfFrames = 1
        group = Dataset()
        group.PixelMeasuresSequence = pixel_measures
        view.SharedFunctionalGroupsSequence = [group]
    return view


def _finish(seg: Dataset, ds: Dataset, frame: int | None, series_description: str) -> None:
    """Series description, patient orientation, frame references and a deterministic
    dimension organisation UID."""
    seg.SeriesDescription = series_description
    if "PatientOrientation" in ds:
        seg.PatientOrientation = ds.PatientOrientation
    organisation = generate_uid(entropy_srcs=[str(seg.SOPInstanceUID), "dimension-organisation"])
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = organisation
    if frame is None:
        return
    # The Common Instance Reference shares items with SourceImageSequence but allows
    # no frame number: give the top-level sequence its own items.
    references = []
    for item in seg.SourceImageSequence:
        reference = Dataset()
        reference.update(item)
        reference.ReferencedFrameNumber = frame
        references.append(reference)
    seg.SourceImageSequence = references
    for group in seg.PerFrameFunctionalGroupsSequence:
        for derivation in group.DerivationImageSequence:
            for item in derivation.SourceImageSequence:
                item.ReferencedFrameNumber = frame


def _atomic_save(seg: Dataset, path: Path, source: Dataset | Path | str) -> Path:
    origin = getattr(source, "filename", None) if isinstance(source, Dataset) else source
    if isinstance(origin, str | Path) and path.resolve() == Path(origin).resolve():
        raise ValueError(f"{path}: refusing to replace the source image with its SEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            pydicom.dcmwrite(handle, seg, enforce_file_format=True)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _label_of(description: Any, number: int, path: Path) -> int:
    """Label id of a segment: by its property type code, else by its label."""
    kind = description.segmented_property_type
    for label, code in PROPERTY_TYPES.items():
        if (kind.scheme_designator, kind.value) == (code.scheme_designator, code.value):
            return label
    name = str(description.segment_label).strip().upper()
    for label, vertebra in VERTEBRAE.items():
        if name == vertebra:
            return label
    raise ScanError(
        str(path),
        f"segment {number} ({description.segment_label!r}, {kind.meaning}) is not one of "
        "L1..L4 vertebrae",
    )
