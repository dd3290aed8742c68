"""How much posterior-element bone the labels hold beside the bodies, and how
bright it is, on CT-derived and procedural scans (noise-free truth maps).

'Beside the body' is `benchmarks/realism.py`'s `beside_body`: label pixels in
a row the vertebra's body crosses, outside the body's extent there
(transverse-process roots and pedicle walls inside the column, protocol §2).
Per vertebra: its area (cm2); where its rows lie along the body (share in the
top, middle and bottom third of the body's rows); its mean vertebral mineral
over the body's median (how bright it is against the body); its mean width
per row (mm). SIMULATED scans: real or procedural anatomy, dxaspine's image.

    python docs/experiments/probes/beside_body.py CT LABELS [CT LABELS ...] [--procedural 10]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from dxaspine.simulate.ct_scan import project_ct, scan_from_projection
from dxaspine.simulate.generate import RenderOptions, simulate_scan

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import realism

CLEAN = RenderOptions(noise=False, truth_maps=True)


def beside_figures(scan) -> dict[str, dict[str, float]]:
    """Per vertebra: area_cm2, thirds (top, middle, bottom), relative_mineral, width_mm."""
    labels, body_labels = scan.labels, scan.truth_maps["body_labels"]
    row_mm, col_mm = scan.spacing_mm
    mineral = realism.vertebral_mineral(scan)
    beside = realism.beside_body(labels, body_labels)
    figures = {}
    for level, name in enumerate(realism.LUMBAR, start=1):
        body = body_labels == level
        pixels = beside & (labels == level)
        if not body.any() or not pixels.any():
            continue
        body_rows = np.flatnonzero(body.any(axis=1))
        rows, _ = np.nonzero(pixels)
        along = (rows - body_rows.min()) / (body_rows.max() - body_rows.min() + 1)
        figures[name] = {
            "area_cm2": pixels.sum() * row_mm * col_mm / 100,
            "thirds": [np.mean((along >= a) & (along < a + 1 / 3)) for a in (0, 1 / 3, 2 / 3)],
            "relative_mineral": mineral[pixels].mean() / np.median(mineral[body]),
            "width_mm": pixels.sum() / np.unique(rows).size * col_mm,
        }
    return figures


def show(tag: str, figures: dict[str, dict[str, float]]) -> None:
    for name, f in figures.items():
        thirds = " / ".join(f"{t:.2f}" for t in f["thirds"])
        print(
            f"{tag:<24} {name}  {f['area_cm2']:5.2f}  {thirds:>18}  "
            f"{f['relative_mineral']:5.2f}  {f['width_mm']:5.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path, nargs="*", help="CT LABELS CT LABELS ...")
    parser.add_argument("--procedural", type=int, default=10, help="scans per profile")
    parser.add_argument("--seed", type=int, default=3001)
    args = parser.parse_args()
    print("scan                     level  area cm2  rows top/mid/bottom  rel. mineral  width mm")
    for ct, labels in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        for pose in ("ct", "dxa"):
            projection, source = project_ct(ct, labels, pose=pose)
            scan = scan_from_projection(projection, source, "lunar-like", 0, CLEAN)
            show(scan.scan_id, beside_figures(scan))
    pooled: dict[str, list] = {"area_cm2": [], "relative_mineral": [], "width_mm": []}
    for device in ("hologic-like", "lunar-like"):
        for index in range(args.procedural):
            scan = simulate_scan(args.seed, index, device, options=CLEAN)
            for f in beside_figures(scan).values():
                for key in pooled:
                    pooled[key].append(f[key])
    n = len(pooled["area_cm2"])
    summary = ", ".join(
        f"{key} median {np.median(v):.2f} (p10 {np.percentile(v, 10):.2f}, "
        f"p90 {np.percentile(v, 90):.2f})"
        for key, v in pooled.items()
    )
    print(f"procedural ({2 * args.procedural} scans, {n} vertebrae with such pixels): {summary}")


if __name__ == "__main__":
    main()
