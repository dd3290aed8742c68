"""Tests for dxaspine.qc on hand-built label maps with known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from dxaspine.qc import CODES, Finding, QCConfig, check_labels, gap_mm, qc_report

SPACING_MM = (1.0, 0.5)
HEIGHT_MM, WIDTH_MM, DISC_MM, TOP_MM = 28.0, 45.0, 10.0, 20.0


def spine(
    shape_mm=(200.0, 120.0), heights_mm=(HEIGHT_MM,) * 4, spacing_mm=SPACING_MM, shift_mm=None
):
    """L1..L4 as rectangles WIDTH_MM wide, stacked from TOP_MM with DISC_MM discs;
    `shift_mm` moves a vertebra (and those below it) down: {level: mm}."""
    rows, cols = (round(s / d) for s, d in zip(shape_mm, spacing_mm, strict=True))
    labels = np.zeros((rows, cols), dtype=np.uint8)
    top = TOP_MM
    left = round((shape_mm[1] - WIDTH_MM) / 2 / spacing_mm[1])
    right = left + round(WIDTH_MM / spacing_mm[1])
    for level, height in enumerate(heights_mm, start=1):
        top += (shift_mm or {}).get(level, 0.0)
        first, last = round(top / spacing_mm[0]), round((top + height) / spacing_mm[0])
        labels[first:last, left:right] = level
        top += height + DISC_MM
    return labels


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def test_a_normal_spine_needs_no_review():
    labels = spine()
    assert check_labels(labels, SPACING_MM) == []
    assert qc_report([]) == {"review": False, "findings": []}


def test_a_missing_vertebra_is_named():
    labels = spine()
    labels[labels == 4] = 0
    (finding,) = check_labels(labels, SPACING_MM)
    assert finding == Finding("missing", ("L4",), "no label for L4")


def test_a_vertebra_cut_by_the_image_edge_is_flagged():
    labels = spine()
    bottom_of_l3 = np.flatnonzero((labels == 3).any(axis=1))[-1]
    cut = labels[: bottom_of_l3 + 20]  # ends inside L4
    findings = check_labels(cut, SPACING_MM)
    assert check_labels(labels, SPACING_MM) == []
    assert codes(findings)[0] == "at_image_edge"
    assert findings[0].vertebrae == ("L4",)
    assert "L4 touches the image's edge" in findings[0].message
    assert all("L4" in f.vertebrae for f in findings)  # its cut area is flagged too


def test_a_squeezed_vertebra_is_flagged_against_both_neighbours():
    labels = spine(heights_mm=(HEIGHT_MM, 14.0, HEIGHT_MM, HEIGHT_MM))  # 6.3 cm2: area passes
    findings = check_labels(labels, SPACING_MM)
    pairs = {(f.code, f.vertebrae) for f in findings}
    assert pairs == {
        ("neighbour_area", ("L1", "L2")),
        ("neighbour_height", ("L1", "L2")),
        ("neighbour_area", ("L2", "L3")),
        ("neighbour_height", ("L2", "L3")),
    }


def test_neighbour_ratio_limit_is_inclusive_of_normal_variation():
    # 20 % shorter than its neighbours: a normal spread, no finding at the 0.6 limit.
    labels = spine(heights_mm=(HEIGHT_MM, 0.8 * HEIGHT_MM, HEIGHT_MM, HEIGHT_MM))
    assert check_labels(labels, SPACING_MM) == []
    strict = QCConfig(min_neighbour_ratio=0.85)
    assert "neighbour_height" in codes(check_labels(labels, SPACING_MM, strict))


def test_areas_are_in_cm2_with_anisotropic_spacing():
    labels = spine()
    # The same pixels at half the spacing each way cover a quarter of the area: 3.15 cm2.
    findings = check_labels(labels, (SPACING_MM[0] / 2, SPACING_MM[1] / 2))
    assert codes(findings) == ["area"] * 4
    assert findings[0].message == "L1 covers 3.1 cm2, outside 6-30 cm2"


def test_a_wide_gap_suggests_a_missed_vertebra():
    labels = spine(shift_mm={3: 30.0})
    findings = check_labels(labels, SPACING_MM)
    assert codes(findings) == ["gap"]
    assert findings[0].vertebrae == ("L2", "L3")
    assert "41 mm apart" in findings[0].message  # 40 mm of background, centre to centre


def test_gap_is_the_shortest_distance_in_mm():
    upper = np.zeros((40, 10), dtype=bool)
    lower = np.zeros((40, 10), dtype=bool)
    upper[:10, :] = True
    lower[30:, :] = True
    assert gap_mm(upper, lower, (0.5, 2.0)) == pytest.approx(21 * 0.5)  # rows 9 to 30
    lower[10, 5] = True  # the next row
    assert gap_mm(upper, lower, (0.5, 2.0)) == pytest.approx(0.5)
    lower[9, 5] = True  # overlapping
    assert gap_mm(upper, lower, (0.5, 2.0)) == 0.0


def test_no_labels_at_all_is_one_finding():
    (finding,) = check_labels(np.zeros((50, 50), dtype=np.uint8), SPACING_MM)
    assert finding.code == "missing" and finding.vertebrae == ("L1", "L2", "L3", "L4")


def test_report_lists_findings_as_plain_data():
    labels = spine()
    labels[labels == 1] = 0
    report = qc_report(check_labels(labels, SPACING_MM))
    assert report == {
        "review": True,
        "findings": [{"code": "missing", "vertebrae": ["L1"], "message": "no label for L1"}],
    }
    assert all(code in CODES for code in ("missing", "at_image_edge", "area", "gap"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_area_cm2": 0.0},
        {"min_area_cm2": 20.0, "max_area_cm2": 10.0},
        {"min_neighbour_ratio": 1.0},
        {"max_gap_mm": 0.0},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError, match="QCConfig"):
        QCConfig(**kwargs)


def test_a_3d_map_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        check_labels(np.zeros((2, 3, 4), dtype=np.uint8), SPACING_MM)


def test_segmentation_qc_reads_its_own_labels_and_spacing():
    from dxaspine.infer import Segmentation

    labels = spine()
    assert Segmentation(labels, SPACING_MM).qc() == []
    finer = Segmentation(labels, (SPACING_MM[0] / 2, SPACING_MM[1] / 2))
    assert [f.code for f in finer.qc()] == ["area"] * 4
    assert finer.qc(QCConfig(min_area_cm2=3.0)) == []
