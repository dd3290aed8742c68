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
    spacing_mm: Annotated[
        str | None,
        typer.Option(help="Pixel spacing 'row,col' (mm); overrides the file's, if any."),
    ] = None,
) -> None:
    """Validate scans and print shape, spacing, device, value ranges and reference data."""
    from dxaspine.info import run_info

    try:
        spacing = _parse_spacing(spacing_mm)
    except ValueError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(run_info(scans, as_json=as_json, spacing_mm=spacing))


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of scans to simulate.")] = 10,
    seed: Annotated[int, typer.Option(help="Cohort seed: same seed, same bytes.")] = 0,
    device: Annotated[
        str,
        typer.Option(
            help="Device profile: hologic-like or lunar-like (with --ct-list, a comma list)."
        ),
    ] = "hologic-like",
    jobs: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 1,
    preview: Annotated[bool, typer.Option("--preview", help="Also write PNG montages.")] = False,
    truth_maps: Annotated[
        bool, typer.Option("--truth-maps", help="Store ground-truth density maps in each NPZ.")
    ] = False,
    export: Annotated[
        bool,
        typer.Option(
            "--export", help="Write each scan as the scanner's exported 8-bit image instead."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    from_ct: Annotated[
        Path | None,
        typer.Option(
            "--from-ct", help="Simulate one scan from this CT (NIfTI, HU) instead of a cohort."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="With --from-ct: vertebra label volume (NIfTI) on the CT's grid, or the "
            "folder of TotalSegmentator's per-structure masks."
        ),
    ] = None,
    label_map: Annotated[
        str,
        typer.Option(
            help="With --from-ct or --ct-list: totalsegmentator, totalsegmentator-v1, verse, "
            "simple (1..4 = L1..L4) or ids 'L1=31,L2=30,...'."
        ),
    ] = "totalsegmentator",
    pose: Annotated[
        str,
        typer.Option(
            help="With --from-ct or --ct-list (a comma list): 'ct' projects the spine as the "
            "CT has it; 'dxa' flattens its lordosis first, as the DXA's leg block does "
            "(docs/ct.md)."
        ),
    ] = "ct",
    marrow_fat: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.95,
            help="With --from-ct or --ct-list: adipose volume fraction of the marrow in bone "
            "voxels (0: lean marrow; adults 0.3-0.6, docs/ct.md).",
        ),
    ] = 0.0,
    bmd_sd_factor: Annotated[
        float,
        typer.Option(
            min=0.25,
            max=3.0,
            help="Cohorts: widen (above 1) the population's BMD spread around the NHANES "
            "means, for training cohorts that cover a clinic's tails (docs/physics.md).",
        ),
    ] = 1.0,
    ct_list: Annotated[
        Path | None,
        typer.Option(
            "--ct-list",
            help="Simulate scans from every CT of this CSV (columns ct, labels; optional "
            "case_id, patient_id, label_map). --device and --pose then take comma lists.",
        ),
    ] = None,
    draws: Annotated[
        int,
        typer.Option(min=1, help="With --ct-list: noise draws per CT, pose and device."),
    ] = 1,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="With --ct-list: keep the scans an earlier run with the same settings left "
            "in --out; project only the CTs that lack them.",
        ),
    ] = False,
) -> None:
    """Simulate a cohort of DXA lumbar-spine scans with exact ground truth, with
    --from-ct one scan projected from a labelled CT, or with --ct-list a cohort
    from many labelled CTs."""
    from dxaspine.simulate.case import AnatomyRanges
    from dxaspine.simulate.cohort import CohortConfig, simulate_cohort
    from dxaspine.simulate.devices import DEVICES

    if out.exists() and not out.is_dir():
        raise fail(f"{out}: exists and is not a folder")
    if ct_list is not None:
        if from_ct is not None or labels is not None:
            raise fail(
                "--ct-list and --from-ct/--labels exclude each other: the list names the CTs"
            )
        _simulate_ct_list(
            ct_list,
            out,
            device,
            pose,
            draws,
            seed,
            label_map,
            marrow_fat,
            jobs,
            truth_maps,
            preview,
            quiet,
            export,
            resume,
        )
        if n != 10 or bmd_sd_factor != 1.0:
            typer.echo("note: --n and --bmd-sd-factor do not apply to --ct-list", err=True)
        return
    if draws != 1 or resume:
        typer.echo("note: --draws and --resume apply only to --ct-list", err=True)
    if device not in DEVICES:
        raise fail(f"unknown device profile '{device}'; choose one of: {', '.join(DEVICES)}")
    if from_ct is not None or labels is not None:
        _simulate_from_ct(
            from_ct, labels, out, device, seed, label_map, truth_maps, preview, pose, marrow_fat
        )
        if export or n != 10 or jobs != 1 or bmd_sd_factor != 1.0:
            typer.echo(
                "note: --n, --jobs, --export and --bmd-sd-factor do not apply to --from-ct",
                err=True,
            )
        return
    if label_map != "totalsegmentator" or pose != "ct" or marrow_fat != 0.0:
        typer.echo(
            "note: --label-map, --pose and --marrow-fat apply only to --from-ct and --ct-list",
            err=True,
        )
    config = CohortConfig(
        n_scans=n,
        seed=seed,
        device=device,
        jobs=jobs,
        preview=preview,
        truth_maps=truth_maps,
        ranges=AnatomyRanges(bmd_sd_factor=bmd_sd_factor),
        export=export,
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
    scan_path: Annotated[
        Path, typer.Argument(metavar="SCAN", help="A scan file (dual-energy or single image).")
    ],
    mask: Annotated[
        Path | None,
        typer.Option(help="Labels or mask (NPZ, PNG, TIFF); default: the scan's own."),
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration JSON; default: the scan's device profile.")
    ] = None,
    age: Annotated[float | None, typer.Option(help="Age in years, for the Z-score.")] = None,
    sex: Annotated[str | None, typer.Option(help="F or M, for the Z-score.")] = None,
    spacing_mm: Annotated[
        str | None,
        typer.Option(help="Pixel spacing 'row,col' (mm); overrides the file's, if any."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """BMD, T- and Z-scores, TBS per vertebra L1-L4 and in total, for one scan and mask."""
    import json

    from dxaspine.io import read_labels, read_scan
    from dxaspine.report import scores_table, scores_to_dict
    from dxaspine.scan import ScanError
    from dxaspine.scores import Calibration, device_calibration

    try:
        scan = read_scan(scan_path, spacing_mm=_parse_spacing(spacing_mm))
        labels = read_labels(mask, scan.shape) if mask else scan.labels
        if labels is None and scan.mask is not None:
            labels = scan.mask
        if labels is None:
            raise ScanError(str(scan_path), "carries no mask or labels; pass --mask")
        cal = None
        if calibration is not None:
            cal = Calibration.from_json(calibration)
        elif scan.device and scan.is_dual_energy:
            cal = device_calibration(scan.device)
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


@app.command()
def train(
    scans: Annotated[
        Path, typer.Argument(help="Folder of scans with reference labels (NPZ or DICOM).")
    ],
    run: Annotated[Path, typer.Option("--run", help="Run folder: config, split, metrics, models.")],
    architecture: Annotated[
        str, typer.Option(help="unet (the shipped default) or dualpath (IVD-Net-style).")
    ] = "unet",
    inputs: Annotated[
        str,
        typer.Option(
            help="Comma-separated network inputs: low, high, bone (low - R_st high) or image."
        ),
    ] = "low,high,bone",
    base_filters: Annotated[int, typer.Option(min=1, help="Filters at the first level.")] = 16,
    skip_merge: Annotated[
        str, typer.Option(help="Dual path decoder skips: concat, or mean (IVD-Net's).")
    ] = "concat",
    epochs: Annotated[int, typer.Option(min=1)] = 40,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    patience: Annotated[int, typer.Option(min=1, help="Early-stopping patience (epochs).")] = 12,
    spacing_mm: Annotated[float, typer.Option(help="Working pixel size (mm).")] = 1.0,
    max_val_scans: Annotated[
        int | None, typer.Option(help="Validate each epoch on at most this many scans.")
    ] = None,
    invert: Annotated[
        bool, typer.Option(help="Augment with inverted polarity (for exported images).")
    ] = False,
    elastic_mm: Annotated[
        float,
        typer.Option(
            min=0.0, help="Augment with smooth elastic bending up to this SD (mm); 0: off."
        ),
    ] = 0.0,
    anisotropic_blur: Annotated[
        bool, typer.Option(help="Augment with row and column blur drawn apart.")
    ] = False,
    pixel_noise_factor: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Augment by raising each input's own pixel noise by up to this factor; 1: off.",
        ),
    ] = 1.0,
    pixel_noise_grain_mm: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Smooth that added noise into grains or streaks, SD up to this (mm) per axis.",
        ),
    ] = 0.0,
    split: Annotated[
        Path | None, typer.Option(help="JSON with train/val/test lists of scan ids.")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for PyTorch (default: all).")
    ] = None,
    name: Annotated[str, typer.Option(help="Model name stored in the model file.")] = "dxaspine",
    resume: Annotated[bool, typer.Option(help="Continue the run in --run.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """Train a segmentation network; the best model (validation Dice) is RUN/best.pt."""
    from dxaspine.network import NetworkConfig
    from dxaspine.preprocess import Preprocessing
    from dxaspine.scan import ScanError
    from dxaspine.train import AugmentConfig, TrainConfig
    from dxaspine.train import train as run_training

    try:
        config = TrainConfig(
            network=NetworkConfig(
                architecture=architecture,
                inputs=tuple(i.strip() for i in inputs.split(",") if i.strip()),
                base_filters=base_filters,
                skip_merge=skip_merge,
            ),
            preprocessing=Preprocessing(spacing_mm=spacing_mm),
            augment=AugmentConfig(
                invert=invert,
                elastic_mm=elastic_mm,
                anisotropic_blur=anisotropic_blur,
                pixel_noise_factor=pixel_noise_factor,
                pixel_noise_grain_mm=pixel_noise_grain_mm,
            ),
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            max_val_scans=max_val_scans,
            seed=seed,
            threads=threads,
        )
        best = run_training(scans, run, config, split, resume=resume, quiet=quiet, name=name)
    except (ScanError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"best model: {best}")


@app.command()
def segment(
    inputs: Annotated[list[Path], typer.Argument(help="Scan files or folders.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file (.pt, .onnx) or shipped model name; default: the shipped model."
        ),
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration JSON for BMD; default: the device profile's.")
    ] = None,
    spacing_mm: Annotated[
        str | None,
        typer.Option(help="Pixel spacing 'row,col' (mm); overrides the file's, if any."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress or tables.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Segment L1-L4; write label maps, overlays, DICOM SEG and scores. Exit 1 if a file failed."""
    import json

    from rich.console import Console
    from rich.progress import Progress

    from dxaspine.batch import SegmentOptions, expand_inputs, segment_files
    from dxaspine.infer import Predictor

    try:
        spacing = _parse_spacing(spacing_mm)
        predictor = Predictor(model, device)
    except ValueError as exc:
        raise fail(str(exc)) from None
    files = expand_inputs(inputs)
    if not files:
        raise fail("no scan files found in the inputs")
    options = SegmentOptions(calibration=calibration, spacing_mm=spacing)
    console = Console(stderr=True)
    with Progress(console=console, disable=quiet or as_json, transient=True) as progress:
        task = progress.add_task("segmenting", total=len(files))

        def report(path: Path, error: str | None) -> None:
            progress.advance(task)
            if error and not as_json:
                console.print(f"[red]skipped[/red] {error}")

        result = segment_files(files, out, predictor, options, report)
    summary = {
        "segmented": len(result.outputs),
        "failed": result.failures,
        "review": result.review,
        "out": str(out),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet:
        for path, messages in result.review.items():
            console.print(f"[yellow]review[/yellow] {path}: {'; '.join(messages)}")
        typer.echo(
            f"segmented {len(result.outputs)} of {len(files)} scans into {out}"
            + (f"; {len(result.review)} to review (segment.json)" if result.review else "")
        )
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def evaluate(
    pred_dir: Annotated[
        Path | None, typer.Argument(help="Predictions: <id>_labels.npz/.png (not with --cohort).")
    ] = None,
    ref_dir: Annotated[
        Path | None, typer.Argument(help="Reference scans with L1-L4 labels (not with --cohort).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = ...,
    cohort: Annotated[
        Path | None,
        typer.Option(help="Labelled scans to segment first (into OUT/predictions), then evaluate."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="With --cohort: model file or shipped name; default: the shipped model."),
    ] = None,
    device: Annotated[str, typer.Option(help="With --cohort: cpu, cuda or auto.")] = "auto",
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration JSON; default: each scan's device profile.")
    ] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also score the scanner-style baseline segmentation.")
    ] = True,
    split: Annotated[
        Path | None, typer.Option(help="JSON of train/val/test lists of scan ids: rows per split.")
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for 95% CIs.")] = 1000,
    seed: Annotated[int, typer.Option()] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Compare predictions with reference labels (overlap, BMD/TBS agreement, vs the baseline);
    write CSVs, summary.json and report.html. With --cohort, segment the cohort first."""
    from rich.progress import Progress

    from dxaspine.cohort_evaluation import evaluate_cohort, evaluate_model
    from dxaspine.pairing import pair_cohort, reference_paths

    if cohort is not None and (pred_dir is not None or ref_dir is not None):
        raise fail("give either PRED_DIR REF_DIR or --cohort DIR, not both")
    if cohort is None and (pred_dir is None or ref_dir is None):
        raise fail(
            "give PRED_DIR and REF_DIR (predictions and reference scans), or --cohort DIR "
            "(labelled scans to segment and evaluate)"
        )
    if cohort is None and model is not None:
        raise fail("--model needs --cohort: PRED_DIR already holds the predictions")
    options = {
        "calibration": calibration,
        "with_baseline": baseline,
        "n_bootstrap": bootstrap,
        "seed": seed,
        "split": split,
    }
    try:
        with Progress(disable=quiet, transient=True) as progress:
            if cohort is not None:
                if not cohort.is_dir():
                    raise ValueError(f"{cohort}: the cohort folder does not exist")
                n_scans = len(reference_paths(cohort))
                tasks = {
                    stage: progress.add_task(stage + "ing", total=n_scans)
                    for stage in ("segment", "evaluate")
                }
                summary = evaluate_model(
                    cohort,
                    out,
                    model=model,
                    device=device,
                    progress=lambda stage, _name: progress.advance(tasks[stage]),
                    **options,
                )
            else:
                n_scans = len(pair_cohort(pred_dir, ref_dir))
                task = progress.add_task("evaluating", total=n_scans)
                summary = evaluate_cohort(
                    pred_dir,
                    ref_dir,
                    out,
                    progress=lambda _scan_id: progress.advance(task),
                    **options,
                )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    overlap = summary["overlap"]["dxaspine"]["dice"]
    typer.echo(
        f"evaluated {summary['counts']['scans']} scans into {out}: "
        f"Dice {overlap['mean']:.4f} (SD {overlap['sd']:.4f}); report {out / 'report.html'}"
        + (" [simulated scans]" if summary.get("simulated") else "")
    )


@app.command()
def study(
    out: Annotated[
        Path, typer.Option("--out", help="Study folder (new, empty or an earlier study's).")
    ],
    n: Annotated[
        int, typer.Option("--n", help="Scans, split evenly over the device profiles.")
    ] = 1182,
    seed: Annotated[int, typer.Option(help="Cohort seed; device profile i uses seed + i.")] = 3000,
    pretrained: Annotated[
        bool, typer.Option("--pretrained", help="Evaluate the shipped model; do not train.")
    ] = False,
    model: Annotated[
        Path | None, typer.Option(help="Evaluate this model file; do not train.")
    ] = None,
    train_devices: Annotated[
        str | None,
        typer.Option(
            help="Profiles to train and test on; the others are the unseen-device cohort."
        ),
    ] = None,
    architecture: Annotated[str, typer.Option(help="dualpath or unet.")] = "unet",
    inputs: Annotated[str, typer.Option(help="Comma-separated network inputs.")] = "low,high,bone",
    base_filters: Annotated[int, typer.Option(min=1)] = 16,
    epochs: Annotated[int, typer.Option(min=1)] = 40,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_val_scans: Annotated[
        int | None, typer.Option(help="Validate each epoch on at most this many scans.")
    ] = 100,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for PyTorch.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Simulation worker processes.")] = 1,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for 95% CIs.")] = 1000,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted training run.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
) -> None:
    """The published study's protocol on a simulated cohort: simulate, split 50/25/25 by
    patient, train (unless --pretrained), evaluate validation, test and any unseen device,
    and write report.html next to the published figures."""
    import json

    from dxaspine.network import NetworkConfig
    from dxaspine.study import DEVICES, StudyConfig, run_study
    from dxaspine.train import TrainConfig

    try:
        config = StudyConfig(
            n_scans=n,
            seed=seed,
            devices=DEVICES,
            train_devices=(
                tuple(d.strip() for d in train_devices.split(",") if d.strip())
                if train_devices
                else None
            ),
            pretrained=pretrained,
            model=model,
            train=TrainConfig(
                network=NetworkConfig(
                    architecture=architecture,
                    inputs=tuple(i.strip() for i in inputs.split(",") if i.strip()),
                    base_filters=base_filters,
                ),
                epochs=epochs,
                batch_size=batch_size,
                max_val_scans=max_val_scans,
                seed=seed,
                threads=threads,
            ),
            jobs=jobs,
            n_bootstrap=bootstrap,
            device=device,
            resume=resume,
        )
        record = run_study(out, config, quiet=quiet)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    test = json.loads((Path(record["evaluations"]["test"]["folder"]) / "summary.json").read_text())
    dice = test["overlap"]["dxaspine"]["dice"]
    typer.echo(
        f"study of {n} simulated scans in {out}: test Dice {dice['mean']:.4f} "
        f"(SD {dice['sd']:.4f}); report {out / 'report.html'}"
    )


@app.command("export-onnx")
def export_onnx(
    out: Annotated[Path, typer.Option("--out", help="ONNX file to write.")],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file (.pt, .onnx) or shipped model name; default: the shipped model."
        ),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            help="Shipped model to export: dual-energy-bone (the default for dual-energy "
            "scans), dual-energy or single-image."
        ),
    ] = "dual-energy-bone",
) -> None:
    """Export a model to ONNX with its preprocessing settings (`segment --model X.onnx` runs it)."""
    from dxaspine.infer import export_model_onnx, load_model, shipped_model_path

    try:
        source = model or shipped_model_path(kind)
        path = export_model_onnx(load_model(source), out)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"wrote {path} from {source}")


def _simulate_from_ct(
    ct: Path | None,
    labels: Path | None,
    out: Path,
    device: str,
    seed: int,
    label_map: str,
    truth_maps: bool,
    preview: bool,
    pose: str,
    marrow_fat: float = 0.0,
) -> None:
    from dxaspine.simulate.ct import CTError, HUCalibration
    from dxaspine.simulate.ct_scan import coverage_note, simulate_from_ct

    if ct is None or labels is None:
        raise fail("--from-ct CT and --labels SEG go together: give both NIfTI volumes")
    try:
        path, scan = simulate_from_ct(
            ct,
            labels,
            out,
            device,
            seed,
            label_map,
            truth_maps=truth_maps,
            preview=preview,
            pose=pose,
            calibration=HUCalibration(marrow_fat_fraction=marrow_fat),
        )
    except (CTError, OSError) as exc:
        raise fail(str(exc)) from None
    truth = scan.meta["truth"]
    bmd = ", ".join(f"{n} {v['bmd_g_cm2']:.3f}" for n, v in truth["vertebrae"].items())
    typer.echo(
        f"wrote {path} ({device}, seed {seed}, {pose} pose) from {ct.name}: true BMD g/cm2 {bmd}"
    )
    note = coverage_note(scan)
    if note:
        typer.echo(f"warning: {note}", err=True)


def _simulate_ct_list(
    ct_list: Path,
    out: Path,
    devices: str,
    poses: str,
    draws: int,
    seed: int,
    label_map: str,
    marrow_fat: float,
    jobs: int,
    truth_maps: bool,
    preview: bool,
    quiet: bool,
    export: bool = False,
    resume: bool = False,
) -> None:
    from dxaspine.simulate.ct import CTError, HUCalibration
    from dxaspine.simulate.ct_cohort import CTCohortConfig, read_ct_list, simulate_ct_cohort

    try:
        cases = read_ct_list(ct_list)
        config = CTCohortConfig(
            devices=tuple(d.strip() for d in devices.split(",") if d.strip()),
            poses=tuple(p.strip() for p in poses.split(",") if p.strip()),
            draws=draws,
            seed=seed,
            label_map=label_map,
            calibration=HUCalibration(marrow_fat_fraction=marrow_fat),
            truth_maps=truth_maps,
            export=export,
            jobs=jobs,
            preview=preview,
            resume=resume,
        )
        result = simulate_ct_cohort(cases, config, out, show_progress=not quiet)
    except (CTError, OSError) as exc:
        raise fail(str(exc)) from None
    for error in result.errors:
        typer.echo(
            f"warning: {error['case_id']} ({error['pose']} pose): {error['error']}", err=True
        )
    partial = sorted({row["case_id"] for row in result.rows if row["partial_coverage"]})
    if partial:
        typer.echo(
            f"warning: partial L1-L4 coverage in {len(partial)} CTs ({', '.join(partial)}); "
            f"see vertebrae_labelled in {out / 'ct_cohort.csv'}",
            err=True,
        )
    typer.echo(result.summary(out))


def _parse_spacing(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise ValueError(f"--spacing-mm must be 'row,col' in mm, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"--spacing-mm must be two positive numbers 'row,col', got {text!r}")
    return (values[0], values[1])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
