"""Working grid, normalisation and the way back to the scan grid."""

import numpy as np
import pytest

from dxaspine.preprocess import (
    Preprocessing,
    bone_image,
    input_image,
    network_input,
    normalise,
    pixel_noise_sd,
    probabilities_to_labels,
    soft_labels,
    soft_tissue_ratio,
)


def test_working_shape_follows_physical_size(make_scan):
    scan = make_scan(shape=(200, 250), spacing_mm=(0.9, 0.6))
    assert Preprocessing(spacing_mm=1.0).working_shape(scan.shape, scan.spacing_mm) == (180, 150)
    inputs = network_input(scan, ("low", "high"), Preprocessing())
    assert inputs.shape == (2, 180, 150)
    assert inputs.dtype == np.float32


def test_normalise_gives_zero_mean_unit_sd_and_survives_flat_images():
    rng = np.random.default_rng(0)
    image = rng.normal(5.0, 3.0, (40, 30))
    out = normalise(image)
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4
    assert np.all(normalise(np.full((8, 8), 2.0)) == 0)


def test_soft_labels_sum_to_one_and_keep_areas():
    labels = np.zeros((90, 60), np.uint8)
    labels[10:40, 20:40] = 1
    labels[50:80, 20:40] = 2
    soft = soft_labels(labels, (45, 30))
    assert soft.shape == (5, 45, 30)
    np.testing.assert_allclose(soft.sum(axis=0), 1.0, atol=1e-5)
    # Each class keeps its area fraction on the coarser grid.
    for c in (1, 2):
        assert abs(soft[c].mean() - (labels == c).mean()) < 0.01


def test_probabilities_round_trip_to_the_scan_grid():
    labels = np.zeros((90, 60), np.uint8)
    labels[10:40, 20:40] = 1
    labels[50:80, 22:41] = 4
    back = probabilities_to_labels(soft_labels(labels, (60, 40)), labels.shape)
    assert back.shape == labels.shape
    agreement = (back == labels).mean()
    assert agreement > 0.99


def test_missing_input_image_is_a_clear_error(make_scan):
    with pytest.raises(ValueError, match="'image'"):
        input_image(make_scan(), "image")


def test_bone_input_cancels_soft_tissue_and_keeps_bone():
    """Log attenuations from soft tissue of varying thickness (organs, gas) and a
    bone block: the bone input is flat where there is no bone, whatever the soft
    tissue does, and steps up over the bone."""
    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[0:120, 0:90]
    soft_cm = 18 + 3 * np.sin(rows / 9.0) + 2 * np.cos(cols / 7.0) + rng.normal(0, 0.5, rows.shape)
    soft_cm[30:50, 10:30] -= 6  # a gas pocket
    mineral = np.zeros(rows.shape)
    mineral[60:100, 35:55] = 1.0
    mu_soft, mu_bone = (0.25, 0.20), (3.0, 1.6)  # low, high (per cm, per g/cm2)
    low = mu_soft[0] * soft_cm + mu_bone[0] * mineral
    high = mu_soft[1] * soft_cm + mu_bone[1] * mineral
    assert abs(soft_tissue_ratio(low, high) - 1.25) < 0.05
    bone = bone_image(low, high)

    def clutter(image):  # SD off the bone, relative to the bone's step
        outside, inside = image[mineral == 0], image[mineral > 0]
        return outside.std() / (inside.mean() - outside.mean())

    assert clutter(low) > 0.2
    assert clutter(bone) < 0.02


def test_bone_input_needs_both_energies(make_scan):
    scan = make_scan()
    inputs = network_input(scan, ("low", "high", "bone"), Preprocessing())
    assert inputs.shape[0] == 3 and np.isfinite(inputs).all()
    single = type(scan)(image=np.full(scan.shape, 0.5, np.float32), spacing_mm=scan.spacing_mm)
    with pytest.raises(ValueError, match="'bone'"):
        input_image(single, "bone")


def test_uncertain_vertebra_pixels_stay_spine():
    """Background 0.3, L2 0.36, L3 0.34: argmax would say background; it is spine."""
    probabilities = np.zeros((5, 4, 4), np.float32)
    probabilities[0] = 0.3
    probabilities[2] = 0.36
    probabilities[3] = 0.34
    labels = probabilities_to_labels(probabilities, (4, 4))
    assert (labels == 2).all()
    probabilities[0] = 0.6
    probabilities[2], probabilities[3] = 0.2, 0.2
    assert (probabilities_to_labels(probabilities, (4, 4)) == 0).all()


def test_pixel_noise_sd_reads_the_noise_not_the_anatomy():
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:200, 0:150]
    anatomy = 5.0 * np.sin(rows / 25.0) + 0.02 * cols  # smooth, SD about 3.5
    assert pixel_noise_sd(anatomy) < 0.05
    for sd in (0.05, 0.3):
        measured = pixel_noise_sd(anatomy + rng.normal(0, sd, anatomy.shape))
        assert abs(measured - sd) < 0.05 * sd
    with pytest.raises(ValueError, match="2-D"):
        pixel_noise_sd(np.zeros((10, 1)))
