"""Dual-energy image formation: areal densities in, log attenuations out.

One code path for every source of anatomy. For each detector channel the
expected signal per pixel is a polychromatic Beer-Lambert sum over the
energy grid, S = sum_E w(E) e(E) exp(-sum_m (mu/rho)_m(E) sigma_m), with
w the incident photons per pixel and e the signal per photon (its energy for
an energy-integrating detector, 1 for a photon counter). The detector PSF
blurs the expected signal; quantum noise follows (Poisson counts, or the
compound-Poisson variance sum_E w e^2 exp(-tau) for energy integration); the
scan stores -ln(S / S_air).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from dxaspine.simulate.devices import DeviceProfile
from dxaspine.simulate.tables import physics_tables

FWHM_PER_SIGMA = 2.3548


@dataclass(frozen=True)
class Channel:
    """One detector channel trimmed to the energies that carry signal."""

    energy_index: np.ndarray
    photons: np.ndarray
    signal_per_photon: np.ndarray

    @property
    def air_signal(self) -> float:
        """Expected signal with nothing in the beam (the flat field)."""
        return float((self.photons * self.signal_per_photon).sum())


def channels(device: DeviceProfile) -> tuple[Channel, Channel]:
    """The (low, high) channels of a device, dropping energies with no photons."""
    photons_low, photons_high, per_photon_low, per_photon_high = device.channel_weights()
    result = []
    for photons, per_photon in ((photons_low, per_photon_low), (photons_high, per_photon_high)):
        keep = np.flatnonzero(photons > photons.max() * 1e-9)
        result.append(Channel(keep, photons[keep], per_photon[keep]))
    return result[0], result[1]


def expected_signal(
    areal_g_cm2: Mapping[str, np.ndarray], channel: Channel
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free mean signal and its quantum variance for one channel.

    `areal_g_cm2` maps material names of the physics tables (e.g.
    "hydroxyapatite", "muscle", "adipose") to areal-density images of one
    shape. Returns (mean, variance) images of that shape.
    """
    tables = physics_tables()
    names = list(areal_g_cm2)
    shape = np.shape(areal_g_cm2[names[0]])
    sigma = np.stack([np.asarray(areal_g_cm2[m], np.float64).ravel() for m in names])
    mu = np.stack([tables.mu_rho[m][channel.energy_index] for m in names], axis=1)
    transmission = np.exp(-(mu @ sigma))
    mean = (channel.photons * channel.signal_per_photon) @ transmission
    variance = (channel.photons * channel.signal_per_photon**2) @ transmission
    return mean.reshape(shape), variance.reshape(shape)


def acquire(
    areal_g_cm2: Mapping[str, np.ndarray],
    device: DeviceProfile,
    rng: np.random.Generator | None,
    blur: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the (low, high) log-attenuation images of one scan.

    `rng=None` gives the noise-free expectation; `blur=False` skips the PSF.
    """
    sigma_px = [
        fwhm / FWHM_PER_SIGMA / spacing
        for fwhm, spacing in zip(device.psf_fwhm_mm, device.spacing_mm, strict=True)
    ]
    images = []
    for channel in channels(device):
        mean, variance = expected_signal(areal_g_cm2, channel)
        if blur:
            mean = gaussian_filter(mean, sigma_px, mode="nearest")
            variance = gaussian_filter(variance, sigma_px, mode="nearest")
        # The noise-free expectation needs no floor; a noisy pixel behind metal can
        # record nothing, so it is floored at half a photon to keep -ln finite.
        floor = np.finfo(np.float64).tiny
        if rng is not None:
            if device.detector == "photon-counting":
                mean = rng.poisson(mean).astype(np.float64)
            else:
                mean = mean + np.sqrt(variance) * rng.standard_normal(mean.shape)
            floor = 0.5 * float(channel.signal_per_photon.min())
        images.append((-np.log(np.maximum(mean, floor) / channel.air_signal)).astype(np.float32))
    return images[0], images[1]


def log_attenuation_std(
    areal_g_cm2: Mapping[str, float], device: DeviceProfile
) -> tuple[float, float]:
    """Predicted per-pixel noise (standard deviation) of -ln(I/I0) through a uniform slab.

    First-order propagation: std = sqrt(variance) / mean of the channel signal.
    """
    slab = {m: np.full((1, 1), v) for m, v in areal_g_cm2.items()}
    stds = []
    for channel in channels(device):
        mean, variance = expected_signal(slab, channel)
        stds.append(float(np.sqrt(variance[0, 0]) / mean[0, 0]))
    return stds[0], stds[1]


STEP_PHANTOM_SOFT_G_CM2 = np.arange(8.0, 35.01, 1.0)
STEP_PHANTOM_BONE_G_CM2 = np.round(np.arange(0.0, 2.501, 0.1), 2)
CALIBRATION_COLUMNS = ("low", "high", "bone_g_cm2", "soft_g_cm2")


def step_phantom_table(device: DeviceProfile) -> np.ndarray:
    """Noise-free (low, high) through a grid of known bone and soft-tissue steps.

    Bone is hydroxyapatite, soft tissue is ICRP soft tissue, both in g/cm2 on
    a grid of soft 8-35 x bone 0-2.5. Returns an (n, 4) array in the order of
    CALIBRATION_COLUMNS: the device's calibration table.
    """
    soft, bone = np.meshgrid(STEP_PHANTOM_SOFT_G_CM2, STEP_PHANTOM_BONE_G_CM2, indexing="ij")
    low, high = acquire({"hydroxyapatite": bone, "soft_tissue": soft}, device, None, blur=False)
    return np.column_stack([low.ravel(), high.ravel(), bone.ravel(), soft.ravel()])


def calibration_csv(table: np.ndarray) -> str:
    """The calibration table as CSV text with fixed formatting (stable bytes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CALIBRATION_COLUMNS)
    for low, high, bone, soft in table:
        writer.writerow([f"{low:.8f}", f"{high:.8f}", f"{bone:.2f}", f"{soft:.2f}"])
    return buffer.getvalue()


def shipped_calibration_path(device: DeviceProfile):
    """Path (importlib Traversable) of the calibration CSV shipped for a device."""
    from importlib.resources import files

    return files("dxaspine.simulate") / "data" / f"calibration_{device.name}.csv"


def shipped_calibration(device: DeviceProfile) -> np.ndarray:
    """The device's shipped step-phantom table, (n, 4) in CALIBRATION_COLUMNS order."""
    text = shipped_calibration_path(device).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if tuple(rows[0]) != CALIBRATION_COLUMNS:
        raise ValueError(f"calibration table for {device.name} has columns {rows[0]}")
    return np.array(rows[1:], dtype=np.float64)
