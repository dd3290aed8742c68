"""Simulated scanner exports: determinism, the 8-bit grid, inversion, burned-in ROI
lines at the labels' gaps, labels that follow a resampled grid, and the cohort's
export mode (same bytes with --jobs)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dxaspine.io import read_scan
from dxaspine.scan import Scan, ScanError
from dxaspine.simulate.cohort import CohortConfig, export_rng, simulate_cohort
from dxaspine.simulate.export import (
    ExportOptions,
    export_grid,
    render_export,
    write_export,
)
from dxaspine.simulate.generate import simulate_scan

PLAIN = ExportOptions(
    ratio_jitter=0.0,
    smooth_rate=0.0,
    sharpen_rate=0.0,
    resample_rate=0.0,
    invert_rate=0.0,
    overlay_rate=0.0,
)
"""No random habit: the export is the windowed bone image, on the scan's grid."""


@pytest.fixture(scope="module", params=["hologic-like", "lunar-like"])
def source(request: pytest.FixtureRequest) -> Scan:
    return simulate_scan(7, 0, request.param)


def export(scan: Scan, seed: int, **changes) -> Scan:
    return render_export(scan, np.random.default_rng(seed), replace(ExportOptions(), **changes))


def test_same_seed_same_export(source: Scan) -> None:
    first, again = export(source, 3), export(source, 3)
    assert np.array_equal(first.image, again.image) and first.meta == again.meta
    assert np.array_equal(first.labels, again.labels)
    others = [export(source, seed) for seed in range(4, 10)]
    assert any(o.shape != first.shape or not np.array_equal(o.image, first.image) for o in others)


def test_export_is_a_single_8_bit_image(source: Scan) -> None:
    for seed in range(6):
        scan = export(source, seed)
        assert not scan.is_dual_energy and scan.truth_maps == {}
        pixels = scan.image * 255
        assert np.array_equal(pixels, np.rint(pixels)) and 0 <= pixels.min() < pixels.max() <= 255
        assert scan.meta["truth"] == source.meta["truth"]
        assert scan.meta["inverted"] == scan.meta["export"]["inverted"]
        for key in ("processing", "window", "resampled", "spacing_mm", "overlay"):
            assert key in scan.meta["export"]


def test_bone_is_bright_and_inversion_inverts(source: Scan) -> None:
    plain = render_export(source, np.random.default_rng(0), PLAIN)
    inverted = render_export(source, np.random.default_rng(0), replace(PLAIN, invert_rate=1.0))
    assert not plain.meta["inverted"] and inverted.meta["inverted"]
    assert np.array_equal(inverted.image * 255, 255 - plain.image * 255)
    # Bone bright: nearly every bone pixel above the background's median. (A rank
    # test: the percentile window puts the body's grey level wherever the
    # brightest posterior elements leave it.)
    bone, background = source.labels > 0, source.labels == 0
    assert (plain.image[bone] > np.median(plain.image[background])).mean() > 0.95
    assert (inverted.image[bone] < np.median(inverted.image[background])).mean() > 0.95


def test_overlay_lines_lie_in_the_labels_gaps(source: Scan) -> None:
    options = replace(PLAIN, overlay_rate=1.0, line_jitter_px=2)
    scan = render_export(source, np.random.default_rng(1), options)
    overlay = scan.meta["export"]["overlay"]
    box, thickness = overlay["box"], overlay["thickness_px"]
    assert len(overlay["lines"]) == 3  # L1/L2, L2/L3, L3/L4
    for line in overlay["lines"]:
        # between the bodies: below the last row mostly of the upper vertebra, above
        # the first row mostly of the lower one (give or take the 2 px of jitter)
        counts = [(source.labels == v).sum(axis=1) for v in line["between"]]
        body_rows = [np.flatnonzero(c >= 0.5 * c.max()) for c in counts]
        assert body_rows[0][-1] - 2 <= line["row"] <= body_rows[1][0] + 2
        assert body_rows[0][-1] < body_rows[1][0]
        # a full-width white line in the image at that row, across the ROI box
        span = scan.image[line["row"] : line["row"] + thickness, box["left"] : box["right"] + 1]
        assert (span == 1.0).all()
    left = scan.image[box["top"] : box["bottom"] + 1, box["left"]]
    assert (left == 1.0).all()
    assert (scan.labels[:, : box["left"]] == 0).all() and (scan.labels[: box["top"]] == 0).all()
    text = overlay["text"]["box"]
    glyphs = scan.image[text["top"] : text["top"] + text["rows"], text["left"] :][:, : text["cols"]]
    assert (glyphs == 1.0).any()


def test_overlays_are_white_on_inverted_exports_too(source: Scan) -> None:
    options = replace(PLAIN, overlay_rate=1.0, invert_rate=1.0)
    scan = render_export(source, np.random.default_rng(2), options)
    line = scan.meta["export"]["overlay"]["lines"][0]
    box = scan.meta["export"]["overlay"]["box"]
    assert (scan.image[line["row"], box["left"] : box["right"] + 1] == 1.0).all()


def test_resampled_export_keeps_labels_on_its_grid(source: Scan) -> None:
    options = replace(PLAIN, resample_rate=1.0, export_spacing_mm=(0.5, 0.5))
    scan = render_export(source, np.random.default_rng(4), options)
    shape, spacing = export_grid(source.shape, source.spacing_mm, 0.5)
    assert scan.shape == shape and scan.labels.shape == shape and scan.mask.shape == shape
    assert scan.spacing_mm == pytest.approx(spacing) and spacing == pytest.approx((0.5, 0.5), 0.02)
    extent = np.multiply(scan.shape, scan.spacing_mm)
    assert extent == pytest.approx(np.multiply(source.shape, source.spacing_mm))
    for label in range(1, 5):  # same vertebra, same place and area in mm
        before, after = source.labels == label, scan.labels == label
        area = before.sum() * np.prod(source.spacing_mm)
        assert after.sum() * np.prod(scan.spacing_mm) == pytest.approx(area, rel=0.05)
        centre_before = np.argwhere(before).mean(axis=0) + 0.5
        centre_after = np.argwhere(after).mean(axis=0) + 0.5
        shift_mm = centre_after * scan.spacing_mm - centre_before * source.spacing_mm
        assert np.abs(shift_mm).max() < 0.5
    # the image follows: bone under the labels is brighter than around them
    assert scan.image[scan.labels > 0].mean() > scan.image[scan.labels == 0].mean() + 0.2
    assert np.array_equal(scan.mask, (scan.labels > 0).astype(np.uint8))


def test_write_export_honours_spacing_in_file(source: Scan, tmp_path: Path) -> None:
    scans = [export(source, seed, omit_spacing_rate=rate) for seed, rate in ((0, 1.0), (0, 0.0))]
    without, with_spacing = scans
    assert not without.meta["export"]["spacing_in_file"]
    assert with_spacing.meta["export"]["spacing_in_file"]
    write_export(without, tmp_path / "a.dcm")
    write_export(with_spacing, tmp_path / "b.dcm")
    with pytest.raises(ScanError, match="--spacing-mm"):
        read_scan(tmp_path / "a.dcm")
    back = read_scan(tmp_path / "b.dcm")
    assert np.array_equal(back.image, with_spacing.image)
    assert back.spacing_mm == pytest.approx(with_spacing.spacing_mm)


def test_render_export_needs_both_energies(source: Scan) -> None:
    single = export(source, 0)
    with pytest.raises(ValueError, match="needs a dual-energy scan"):
        render_export(single, np.random.default_rng(0))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_cohort_export_mode(tmp_path: Path) -> None:
    config = CohortConfig(n_scans=2, seed=5, device="lunar-like", export=True)
    simulate_cohort(config, tmp_path / "serial", show_progress=False)
    simulate_cohort(replace(config, jobs=2), tmp_path / "parallel", show_progress=False)
    assert digests(tmp_path / "serial") == digests(tmp_path / "parallel")
    with open(tmp_path / "serial" / "cohort.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for index, row in enumerate(rows):
        scan = read_scan(tmp_path / "serial" / row["file"])
        assert not scan.is_dual_energy and scan.labels is not None
        expected = render_export(simulate_scan(5, index, "lunar-like"), export_rng(5, index))
        assert np.array_equal(scan.image, expected.image) and scan.meta == expected.meta
        assert row["export_inverted"] == str(int(scan.meta["inverted"]))
