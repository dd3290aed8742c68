"""Which levels the shipped model gives the chest CT's vertebrae (`ct` pose,
photon-noise draw 0): for each reference vertebra, how many of its pixels get
each predicted label (0 = left out), and the first row of each mask. SIMULATED
scans: real anatomy, dxaspine's image.

    python docs/experiments/probes/cxr_levels.py cxr.nii.gz mask.nii.gz
"""

import sys

import numpy as np

from dxaspine.infer import Predictor
from dxaspine.simulate.ct_scan import project_ct, scan_from_projection


def main() -> None:
    predictor = Predictor("dual-energy-bone", "cpu")
    projection, source = project_ct(sys.argv[1], sys.argv[2])
    for device in ("hologic-like", "lunar-like"):
        scan = scan_from_projection(projection, source, device, 0)
        predicted = predictor.segment(scan).labels
        parts = []
        for level in (1, 2, 3):
            names, counts = np.unique(predicted[scan.labels == level], return_counts=True)
            parts.append(
                f"L{level} -> " + ", ".join(f"{n}:{c}" for n, c in zip(names, counts, strict=True))
            )
        top_reference = np.flatnonzero((scan.labels > 0).any(axis=1)).min()
        top_predicted = np.flatnonzero((predicted > 0).any(axis=1)).min()
        print(f"{device}: " + "; ".join(parts))
        print(f"  first row: reference {top_reference}, model {top_predicted}")


if __name__ == "__main__":
    main()
