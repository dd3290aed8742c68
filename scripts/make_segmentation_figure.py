"""README figure: the shipped models on fresh simulated scans.

    .venv/bin/python scripts/make_segmentation_figure.py  -> docs/images/segmentation.png

Left to right: a hologic-like and a lunar-like dual-energy scan segmented by
the default dual-energy model (dual-energy-bone), then a simulated scanner
export (8-bit, with burned-in ROI lines) segmented by the single-image model.
Seeds never used in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import dxaspine
from dxaspine.batch import overlay_image
from dxaspine.simulate.export import ExportOptions, render_export
from dxaspine.simulate.generate import simulate_scan

OUT = Path("docs/images/segmentation.png")
HEIGHT_PX = 300


def main() -> None:
    scans = [simulate_scan(4242, 0, "hologic-like"), simulate_scan(4242, 1, "lunar-like")]
    overlays = ExportOptions(overlay_rate=1.0, invert_rate=0.0)
    scans.append(
        render_export(simulate_scan(4242, 2, "hologic-like"), np.random.default_rng(3), overlays)
    )
    tiles = []
    for scan in scans:
        tile = Image.fromarray(overlay_image(scan, dxaspine.segment(scan, device="cpu").labels))
        tiles.append(tile.resize((round(tile.width * HEIGHT_PX / tile.height), HEIGHT_PX)))
    sheet = Image.new("RGB", (sum(t.width + 6 for t in tiles), HEIGHT_PX))
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + 6
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(OUT, optimize=False)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
