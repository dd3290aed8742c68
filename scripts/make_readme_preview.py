"""Regenerate docs/images/preview.png: four simulated scans (bone image | labels)."""

from __future__ import annotations

from pathlib import Path

from dxaspine.preview import montage
from dxaspine.simulate.generate import simulate_scan

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "preview.png"


def main() -> None:
    scans = [simulate_scan(0, i, "hologic-like") for i in range(1, 4)]
    scans.append(simulate_scan(0, 3, "lunar-like"))
    print(f"wrote {montage(scans, OUT, columns=2)}")


if __name__ == "__main__":
    main()
