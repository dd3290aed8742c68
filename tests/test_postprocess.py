"""Tests for dxaspine.postprocess on small hand-built label maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dxaspine.postprocess import (
    SPINE_MIN_FRACTION,
    PostprocessConfig,
    drop_small_clusters,
    enforce_order,
    fill_holes,
    one_component_per_vertebra,
    postprocess,
)

SPACING_MM = (0.9, 0.6)
PIXEL_MM2 = SPACING_MM[0] * SPACING_MM[1]
#: Top and bottom row (exclusive) of L1..L4; 6-row disc gaps between them.
ROWS = {1: (10, 28), 2: (34, 52), 3: (58, 76), 4: (82, 100)}
COLS = (15, 45)
VERTEBRA_PX = 18 * 30


def _spine(shape: tuple[int, int] = (130, 80)) -> np.ndarray:
    """Four stacked 18 x 30 rectangles, L1 on top, separated by background gaps."""
    labels = np.zeros(shape, dtype=np.uint8)
    for lab, (top, bottom) in ROWS.items():
        labels[top:bottom, COLS[0] : COLS[1]] = lab
    return labels


def test_clean_spine_passes_unchanged():
    clean = _spine()
    out = postprocess(clean, SPACING_MM)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, clean)


@pytest.mark.parametrize("side", [5, 10])  # 13.5 mm2: below min area; 54 mm2: below 25 %
def test_far_false_cluster_is_removed(side):
    clean = _spine()
    noisy = clean.copy()
    noisy[110 : 110 + side, 60 : 60 + side] = 3
    np.testing.assert_array_equal(postprocess(noisy, SPACING_MM), clean)


def test_min_area_is_in_mm2_with_anisotropic_spacing():
    # 20 mm2 / (0.9 x 0.6 mm2) = 37.04 pixels: 37 pixels are below, 38 above.
    for n_px, survives in ((37, False), (38, True)):
        labels = np.zeros((20, 20), dtype=np.uint8)
        labels.ravel()[np.arange(n_px) // 6 * 20 + np.arange(n_px) % 6] = 1
        assert int((labels > 0).sum()) == n_px
        out = postprocess(labels, SPACING_MM, PostprocessConfig(min_cluster_area_mm2=20.0))
        assert out.any() == survives, (n_px, n_px * PIXEL_MM2)


def test_spine_rule_keeps_components_of_a_quarter_of_the_largest():
    largest = VERTEBRA_PX
    quarter_side = int(np.ceil(np.sqrt(SPINE_MIN_FRACTION * largest)))  # 12 x 12 = 144 >= 135
    for side, survives in ((quarter_side, True), (quarter_side - 1, False)):
        labels = _spine(shape=(200, 160))  # the cluster lies > SPINE_GAP_MM from the spine
        labels[170 : 170 + side, 130 : 130 + side] = 2
        out = drop_small_clusters(labels, SPACING_MM, min_cluster_area_mm2=20.0)
        assert out[170:, 130:].any() == survives, side
        np.testing.assert_array_equal(out[:, :60], labels[:, :60])


def test_small_vertebra_next_to_the_spine_is_kept():
    """L1 clipped by the field of view: small, but one disc gap from L2."""
    labels = _spine()
    top, bottom = ROWS[1]
    labels[top : bottom - 4] = 0  # a 4-row sliver of L1: 4 x 30 px < 25 % of a vertebra
    assert (labels == 1).sum() * PIXEL_MM2 >= 20.0
    assert (labels == 1).sum() < SPINE_MIN_FRACTION * VERTEBRA_PX
    out = drop_small_clusters(labels, SPACING_MM, min_cluster_area_mm2=20.0)
    np.testing.assert_array_equal(out, labels)


def test_hole_inside_a_vertebra_takes_its_label():
    clean = _spine()
    holed = clean.copy()
    holed[40:46, 25:33] = 0
    np.testing.assert_array_equal(postprocess(holed, SPACING_MM), clean)
    kept = postprocess(holed, SPACING_MM, PostprocessConfig(fill_holes=False))
    np.testing.assert_array_equal(kept, holed)


def test_disc_space_closed_at_its_ends_stays_background():
    """Two vertebrae touching at their lateral ends enclose the disc space: not a hole."""
    closed = _spine()
    closed[ROWS[2][1] : ROWS[3][0], COLS[0] : COLS[0] + 2] = 2
    closed[ROWS[2][1] : ROWS[3][0], COLS[1] - 2 : COLS[1]] = 3
    out = fill_holes(closed, SPACING_MM)
    np.testing.assert_array_equal(out, closed)
    assert (out[ROWS[2][1] : ROWS[3][0], COLS[0] + 2 : COLS[1] - 2] == 0).all()


def test_hole_touching_another_vertebra_is_filled_only_when_one_label_encloses_it():
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[2:18, 2:18] = 3
    labels[6:10, 6:14] = 0  # inside L3 alone: a hole
    labels[12:15, 6:9] = 2  # a stray L2 island inside L3 stays L2
    out = fill_holes(labels, SPACING_MM)
    assert (out[6:10, 6:14] == 3).all()
    assert (out[12:15, 6:9] == 2).all()


def test_fragment_attached_to_the_neighbour_joins_the_neighbour():
    clean = _spine()
    split = clean.copy()
    split[70:76, COLS[0] : COLS[1]] = 2  # bottom of L3 predicted as L2, apart from L2
    split[57, COLS[1]] = 1  # one L1 pixel touching L3's top-right corner diagonally
    out = postprocess(split, SPACING_MM)
    np.testing.assert_array_equal(out > 0, split > 0)  # the union loses nothing
    np.testing.assert_array_equal(out[out != split], 3)
    assert out[57, COLS[1]] == 3
    np.testing.assert_array_equal(out[:57], clean[:57])
    np.testing.assert_array_equal(out[58:], clean[58:])
    unmerged = postprocess(split, SPACING_MM, PostprocessConfig(one_component_per_vertebra=False))
    np.testing.assert_array_equal(unmerged, split)


def test_fragment_pixels_join_the_nearest_kept_pixel_in_mm():
    labels = np.zeros((20, 30), dtype=np.uint8)
    labels[2:7, 2:18] = 2
    labels[7:19, 2:7] = 3
    labels[7:19, 20:29] = 4
    labels[7:13, 7:13] = 4  # smaller L4 fragment touching L2 above and L3 on the left
    out = one_component_per_vertebra(labels, SPACING_MM)
    assert out[7, 10] == 2  # L2 is one row (0.9 mm) up
    # (9, 10): L2 is 3 rows up (2.7 mm), L3 is 4 columns left (2.4 mm).
    assert out[9, 10] == 3
    np.testing.assert_array_equal(out > 0, labels > 0)
    np.testing.assert_array_equal(out[:, 19:], labels[:, 19:])


def test_detached_fragment_far_away_is_removed():
    clean = _spine()
    stray = clean.copy()
    stray[110:122, 60:72] = 2  # 144 px: large enough to pass the spine rule of step 1
    np.testing.assert_array_equal(postprocess(stray, SPACING_MM), clean)
    unmerged = postprocess(stray, SPACING_MM, PostprocessConfig(one_component_per_vertebra=False))
    np.testing.assert_array_equal(unmerged, stray)


def test_swapped_labels_are_reordered():
    clean = _spine()
    swapped = clean.copy()
    swapped[clean == 1] = 2
    swapped[clean == 2] = 1
    np.testing.assert_array_equal(postprocess(swapped, SPACING_MM), clean)
    unordered = postprocess(swapped, SPACING_MM, PostprocessConfig(enforce_order=False))
    np.testing.assert_array_equal(unordered, swapped)


def test_reordering_keeps_missing_labels_missing():
    clean = _spine()
    clean[clean == 1] = 0
    shuffled = clean.copy()
    shuffled[clean == 2] = 4
    shuffled[clean == 3] = 2
    shuffled[clean == 4] = 3
    out = enforce_order(shuffled)
    np.testing.assert_array_equal(out, clean)
    assert set(np.unique(out)) == {0, 2, 3, 4}


def test_input_is_not_modified():
    clean = _spine()
    messy = clean.copy()
    messy[clean == 1] = 2
    messy[clean == 2] = 1
    messy[40:46, 25:33] = 0
    messy[115:118, 70:73] = 4
    before = messy.copy()
    out = postprocess(messy, SPACING_MM)
    np.testing.assert_array_equal(messy, before)
    assert not np.shares_memory(out, messy)
    np.testing.assert_array_equal(out, clean)


@pytest.mark.parametrize("shape", [(0, 5), (12, 9)])
def test_empty_input_gives_empty_output(shape):
    labels = np.zeros(shape, dtype=np.int64)
    out = postprocess(labels, SPACING_MM)
    assert out.shape == shape
    assert out.dtype == np.uint8
    assert not out.any()


@pytest.mark.parametrize(
    ("labels", "spacing_mm", "match"),
    [
        (np.zeros((2, 4, 4), np.uint8), SPACING_MM, "2-D"),
        (np.zeros(4, np.uint8), SPACING_MM, "2-D"),
        (np.full((4, 4), 5, np.uint8), SPACING_MM, "0..4"),
        (np.full((4, 4), -1, np.int8), SPACING_MM, "0..4"),
        (np.zeros((4, 4), np.float32), SPACING_MM, "integer"),
        (np.zeros((4, 4), np.uint8), (0.0, 0.6), "spacing_mm"),
        (np.zeros((4, 4), np.uint8), (0.9, -0.6), "spacing_mm"),
        (np.zeros((4, 4), np.uint8), (0.9,), "spacing_mm"),
        (np.zeros((4, 4), np.uint8), (float("nan"), 0.6), "spacing_mm"),
    ],
)
def test_bad_input_raises(labels, spacing_mm, match):
    with pytest.raises(ValueError, match=match):
        postprocess(labels, spacing_mm)


def test_negative_min_area_is_rejected():
    with pytest.raises(ValueError, match="min_cluster_area_mm2"):
        PostprocessConfig(min_cluster_area_mm2=-1.0)
