# Two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean tables model ablation

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned in the same command so pip never pulls a CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0" -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dxaspine simulate --n 4 --seed 0 --device hologic-like --out demo_out --preview
	$(BIN)/dxaspine info demo_out/*.npz
	$(BIN)/dxaspine segment demo_out/*.npz --out demo_out/segmented
	$(BIN)/dxaspine score demo_out/s0-00000.npz --mask demo_out/segmented/s0-00000_labels.npz

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/simulate_speed.py
	$(BIN)/python benchmarks/segmentation.py

# The shipped models: simulate the training cohort (1182 scans, both device
# profiles, the published study's size), train, and copy the best weights
# into the package. About 1.5 hours on a 2-core CPU (each run 20-25 minutes
# with two threads, one after the other). The dual-energy default
# (dual-energy-bone, since 0.4.1) is the U-Net-16 on both energies and their
# soft-tissue-cancelled difference stacked; dual-energy is the same network on
# both energies alone, which beat the dual-path network of CPU size on
# validation and on the benchmark (docs/model.md and `make ablation`). Test
# cohorts in benchmarks/ use other seeds.
# The shipped files were trained on the 0.4.0 simulator (commit 5f8155a, 0.4.1);
# from 0.5 this target simulates with the current simulator (docs/model.md).
COHORT := build/cohort
$(COHORT)/lunar-like: $(STAMP)
	$(BIN)/dxaspine simulate --n 591 --seed 1001 --device hologic-like --out $(COHORT)/hologic-like --jobs 2 --quiet
	$(BIN)/dxaspine simulate --n 591 --seed 1002 --device lunar-like --out $(COHORT)/lunar-like --jobs 2 --quiet

model: $(COHORT)/lunar-like
	$(BIN)/dxaspine train $(COHORT) --run build/runs/dual_energy --architecture unet \
		--inputs low,high --base-filters 16 --epochs 30 --max-val-scans 100 --threads 2 \
		--name "dual-energy unet-16 stacked"
	$(BIN)/python scripts/ship_model.py build/runs/dual_energy/best.pt dual-energy
	$(BIN)/dxaspine train $(COHORT) --run build/runs/dual_energy_bone --architecture unet \
		--inputs low,high,bone --base-filters 16 --epochs 40 --max-val-scans 100 --threads 2 \
		--name "dual-energy unet-16 low+high+bone"
	$(BIN)/python scripts/ship_model.py build/runs/dual_energy_bone/best.pt dual-energy-bone \
		--recipe "make model (dxaspine train build/cohort --run build/runs/dual_energy_bone --architecture unet --inputs low,high,bone --base-filters 16 --epochs 40 --max-val-scans 100 --threads 2)"
	$(BIN)/dxaspine simulate --export --n 591 --seed 1001 --device hologic-like --out $(COHORT)_export/hologic-like --jobs 2 --quiet
	$(BIN)/dxaspine simulate --export --n 591 --seed 1002 --device lunar-like --out $(COHORT)_export/lunar-like --jobs 2 --quiet
	$(BIN)/dxaspine train $(COHORT)_export --run build/runs/single_image --architecture unet \
		--inputs image --base-filters 16 --invert --epochs 30 --max-val-scans 100 --threads 2 \
		--name "single-image unet-16"
	$(BIN)/python scripts/ship_model.py build/runs/single_image/best.pt single-image \
		--data "simulated scanner exports (simulate --export) of the same 1182 scans"

# The paper's ablation on the same cohort: the IVD-Net-style dual-path network
# and a U-Net on the low energy alone. Compare with
# `python benchmarks/segmentation.py --model dxaspine=... --model dualpath-8=build/runs/dualpath/best.pt ...`.
ablation: $(COHORT)/lunar-like
	$(BIN)/dxaspine train $(COHORT) --run build/runs/dualpath --architecture dualpath \
		--inputs low,high --base-filters 8 --skip-merge concat --epochs 30 --max-val-scans 100 \
		--threads 1 --name "dual-energy dualpath-8 concat"
	$(BIN)/dxaspine train $(COHORT) --run build/runs/unet_low --architecture unet \
		--inputs low --base-filters 16 --epochs 20 --max-val-scans 100 --threads 1 \
		--name "ablation unet-16 low"

# Regenerate the shipped spectra/attenuation/calibration tables (needs the `physics` extra).
tables: $(STAMP)
	$(BIN)/pip install --quiet -e ".[physics,dev]"
	$(BIN)/python scripts/make_physics_tables.py
	$(BIN)/python scripts/make_calibration_tables.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
