"""Report figures: PNG plots from per-scan rows and overlay thumbnails of one scan."""

import io
import math

import numpy as np
from PIL import Image

from dxaspine.report_figures import (
    REFERENCE_CONTOUR_RGB,
    column,
    dice_figure,
    number,
    overlay_thumbnail,
    score_figure,
)


def _rows(n: int = 8) -> list[dict[str, str]]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        reference = 0.8 + 0.05 * i
        rows.append(
            {
                "dice": str(0.95 + 0.005 * i),
                "baseline_dice": str(0.85 + 0.01 * i),
                "bmd_g_cm2_ref": str(reference),
                "bmd_g_cm2_pred": str(reference + rng.normal(0, 0.01)),
                "bmd_g_cm2_baseline": "" if i == 0 else str(reference + 0.05),
                "tbs_ref": "",
                "tbs_pred": "",
                "tbs_baseline": "",
            }
        )
    return rows


def _image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_numbers_from_csv_cells():
    assert number("0.5") == 0.5 and math.isnan(number("")) and math.isnan(number(None))
    assert math.isnan(number("osteopenia"))
    assert np.isnan(column([{"a": "1"}, {}], "a")[1])


def test_plots_are_png_and_repeat_byte_for_byte():
    rows = _rows()
    png = score_figure(rows, "bmd", ["dxaspine", "baseline"])
    assert png is not None and png == score_figure(rows, "bmd", ["dxaspine", "baseline"])
    width, height = _image(png).size
    assert width > 2 * height  # scatter plus two Bland-Altman panels side by side
    assert score_figure(rows, "tbs", ["dxaspine", "baseline"]) is None  # no TBS values at all
    assert _image(dice_figure(rows, ["dxaspine"])).size[0] > 100
    assert dice_figure([], ["dxaspine"]) is None


def test_overlay_thumbnail_outlines_the_reference_in_white(make_scan):
    scan = make_scan(0)
    predicted = np.roll(scan.labels, 3, axis=1)
    image = np.asarray(_image(overlay_thumbnail(scan, scan.labels, predicted, height_px=128)))
    rows, cols = scan.shape
    expected_width = round(128 * cols * scan.spacing_mm[1] / (rows * scan.spacing_mm[0]))
    assert image.shape == (128, expected_width, 3)
    white = (image == REFERENCE_CONTOUR_RGB).all(axis=2)
    assert 50 < white.sum() < image.shape[0] * image.shape[1] / 4
