"""Scan I/O: round trips, byte determinism, bad input and safe writes, for NPZ,
DICOM and PNG/TIFF pairs. Scans come from the seeded `make_scan` fixture."""

from __future__ import annotations

import hashlib
import json
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
    expect_error(tmp_path / "photo.png", "not part of a pair")


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
