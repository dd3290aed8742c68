"""Command-line interface: a thin Typer layer over the Python API.

Heavy imports happen inside each command so `dxaspine --help` stays fast.
Bad input ends with a one-line error and exit code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="dxaspine",
    help="Lumbar-spine segmentation, bone scores and simulation for DXA scans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


@app.command()
def info(
    scans: Annotated[list[Path], typer.Argument(help="Scan files (NPZ, DICOM, PNG/TIFF pairs).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Validate scans and print shape, spacing, device, value ranges and reference data."""
    from dxaspine.info import run_info

    raise typer.Exit(run_info(scans, as_json=as_json))


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of scans to simulate.")] = 10,
    seed: Annotated[int, typer.Option(help="Cohort seed: same seed, same bytes.")] = 0,
    device: Annotated[str, typer.Option(help="Device profile: hologic-like or lunar-like.")] = (
        "hologic-like"
    ),
    jobs: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 1,
    preview: Annotated[bool, typer.Option("--preview", help="Also write PNG montages.")] = False,
    truth_maps: Annotated[
        bool, typer.Option("--truth-maps", help="Store ground-truth density maps in each NPZ.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Simulate a cohort of DXA lumbar-spine scans with exact ground truth."""
    from dxaspine.simulate.cohort import CohortConfig, simulate_cohort
    from dxaspine.simulate.devices import DEVICES

    if device not in DEVICES:
        raise fail(f"unknown device profile '{device}'; choose one of: {', '.join(DEVICES)}")
    if out.exists() and not out.is_dir():
        raise fail(f"{out}: exists and is not a folder")
    config = CohortConfig(
        n_scans=n, seed=seed, device=device, jobs=jobs, preview=preview, truth_maps=truth_maps
    )
    summary = simulate_cohort(config, out, show_progress=not quiet)
    typer.echo(summary)


@app.command()
def calibrate(
    table: Annotated[
        Path, typer.Argument(help="Step-phantom CSV: low, high, bone_g_cm2, soft_g_cm2.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Calibration JSON to write.")],
    device: Annotated[str, typer.Option(help="Device name stored in the calibration.")] = "custom",
    degree: Annotated[
        int, typer.Option(min=1, max=6, help="Polynomial degree of the surface.")
    ] = 4,
) -> None:
    """Fit a device calibration surface (BMD from low and high) to a step-phantom table."""
    from dxaspine.scores import fit_calibration, read_calibration_table

    if out.resolve() == table.resolve():
        raise fail(f"{out}: refusing to overwrite the input table")
    try:
        steps = read_calibration_table(table)
        calibration = fit_calibration(steps, device, degree)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    calibration.to_json(temporary)
    temporary.replace(out)
    residual = calibration.residual_rms_g_cm2
    typer.echo(f"wrote {out}: degree {degree}, {len(steps)} steps, residual {residual:.5f} g/cm2")


@app.command()
def score(
    scan_path: Annotated[Path, typer.Argument(metavar="SCAN", help="A dual-energy scan file.")],
    mask: Annotated[
        Path | None,
        typer.Option(help="Labels or mask (NPZ, PNG, TIFF); default: the scan's own."),
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration JSON; default: the scan's device profile.")
    ] = None,
    age: Annotated[float | None, typer.Option(help="Age in years, for the Z-score.")] = None,
    sex: Annotated[str | None, typer.Option(help="F or M, for the Z-score.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """BMD, T- and Z-scores, TBS per vertebra L1-L4 and in total, for one scan and mask."""
    import json

    from dxaspine.io import read_labels, read_scan
    from dxaspine.report import scores_table, scores_to_dict
    from dxaspine.scan import ScanError
    from dxaspine.scores import Calibration, device_calibration

    try:
        scan = read_scan(scan_path)
        labels = read_labels(mask, scan.shape) if mask else scan.labels
        if labels is None and scan.mask is not None:
            labels = scan.mask
        if labels is None:
            raise ScanError(str(scan_path), "carries no mask or labels; pass --mask")
        if calibration is not None:
            cal = Calibration.from_json(calibration)
        elif scan.device:
            cal = device_calibration(scan.device)
        else:
            raise ScanError(str(scan_path), "has no device profile; pass --calibration")
        if sex is not None and sex not in ("F", "M"):
            raise ScanError("", f"--sex must be F or M, got {sex!r}")
        result = scores_to_dict(scan, labels, cal, age, sex)
    except (ScanError, ValueError, KeyError, OSError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console

        Console().print(scores_table(result))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
