"""Regenerate the shipped physics tables of the DXA simulator.

Writes ``src/dxaspine/simulate/data/physics_tables.npz``: mass attenuation
coefficients (xraylib) and x-ray tube spectra (SpekPy) on one 1-keV grid, so
the simulator needs only numpy at run time. The output is deterministic: same
library versions give byte-identical files (fixed zip timestamps, no dates).

Needs the ``physics`` extra (spekpy, xraylib). Run: ``python scripts/make_physics_tables.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import spekpy
import xraylib

OUT_PATH = Path(__file__).resolve().parents[1] / "src/dxaspine/simulate/data/physics_tables.npz"

ENERGY_KEV = np.linspace(10.0, 150.0, 141)
"""Bin centres (keV) of every table; the bins are [E - 0.5, E + 0.5]."""

ANODE_ANGLE_DEG = 12.0
DISTANCE_CM = 100.0

HYDROXYAPATITE = "Ca10(PO4)6(OH)2"
STAINLESS_STEEL_MASS_FRACTIONS = {"Fe": 0.70, "Cr": 0.19, "Ni": 0.09, "Mn": 0.02}

NIST_MATERIALS = {
    "soft_tissue": "Tissue, Soft (ICRP)",
    "adipose": "Adipose Tissue (ICRP)",
    "muscle": "Muscle, Skeletal",
    "water": "Water, Liquid",
    "cortical_bone": "Bone, Cortical (ICRP)",
    "air": "Air, Dry (near sea level)",
}
ELEMENTS = {"titanium": "Ti", "aluminium": "Al", "copper": "Cu", "cerium": "Ce"}
MATERIALS = (
    "hydroxyapatite",
    "soft_tissue",
    "adipose",
    "muscle",
    "water",
    "cortical_bone",
    "air",
    "titanium",
    "stainless_steel",
    "aluminium",
    "copper",
    "cerium",
)

FIXED_DENSITIES = {"hydroxyapatite": 3.16, "stainless_steel": 8.0}
"""Densities (g/cm3) not taken from xraylib's NIST tables: stoichiometric
hydroxyapatite, and a typical austenitic (AISI 304-like) stainless steel."""

SPECTRA: dict[str, dict] = {
    "100kVp": {"kvp": 100.0, "filters": [["Al", 2.5]]},
    "140kVp": {"kvp": 140.0, "filters": [["Al", 2.5], ["Cu", 0.5]]},
    "80kVp_Ce": {"kvp": 80.0, "filters": [["Al", 2.0], ["Ce", 0.3]]},
}
"""Tube settings: default filtrations (mm), since makers do not publish theirs."""

DOMAIN_NOTE_MU_RHO = {
    "hydroxyapatite": (0.988, 0.313, 0.202),
    "soft_tissue": (0.262, 0.191, 0.169),
    "adipose": (0.239, 0.188, 0.170),
    "water": (0.268, 0.193, 0.171),
}
"""Domain-note mu/rho (cm2/g) at 40 / 70 / 100 keV, printed for comparison."""

DOMAIN_NOTE_MEAN_KEV = {"100kVp": 49.0, "140kVp": 75.0}


def mu_rho(material: str, energy_keV: np.ndarray) -> np.ndarray:
    """Total mass attenuation coefficient (cm2/g, coherent included) from xraylib."""
    if material == "hydroxyapatite":
        return np.array([xraylib.CS_Total_CP(HYDROXYAPATITE, float(e)) for e in energy_keV])
    if material in NIST_MATERIALS:
        name = NIST_MATERIALS[material]
        return np.array([xraylib.CS_Total_CP(name, float(e)) for e in energy_keV])
    if material in ELEMENTS:
        z = xraylib.SymbolToAtomicNumber(ELEMENTS[material])
        return np.array([xraylib.CS_Total(z, float(e)) for e in energy_keV])
    if material == "stainless_steel":
        total = np.zeros(len(energy_keV))
        for symbol, fraction in STAINLESS_STEEL_MASS_FRACTIONS.items():
            z = xraylib.SymbolToAtomicNumber(symbol)
            total += fraction * np.array([xraylib.CS_Total(z, float(e)) for e in energy_keV])
        return total
    raise KeyError(f"unknown material {material!r}")


def density_g_cm3(material: str) -> float:
    """Density in g/cm3: xraylib's NIST values, except the fixed ones above."""
    if material in FIXED_DENSITIES:
        return FIXED_DENSITIES[material]
    if material in NIST_MATERIALS:
        return float(xraylib.GetCompoundDataNISTByName(NIST_MATERIALS[material])["density"])
    return float(xraylib.ElementDensity(xraylib.SymbolToAtomicNumber(ELEMENTS[material])))


def check_spekpy_materials(names: set[str]) -> None:
    """Fail early if SpekPy lacks a filter material (e.g. cerium) in its database."""
    matl_dir = Path(spekpy.__file__).parent / "data" / "matl_def"
    known = {p.stem for p in matl_dir.glob("*.comp")}
    missing = sorted(names - known)
    if missing:
        raise RuntimeError(f"SpekPy {spekpy.__version__} has no filter material {missing}")


def spekpy_density(symbol: str) -> float:
    """Density (g/cm3) SpekPy assumes for a filter material, recorded for provenance."""
    comp = Path(spekpy.__file__).parent / "data" / "matl_def" / f"{symbol}.comp"
    return float(json.loads(comp.read_text())["composition"]["density"])


def spectrum(kvp: float, filters: list[list], energy_keV: np.ndarray = ENERGY_KEV) -> np.ndarray:
    """SpekPy photon fluence (photons / cm2 / mAs / keV at 100 cm) on `energy_keV`.

    ``shift=0.5`` makes SpekPy's own 1-keV bins centre on whole keV, so the
    values land on the grid without interpolation (which would smear the Ce
    K-edge and the W characteristic lines). Energies above kVp are zero.
    """
    spek = spekpy.Spek(kvp=kvp, th=ANODE_ANGLE_DEG, dk=1.0, shift=0.5, z=DISTANCE_CM, mas=1.0)
    spek.multi_filter(tuple((matl, float(mm)) for matl, mm in filters))
    k, fluence = spek.get_spectrum(flu=True, diff=True)
    out = np.zeros(len(energy_keV))
    idx = np.rint(k - energy_keV[0]).astype(int)
    if not np.allclose(energy_keV[0] + idx, k, atol=1e-9):
        raise RuntimeError("SpekPy energy bins do not coincide with the table grid")
    keep = (idx >= 0) & (idx < len(energy_keV))
    out[idx[keep]] = fluence[keep]
    return out


def mean_energy(energy_keV: np.ndarray, fluence: np.ndarray) -> float:
    """Fluence-weighted mean photon energy (keV)."""
    return float(np.sum(energy_keV * fluence) / np.sum(fluence))


def build_tables() -> dict[str, np.ndarray]:
    """All arrays of the npz file, in a fixed key order."""
    check_spekpy_materials({m for s in SPECTRA.values() for m, _ in s["filters"]})
    tables: dict[str, np.ndarray] = {"energy_keV": ENERGY_KEV.copy()}
    for material in MATERIALS:
        tables[f"mu_rho_{material}"] = mu_rho(material, ENERGY_KEV)
    for material in MATERIALS:
        tables[f"density_g_cm3_{material}"] = np.float64(density_g_cm3(material))
    for name, spec in SPECTRA.items():
        tables[f"spectrum_{name}"] = spectrum(spec["kvp"], spec["filters"])
    filter_info = {
        name: {
            "kvp": spec["kvp"],
            "anode": "W",
            "anode_angle_deg": ANODE_ANGLE_DEG,
            "filters_mm": spec["filters"],
            "filter_densities_g_cm3": {m: spekpy_density(m) for m, _ in spec["filters"]},
            "filtering": "spekpy built-in materials (cerium included)",
            "units": "photons / cm2 / mAs / keV at 100 cm",
        }
        for name, spec in SPECTRA.items()
    }
    provenance = {
        "script": "scripts/make_physics_tables.py",
        "spekpy": spekpy.__version__,
        "xraylib": xraylib.__version__,
        "spekpy_settings": {
            "physics": "spekpy-v2-casim (default)",
            "mu_data_source": "pene (default)",
            "dk_keV": 1.0,
            "shift": 0.5,
            "z_cm": DISTANCE_CM,
            "mas": 1.0,
        },
        "mu_rho": "xraylib CS_Total / CS_Total_CP (cm2/g, coherent scattering included)",
        "materials": {
            "hydroxyapatite": HYDROXYAPATITE,
            **NIST_MATERIALS,
            **ELEMENTS,
            "stainless_steel": STAINLESS_STEEL_MASS_FRACTIONS,
        },
        "densities": "xraylib NIST values; hydroxyapatite 3.16, stainless_steel 8.0 fixed",
        "energy_grid": "bin centres 10..150 keV step 1, bins [E-0.5, E+0.5]",
    }
    tables["spectrum_filters"] = np.array(json.dumps(filter_info, sort_keys=True))
    tables["provenance"] = np.array(json.dumps(provenance, sort_keys=True))
    return tables


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Compressed npz with fixed zip timestamps, so equal arrays give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue())


def print_summary(tables: dict[str, np.ndarray], path: Path) -> None:
    """Mean spectrum energies and mu/rho at 40/70/100 keV next to the domain notes."""
    energy = tables["energy_keV"]
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")
    print("mean energy (keV):")
    for name in SPECTRA:
        note = DOMAIN_NOTE_MEAN_KEV.get(name)
        ref = f"   (domain notes ~{note:.0f})" if note else ""
        print(f"  {name:10s} {mean_energy(energy, tables[f'spectrum_{name}']):6.2f}{ref}")
    print("mu/rho (cm2/g) at 40 / 70 / 100 keV, table vs domain notes:")
    idx = [int(np.flatnonzero(energy == e)[0]) for e in (40.0, 70.0, 100.0)]
    for material, note in DOMAIN_NOTE_MU_RHO.items():
        values = tables[f"mu_rho_{material}"][idx]
        got = " / ".join(f"{v:.4f}" for v in values)
        ref = " / ".join(f"{v:.3f}" for v in note)
        worst = max(abs(v / r - 1.0) for v, r in zip(values, note, strict=True))
        print(f"  {material:15s} {got}   notes {ref}   max dev {100 * worst:.2f}%")


def main() -> None:
    """Build the tables, write the npz and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_PATH, help="output .npz path")
    args = parser.parse_args()
    tables = build_tables()
    write_npz(args.out, tables)
    print_summary(tables, args.out)


if __name__ == "__main__":
    main()
