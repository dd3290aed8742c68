"""A cohort of DXA scans from many labelled CTs: a CT list in, NPZ scans and
ct_cohort.csv out.

Each CT is projected once per pose (the slow step, a few seconds to a minute)
and then rendered on every device with `draws` photon-noise draws (a tenth of
a second each). All scans of a CT share its patient id, so `dxaspine train`
never puts one patient's scans in two of its train/val/test sets. A CT that
cannot be read is reported in ct_cohort_errors.csv and the others go on.

Draw d of a CT, pose and device uses the noise seed
`draw_seed(seed, case_id, pose, device, d)`, stored in ct_cohort.csv:
`dxaspine simulate --from-ct CT --labels SEG --seed <it>` renders the same
images. Adding or removing CTs from the list changes no other CT's bytes.
"""

from __future__ import annotations

import csv
import io
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dxaspine import __version__
from dxaspine.io._common import write_file_atomic
from dxaspine.scan import Scan
from dxaspine.simulate.cohort import EXPORT_STREAM, export_columns
from dxaspine.simulate.ct import LUMBAR, CTError, HUCalibration, parse_label_map
from dxaspine.simulate.ct_pose import POSES
from dxaspine.simulate.ct_scan import ct_scan_id, posed_id, project_ct, scan_from_projection
from dxaspine.simulate.devices import DEVICES
from dxaspine.simulate.export import render_export
from dxaspine.simulate.generate import RenderOptions

LIST_COLUMNS = ("ct", "labels")
OPTIONAL_COLUMNS = ("case_id", "patient_id", "label_map")
SUMMARY_FILE = "ct_cohort.csv"
ERRORS_FILE = "ct_cohort_errors.csv"


@dataclass(frozen=True)
class CTCase:
    """One row of a CT list: a CT, its vertebra labels and whose they are."""

    ct_path: Path
    labels_path: Path
    case_id: str
    """Stem of the scans' ids ('ct-<CT file name>' unless the list names it)."""
    patient_id: str
    """Shared by all scans of this CT (and of other CTs of the same patient)."""
    label_map: str | None = None
    """This CT's label map; None: the cohort's."""


@dataclass(frozen=True)
class CTCohortConfig:
    """What `dxaspine simulate --ct-list` makes from each CT."""

    devices: tuple[str, ...] = ("hologic-like",)
    poses: tuple[str, ...] = ("ct",)
    draws: int = 1
    """Photon-noise draws per CT, pose and device."""
    seed: int = 0
    label_map: str = "totalsegmentator"
    calibration: HUCalibration = field(default_factory=HUCalibration)
    truth_maps: bool = False
    export: bool = False
    """Store each scan as the scanner's single-image export instead (simulate/export.py),
    drawn from `numpy.random.default_rng([seed, EXPORT_STREAM])` with the scan's seed."""
    jobs: int = 1
    preview: bool = False
    resume: bool = False
    """Keep the scans an earlier run with the same settings left in the output folder
    (same dxaspine version, noise seed, HU calibration, label map, export and truth
    maps) and project only the CTs and poses that lack one: long batches can be
    stopped and rerun. It trusts that the CT and label files did not change."""

    def __post_init__(self) -> None:
        unknown = [d for d in self.devices if d not in DEVICES]
        if unknown or not self.devices:
            raise CTError(
                f"unknown device profile '{', '.join(unknown)}'; choose from {', '.join(DEVICES)}"
            )
        bad_poses = [p for p in self.poses if p not in POSES]
        if bad_poses or not self.poses:
            raise CTError(f"unknown pose '{', '.join(bad_poses)}'; choose from {', '.join(POSES)}")
        if len(set(self.devices)) != len(self.devices) or len(set(self.poses)) != len(self.poses):
            raise CTError("each device and each pose may be named once")
        if self.draws < 1:
            raise CTError(f"draws must be at least 1, got {self.draws}")


@dataclass(frozen=True)
class CTCohortResult:
    """What a run wrote: one row per scan, one per CT and pose that failed."""

    rows: list[dict]
    errors: list[dict]
    seconds: float
    other_scans: list[str] = field(default_factory=list)
    kept: int = 0
    """Scans of an earlier run kept with `resume`."""
    """Scan files in the output folder that this run did not write (an earlier run's):
    `dxaspine train` would read them too."""

    def summary(self, out: Path) -> str:
        cases = len({row["case_id"] for row in self.rows})
        kept = f" ({self.kept} kept from an earlier run)" if self.kept else ""
        text = (
            f"wrote {len(self.rows)} scans{kept} from {cases} CTs and {SUMMARY_FILE} to {out} "
            f"in {self.seconds:.1f} s"
        )
        if self.errors:
            text += f"; {len(self.errors)} CT/pose pairs failed, see {out / ERRORS_FILE}"
        if self.other_scans:
            text += (
                f"; the folder also holds {len(self.other_scans)} scans this run did not "
                f"write (e.g. {self.other_scans[0]})"
            )
        return text


def read_ct_list(path: Path | str) -> list[CTCase]:
    """Read a CT list: a CSV with columns `ct` and `labels` (NIfTI paths, relative
    to the CSV's folder unless absolute; `labels` may be a folder of
    TotalSegmentator masks) and optionally `case_id`, `patient_id` and
    `label_map`. Raises CTError naming the line of a missing file, column or id."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CTError(f"{path}: cannot read the CT list ({exc.strerror or exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in LIST_COLUMNS if c not in columns]
    if missing:
        raise CTError(
            f"{path}: the CT list needs the columns {', '.join(LIST_COLUMNS)} "
            f"(optional: {', '.join(OPTIONAL_COLUMNS)}); missing {', '.join(missing)}"
        )
    cases: list[CTCase] = []
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        files = []
        for column in LIST_COLUMNS:
            if not row[column]:
                raise CTError(f"{path}, line {line}: empty '{column}'")
            file = Path(row[column]).expanduser()
            file = file if file.is_absolute() else path.parent / file
            if not (file.is_file() or (column == "labels" and file.is_dir())):
                raise CTError(f"{path}, line {line}: {column} file {file} does not exist")
            files.append(file)
        case_id = row.get("case_id") or ct_scan_id(files[0])
        cases.append(
            CTCase(
                files[0],
                files[1],
                case_id,
                row.get("patient_id") or case_id,
                row.get("label_map") or None,
            )
        )
    if not cases:
        raise CTError(f"{path}: the CT list has no rows")
    clashes = sorted(k for k, n in Counter(c.case_id for c in cases).items() if n > 1)
    if clashes:
        raise CTError(
            f"{path}: several CTs would write scans named {', '.join(clashes)}; "
            "give each row its own 'case_id' column value"
        )
    return cases


def draw_seed(seed: int, case_id: str, pose: str, device: str, draw: int) -> int:
    """The noise seed of one scan: independent across CTs, poses, devices and draws,
    and unchanged when other CTs join or leave the list."""
    words = [seed, *(zlib.crc32(s.encode("utf-8")) for s in (case_id, pose, device)), draw]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def scan_name(case: CTCase, pose: str, device: str, draw: int) -> str:
    """'<case_id>[-dxa]-<device>-d<draw>' ('-dxa' as `--from-ct --pose dxa` names it)."""
    return f"{posed_id(case.case_id, pose)}-{device}-d{draw:02d}"


def _scan_row(scan: Scan, case: CTCase, pose: str, draw: int, seed: int) -> dict:
    truth = scan.meta["truth"]
    anatomy = scan.meta["anatomy"]
    row = {
        "scan_id": scan.scan_id,
        "patient_id": scan.patient_id,
        "case_id": case.case_id,
        "file": f"{scan.scan_id}.npz",
        "device": scan.device,
        "pose": pose,
        "draw": draw,
        "seed": seed,
        "ct_file": str(case.ct_path),
        "labels_file": str(case.labels_path),
        "vertebrae_labelled": " ".join(anatomy["vertebrae_labelled"]),
        "partial_coverage": int(anatomy["partial_coverage"]),
    }
    for name in LUMBAR:
        row[f"bmd_{name}_g_cm2"] = truth["vertebrae"].get(name, {}).get("bmd_g_cm2")
    row["bmd_total_g_cm2"] = truth.get("total_bmd_g_cm2")
    return row | export_columns(scan)


def _kept_rows(case: CTCase, pose: str, config: CTCohortConfig, out: Path) -> list[dict] | None:
    """The rows of this CT and pose from an earlier run's scans, when every one is
    there and was made with these settings; None otherwise."""
    from dxaspine.io import read_scan

    try:
        label_map = parse_label_map(case.label_map or config.label_map)
    except CTError:  # reported when the CT is projected
        return None
    rows = []
    for device in config.devices:
        for draw in range(config.draws):
            path = out / f"{scan_name(case, pose, device, draw)}.npz"
            seed = draw_seed(config.seed, case.case_id, pose, device, draw)
            try:
                scan = read_scan(path)
            except Exception:  # missing or unreadable: made again
                return None
            anatomy = scan.meta.get("anatomy", {})
            same = (
                scan.meta.get("simulator_version") == __version__
                and anatomy.get("noise_seed") == seed
                and anatomy.get("pose") == pose
                and anatomy.get("label_map") == label_map.name
                and anatomy.get("label_ids") == dict(label_map.vertebrae)
                and anatomy.get("hu_calibration") == config.calibration.to_dict()
                and scan.patient_id == case.patient_id
                and ("export" in scan.meta) == config.export
                and bool(scan.truth_maps) == config.truth_maps
            )
            if not same:
                return None
            rows.append(_scan_row(scan, case, pose, draw, seed))
    return rows


def _simulate_case(
    args: tuple[CTCase, CTCohortConfig, Path],
) -> tuple[list[dict], list[dict], int]:
    """All scans of one CT (each pose projected once); errors per pose, not raised:
    a CT that fails for any reason is listed with it, and the batch goes on.
    Returns (rows, errors, scans kept from an earlier run)."""
    from dxaspine.io import write_scan

    case, config, out = args
    options = RenderOptions(truth_maps=config.truth_maps)
    rows, errors, kept = [], [], 0
    for pose in config.poses:
        earlier = _kept_rows(case, pose, config, out) if config.resume else None
        if earlier is not None:
            rows += earlier
            kept += len(earlier)
            continue
        try:
            projection, source = project_ct(
                case.ct_path,
                case.labels_path,
                case.label_map or config.label_map,
                config.calibration,
                pose,
            )
            for device in config.devices:
                for draw in range(config.draws):
                    seed = draw_seed(config.seed, case.case_id, pose, device, draw)
                    ids = {
                        "scan_id": scan_name(case, pose, device, draw),
                        "patient_id": case.patient_id,
                        "noise_seed": seed,
                    }
                    scan = scan_from_projection(
                        projection, {**source, **ids}, device, seed, options
                    )
                    if config.export:
                        scan = render_export(scan, np.random.default_rng([seed, EXPORT_STREAM]))
                    write_scan(scan, out / f"{scan.scan_id}.npz")
                    rows.append(_scan_row(scan, case, pose, draw, seed))
        except Exception as exc:  # one odd CT must not end a long batch
            known = isinstance(exc, (CTError, OSError))
            errors.append(
                {
                    "case_id": case.case_id,
                    "pose": pose,
                    "ct_file": str(case.ct_path),
                    "error": str(exc) if known else f"{type(exc).__name__}: {exc}",
                }
            )
    return rows, errors, kept


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_file_atomic(path, buffer.getvalue())


def simulate_ct_cohort(
    cases: list[CTCase], config: CTCohortConfig, out: Path | str, show_progress: bool = True
) -> CTCohortResult:
    """Simulate every CT of the list into `out`; write ct_cohort.csv (and
    ct_cohort_errors.csv when a CT failed). Raises CTError when none succeeded."""
    from rich.progress import Progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(case, config, out) for case in cases]
    start = time.perf_counter()
    rows: list[dict] = []
    errors: list[dict] = []
    kept = 0
    with Progress(disable=not show_progress, transient=True) as progress:
        bar = progress.add_task(f"projecting {len(cases)} CTs", total=len(cases))
        if config.jobs > 1 and len(cases) > 1:
            with ProcessPoolExecutor(max_workers=config.jobs) as pool:
                results = pool.map(_simulate_case, tasks)
                for case_rows, case_errors, case_kept in results:
                    rows += case_rows
                    errors += case_errors
                    kept += case_kept
                    progress.advance(bar)
        else:
            for task in tasks:
                case_rows, case_errors, case_kept = _simulate_case(task)
                rows += case_rows
                errors += case_errors
                kept += case_kept
                progress.advance(bar)
    errors_path = out / ERRORS_FILE
    if errors:
        _write_csv(errors_path, errors)
    elif errors_path.exists():
        errors_path.unlink()
    if not rows:
        first = errors[0]
        raise CTError(
            f"no CT of the list gave a scan ({len(errors)} failed, see {errors_path}); "
            f"first: {first['case_id']} ({first['pose']} pose): {first['error']}"
        )
    _write_csv(out / SUMMARY_FILE, rows)
    if config.preview:
        from dxaspine.simulate.cohort import write_previews

        write_previews(out, [row["file"] for row in rows])
    written = {row["file"] for row in rows}
    others = sorted(p.name for p in out.glob("*.npz") if p.name not in written)
    return CTCohortResult(rows, errors, time.perf_counter() - start, others, kept)
