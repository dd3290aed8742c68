"""Regenerate each device profile's step-phantom calibration table.

Writes src/dxaspine/simulate/data/calibration_<device>.csv: noise-free
(low, high) log attenuations through hydroxyapatite 0-2.5 g/cm2 x ICRP soft
tissue 8-35 g/cm2, from the shipped physics tables. Run after
make_physics_tables.py; tests/test_physics.py checks the shipped files match.
"""

from __future__ import annotations

from pathlib import Path

from dxaspine.simulate.devices import DEVICES
from dxaspine.simulate.physics import calibration_csv, step_phantom_table

DATA = Path(__file__).resolve().parents[1] / "src" / "dxaspine" / "simulate" / "data"


def main() -> None:
    for device in DEVICES.values():
        path = DATA / f"calibration_{device.name}.csv"
        path.write_text(calibration_csv(step_phantom_table(device)), encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
