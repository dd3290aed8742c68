"""Scan I/O: round trips, byte determinism, bad input and safe writes, for NPZ,
DICOM and PNG/TIFF pairs. Scans come from the seeded `make_scan` fixture."""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image

from dxaspine.io import read_scan, write_scan
from dxaspine.io.dicom import read_dicom_pair, write_dicom_pair
from dxaspine.scan import Scan, ScanError

ROUND_TRIP_TOL = 1e-5
"""16-bit formats: max error / value range (design bound 7.6e-6; the brief asks < 1e-4)."""


def value_range(*images: np.ndarray) -> float:
    return float(max(i.max() for i in images) - min(i.min() for i in images))


def digest_folder(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def expect_error(path: Path, fragment: str, blamed: Path | None = None) -> ScanError:
    """read_scan(path) must raise a one-line ScanError naming `blamed` (default: path)."""
    with pytest.raises(ScanError) as caught:
        read_scan(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(blamed or path) in message
    assert fragment in message, message
    return caught.value


# --- round trips --------------------------------------------------------------------------


def test_npz_round_trip_is_exact(scan: Scan, tmp_path: Path) -> None:
    back = read_scan(write_scan(scan, tmp_path / "s.npz")[0])
    assert back.low.dtype == np.float32 and np.array_equal(back.low, scan.low)
    assert np.array_equal(back.high, scan.high)
    assert back.spacing_mm == scan.spacing_mm
    assert back.meta == scan.meta
    assert np.array_equal(back.mask, scan.mask) and np.array_equal(back.labels, scan.labels)
    assert back.truth_maps.keys() == scan.truth_maps.keys()
    assert np.array_equal(back.truth_maps["bone_g_cm2"], scan.truth_maps["bone_g_cm2"])


def test_npz_from_plain_numpy_with_extra_keys(tmp_path: Path) -> None:
    """The docs/formats.md recipe loads; unknown (even pickled) keys are ignored."""
    low = np.full((40, 36), 1.5, np.float64)
    path = tmp_path / "plain.npz"
    np.savez_compressed(
        path,
        low=low,
        high=low * 0.6,
        spacing_mm=np.array([1.0, 1.0]),
        meta=np.array(json.dumps({"scan_id": "x"})),
        notes=np.array([{"a": 1}], dtype=object),
    )
    back = read_scan(path)
    assert back.low.dtype == np.float32 and back.shape == (40, 36)
    assert back.meta == {"scan_id": "x"} and back.labels is None and back.truth_maps == {}


def test_dicom_round_trip_within_tolerance(scan: Scan, tmp_path: Path) -> None:
    back = read_scan(write_scan(scan, tmp_path / "s.dcm")[0])
    joint = value_range(scan.low, scan.high)
    assert np.abs(back.low - scan.low).max() <= ROUND_TRIP_TOL * joint
    assert np.abs(back.high - scan.high).max() <= ROUND_TRIP_TOL * joint
    assert back.spacing_mm == pytest.approx(scan.spacing_mm, rel=1e-12)
    assert back.meta == scan.meta
    assert back.mask is None and back.labels is None and back.truth_maps == {}


def test_dicom_pair_round_trip(scan: Scan, tmp_path: Path) -> None:
    low_path, high_path = write_dicom_pair(scan, tmp_path / "p/b.dcm", tmp_path / "p/a.dcm")
    for back in (read_scan(tmp_path / "p"), read_dicom_pair(low_path, high_path)):
        for energy in ("low", "high"):
            original = getattr(scan, energy)
            error = np.abs(getattr(back, energy) - original).max()
            assert error <= ROUND_TRIP_TOL * value_range(original)
        assert back.meta == scan.meta and back.spacing_mm == pytest.approx(scan.spacing_mm)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_image_pair_round_trip(scan: Scan, tmp_path: Path, suffix: str) -> None:
    written = write_scan(scan, tmp_path / f"s{suffix}")
    names = {p.name for p in written}
    assert names == {f"s_{r}{suffix}" for r in ("low", "high", "labels", "mask")} | {"s.json"}
    for entry in written:
        back = read_scan(entry)
        for energy in ("low", "high"):
            original = getattr(scan, energy)
            error = np.abs(getattr(back, energy) - original).max()
            assert error <= ROUND_TRIP_TOL * value_range(original)
        assert np.array_equal(back.labels, scan.labels) and np.array_equal(back.mask, scan.mask)
        assert back.meta == scan.meta and back.spacing_mm == scan.spacing_mm
        assert back.truth_maps == {}


def test_png_is_16_bit(scan: Scan, tmp_path: Path) -> None:
    write_scan(scan, tmp_path / "s.png")
    with Image.open(tmp_path / "s_low.png") as image:
        assert image.mode.startswith("I;16")
    with Image.open(tmp_path / "s_labels.png") as image:
        assert image.mode == "L"


# --- determinism --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s.npz", "s.dcm", "s.png", "s.tif"])
def test_same_scan_same_bytes(make_scan, tmp_path: Path, monkeypatch, name: str) -> None:
    """Equal scans written a day apart (as the clock sees it) give identical files."""
    first = digest_folder(write_scan(make_scan(), tmp_path / "a" / name)[0].parent)
    later, real_localtime = time.time() + 86_400, time.localtime
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime", lambda secs=None: real_localtime(secs or later))
    second = digest_folder(write_scan(make_scan(), tmp_path / "b" / name)[0].parent)
    assert first == second
    other = digest_folder(write_scan(make_scan(seed=1), tmp_path / "c" / name)[0].parent)
    assert other != first


def test_dicom_without_scan_id_is_deterministic(make_scan, tmp_path: Path) -> None:
    scans = [make_scan(meta={}), make_scan(meta={})]
    blobs = [write_scan(s, tmp_path / f"{i}.dcm")[0].read_bytes() for i, s in enumerate(scans)]
    assert blobs[0] == blobs[1]
    pairs = [
        write_dicom_pair(scans[0], tmp_path / f"{i}/l.dcm", tmp_path / f"{i}/h.dcm") for i in "xy"
    ]
    assert [p.read_bytes() for p in pairs[0]] == [p.read_bytes() for p in pairs[1]]


# --- bad input ----------------------------------------------------------------------------


def save_npz(path: Path, scan: Scan, **changes) -> Path:
    """Save a scan's arrays with some replaced (a value of None drops the key)."""
    arrays = {
        "low": scan.low,
        "high": scan.high,
        "spacing_mm": np.array(scan.spacing_mm),
        "labels": scan.labels,
        "meta": np.array(json.dumps(scan.meta)),
    }
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def with_nan(image: np.ndarray, value: float) -> np.ndarray:
    image = image.copy()
    image[3, 4] = value
    return image


NPZ_CASES = {
    "missing key": ({"high": None}, "missing key(s) high"),
    "integer dtype": ({"low": np.ones((64, 48), np.int16)}, "floating-point"),
    "3-D image": ({"low": np.ones((2, 64, 48), np.float32)}, "must be 2-D"),
    "shape mismatch": ({"high": np.ones((60, 48), np.float32)}, "differ in shape"),
    "NaN pixel": ({"low": "nan"}, "NaN or infinite"),
    "inf pixel": ({"high": "inf"}, "NaN or infinite"),
    "zero spacing": ({"spacing_mm": np.array([0.0, 0.6])}, "positive"),
    "negative spacing": ({"spacing_mm": np.array([0.5, -0.6])}, "positive"),
    "spacing shape": ({"spacing_mm": np.array([0.5])}, "2 real numbers"),
    "too small": (
        {k: np.ones((16, 16), np.float32) for k in ("low", "high")} | {"labels": None},
        "smaller than 32x32",
    ),
    "meta not JSON": ({"meta": np.array("{oops")}, "meta is not valid JSON"),
    "meta not object": ({"meta": np.array("[1, 2]")}, "JSON object"),
    "labels out of range": ({"labels": np.full((64, 48), 7, np.uint8)}, "0..4"),
    "pickled energy": ({"low": np.array([[1.0]], dtype=object)}, "cannot load NPZ"),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz(scan: Scan, tmp_path: Path, case: str) -> None:
    changes, fragment = NPZ_CASES[case]
    for key, value in changes.items():
        if isinstance(value, str):
            changes[key] = with_nan(getattr(scan, key), float(value))
    expect_error(save_npz(tmp_path / "bad.npz", scan, **changes), fragment)


def test_not_scans(scan: Scan, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    expect_error(text, "not a scan")
    (tmp_path / "fake.npz").write_text("hello\n")
    expect_error(tmp_path / "fake.npz", "not an NPZ")
    (tmp_path / "empty.npz").write_bytes(b"")
    expect_error(tmp_path / "empty.npz", "not an NPZ")
    with zipfile.ZipFile(tmp_path / "random.zip", "w") as archive:
        archive.writestr("readme.txt", "not arrays")
    expect_error(tmp_path / "random.zip", "missing key(s) low, high, spacing_mm")
    expect_error(tmp_path / "missing.npz", "no such file")


@pytest.mark.parametrize("name", ["s.npz", "s.dcm", "s.png", "s.tif"])
def test_truncated_files(scan: Scan, tmp_path: Path, name: str) -> None:
    path = write_scan(scan, tmp_path / name)[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_error(path, "corrupt" if name != "s.npz" else "cannot load NPZ")


def edit_dicom(path: Path, out: Path, edit) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def test_bad_dicom(make_scan, tmp_path: Path) -> None:
    scan = make_scan()
    both = write_scan(scan, tmp_path / "both.dcm")[0]
    low, high = write_dicom_pair(scan, tmp_path / "pair/low.dcm", tmp_path / "pair/high.dcm")
    expect_error(low, "single-frame DICOM with no partner")

    def three_frames(ds):
        ds.NumberOfFrames = 3
        ds.PixelData += ds.PixelData[: len(ds.PixelData) // 2]

    expect_error(edit_dicom(both, tmp_path / "three.dcm", three_frames), "has 3 frames")
    no_spacing = edit_dicom(
        both, tmp_path / "nospacing.dcm", lambda ds: delattr(ds, "PixelSpacing")
    )
    expect_error(no_spacing, "no PixelSpacing or ImagerPixelSpacing")

    def shrink(ds):
        ds.Rows = ds.Columns = 16
        ds.PixelData = np.zeros((2, 16, 16), "<u2").tobytes()

    expect_error(edit_dicom(both, tmp_path / "small.dcm", shrink), "smaller than 32x32")
    with pytest.raises(ScanError, match="ImageType says high"):
        read_dicom_pair(high, low)
    other = write_dicom_pair(make_scan(shape=(60, 48)), tmp_path / "o/l.dcm", tmp_path / "o/h.dcm")
    with pytest.raises(ScanError, match="differ in shape"):
        read_dicom_pair(low, other[1])


def test_dicom_folders(scan: Scan, tmp_path: Path) -> None:
    low, high = write_dicom_pair(scan, tmp_path / "pair/z.dcm", tmp_path / "pair/a.dcm")
    (tmp_path / "pair/readme.txt").write_text("ignored")
    assert read_scan(tmp_path / "pair").shape == scan.shape
    one = tmp_path / "one"
    one.mkdir()
    (one / "low.dcm").write_bytes(low.read_bytes())
    expect_error(one, "exactly 2 DICOM files (one per energy), found 1")
    (tmp_path / "pair/extra.dcm").write_bytes(low.read_bytes())
    expect_error(tmp_path / "pair", "found 3")

    def unlabel(kvp):
        def edit(ds):
            ds.ImageType = ["DERIVED", "SECONDARY"]
            if kvp:
                ds.KVP = kvp

        return edit

    edit_dicom(low, tmp_path / "amb/x.dcm", unlabel(None))
    edit_dicom(high, tmp_path / "amb/y.dcm", unlabel(None))
    expect_error(tmp_path / "amb", "cannot tell low from high")
    edit_dicom(low, tmp_path / "kvp/b.dcm", unlabel("100"))
    edit_dicom(high, tmp_path / "kvp/a.dcm", unlabel("140"))
    by_kvp = read_scan(tmp_path / "kvp")
    assert np.abs(by_kvp.low - scan.low).max() < 1e-3


def test_dicom_without_private_block_falls_back(scan: Scan, tmp_path: Path) -> None:
    both = write_scan(scan, tmp_path / "s.dcm")[0]

    def strip(ds):
        ds.remove_private_tags()
        ds.ImagerPixelSpacing = ds.PixelSpacing
        del ds.PixelSpacing

    back = read_scan(edit_dicom(both, tmp_path / "anon.dcm", strip))
    assert back.meta == {"patient_id": scan.patient_id}
    assert back.spacing_mm == pytest.approx(scan.spacing_mm)


def test_bad_image_pairs(make_scan, tmp_path: Path) -> None:
    scan = make_scan()
    low, high, labels, _mask, sidecar = write_scan(scan, tmp_path / "s.png")
    original = sidecar.read_text()
    sidecar.write_text("{not json")
    expect_error(low, "unreadable JSON sidecar", blamed=sidecar)
    for edit, fragment in [
        ({"spacing_mm": [0.5, -1.0]}, "positive"),
        ({"low": {"scale": 1.0}}, "numbers 'scale' and 'offset'"),
        ({"spacing_mm": "big"}, "list of 2 numbers"),
    ]:
        sidecar.write_text(json.dumps(json.loads(original) | edit))
        expect_error(high, fragment, blamed=sidecar if fragment != "positive" else high)
    sidecar.write_text(original)
    Image.fromarray(np.full((64, 48), 9, np.uint8)).save(labels)
    expect_error(low, "0..4")
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(labels)
    expect_error(sidecar, "8- or 16-bit grayscale", blamed=labels)
    labels.unlink()
    Image.fromarray(np.zeros((60, 48), np.uint16)).save(high)
    expect_error(low, "differ in shape")
    high.unlink()
    expect_error(low, "missing high-energy image s_high.png")
    sidecar.unlink()
    expect_error(low, "missing JSON sidecar s.json")
    (tmp_path / "photo.png").write_bytes(low.read_bytes())
    expect_error(tmp_path / "photo.png", "pixel size unknown")  # a single image, not a pair


def test_bad_tiff_pairs(make_scan, tmp_path: Path) -> None:
    low, *_rest = write_scan(make_scan(), tmp_path / "s.tif")
    tifffile.imwrite(low, np.ones((64, 48), np.float32))
    expect_error(low, "8- or 16-bit unsigned")
    write_scan(make_scan(reference=False), tmp_path / "t.tif")
    for energy in ("low", "high"):
        tifffile.imwrite(tmp_path / f"t_{energy}.tif", np.zeros((16, 16), np.uint16))
    expect_error(tmp_path / "t.json", "smaller than 32x32")


# --- safe writes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s.npz", "s.dcm", "s.png", "s.tiff"])
def test_reading_leaves_inputs_unchanged(scan: Scan, tmp_path: Path, name: str) -> None:
    written = write_scan(scan, tmp_path / name)
    before = digest_folder(tmp_path)
    for path in written:
        read_scan(path)
    assert digest_folder(tmp_path) == before


def test_failed_write_leaves_no_partial_file(scan: Scan, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out" / "s.npz"
    target.parent.mkdir()
    target.write_bytes(b"previous output")

    def broken_write_array(handle, array, **kwargs):
        handle.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken_write_array)
    with pytest.raises(OSError, match="disk full"):
        write_scan(scan, target)
    assert [p.name for p in target.parent.iterdir()] == ["s.npz"]
    assert target.read_bytes() == b"previous output"


def test_failed_pair_write_leaves_no_files(scan: Scan, tmp_path: Path, monkeypatch) -> None:
    calls = []
    real_save = Image.Image.save

    def save_twice_then_fail(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise OSError("disk full")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_twice_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_scan(scan, tmp_path / "out" / "s.png")
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_meta_writes_nothing(make_scan, tmp_path: Path) -> None:
    scan = make_scan(meta={"scan_id": "x", "bad": float("nan")})
    for name in ("s.npz", "s.dcm", "s.png"):
        with pytest.raises(ScanError, match="strict JSON"):
            write_scan(scan, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["s.npz", "s.dcm", "s.png"])
def test_writer_refuses_to_replace_its_input(scan: Scan, tmp_path: Path, name: str) -> None:
    written = write_scan(scan, tmp_path / name)
    before = digest_folder(tmp_path)
    loaded = read_scan(written[0])
    with pytest.raises(FileExistsError, match="read from"):
        write_scan(loaded, tmp_path / name)
    assert digest_folder(tmp_path) == before
    write_scan(loaded, tmp_path / "copy" / name)
    write_scan(scan, tmp_path / name)


def test_write_creates_folders_and_rejects_unknown_suffix(scan: Scan, tmp_path: Path) -> None:
    assert write_scan(scan, tmp_path / "a" / "b" / "s.npz")[0].is_file()
    assert write_scan(scan, tmp_path / "c" / "s", format="npz")[0].name == "s"
    with pytest.raises(ValueError, match="cannot tell the format"):
        write_scan(scan, tmp_path / "s.bmp")


# --- single exported images ---------------------------------------------------------------


def single_scan(
    seed: int = 0, shape: tuple[int, int] = (60, 50), spacing_mm=(0.7, 0.6), meta=None
) -> Scan:
    """A seeded 8-bit-exact single-image scan (grey k/255) with L1/L2 labels."""
    rng = np.random.default_rng(seed)
    image = (rng.integers(0, 256, shape) / 255).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[8:20, 12:36] = 1
    labels[24:36, 12:36] = 2
    meta = {"scan_id": f"export-{seed}", "patient_id": f"P{seed}"} if meta is None else meta
    return Scan(spacing_mm=spacing_mm, image=image, meta=meta, labels=labels, mask=labels > 0)


def export_dataset(
    pixels: np.ndarray,
    sop_class: str = pydicom.uid.SecondaryCaptureImageStorage,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attributes,
) -> pydicom.Dataset:
    """A minimal single-frame export as a vendor writes it (no dxaspine private block)."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["t"])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = {pydicom.uid.ComputedRadiographyImageStorage: "CR"}.get(sop_class, "OT")
    ds.PatientID = "P77"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = 8 * pixels.dtype.itemsize
    ds.BitsAllocated, ds.BitsStored = bits, bits_stored or bits
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    data = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    return ds


def save_dataset(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_scan_forms_and_their_checks() -> None:
    single = single_scan()
    assert not single.is_dual_energy and single.shape == (60, 50) and single.low is None
    dual = Scan(np.ones((40, 40)), np.ones((40, 40)), (1.0, 1.0), image=np.zeros((40, 40)))
    assert dual.is_dual_energy and dual.image.dtype == np.float32
    cases = [
        ({}, "both energies ('low' and 'high') or one exported 'image'"),
        ({"low": np.ones((40, 40))}, "has 'low' but no 'high'"),
        ({"image": np.full((40, 40), 2.0)}, "must lie in 0..1"),
        ({"image": np.zeros((40, 40), np.uint8)}, "floating-point grey values"),
        ({"image": np.zeros((40, 40)), "labels": np.zeros((40, 30), np.uint8)}, "does not match"),
        ({"image": np.zeros((16, 40))}, "smaller than 32x32"),
        (
            {"low": np.ones((40, 40)), "high": np.ones((40, 40)), "image": np.zeros((40, 30))},
            "'image' shape (40, 30) does not match",
        ),
    ]
    for fields, fragment in cases:
        with pytest.raises(ScanError, match=re.escape(fragment)):
            Scan(spacing_mm=(1.0, 1.0), **fields)
    with pytest.raises(ScanError, match="spacing_mm is required"):
        Scan(image=np.zeros((40, 40)))


def test_single_image_npz_round_trip_is_exact(tmp_path: Path) -> None:
    scan = single_scan()
    path = write_scan(scan, tmp_path / "s.npz")[0]
    with np.load(path) as data:
        assert sorted(data.files) == ["image", "labels", "mask", "meta", "spacing_mm"]
    back = read_scan(path)
    assert not back.is_dual_energy and np.array_equal(back.image, scan.image)
    assert back.spacing_mm == scan.spacing_mm and back.meta == scan.meta
    assert np.array_equal(back.labels, scan.labels) and np.array_equal(back.mask, scan.mask)


def test_npz_image_key_accepts_8_bit_and_keeps_energies(scan: Scan, tmp_path: Path) -> None:
    pixels = np.arange(64 * 48).reshape(64, 48).astype(np.uint8)
    path = tmp_path / "plain.npz"
    np.savez(path, image=pixels, spacing_mm=np.array([1.0, 1.0]))
    assert np.array_equal(read_scan(path).image * 255, pixels)
    both = Scan(scan.low, scan.high, scan.spacing_mm, image=pixels / 255.0)
    back = read_scan(write_scan(both, tmp_path / "both.npz")[0])
    assert back.is_dual_energy and np.array_equal(back.image, both.image)
    assert np.array_equal(back.low, scan.low)
    np.savez(tmp_path / "neither.npz", spacing_mm=np.array([1.0, 1.0]))
    expect_error(tmp_path / "neither.npz", "or image, spacing_mm (single-image)")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_single_image_png_round_trip(tmp_path: Path, suffix: str) -> None:
    scan = single_scan()
    written = write_scan(scan, tmp_path / f"s{suffix}")
    names = {p.name for p in written}
    assert names == {f"s{suffix}", "s.json", f"s_labels{suffix}", f"s_mask{suffix}"}
    if suffix == ".png":
        with Image.open(tmp_path / "s.png") as image:
            assert image.mode == "L"
    for entry in written:
        back = read_scan(entry)
        assert not back.is_dual_energy and np.array_equal(back.image, scan.image)
        assert np.array_equal(back.labels, scan.labels) and back.spacing_mm == scan.spacing_mm
        assert back.meta["spacing_source"] == "sidecar" and back.meta["scan_id"] == "export-0"
        assert back.meta["source_image"]["bits"] == 8


def test_single_image_dicom_round_trip(tmp_path: Path) -> None:
    scan = single_scan()
    path = write_scan(scan, tmp_path / "s.dcm")[0]
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert (ds.BitsAllocated, ds.PhotometricInterpretation) == (8, "MONOCHROME2")
    assert np.array_equal(ds.pixel_array, np.rint(scan.image * 255))
    back = read_scan(path)
    assert not back.is_dual_energy and np.array_equal(back.image, scan.image)
    assert back.spacing_mm == pytest.approx(scan.spacing_mm)
    assert back.meta["spacing_source"] == "PixelSpacing" and back.meta["scan_id"] == "export-0"
    assert back.meta["dicom"]["sop_class"] == "Secondary Capture"
    assert back.meta["dicom"]["photometric_interpretation"] == "MONOCHROME2"
    assert back.labels is None


def test_single_image_writes_are_deterministic(tmp_path: Path) -> None:
    for name in ("s.dcm", "s.png", "s.npz"):
        first = [p.read_bytes() for p in write_scan(single_scan(), tmp_path / "a" / name)]
        again = [p.read_bytes() for p in write_scan(single_scan(), tmp_path / "b" / name)]
        other = [p.read_bytes() for p in write_scan(single_scan(1), tmp_path / "c" / name)]
        assert first == again and first != other
    anonymous = [single_scan(meta={}), single_scan(meta={})]
    blobs = [write_scan(s, tmp_path / f"{i}.dcm")[0].read_bytes() for i, s in enumerate(anonymous)]
    assert blobs[0] == blobs[1]


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    scan = single_scan()
    path = write_scan(scan, tmp_path / "m1.dcm", photometric="MONOCHROME1")[0]
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(ds.pixel_array, 255 - np.rint(scan.image * 255))
    back = read_scan(path)
    assert np.array_equal(back.image, scan.image)
    assert back.meta["dicom"]["photometric_interpretation"] == "MONOCHROME1"
    # a vendor file: stored 0 is white under MONOCHROME1
    pixels = np.zeros((40, 40), np.uint8)
    pixels[:, 20:] = 255
    vendor = export_dataset(pixels, photometric="MONOCHROME1", PixelSpacing=[1, 1])
    image = read_scan(save_dataset(vendor, tmp_path / "vendor.dcm")).image
    assert (image[:, :20] == 1).all() and (image[:, 20:] == 0).all()


def test_dicom_spacing_fallbacks_in_order(tmp_path: Path) -> None:
    pixels = np.arange(60 * 50).reshape(60, 50).astype(np.uint8)
    ds = export_dataset(
        pixels,
        PixelSpacing=[0.5, 0.5],
        ImagerPixelSpacing=[0.9, 0.8],
        ExposedArea=[30, 42],  # mm: row length (width) first, then column length
    )
    path = tmp_path / "e.dcm"
    expected = [
        ("PixelSpacing", (0.5, 0.5)),
        ("ImagerPixelSpacing", (0.9, 0.8)),
        ("ExposedArea", (0.7, 0.6)),
    ]
    for keyword, spacing in expected:
        back = read_scan(save_dataset(ds, path))
        assert back.meta["spacing_source"] == keyword
        assert back.spacing_mm == pytest.approx(spacing)
        assert back.meta == back.meta | {"patient_id": "P77"}
        override = read_scan(path, spacing_mm=(1.1, 1.2))
        assert override.spacing_mm == (1.1, 1.2)
        assert override.meta["spacing_source"] == "argument"
        delattr(ds, keyword)
    error = expect_error(save_dataset(ds, path), "no PixelSpacing, ImagerPixelSpacing or Exposed")
    assert "--spacing-mm" in error.problem
    assert read_scan(path, spacing_mm=0.8).spacing_mm == (0.8, 0.8)
    ds.ExposedArea = [520, 520]  # the whole scan table, as some exports repeat: implausible
    expect_error(save_dataset(ds, path), "ignored as implausible: ExposedArea 520\\520 mm")
    with pytest.raises(ScanError, match="spacing_mm must be one or two positive numbers"):
        read_scan(path, spacing_mm=(0.0, 1.0))


def test_png_spacing_sources_and_refusal(tmp_path: Path) -> None:
    pixels = np.arange(40 * 40).reshape(40, 40).astype(np.uint8)
    path = tmp_path / "export.png"
    Image.fromarray(pixels).save(path)
    error = expect_error(path, "pixel size unknown: no sidecar export.json")
    assert "--spacing-mm" in error.problem
    back = read_scan(path, spacing_mm=(0.6, 0.6))
    assert back.spacing_mm == (0.6, 0.6) and back.meta["spacing_source"] == "argument"
    assert "inverted" not in back.meta  # polarity is never guessed
    assert np.array_equal(back.image * 255, pixels)
    (tmp_path / "export.json").write_text(
        json.dumps({"spacing_mm": [0.9, 0.9], "meta": {"inverted": True}})
    )
    back = read_scan(path)
    assert back.spacing_mm == (0.9, 0.9) and back.meta["spacing_source"] == "sidecar"
    assert back.meta["inverted"] is True
    back = read_scan(tmp_path / "export.json", spacing_mm=(0.5, 0.5))
    assert back.spacing_mm == (0.5, 0.5) and back.meta["file_spacing_mm"] == [0.9, 0.9]


def test_exports_written_without_spacing(tmp_path: Path) -> None:
    scan = single_scan()
    dcm = write_scan(scan, tmp_path / "s.dcm", pixel_spacing=False)[0]
    assert "PixelSpacing" not in pydicom.dcmread(dcm)
    expect_error(dcm, "pixel size unknown")
    assert read_scan(dcm, spacing_mm=(0.7, 0.6)).meta["spacing_source"] == "argument"
    png_files = write_scan(scan, tmp_path / "s.png", pixel_spacing=False)
    sidecar = json.loads((tmp_path / "s.json").read_text())
    assert "spacing_mm" not in sidecar and sidecar["meta"] == scan.meta
    expect_error(png_files[0], "pixel size unknown")
    assert read_scan(png_files[0], spacing_mm=(0.7, 0.6)).spacing_mm == (0.7, 0.6)


def test_export_write_options_are_checked(scan: Scan, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="apply only to single-image scans"):
        write_scan(scan, tmp_path / "s.dcm", pixel_spacing=False)
    with pytest.raises(ValueError, match="apply only to single-image scans"):
        write_scan(single_scan(), tmp_path / "s.npz", pixel_spacing=False)
    with pytest.raises(ValueError, match="DICOM only"):
        write_scan(single_scan(), tmp_path / "s.png", photometric="MONOCHROME1")
    assert list(tmp_path.iterdir()) == []


def test_rgb_exports_become_luma(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (40, 44, 3)).astype(np.uint8)
    luma = (rgb.astype(np.float64) @ [0.299, 0.587, 0.114]) / 255
    ds = export_dataset(rgb, photometric="RGB", PixelSpacing=[0.6, 0.6])
    back = read_scan(save_dataset(ds, tmp_path / "rgb.dcm"))
    assert back.shape == (40, 44) and np.abs(back.image - luma).max() < 1e-6
    assert back.meta["dicom"]["samples_per_pixel"] == 3
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    png = read_scan(tmp_path / "rgb.png", spacing_mm=0.6)
    assert np.abs(png.image - luma).max() < 1e-6 and png.meta["source_image"]["mode"] == "RGB"


def test_jpeg_compressed_export(tmp_path: Path) -> None:
    """Many exports are JPEG baseline; pydicom decodes it with Pillow."""
    pixels = (np.arange(64 * 48).reshape(64, 48) % 256).astype(np.uint8)
    ds = export_dataset(pixels, PixelSpacing=[0.5, 0.5])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    ds.PixelData = pydicom.encaps.encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
    back = read_scan(save_dataset(ds, tmp_path / "jpeg.dcm"))
    assert back.shape == (64, 48) and np.abs(back.image * 255 - pixels).max() <= 2


def test_cr_and_dx_exports(tmp_path: Path) -> None:
    pixels = np.linspace(0, 4095, 48 * 40).reshape(48, 40).astype(np.uint16)
    for sop_class, name in [
        (pydicom.uid.ComputedRadiographyImageStorage, "CR"),
        (pydicom.uid.DigitalXRayImageStorageForPresentation, "DX for presentation"),
        (pydicom.uid.DigitalXRayImageStorageForProcessing, "DX for processing"),
    ]:
        ds = export_dataset(pixels, sop_class, bits_stored=12, ImagerPixelSpacing=[0.5, 0.5])
        back = read_scan(save_dataset(ds, tmp_path / f"{name}.dcm"))
        assert back.meta["dicom"]["sop_class"] == name and back.meta["dicom"]["bits_stored"] == 12
        assert back.image.max() == 1.0 and np.allclose(back.image * 4095, pixels, atol=1e-3)
    mr = export_dataset(pixels, pydicom.uid.MRImageStorage, PixelSpacing=[1, 1])
    expect_error(save_dataset(mr, tmp_path / "mr.dcm"), "CR, DX or Secondary Capture")


def test_dual_energy_files_take_the_spacing_argument(scan: Scan, tmp_path: Path) -> None:
    back = read_scan(write_scan(scan, tmp_path / "s.npz")[0], spacing_mm=(1.0, 1.1))
    assert back.spacing_mm == (1.0, 1.1) and back.meta["spacing_source"] == "argument"
    assert back.meta["file_spacing_mm"] == list(scan.spacing_mm)
    both = write_scan(scan, tmp_path / "s.dcm")[0]
    bare = edit_dicom(both, tmp_path / "bare.dcm", lambda ds: delattr(ds, "PixelSpacing"))
    assert read_scan(bare, spacing_mm=0.9).spacing_mm == (0.9, 0.9)
    assert read_scan(both).meta == scan.meta  # no argument: meta untouched
