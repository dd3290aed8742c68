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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
