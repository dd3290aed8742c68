"""Training: split by patient, DXA-respecting augmentation, run folder, resume."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dxaspine.infer import load_model
from dxaspine.io import write_scan
from dxaspine.network import NetworkConfig
from dxaspine.preprocess import pixel_noise_sd
from dxaspine.scan import ScanError
from dxaspine.simulate.generate import simulate_scan
from dxaspine.train import (
    AugmentConfig,
    Example,
    TrainConfig,
    augment_batch,
    gaussian_blur,
    make_example,
    smooth_field,
    split_by_patient,
    train,
)

TINY = TrainConfig(
    network=NetworkConfig(base_filters=4, levels=3),
    epochs=2,
    batch_size=2,
    patch_px=(96, 80),
    seed=3,
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    for index in range(6):
        write_scan(simulate_scan(5, index, "lunar-like"), folder / f"scan{index}.npz")
    return folder


def test_split_is_by_patient_deterministic_and_about_half_quarter_quarter():
    ids = [(f"s{i}", f"P{i // 2}") for i in range(200)]  # two scans per patient
    split = split_by_patient(ids, seed=1)
    assert split == split_by_patient(ids, seed=1)
    assert split != split_by_patient(ids, seed=2)
    patient = dict(ids)
    sets = {name: {patient[s] for s in split[name]} for name in split}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sorted(s for name in split for s in split[name]) == sorted(s for s, _ in ids)
    assert [len(split[n]) for n in ("train", "val", "test")] == [100, 50, 50]


def _self_labelled_example() -> Example:
    """An example whose image is its own class-1 map: alignment is checkable."""
    labels = np.zeros((120, 90), np.uint8)
    labels[20:50, 30:60] = 1
    labels[60:100, 25:55] = 2
    image = (labels == 1).astype(np.float32)
    target = np.stack([(labels == c).astype(np.float32) for c in range(5)])
    return Example("x", torch.from_numpy(image[None]), torch.from_numpy(target), labels, (120, 90))


PLAIN = AugmentConfig(
    contrast=0.0, noise_sd=0.0, crop_probability=0.0, blur_probability=0.0, background_sd=0.0
)


def test_pixel_noise_augmentation_raises_each_channels_own_noise_by_up_to_the_factor():
    labelled = _self_labelled_example()
    smooth = torch.zeros((2, 120, 90))
    noise_sd = torch.tensor([0.1, 0.0])
    example = Example("x", smooth, labelled.target, labelled.labels, (120, 90), noise_sd)
    factor = 3.0
    noisy = replace(PLAIN, pixel_noise_factor=factor, pixel_noise_probability=1.0)
    config = replace(TINY, augment=noisy, patch_px=(128, 96))
    generator = torch.Generator().manual_seed(0)
    measured = []
    for _ in range(12):
        inputs, _ = augment_batch([example], config, generator)
        measured.append(pixel_noise_sd(inputs[0, 0].numpy()))
        assert float(inputs[0, 1].abs().max()) == 0.0  # a channel without noise gets none
    # Added SD is 0.1 x sqrt(f^2 - 1) for f drawn in 1..3: 0 to 0.28, varying.
    assert max(measured) <= 0.1 * np.sqrt(factor**2 - 1) * 1.05
    assert max(measured) > 0.15 and min(measured) < max(measured) - 0.05
    off = replace(TINY, augment=PLAIN, patch_px=(128, 96))
    inputs, _ = augment_batch([example], off, torch.Generator().manual_seed(0))
    assert float(inputs.abs().max()) == 0.0


def test_grained_pixel_noise_keeps_its_size_and_gains_structure():
    labelled = _self_labelled_example()
    example = Example(
        "x",
        torch.zeros((1, 120, 90)),
        labelled.target,
        labelled.labels,
        (120, 90),
        torch.tensor([0.1]),
    )
    grained = replace(
        PLAIN, pixel_noise_factor=3.0, pixel_noise_probability=1.0, pixel_noise_grain_mm=3.0
    )
    config = replace(TINY, augment=grained, patch_px=(128, 96))
    generator = torch.Generator().manual_seed(1)
    correlations, sds = [], []
    for _ in range(12):
        inputs, _ = augment_batch([example], config, generator)
        image = inputs[0, 0].numpy()
        sds.append(float(image.std()))
        below = np.corrcoef(image[:-1].ravel(), image[1:].ravel())[0, 1]
        beside = np.corrcoef(image[:, :-1].ravel(), image[:, 1:].ravel())[0, 1]
        correlations.append((below, beside))
    # The SD is the white noise's (0.1 x sqrt(f^2 - 1), f in 1..3); neighbours now correlate,
    # more along one axis than the other in some draws (streaks).
    assert max(sds) <= 0.1 * np.sqrt(8) * 1.05 and max(sds) > 0.1
    assert max(max(c) for c in correlations) > 0.8
    assert max(abs(b - s) for b, s in correlations) > 0.2


def test_examples_carry_their_inputs_pixel_noise():
    example = make_example(simulate_scan(5, 0, "hologic-like"), TINY)
    assert example.noise_sd is not None and example.noise_sd.shape == (3,)
    for channel, sd in zip(example.inputs, example.noise_sd, strict=True):
        assert 0 < float(sd) < 1 and float(sd) == pytest.approx(pixel_noise_sd(channel.numpy()))


def test_augmentation_moves_image_and_labels_together_and_never_flips_vertically():
    config = replace(TINY, augment=PLAIN, patch_px=(128, 96))
    generator = torch.Generator().manual_seed(0)
    example = _self_labelled_example()
    for _ in range(5):
        inputs, targets = augment_batch([example], config, generator)
        assert inputs.shape == (1, 1, 128, 96) and targets.shape == (1, 5, 128, 96)
        np.testing.assert_allclose(inputs[0, 0], targets[0, 1], atol=1e-5)
        np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-5)
        rows_1 = torch.nonzero(targets[0, 1] > 0.5)[:, 0].float().mean()
        rows_2 = torch.nonzero(targets[0, 2] > 0.5)[:, 0].float().mean()
        assert rows_1 < rows_2  # L1 stays on top


def test_inversion_augmentation_flips_polarity_sometimes():
    config = replace(TINY, augment=replace(PLAIN, invert=True))
    generator = torch.Generator().manual_seed(0)
    example = _self_labelled_example()
    signs = set()
    for _ in range(12):
        inputs, targets = augment_batch([example], config, generator)
        signs.add(float(torch.sign((inputs[0, 0] * targets[0, 1]).sum())))
    assert signs == {1.0, -1.0}


def test_cropped_batches_are_shorter_renormalised_and_keep_labels_aligned():
    augment = replace(PLAIN, crop_probability=1.0, crop_min_mm=48.0)
    config = replace(TINY, augment=augment, patch_px=(128, 96))
    generator = torch.Generator().manual_seed(1)
    example = _self_labelled_example()
    heights = set()
    for _ in range(8):
        inputs, targets = augment_batch([example, example], config, generator)
        rows = inputs.shape[2]
        heights.add(rows)
        assert rows % 16 == 0 and 48 <= rows <= 128 and targets.shape[2] == rows
        for k in range(2):
            image = inputs[k, 0]
            if image.std() > 0:
                assert abs(float(image.mean())) < 1e-4 and abs(float(image.std()) - 1) < 1e-3
                # Still the class-1 map, up to the renormalisation's affine change.
                corr = np.corrcoef(image.flatten(), targets[k, 1].flatten())[0, 1]
                assert corr > 0.999 or targets[k, 1].max() < 0.5
    assert len(heights) > 1


def test_blur_keeps_the_mean_and_softens_edges():
    image = torch.zeros(1, 1, 40, 40)
    image[:, :, 10:30, 10:30] = 1.0
    blurred = gaussian_blur(image, 2.0)
    assert blurred.shape == image.shape
    assert abs(float(blurred.sum() - image.sum())) < 1e-3 * float(image.sum())
    assert float(blurred[0, 0, 20].diff().abs().max()) < 0.3
    assert torch.equal(gaussian_blur(image, 0.1), image)


def test_anisotropic_blur_softens_one_axis_only():
    image = torch.zeros(1, 1, 40, 40)
    image[:, :, 10:30, 10:30] = 1.0
    rows_only = gaussian_blur(image, (2.0, 0.0))
    assert abs(float(rows_only.sum() - image.sum())) < 1e-3 * float(image.sum())
    torch.testing.assert_close(rows_only[0, 0, 20], image[0, 0, 20])  # columns untouched
    assert float(rows_only[0, 0, :, 20].diff().abs().max()) < 0.3


def test_elastic_deformation_bends_image_and_labels_alike():
    plain = replace(TINY, augment=PLAIN, patch_px=(128, 96))
    bent = replace(plain, augment=replace(PLAIN, elastic_mm=4.0, elastic_probability=1.0))
    example = _self_labelled_example()
    straight = augment_batch([example], plain, torch.Generator().manual_seed(2))
    inputs, targets = augment_batch([example], bent, torch.Generator().manual_seed(2))
    np.testing.assert_allclose(inputs[0, 0], targets[0, 1], atol=1e-5)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-5)
    moved = (targets[0, 1] - straight[1][0, 1]).abs().sum()
    assert 0 < moved < 0.5 * float(straight[1][0, 1].sum())  # bent, not scrambled
    off = replace(plain, augment=replace(PLAIN, elastic_mm=4.0, elastic_probability=0.0))
    never = augment_batch([example], off, torch.Generator().manual_seed(2))
    torch.testing.assert_close(never[1], straight[1])


def test_background_field_is_smooth_and_leaves_the_labels_alone():
    generator = torch.Generator().manual_seed(2)
    field = smooth_field((120, 90), 24.0, generator)
    assert field.shape == (1, 1, 120, 90)
    assert abs(float(field.mean())) < 1e-4 and abs(float(field.std()) - 1) < 1e-3
    # Smooth: neighbouring pixels differ by a small fraction of the field's SD.
    assert float(field.diff(dim=2).abs().max()) < 0.25
    config = replace(TINY, augment=replace(PLAIN, background_sd=0.6), patch_px=(128, 96))
    example = _self_labelled_example()
    plain = augment_batch(
        [example],
        replace(TINY, augment=PLAIN, patch_px=(128, 96)),
        torch.Generator().manual_seed(3),
    )
    shifted = augment_batch([example], config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(plain[1], shifted[1])
    assert not torch.allclose(plain[0], shifted[0])


def test_background_field_spares_the_bone_input():
    """The random background stands in for soft tissue, which the bone input cancels."""
    example = _self_labelled_example()
    three = replace(example, inputs=example.inputs.repeat(3, 1, 1))
    network = NetworkConfig(base_filters=4, levels=3, inputs=("low", "high", "bone"))
    plain = replace(TINY, network=network, augment=PLAIN, patch_px=(128, 96))
    busy = replace(plain, augment=replace(PLAIN, background_sd=0.6))
    before = augment_batch([three], plain, torch.Generator().manual_seed(4))[0]
    after = augment_batch([three], busy, torch.Generator().manual_seed(4))[0]
    torch.testing.assert_close(before[0, 2], after[0, 2])
    assert not torch.allclose(before[0, 0], after[0, 0])
    torch.testing.assert_close(after[0, 0], after[0, 1])


def test_training_run_writes_its_folder_and_resumes(cohort, tmp_path):
    run = tmp_path / "run"
    best = train(cohort, run, TINY, quiet=True, name="tiny")
    assert best == run / "best.pt" and best.exists()
    for name in ("config.json", "labels.json", "split.json", "metrics.csv", "last.pt"):
        assert (run / name).exists(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["val_dice_vertebrae"]) <= 1 for r in rows)
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 6
    assert json.loads((run / "labels.json").read_text())["1"] == "L1"
    model = load_model(best)
    assert model.name == "tiny" and model.network == TINY.network

    with pytest.raises(ScanError, match="--resume"):
        train(cohort, run, TINY, quiet=True)
    longer = replace(TINY, epochs=3)
    (run / "config.json").write_text(json.dumps(longer.to_dict()))
    train(cohort, run, longer, resume=True, quiet=True)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_training_is_seeded(cohort, tmp_path):
    config = replace(TINY, epochs=1)
    train(cohort, tmp_path / "a", config, quiet=True)
    train(cohort, tmp_path / "b", config, quiet=True)
    a = next(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))
    b = next(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    assert a["train_loss"] == b["train_loss"]


def test_bad_training_folders_are_refused(tmp_path, cohort):
    with pytest.raises(ScanError, match="no such folder"):
        train(tmp_path / "missing", tmp_path / "run", TINY, quiet=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanError, match="no scan files"):
        train(tmp_path / "empty", tmp_path / "run", TINY, quiet=True)
    bad_split = tmp_path / "split.json"
    bad_split.write_text(json.dumps({"train": ["nope"], "val": []}))
    with pytest.raises(ScanError, match="not in the folder"):
        train(cohort, tmp_path / "run2", TINY, split_file=bad_split, quiet=True)
