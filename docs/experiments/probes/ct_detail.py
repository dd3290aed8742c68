"""Is the chest CT's fine detail its own reconstruction noise? (docs/experiments/probes.md)

1. The CT's noise: SD and correlation of the residual from a 7 x 7 in-plane local
   mean inside the liver and spleen (TotalSegmentator v2 ids 5 and 1, eroded 3
   voxels in-plane), in raw HU. Projected through the bone depth of L1 and L2
   (median count of bone voxels along the ray) it gives the mineral noise the CT
   adds per projected CT pixel, and its second difference across the columns.
2. The observed second difference across the columns of the projected mineral
   inside the same bodies (CT grid, noise-free).
3. Fine detail of the noise-free bone image inside the L1/L2 bodies on the device
   grid (SD of the second difference across columns and along rows over the mean),
   procedural scans (seed 3001, 20 per profile) against the CT-derived scans.

All images are SIMULATED (procedural or projected from a CT by dxaspine).

    .venv/bin/python docs/experiments/probes/ct_detail.py CXR MASK EXAMPLE_CT EXAMPLE_SEG
"""

import sys

import numpy as np
from scipy import ndimage

from dxaspine.preprocess import bone_image
from dxaspine.simulate.ct import HUCalibration, parse_label_map, project, read_ct
from dxaspine.simulate.ct_scan import project_ct, scan_from_projection
from dxaspine.simulate.generate import RenderOptions, simulate_scan

NOISE_FREE = RenderOptions(noise=False, truth_maps=True)
LIVER_SPLEEN = (1, 5)


def second_differences(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Second differences across the columns and along the rows, on the full grid."""
    across = np.zeros_like(image)
    along = np.zeros_like(image)
    across[:, 1:-1] = image[:, 1:-1] - 0.5 * (image[:, :-2] + image[:, 2:])
    along[1:-1, :] = image[1:-1, :] - 0.5 * (image[:-2, :] + image[2:, :])
    return across, along


def ct_noise(hu: np.ndarray, roi: np.ndarray) -> tuple[float, dict[str, list[float]]]:
    """Noise SD (HU) and correlation at lags 1-4 along depth (A) and across columns (L)."""
    kernel = np.ones((1, 7, 7))
    total = ndimage.convolve(np.where(roi, hu, 0.0), kernel, mode="constant")
    count = ndimage.convolve(roi.astype(float), kernel, mode="constant")
    residual = np.where(roi, hu - total / np.maximum(count, 1), 0.0)
    variance = float((residual[roi] ** 2).mean() / (1 - 1 / kernel.size))
    rho: dict[str, list[float]] = {}
    for axis, name in ((2, "A"), (1, "L")):
        rho[name] = []
        for lag in (1, 2, 3, 4):
            head = [slice(None)] * 3
            tail = [slice(None)] * 3
            head[axis], tail[axis] = slice(0, -lag), slice(lag, None)
            both = roi[tuple(head)] & roi[tuple(tail)]
            product = residual[tuple(head)] * residual[tuple(tail)]
            rho[name].append(round(float(product[both].mean() / variance), 3))
    return float(np.sqrt(variance)), rho


def noise_against_detail(ct_path: str, labels_path: str) -> None:
    volume = read_ct(ct_path, labels_path)
    roi = ndimage.binary_erosion(np.isin(volume.labels, LIVER_SPLEEN), np.ones((1, 7, 7)))
    if not roi.any():
        print(f"{volume.ct_name}: no liver or spleen label, no noise estimate")
        return
    hu = volume.hu.astype(np.float64)
    sd_hu, rho = ct_noise(hu, roi)
    calibration = HUCalibration()
    label_map = parse_label_map("totalsegmentator")
    projection = project(volume, label_map, calibration)
    bone = (
        np.isin(volume.labels, list(label_map.vertebrae.values()))
        | np.isin(volume.labels, label_map.bone_labels)
        | (hu > calibration.bone_hu)
    )
    bone_voxels = bone.sum(axis=2)
    depth_cm = volume.spacing_mm[2] / 10
    g_cm2_per_hu = calibration.mineral_mg_cm3_per_hu * 1e-3 * depth_cm
    sum_rho_depth = 1 + 2 * sum(rho["A"])
    across, _ = second_differences(projection.mineral)
    print(
        f"{volume.ct_name} (voxels {' x '.join(f'{s:.2f}' for s in volume.spacing_mm)} mm, "
        f"I x L x A): liver/spleen noise SD {sd_hu:.1f} HU over {int(roi.sum())} voxels; "
        f"correlation along A {rho['A']}, across L {rho['L']}"
    )
    for name in ("L1", "L2"):
        if name not in projection.vertebra_body:
            continue
        body = ndimage.binary_erosion(projection.vertebra_body[name], np.ones((3, 5)))
        depth = float(np.median(bone_voxels[body]))
        noise_g_cm2 = g_cm2_per_hu * sd_hu * np.sqrt(depth * sum_rho_depth)
        noise_across = noise_g_cm2 * np.sqrt(1.5 - 2 * rho["L"][0] + 0.5 * rho["L"][1])
        observed = float(across[body].std())
        print(
            f"  {name}: {depth:.0f} bone voxels along the ray, mineral "
            f"{projection.mineral[body].mean():.3f} g/cm2; the CT's noise adds "
            f"{noise_g_cm2:.4f} g/cm2 per CT pixel; second difference across the columns: "
            f"observed {observed:.4f}, from the CT's noise {noise_across:.4f} "
            f"({noise_across / observed:.0%} of it)"
        )


def relative_detail(scan) -> np.ndarray:
    """Mean over L1 and L2 of (SD across columns, SD along rows) / mean, noise-free bone image."""
    image = bone_image(scan.low, scan.high)
    across, along = second_differences(image)
    out = []
    for level in (1, 2):
        body = ndimage.binary_erosion(scan.truth_maps["body_labels"] == level, np.ones((5, 5)))
        if body.sum() >= 50:
            mean = image[body].mean()
            out.append((across[body].std() / mean, along[body].std() / mean))
    return np.mean(out, axis=0)


def detail_table(cts: list[tuple[str, str]]) -> None:
    print("fine detail of the noise-free bone image inside L1/L2 bodies (SD / mean):")
    projections = [
        (pose, project_ct(ct, labels, pose=pose)) for ct, labels in cts for pose in ("ct", "dxa")
    ]
    for device in ("hologic-like", "lunar-like"):
        procedural = np.array(
            [relative_detail(simulate_scan(3001, i, device, options=NOISE_FREE)) for i in range(20)]
        )
        across, along = procedural.T
        print(
            f"  {device} procedural (20 scans): across columns {across.mean():.3f} "
            f"({across.min():.3f}..{across.max():.3f}), along rows "
            f"{along.mean():.3f} ({along.min():.3f}..{along.max():.3f})"
        )
        for pose, (projection, source) in projections:
            scan = scan_from_projection(projection, source, device, 0, NOISE_FREE)
            across, along = relative_detail(scan)
            scan_id = source["scan_id"]
            print(f"  {device} {scan_id} ({pose} pose): across {across:.3f}, along {along:.3f}")


if __name__ == "__main__":
    pairs = list(zip(sys.argv[1::2], sys.argv[2::2], strict=True))
    for ct, labels in pairs:
        noise_against_detail(ct, labels)
    detail_table(pairs)
