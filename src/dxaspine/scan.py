"""The `Scan`: one DXA lumbar-spine acquisition, either both energies
(dual-energy) or the scanner's exported image (single-image), with its pixel
spacing, metadata and optional reference data. Every reader returns one and
every writer takes one, so validation lives here, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dxaspine.labels import VERTEBRAE

MIN_SIZE_PX = 32
"""Smallest accepted image side: below this no lumbar spine can be resolved."""


class ScanError(ValueError):
    """A scan that cannot be used, with a one-line reason naming the file."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}" if source else problem)


@dataclass
class Scan:
    """One DXA scan, in one of two forms.

    - **dual-energy**: `low` and `high` are float32 log attenuations -ln(I/I0),
      rows x cols. `image` may be present too (say, the scanner's export of
      the same acquisition).
    - **single-image**: only `image`, the scanner's exported picture (8-bit
      DICOM or PNG) as float32 grey values in 0..1, as a viewer displays it:
      MONOCHROME1 already undone. Usually bone bright; `meta["inverted"]` is
      True when the image is known to be bone-dark, False when known
      bone-bright, absent when unknown.

    Row 0 is cranial (T12 side). `spacing_mm` is (row, col) pixel spacing,
    always required. `mask` is the uint8 0/1 L1-L4 bone mask and `labels` the
    uint8 vertebra map (0 background, 1..4 = L1..L4), both optional. `meta` is
    JSON-serialisable: device profile, ids, and for simulated scans the ground
    truth under "truth". `truth_maps` holds optional simulator ground-truth
    images (areal densities, g/cm2).
    """

    low: np.ndarray | None = None
    high: np.ndarray | None = None
    spacing_mm: tuple[float, float] = None  # type: ignore[assignment]  # required, validated
    meta: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None
    labels: np.ndarray | None = None
    truth_maps: dict[str, np.ndarray] = field(default_factory=dict)
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def is_dual_energy(self) -> bool:
        """True when both energies are present (BMD needs them)."""
        return self.low is not None and self.high is not None

    @property
    def shape(self) -> tuple[int, int]:
        pixels = self.low if self.low is not None else self.image
        assert pixels is not None, "a validated scan has low or image"
        return (int(pixels.shape[0]), int(pixels.shape[1]))

    @property
    def device(self) -> str | None:
        return self.meta.get("device")

    @property
    def scan_id(self) -> str | None:
        return self.meta.get("scan_id")

    @property
    def patient_id(self) -> str | None:
        return self.meta.get("patient_id")

    @property
    def pixel_area_cm2(self) -> float:
        return self.spacing_mm[0] * self.spacing_mm[1] / 100.0

    def reference_mask(self) -> np.ndarray | None:
        """The binary L1-L4 mask: `mask` if present, else the union of `labels`."""
        if self.mask is not None:
            return self.mask
        if self.labels is not None:
            return (self.labels > 0).astype(np.uint8)
        return None

    def validate(self, source: str = "") -> None:
        """Check types, shapes and values; raise ScanError(source, problem) on the first fault.

        Normalises in place what is unambiguous (float energies and image to
        float32, spacing to a tuple of floats, 0/1 or bool masks to uint8).
        """
        source = source or self.meta.get("source", "")
        if self.low is None and self.high is None:
            if self.image is None:
                raise ScanError(
                    source,
                    "a scan needs both energies ('low' and 'high') or one exported 'image'",
                )
        elif self.low is None or self.high is None:
            given, lacking = ("low", "high") if self.high is None else ("high", "low")
            raise ScanError(
                source,
                f"has '{given}' but no '{lacking}': a dual-energy scan needs both energies",
            )
        else:
            for name in ("low", "high"):
                setattr(self, name, _check_float_image(getattr(self, name), name, source))
            if self.low.shape != self.high.shape:
                raise ScanError(
                    source,
                    f"energies differ in shape: low {self.low.shape} vs high {self.high.shape}",
                )
        if self.image is not None:
            self.image = _check_float_image(self.image, "image", source)
            if self.image.size and (self.image.min() < 0 or self.image.max() > 1):
                raise ScanError(
                    source,
                    f"'image' grey values must lie in 0..1, got {self.image.min():g}.."
                    f"{self.image.max():g} (divide 8-bit pixels by 255)",
                )
            if self.low is not None and self.image.shape != self.low.shape:
                raise ScanError(
                    source,
                    f"'image' shape {self.image.shape} does not match the energies "
                    f"{self.low.shape}",
                )
        shape = self.shape
        if min(shape) < MIN_SIZE_PX:
            raise ScanError(
                source, f"image {shape} is smaller than {MIN_SIZE_PX}x{MIN_SIZE_PX} pixels"
            )
        self.spacing_mm = _check_spacing(self.spacing_mm, source)
        self.mask = _check_label_image(self.mask, "mask", shape, 1, source)
        self.labels = _check_label_image(self.labels, "labels", shape, max(VERTEBRAE), source)
        for name, image in self.truth_maps.items():
            if not isinstance(image, np.ndarray) or image.shape != shape:
                raise ScanError(source, f"truth map '{name}' does not match the image shape")


def _check_float_image(image: Any, name: str, source: str) -> np.ndarray:
    """A 2-D finite floating image, as float32."""
    if not isinstance(image, np.ndarray):
        raise ScanError(source, f"'{name}' is not an array")
    if image.ndim != 2:
        raise ScanError(source, f"'{name}' must be 2-D (rows x cols), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        what = "grey values in 0..1" if name == "image" else "log attenuations"
        raise ScanError(source, f"'{name}' must hold floating-point {what}, got {image.dtype}")
    if not np.isfinite(image).all():
        raise ScanError(source, f"'{name}' contains NaN or infinite pixels")
    return image.astype(np.float32, copy=False)


def _check_spacing(spacing: Any, source: str) -> tuple[float, float]:
    if spacing is None:
        raise ScanError(source, "spacing_mm is required: the (row, col) pixel spacing in mm")
    try:
        values = np.asarray(spacing, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ScanError(source, f"spacing_mm must be numeric, got {spacing!r}") from None
    if values.size != 2:
        raise ScanError(source, f"spacing_mm must hold 2 values (row, col), got {values.size}")
    if not np.isfinite(values).all() or (values <= 0).any():
        raise ScanError(source, f"spacing_mm must be positive and finite, got {values.tolist()}")
    return (float(values[0]), float(values[1]))


def _check_label_image(
    image: np.ndarray | None, name: str, shape: tuple[int, ...], max_label: int, source: str
) -> np.ndarray | None:
    if image is None:
        return None
    if not isinstance(image, np.ndarray) or image.shape != shape:
        got = getattr(image, "shape", type(image).__name__)
        raise ScanError(source, f"'{name}' shape {got} does not match the image shape {shape}")
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not np.issubdtype(image.dtype, np.integer):
        raise ScanError(source, f"'{name}' must be an integer image, got {image.dtype}")
    if image.size and (image.min() < 0 or image.max() > max_label):
        raise ScanError(
            source, f"'{name}' values must lie in 0..{max_label}, got {image.min()}..{image.max()}"
        )
    return image.astype(np.uint8, copy=False)
