"""Cohort summary: how often a segmentation changes the WHO and the TBS category."""

import math

import pytest

from dxaspine.cohort_summary import diagnosis_changes, tbs_category


def _row(who_ref: str, who_pred: str, tbs_ref: float, tbs_pred: float) -> dict:
    return {"who_ref": who_ref, "who_pred": who_pred, "tbs_ref": tbs_ref, "tbs_pred": tbs_pred}


def test_tbs_category_at_and_between_the_cutoffs():
    names = ("normal", "partially degraded", "degraded")
    assert tbs_category(1.350, (1.200, 1.350), names) == "normal"
    assert tbs_category(1.300, (1.350, 1.200), names) == "partially degraded"
    assert tbs_category(1.200, (1.200, 1.350), names) == "degraded"
    assert tbs_category(math.nan, (1.200, 1.350), names) == "unknown"


def test_diagnosis_changes_count_the_moves_and_skip_unknown_categories():
    rows = [
        _row("normal", "normal", 1.40, 1.40),
        _row("normal", "osteopenia", 1.30, 1.36),
        _row("osteoporosis", "osteoporosis", 1.10, 1.25),
        _row("unknown", "normal", 1.40, math.nan),
    ]
    result = diagnosis_changes(rows, ("dxaspine",), tbs_cutoffs=(1.2, 1.35))
    who = result["who"]["dxaspine"]
    assert (who["n"], who["changed"]) == (3, 1)
    assert who["fraction_changed"] == pytest.approx(1 / 3)
    assert who["table"]["normal"] == {"normal": 1, "osteopenia": 1, "osteoporosis": 0}
    tbs = result["tbs"]["dxaspine"]
    assert (tbs["n"], tbs["changed"]) == (3, 2)
    assert result["tbs"]["categories"] == ["normal", "partially degraded", "degraded"]
    assert tbs["table"]["degraded"]["partially degraded"] == 1


def test_default_tbs_categories_are_tertiles_of_the_reference():
    rows = [_row("normal", "normal", value, value) for value in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    result = diagnosis_changes(rows, ("dxaspine",))
    assert result["tbs"]["cutoff_basis"] == "tertiles of the reference TBS"
    low, high = result["tbs"]["cutoffs"]
    assert low == pytest.approx(0.4667, abs=1e-3) and high == pytest.approx(0.6333, abs=1e-3)
    assert result["tbs"]["dxaspine"]["changed"] == 0
    assert all(sum(row.values()) == 2 for row in result["tbs"]["dxaspine"]["table"].values())
