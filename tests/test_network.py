"""Every network in the registry: shapes, gradients, odd sizes, save/load."""

import pytest
import torch

from dxaspine.infer import SegmentationModel, load_model
from dxaspine.network import (
    N_CLASSES,
    LossConfig,
    NetworkConfig,
    build_model,
    count_parameters,
    soft_dice_loss,
)
from dxaspine.preprocess import Preprocessing

CONFIGS = [
    NetworkConfig("dualpath", ("low", "high"), base_filters=4, levels=3),
    NetworkConfig("dualpath", ("low", "high"), base_filters=4, levels=3, skip_merge="concat"),
    NetworkConfig("unet", ("low",), base_filters=4, levels=3),
    NetworkConfig("unet", ("low", "high"), base_filters=4, levels=3),
    NetworkConfig("unet", ("image",), base_filters=4, levels=3),
]
IDS = ["dualpath", "dualpath-concat", "unet-low", "unet-stacked", "unet-image"]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_forward_backward(config):
    torch.manual_seed(0)
    model = build_model(config)
    x = torch.randn(2, len(config.inputs), 48, 40)
    logits = model(x)
    assert logits.shape == (2, N_CLASSES, 48, 40)
    target = torch.nn.functional.one_hot(torch.randint(0, N_CLASSES, (2, 48, 40)), N_CLASSES)
    loss = soft_dice_loss(logits, target.permute(0, 3, 1, 2).float(), LossConfig())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("shape", [(37, 29), (50, 63)])
def test_odd_image_sizes_keep_their_shape(config, shape):
    model = build_model(config).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, len(config.inputs), *shape))
    assert logits.shape == (1, N_CLASSES, *shape)


def test_padding_does_not_change_an_already_padded_input():
    config = CONFIGS[0]
    torch.manual_seed(1)
    model = build_model(config).eval()
    x = torch.randn(1, 2, 48, 40)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_padded(x))


def test_dual_path_has_one_encoder_per_input_and_is_registered():
    model = build_model(CONFIGS[0])
    assert len(model.encoders[0]) == 2
    assert count_parameters(model) > count_parameters(build_model(CONFIGS[3])) / 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"architecture": "resnet"},
        {"architecture": "dualpath", "inputs": ("low",)},  # dual path needs two inputs
        {"inputs": ("low", "kv")},
        {"base_filters": 0},
        {"skip_merge": "sum"},
    ],
)
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        NetworkConfig(**kwargs)


def test_perfect_prediction_has_zero_dice_loss_and_wrong_one_high():
    target = torch.zeros(1, N_CLASSES, 8, 8)
    target[:, 0, :4] = 1
    target[:, 1, 4:] = 1
    perfect = (target * 40 - 20).clone()
    wrong = perfect.flip(1)
    config = LossConfig(cross_entropy_weight=0.0, ignore=(0,))
    # Classes 2..4 are absent in both: the smoothed Dice counts them as perfect.
    assert float(soft_dice_loss(perfect, target, config)) < 1e-4
    assert float(soft_dice_loss(wrong, target, config)) > 0.2


@pytest.mark.parametrize("half", [False, True])
def test_save_load_round_trip(tmp_path, half):
    config = CONFIGS[0]
    torch.manual_seed(2)
    module = build_model(config)
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(2, 2, 32, 32) * 3 + 1)
    module.eval()
    model = SegmentationModel(config, Preprocessing(spacing_mm=0.8), module, {"name": "t"})
    path = model.save(tmp_path / "m.pt", half=half)
    loaded = load_model(path)
    assert loaded.network == config
    assert loaded.preprocessing.spacing_mm == 0.8
    assert loaded.name == "t"
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        difference = (loaded.module(x) - module(x)).abs().max()
    assert float(difference) < (5e-2 if half else 1e-6)


def test_load_refuses_files_that_are_not_models(tmp_path):
    with pytest.raises(ValueError, match="no such model"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(ValueError, match="not a dxaspine model"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dxaspine model"):
        load_model(tmp_path / "other.pt")
