"""Shared fixtures: tiny seeded scans built by hand, never by the simulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dxaspine.scan import Scan


def build_scan(
    seed: int = 0,
    shape: tuple[int, int] = (64, 48),
    spacing_mm: tuple[float, float] = (0.5, 0.6),
    reference: bool = True,
    meta: dict | None = None,
) -> Scan:
    """A seeded random float32 scan (low ~ 0.5..3, high ~ 0.6 x low) with L1/L2 labels."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0.5, 3.0, shape).astype(np.float32)
    high = (0.6 * low + rng.normal(0, 0.01, shape)).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[8:20, 12:36] = 1
    labels[24:36, 12:36] = 2
    if meta is None:
        meta = {
            "scan_id": f"test-{seed:04d}",
            "patient_id": f"P{seed:04d}",
            "device": "hologic-like",
            "truth": {"total_bmd_g_cm2": 1.0, "vertebrae": {"L1": {"bmd_g_cm2": 0.95}}},
        }
    return Scan(
        low=low,
        high=high,
        spacing_mm=spacing_mm,
        meta=meta,
        mask=(labels > 0).astype(np.uint8) if reference else None,
        labels=labels if reference else None,
        truth_maps={"bone_g_cm2": (0.4 * low).astype(np.float32)} if reference else {},
    )


@pytest.fixture
def make_scan() -> Callable[..., Scan]:
    """Factory fixture: make_scan(seed=..., shape=..., reference=...) -> Scan."""
    return build_scan


@pytest.fixture
def scan() -> Scan:
    return build_scan()


def write_prediction(folder: Path, scan_id: str, labels: np.ndarray, spacing_mm) -> Path:
    """A predicted label map as `dxaspine segment` writes it: `<id>_labels.npz`."""
    path = folder / f"{scan_id}_labels.npz"
    np.savez_compressed(path, labels=labels, spacing_mm=np.asarray(spacing_mm))
    return path


def cohort_folders(root: Path) -> tuple[Path, Path]:
    """Empty `pred` and `ref` folders under `root`."""
    pred, ref = root / "pred", root / "ref"
    pred.mkdir()
    ref.mkdir()
    return pred, ref


@pytest.fixture(scope="session")
def make_prediction() -> Callable[..., Path]:
    """Factory fixture: make_prediction(folder, scan_id, labels, spacing_mm) -> path."""
    return write_prediction


@pytest.fixture(scope="session")
def make_cohort_folders() -> Callable[[Path], tuple[Path, Path]]:
    """Factory fixture: make_cohort_folders(root) -> (pred, ref)."""
    return cohort_folders
