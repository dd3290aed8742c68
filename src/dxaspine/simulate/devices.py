"""Device profiles: the one registry of simulated DXA scanners.

A profile fixes everything about the acquisition that a measurement depends
on: beams, detector, dose, pixel spacing, blur and field of view. Filtrations,
doses and spacings are documented defaults (makers do not publish them); see
docs/physics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import ndtr

from dxaspine.simulate.tables import physics_tables


@dataclass(frozen=True)
class DeviceProfile:
    """One simulated scanner.

    `detector` is "energy-integrating" (switched kVp: `low_spectrum` and
    `high_spectrum` are two beams, signal = sum of photon energies) or
    "photon-counting" (one K-edge-filtered beam, `low_spectrum` only, photons
    sorted into two bins split at `bin_threshold_keV` with a Gaussian energy
    resolution `energy_resolution_fwhm_keV`).
    """

    name: str
    description: str
    detector: Literal["energy-integrating", "photon-counting"]
    low_spectrum: str
    high_spectrum: str | None
    photons_per_pixel: float
    """Incident photons per pixel per energy channel (the dose)."""
    spacing_mm: tuple[float, float]
    psf_fwhm_mm: tuple[float, float]
    field_of_view_mm: tuple[float, float]
    bin_threshold_keV: float = 0.0
    energy_resolution_fwhm_keV: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        """Image size (rows, cols) implied by the field of view and spacing."""
        return (
            round(self.field_of_view_mm[0] / self.spacing_mm[0]),
            round(self.field_of_view_mm[1] / self.spacing_mm[1]),
        )

    def channel_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-energy weights of the (low, high) detector channels.

        Returns (photons_low, photons_high, signal_per_photon_low,
        signal_per_photon_high) over the table's energy grid: incident photons
        per pixel reaching each channel, and the signal one photon adds (its
        energy in keV for an integrating detector, 1 for a counting one).
        """
        tables = physics_tables()
        energy = tables.energy_keV
        low = _normalised(tables.spectra[self.low_spectrum]) * self.photons_per_pixel
        if self.detector == "energy-integrating":
            if self.high_spectrum is None:
                raise ValueError(f"{self.name}: an energy-integrating profile needs two spectra")
            high = _normalised(tables.spectra[self.high_spectrum]) * self.photons_per_pixel
            return low, high, energy.copy(), energy.copy()
        sigma = self.energy_resolution_fwhm_keV / 2.3548
        p_low = ndtr((self.bin_threshold_keV - energy) / max(sigma, 1e-9))
        # The dose is split between the bins; scale so the low bin gets photons_per_pixel.
        fluence = low / max(float((low * p_low).sum()), 1e-12) * self.photons_per_pixel
        ones = np.ones_like(energy)
        return fluence * p_low, fluence * (1.0 - p_low), ones, ones.copy()


def _normalised(spectrum: np.ndarray) -> np.ndarray:
    return spectrum / spectrum.sum()


DEVICES: dict[str, DeviceProfile] = {
    "hologic-like": DeviceProfile(
        name="hologic-like",
        description="switched-kVp fan beam, 100/140 kVp, energy-integrating detector",
        detector="energy-integrating",
        low_spectrum="100kVp",
        high_spectrum="140kVp",
        photons_per_pixel=3.0e5,
        spacing_mm=(0.9, 0.6),
        psf_fwhm_mm=(0.8, 0.7),
        field_of_view_mm=(200.0, 150.0),
    ),
    "lunar-like": DeviceProfile(
        name="lunar-like",
        description="80 kVp cerium K-edge-filtered narrow fan, photon-counting detector, two bins",
        detector="photon-counting",
        low_spectrum="80kVp_Ce",
        high_spectrum=None,
        photons_per_pixel=1.0e6,
        spacing_mm=(1.2, 1.05),
        psf_fwhm_mm=(1.8, 1.6),
        field_of_view_mm=(204.0, 151.2),
        bin_threshold_keV=44.0,
        energy_resolution_fwhm_keV=6.0,
    ),
}
"""Device profile name -> profile. The CLI's `--device` takes these names."""


def get_device(name: str) -> DeviceProfile:
    """The profile called `name`, or a KeyError listing the valid names."""
    if name not in DEVICES:
        raise KeyError(f"unknown device profile '{name}'; choose one of: {', '.join(DEVICES)}")
    return DEVICES[name]
