#!/bin/bash
# Set up and run loco (docs/experiments/loco.prereg.md). All scans SIMULATED.
# Usage: docs/experiments/loco/setup.sh CXR MASK EXAMPLE_CT EXAMPLE_SEG
set -euo pipefail
cd "$(dirname "$0")/../../.."
CXR=$1 MASK=$2 EXAMPLE_CT=$3 EXAMPLE_SEG=$4
BASE=build/runs/bmd07s1
W=build/loco
mkdir -p $W
printf 'ct,labels,case_id\n%s,%s,ct-cxr\n' "$CXR" "$MASK" > $W/cxr.csv
printf 'ct,labels,case_id\n%s,%s,ct-example_ct\n' "$EXAMPLE_CT" "$EXAMPLE_SEG" > $W/abd.csv
for ct in cxr abd; do
  .venv/bin/dxaspine simulate --ct-list $W/$ct.csv --out $W/ct_$ct --device hologic-like,lunar-like \
    --pose ct,dxa --draws 8 --seed 0 --quiet
done
for run in none cxr abd; do
  data=$W/data_$run run_dir=build/runs/loco_$run
  rm -rf "$data" "$run_dir"
  mkdir -p "$data" "$run_dir"
  for f in build/cohort_bmd15/*/*.npz; do ln -s "$(realpath "$f")" "$data/"; done
  if [ "$run" != none ]; then
    for f in $W/ct_$run/*.npz; do ln -s "$(realpath "$f")" "$data/"; done
  fi
  cp $BASE/last.pt $BASE/labels.json $BASE/metrics.csv "$run_dir/"
  .venv/bin/python - "$BASE" "$run_dir" "$W/ct_$run" <<'PY'
import json, sys
from pathlib import Path
base, run_dir, ct = (Path(p) for p in sys.argv[1:])
config = json.loads((base / "config.json").read_text())
config.update(epochs=50, patience=100, threads=1)
(run_dir / "config.json").write_text(json.dumps(config, indent=2))
split = json.loads((base / "split.json").read_text())
if ct.is_dir():
    split["train"] += sorted(p.stem for p in ct.glob("*.npz"))
(run_dir / "split.json").write_text(json.dumps(split, indent=2))
print(run_dir, {k: len(v) for k, v in split.items()})
PY
done
