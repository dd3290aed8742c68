"""From a scan to the network's input grid and back.

Training and inference share these functions, so a model sees at inference
exactly what it saw in training. Every scan is resampled to one working
spacing (pixel size differences between devices then do not matter), each
input image is normalised on its own (mean 0, SD 1), and the network's class
probabilities are resampled back to the scan's own grid before the argmax,
which keeps sub-pixel boundaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage.transform import resize

from dxaspine.network import N_CLASSES
from dxaspine.scan import Scan


@dataclass(frozen=True)
class Preprocessing:
    """Settings saved with every model: the working grid and normalisation."""

    spacing_mm: float = 1.0
    """Isotropic working pixel size the network runs at."""

    def to_dict(self) -> dict:
        return asdict(self)

    def working_shape(
        self, shape: tuple[int, int], spacing_mm: tuple[float, float]
    ) -> tuple[int, int]:
        return (
            max(1, round(shape[0] * spacing_mm[0] / self.spacing_mm)),
            max(1, round(shape[1] * spacing_mm[1] / self.spacing_mm)),
        )


def soft_tissue_ratio(low: np.ndarray, high: np.ndarray) -> float:
    """The scan's own low/high log-attenuation ratio, fitted over every pixel
    (least-squares slope through 0). Most of a lumbar field is soft tissue, so
    this is close to its R_st; no device calibration is needed."""
    high = high.astype(np.float64)
    denominator = float(np.sum(high * high))
    return float(np.sum(low.astype(np.float64) * high) / denominator) if denominator > 0 else 1.0


def bone_image(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """low - R_st high: the dual-energy subtraction DXA rests on. Soft tissue,
    organs and gas largely cancel and bone remains (scaled, not in g/cm2:
    `scores.bone_areal_density` is the calibrated one)."""
    return (low - soft_tissue_ratio(low, high) * high).astype(np.float32)


def input_image(scan: Scan, name: str) -> np.ndarray:
    """One network input of a scan by name: "low", "high", "bone" (`bone_image`)
    or "image"."""
    if name == "bone" and scan.low is not None and scan.high is not None:
        return bone_image(scan.low, scan.high)
    image = getattr(scan, name, None)
    if image is None:
        kind = "dual-energy" if name == "image" else "single-image"
        raise ValueError(f"this model needs the '{name}' image, which a {kind} scan does not have")
    return image


def normalise(image: np.ndarray) -> np.ndarray:
    """Mean 0, SD 1 over the image: removes device gain and patient size offsets."""
    image = image.astype(np.float32)
    sd = float(image.std())
    return (image - float(image.mean())) / (sd if sd > 1e-6 else 1.0)


def resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Linear resampling with anti-aliasing when shrinking."""
    if image.shape == tuple(shape):
        return image.astype(np.float32)
    shrinking = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    return resize(
        image, shape, order=1, mode="edge", anti_aliasing=shrinking, preserve_range=True
    ).astype(np.float32)


def network_input(scan: Scan, inputs: tuple[str, ...], plan: Preprocessing) -> np.ndarray:
    """(channels, rows, cols) float32 on the working grid, each channel normalised."""
    shape = plan.working_shape(scan.shape, scan.spacing_mm)
    return np.stack([normalise(resample(input_image(scan, name), shape)) for name in inputs])


def pixel_noise_sd(image: np.ndarray) -> float:
    """Robust per-pixel noise SD of an image: 1.4826 x the median absolute
    deviation of horizontally neighbouring pixel differences, over sqrt(2).
    Smooth anatomy barely moves neighbouring pixels, so this reads the
    (high-frequency) photon noise rather than the image's spread."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or image.shape[1] < 2:
        raise ValueError(f"need a 2-D image at least 2 pixels wide, got shape {image.shape}")
    differences = (image[:, 1:] - image[:, :-1]) / np.sqrt(2)
    return float(1.4826 * np.median(np.abs(differences - np.median(differences))))


def soft_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One-hot label map resampled to `shape` by area: (classes, rows, cols) fractions
    that sum to 1, the training target on the working grid."""
    one_hot = np.stack([(labels == c).astype(np.float32) for c in range(N_CLASSES)])
    resampled = np.stack([resample(channel, shape) for channel in one_hot])
    resampled = np.clip(resampled, 0.0, 1.0)
    return resampled / np.maximum(resampled.sum(axis=0, keepdims=True), 1e-6)


def probabilities_to_labels(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Class probabilities on the working grid -> uint8 label map on the scan grid.

    A pixel is spine where the probability of background is below one half
    (the union of L1..L4 decided as the binary task it is), and takes the most
    probable vertebra there. A plain argmax would drop pixels whose vertebra
    is uncertain between two neighbours although they are surely spine.
    """
    resampled = np.stack([resample(channel, shape) for channel in probabilities])
    vertebra = 1 + resampled[1:].argmax(axis=0)
    return np.where(resampled[0] < 0.5, vertebra, 0).astype(np.uint8)
