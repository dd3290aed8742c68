"""Loader for the shipped physics tables (spectra, mass attenuation, densities).

The tables are precomputed by ``scripts/make_physics_tables.py`` with SpekPy
and xraylib, so the simulator needs only numpy at run time. All arrays share
one energy grid (bin centres 10..150 keV, step 1 keV) and are read-only.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

DATA_FILE = "physics_tables.npz"


@dataclass(frozen=True)
class PhysicsTables:
    """Energy grid plus per-material and per-spectrum tables on that grid.

    `mu_rho` is in cm2/g (coherent scattering included), `density_g_cm3` in
    g/cm3, `spectra` in photons / cm2 / mAs / keV at 100 cm. Keys are the
    material names (e.g. "soft_tissue", "hydroxyapatite") and spectrum names
    ("100kVp", "140kVp", "80kVp_Ce").
    """

    energy_keV: np.ndarray
    mu_rho: dict[str, np.ndarray]
    density_g_cm3: dict[str, float]
    spectra: dict[str, np.ndarray]
    spectrum_filters: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def mean_energy_keV(self, spectrum_name: str) -> float:
        """Fluence-weighted mean photon energy of a spectrum, in keV."""
        fluence = self.spectra[spectrum_name]
        return float(np.sum(self.energy_keV * fluence) / np.sum(fluence))

    def energy_index(self, energy_keV: float) -> int:
        """Index of the grid bin whose centre is nearest to `energy_keV`."""
        return int(np.argmin(np.abs(self.energy_keV - energy_keV)))


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.setflags(write=False)
    return array


@functools.cache
def physics_tables() -> PhysicsTables:
    """Load the tables once; later calls return the same cached object."""
    path = resources.files("dxaspine.simulate") / "data" / DATA_FILE
    with resources.as_file(path) as file, np.load(file, allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    mu_rho = {
        key.removeprefix("mu_rho_"): _read_only(value)
        for key, value in data.items()
        if key.startswith("mu_rho_")
    }
    density = {
        key.removeprefix("density_g_cm3_"): float(value)
        for key, value in data.items()
        if key.startswith("density_g_cm3_")
    }
    spectra = {
        key.removeprefix("spectrum_"): _read_only(value)
        for key, value in data.items()
        if key.startswith("spectrum_") and key != "spectrum_filters"
    }
    return PhysicsTables(
        energy_keV=_read_only(data["energy_keV"]),
        mu_rho=mu_rho,
        density_g_cm3=density,
        spectra=spectra,
        spectrum_filters=json.loads(str(data["spectrum_filters"])),
        provenance=json.loads(str(data["provenance"])),
    )
