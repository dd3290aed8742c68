"""DICOM SEG of vertebra labels: round trips on the two-frame file and on the
low-energy file of a pair, what the SEG references and declares, deterministic
UIDs, and refused inputs. Scans come from the seeded `make_scan` fixture."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import SegmentationStorage

from dxaspine import __version__
from dxaspine.io import write_scan
from dxaspine.io.dicom import write_dicom_pair
from dxaspine.io.seg import read_dicom_seg, write_dicom_seg
from dxaspine.labels import VERTEBRAE
from dxaspine.scan import Scan, ScanError

L_CODES = {"L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002"}
"""SNOMED CT codes of the L1..L4 vertebrae, written out by hand."""


def four_labels(shape: tuple[int, int] = (64, 48)) -> np.ndarray:
    """Hand-drawn L1..L4 blocks, cranial first, with one pixel of L3 touching L4."""
    labels = np.zeros(shape, np.uint8)
    for label, top in zip(VERTEBRAE, (4, 18, 32, 46), strict=True):
        labels[top : top + 12, 12:36] = label
    labels[45, 20] = 3
    return labels


@pytest.fixture
def two_frame(make_scan: Callable[..., Scan], tmp_path: Path) -> Path:
    return write_scan(make_scan(), tmp_path / "scan.dcm", format="dicom")[0]


@pytest.fixture
def pair_low(make_scan: Callable[..., Scan], tmp_path: Path) -> Path:
    return write_dicom_pair(make_scan(), tmp_path / "low.dcm", tmp_path / "high.dcm")[0]


def derivation_sources(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    return [
        item
        for group in ds.PerFrameFunctionalGroupsSequence
        for derivation in group.DerivationImageSequence
        for item in derivation.SourceImageSequence
    ]


def check_seg(seg_path: Path, source: Path, labels: np.ndarray, frame: int | None) -> None:
    """Round trip, declared segments and every reference to the source."""
    assert np.array_equal(read_dicom_seg(seg_path), labels)
    assert read_dicom_seg(seg_path).dtype == np.uint8
    src = pydicom.dcmread(source, stop_before_pixels=True)
    seg = hd.seg.segread(seg_path)
    assert seg.Modality == "SEG" and seg.SOPClassUID == SegmentationStorage
    assert seg.SegmentationType == "BINARY"
    present = [VERTEBRAE[v] for v in np.unique(labels) if v]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == present
    assert [s.SegmentNumber for s in seg.SegmentSequence] == list(range(1, len(present) + 1))
    for item in seg.SegmentSequence:
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == L_CODES[item.SegmentLabel]
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("dxaspine", __version__)
        assert len(item.RecommendedDisplayCIELabValue) == 3
    assert seg.get_source_image_uids() == [
        (src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID)
    ]
    references = [*seg.SourceImageSequence, *derivation_sources(seg)]
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    for item in [*references, referenced]:
        assert item.ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert item.ReferencedSOPClassUID == src.SOPClassUID
    assert [item.get("ReferencedFrameNumber") for item in references] == [frame] * len(references)
    assert "ReferencedFrameNumber" not in referenced
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.PatientID == src.PatientID
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in src.PixelSpacing]
    assert float(measures.SliceThickness) == 1.0
    assert seg.PatientOrientation == src.PatientOrientation
    assert seg.SeriesDescription == "dxaspine L1-L4"


# --- round trips --------------------------------------------------------------------------


def test_two_frame_file_round_trip_references_low_frame(two_frame: Path, tmp_path: Path) -> None:
    labels = four_labels()
    out = write_dicom_seg(labels, two_frame, tmp_path / "seg" / "scan_seg.dcm")
    assert out == tmp_path / "seg" / "scan_seg.dcm"
    check_seg(out, two_frame, labels, frame=1)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scan_seg.dcm"]


def test_pair_low_file_round_trip(pair_low: Path, tmp_path: Path) -> None:
    labels = four_labels()
    out = write_dicom_seg(labels, str(pair_low), str(tmp_path / "low_seg.dcm"))
    check_seg(out, pair_low, labels, frame=None)


def test_dataset_source_with_high_frame_first(two_frame: Path, tmp_path: Path) -> None:
    """FrameLabelVector HIGH, LOW: the SEG references frame 2, the low energy."""
    ds = pydicom.dcmread(two_frame)
    ds.FrameLabelVector = ["HIGH_ENERGY", "LOW_ENERGY"]
    flipped = tmp_path / "flipped.dcm"
    ds.save_as(flipped, enforce_file_format=True)
    labels = four_labels()
    out = write_dicom_seg(labels, pydicom.dcmread(flipped), tmp_path / "seg.dcm")
    check_seg(out, flipped, labels, frame=2)


def test_absent_vertebrae_leave_no_segment(pair_low: Path, tmp_path: Path) -> None:
    labels = four_labels()
    labels[np.isin(labels, (1, 3))] = 0
    out = write_dicom_seg(labels, pair_low, tmp_path / "seg.dcm", series_description="two")
    seg = pydicom.dcmread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["L2", "L4"]
    assert seg.SeriesDescription == "two"
    assert np.array_equal(read_dicom_seg(out), labels)


def test_uids_deterministic_and_tied_to_content(two_frame: Path, tmp_path: Path) -> None:
    labels = four_labels()
    first = pydicom.dcmread(write_dicom_seg(labels, two_frame, tmp_path / "a.dcm"))
    again = pydicom.dcmread(write_dicom_seg(labels, two_frame, tmp_path / "b.dcm"))
    labels[labels == 4] = 0
    other = pydicom.dcmread(write_dicom_seg(labels, two_frame, tmp_path / "c.dcm"))
    named = pydicom.dcmread(
        write_dicom_seg(
            four_labels(), two_frame, tmp_path / "d.dcm", algorithm_name="x", algorithm_version="9"
        )
    )
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID == other.SeriesInstanceUID
    assert first.DimensionOrganizationSequence[0].DimensionOrganizationUID == (
        again.DimensionOrganizationSequence[0].DimensionOrganizationUID
    )
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert named.SeriesInstanceUID != first.SeriesInstanceUID
    algorithm = named.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("x", "9")
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID


def test_spacing_from_argument_when_source_has_none(pair_low: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(pair_low)
    del ds.PixelSpacing
    labels = four_labels()
    with pytest.raises(ValueError, match=r"spacing_mm=\(row, col\)"):
        write_dicom_seg(labels, ds, tmp_path / "seg.dcm")
    out = write_dicom_seg(labels, ds, tmp_path / "seg.dcm", spacing_mm=(0.25, 0.75))
    measures = pydicom.dcmread(out).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.25, 0.75]
    assert np.array_equal(read_dicom_seg(out), labels)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy not installed")
def test_validator_finds_no_errors(two_frame: Path, pair_low: Path, tmp_path: Path) -> None:
    for source in (two_frame, pair_low):
        out = write_dicom_seg(four_labels(), source, tmp_path / f"{source.stem}_seg.dcm")
        report = subprocess.run(
            ["dciodvfy", str(out)], capture_output=True, text=True, timeout=60, check=False
        )
        errors = [line for line in report.stderr.splitlines() if line.startswith("Error")]
        assert errors == [], errors


# --- refused input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        (np.ones((64, 47), np.uint8), "64 x 48 (Rows x Columns)"),
        (np.ones((2, 64, 48), np.uint8), "64 x 48 (Rows x Columns)"),
        (np.full((64, 48), 5, np.uint8), "must lie in 0..4"),
        (np.full((64, 48), -1, np.int16), "must lie in 0..4"),
        (np.ones((64, 48), np.float32), "integer map"),
        (np.zeros((64, 48), np.uint8), "all zero"),
    ],
)
def test_bad_labels_raise_one_line_and_write_nothing(
    two_frame: Path, tmp_path: Path, labels: np.ndarray, fragment: str
) -> None:
    target = tmp_path / "out" / "seg.dcm"
    with pytest.raises(ValueError) as caught:
        write_dicom_seg(labels, two_frame, target)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not target.parent.exists()


def test_bad_sources_refused(two_frame: Path, tmp_path: Path) -> None:
    labels = four_labels()
    with pytest.raises(ValueError, match="refusing to replace the source"):
        write_dicom_seg(labels, two_frame, two_frame)
    with pytest.raises(ValueError, match="refusing to replace the source"):
        write_dicom_seg(labels, pydicom.dcmread(two_frame), two_frame)
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    with pytest.raises(ValueError, match="must be a DICOM file"):
        write_dicom_seg(labels, text, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(two_frame)
    ds.NumberOfFrames = 3
    with pytest.raises(ValueError, match="has 3 frames"):
        write_dicom_seg(labels, ds, tmp_path / "seg.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "scan.dcm"]


def test_reader_refuses_what_is_not_a_seg(two_frame: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    for path, fragment in ((text, "not a DICOM file"), (two_frame, "not a readable DICOM SEG")):
        with pytest.raises(ScanError) as caught:
            read_dicom_seg(path)
        assert str(path) in str(caught.value) and fragment in str(caught.value)
        assert "\n" not in str(caught.value)


def test_reader_refuses_a_segment_that_is_not_a_vertebra(two_frame: Path, tmp_path: Path) -> None:
    out = write_dicom_seg(four_labels(), two_frame, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(out)
    item = ds.SegmentSequence[1]
    item.SegmentLabel = "Liver"
    item.SegmentedPropertyTypeCodeSequence[0].CodeValue = "10200004"
    item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning = "Liver"
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(ScanError, match=r"segment 2 \('Liver', Liver\) is not one of L1..L4"):
        read_dicom_seg(out)
