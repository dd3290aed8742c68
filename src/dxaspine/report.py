"""Per-scan score reports: one dictionary (for JSON) and one rich table.

`scores_to_dict` is the Python API behind `dxaspine score`: BMD from the
calibrated bone image and TBS from the same image, per vertebra and in total.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.table import Table

from dxaspine import __version__
from dxaspine.labels import VERTEBRAE
from dxaspine.qc import check_labels, qc_report
from dxaspine.scan import Scan
from dxaspine.scores import (
    Calibration,
    Scores,
    VertebraScore,
    bone_areal_density,
    score_bmd,
    without_vertebrae,
)
from dxaspine.tbs import TBSConfig, tbs


def _number(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def bmd_and_tbs(
    scan: Scan,
    labels: np.ndarray,
    calibration: Calibration,
    bone_g_cm2: np.ndarray,
    bmd_bone_g_cm2: np.ndarray | None = None,
    age_years: float | None = None,
    sex: str | None = None,
    tbs_config: TBSConfig | None = None,
) -> tuple[Scores, dict[str, float]]:
    """BMD scores and open TBS of one labelling, by one rule for every caller.

    BMD reads `bmd_bone_g_cm2` (the PSF-corrected bone image; computed by
    `score_bmd` when None), TBS the plain `bone_g_cm2`; the vertebrae BMD
    leaves out (read through metal) are left out of TBS too.
    """
    result = score_bmd(
        scan, labels, calibration, age_years=age_years, sex=sex, bone_g_cm2=bmd_bone_g_cm2
    )
    texture_labels = without_vertebrae(labels, result.excluded)
    return result, tbs(bone_g_cm2, texture_labels, scan.spacing_mm, tbs_config)


def scores_to_dict(
    scan: Scan,
    labels: np.ndarray,
    calibration: Calibration | None,
    age_years: float | None = None,
    sex: str | None = None,
) -> dict[str, Any]:
    """Score one scan with one vertebra map (or binary mask, split into L1..L4 first).

    BMD needs both energies and a calibration: without them (a single
    exported image, or an unknown device) BMD, T and Z are reported as
    unavailable (None, with `bmd_note` saying why), never guessed, and TBS is
    computed on the image there is, flagged `tbs_uncalibrated`. `qc` says
    whether the labelling should be reviewed, and why (`dxaspine.qc`).
    """
    from dxaspine.baseline import label_vertebrae

    labels = np.asarray(labels, dtype=np.uint8)
    split = bool(labels.max() == 1)
    if split:
        labels = label_vertebrae(labels, scan)
    dual_energy = getattr(scan, "is_dual_energy", True)
    bmd_note = None
    if not dual_energy:
        bmd_note = "BMD needs both energies; this scan is a single exported image"
    elif calibration is None:
        bmd_note = (
            "BMD needs a calibration: the scan has no known device profile; pass --calibration"
        )
    tbs_config = TBSConfig()
    if bmd_note is None:
        bone = bone_areal_density(scan, calibration)  # TBS: the image without PSF correction
        result, texture = bmd_and_tbs(
            scan, labels, calibration, bone, age_years=age_years, sex=sex, tbs_config=tbs_config
        )
    else:
        from dxaspine.preview import bone_image

        bone = bone_image(scan)
        texture = tbs(bone, labels, scan.spacing_mm, tbs_config)
        result = _areas_only(scan, labels)
    rows = []
    for vertebra in [*result.vertebrae, result.total]:
        is_total = vertebra is result.total
        flags = [] if is_total else (["ISCD"] if vertebra.name in result.iscd_flags else [])
        if vertebra.name in result.excluded:
            flags.append("excluded_metal")
        if bmd_note is not None:
            flags.append("tbs_uncalibrated")
        rows.append(
            {
                "name": vertebra.name,
                "area_cm2": _number(vertebra.area_cm2, 3),
                "bmc_g": _number(vertebra.bmc_g, 3),
                "bmd_g_cm2": _number(vertebra.bmd_g_cm2, 4),
                "t_score": _number(vertebra.t_score, 2),
                "z_score": _number(vertebra.z_score, 2),
                "tbs": _number(texture["total" if is_total else vertebra.name], 4),
                "flags": flags,
            }
        )
    return {
        "scan_id": scan.scan_id,
        "device": scan.device,
        "calibration_device": calibration.device if calibration is not None else None,
        "bmd_note": bmd_note,
        "labels_from_binary_mask": split,
        "vertebrae": rows[:-1],
        "total": rows[-1],
        "who_category": result.who_category,
        "excluded_from_total": list(result.excluded),
        "reference": {
            "name": result.reference.name,
            "mean_g_cm2": result.reference.mean_g_cm2,
            "sd_g_cm2": result.reference.sd_g_cm2,
        },
        "t_score_per_vertebra_approximate": result.t_score_approximate,
        "qc": qc_report(check_labels(labels, scan.spacing_mm)),
        "tbs_note": "open variogram TBS (lags_mm "
        f"{list(tbs_config.lags_mm)}), not the commercial calibrated TBS; "
        "clinical cut-offs do not apply",
        "dxaspine_version": __version__,
    }


def _areas_only(scan: Scan, labels: np.ndarray) -> Scores:
    """Areas per vertebra with BMD, BMC and T-score unavailable (nan)."""
    nan = float("nan")
    vertebrae = [
        VertebraScore(
            name, float((labels == label).sum() * scan.pixel_area_cm2), nan, nan, nan, None
        )
        for label, name in VERTEBRAE.items()
        if (labels == label).any()
    ]
    names = [v.name for v in vertebrae]
    total_name = f"{names[0]}-{names[-1]}" if len(names) > 1 else (names[0] if names else "none")
    total = VertebraScore(total_name, sum(v.area_cm2 for v in vertebrae), nan, nan, nan, None)
    return Scores(vertebrae=vertebrae, total=total, who_category="unknown")


def scores_table(report: dict[str, Any]) -> Table:
    """A rich table of a `scores_to_dict` report, one row per vertebra and the total."""
    title = f"{report['scan_id'] or 'scan'} ({report['device'] or 'unknown device'})"
    table = Table(title=title)
    for column in ("vertebra", "area cm2", "BMC g", "BMD g/cm2", "T", "Z", "TBS*", "flags"):
        table.add_column(column, justify="left" if column in ("vertebra", "flags") else "right")

    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for row in [*report["vertebrae"], report["total"]]:
        table.add_row(
            row["name"],
            cell(row["area_cm2"], ".2f"),
            cell(row["bmc_g"], ".2f"),
            cell(row["bmd_g_cm2"], ".3f"),
            cell(row["t_score"], ".1f"),
            cell(row["z_score"], ".1f"),
            cell(row["tbs"], ".3f"),
            ", ".join(row["flags"]),
        )
    table.caption = (
        f"WHO category ({report['total']['name']} T-score): {report['who_category']}."
        f"  *{report['tbs_note']}"
    )
    if report.get("excluded_from_total"):
        table.caption += (
            f"  Left out of the total (read through metal, outside the calibration): "
            f"{', '.join(report['excluded_from_total'])}."
        )
    if report.get("bmd_note"):
        table.caption += f"\nBMD unavailable: {report['bmd_note']}."
    for finding in report.get("qc", {}).get("findings", []):
        table.caption += f"\n[yellow]Review[/yellow]: {finding['message']}."
    return table
