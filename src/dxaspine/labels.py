"""The one registry of vertebra labels: ids, names and display colours."""

from __future__ import annotations

BACKGROUND = 0
VERTEBRAE: dict[int, str] = {1: "L1", 2: "L2", 3: "L3", 4: "L4"}
"""Label id -> vertebra name, as stored in `Scan.labels` (0 is background)."""

COLOURS_RGB: dict[int, tuple[int, int, int]] = {
    1: (230, 25, 75),
    2: (60, 180, 75),
    3: (255, 225, 25),
    4: (0, 130, 200),
}


def name_of(label_id: int) -> str:
    """Vertebra name for a label id (1 -> 'L1')."""
    if label_id not in VERTEBRAE:
        raise KeyError(f"unknown vertebra label {label_id}; valid ids are 1..4 (L1..L4)")
    return VERTEBRAE[label_id]
