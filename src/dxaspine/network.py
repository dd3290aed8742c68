"""Segmentation networks: the IVD-Net-style dual-path network and U-Net baselines.

All networks map (batch, inputs, rows, cols) to (batch, 5, rows, cols) logits:
background and L1..L4. `build_model(NetworkConfig)` is the one registry; the
config is saved beside the weights, so a checkpoint rebuilds its own network.

The dual-path network follows Dolz et al. (IVD-Net, 2018/2019) as described
in ../shared/dxa-domain.md §5: one encoder per energy; each level's input is
the concatenation of the pooled outputs of every path at the level above and
the pooled input of the level above (dense connections within and across
paths); inception-like blocks with dilated branches and a residual add; the
decoder's skip is the average of the upsampled features and every path's
encoder output at that level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from dxaspine.labels import VERTEBRAE

N_CLASSES = 1 + len(VERTEBRAE)
ARCHITECTURES = ("dualpath", "unet")
INPUTS = ("low", "high", "bone", "image")
NEGATIVE_SLOPE = 0.01
"""Leaky ReLU instead of the paper's ReLU: with ReLU our first training run
let whole feature maps die over L3/L4, so the network could no longer tell
L3 from L4 (measured: L3 Dice 0.01 after 20 epochs)."""
"""Network inputs: the two energies of a raw scan, their soft-tissue-cancelled
difference (`preprocess.bone_image`), or the one exported image."""


@dataclass(frozen=True)
class NetworkConfig:
    """Which network, on which inputs, how wide and how deep.

    The defaults are the shipped dual-energy model's: a U-Net-16 on both
    energies and their soft-tissue-cancelled difference stacked. The U-Net
    beat the dual-path network of CPU size on the simulated benchmark
    (docs/model.md); the dual path is ``architecture="dualpath",
    inputs=("low", "high"), base_filters=8`` (one path per input)."""

    architecture: str = "unet"
    inputs: tuple[str, ...] = ("low", "high", "bone")
    base_filters: int = 16
    levels: int = 4
    n_classes: int = N_CLASSES
    skip_merge: str = "concat"
    """Dual path only: "mean" merges the decoder skip as in IVD-Net (average of
    the upsampled features and every path's encoder output); "concat" stacks
    them and lets the decoder block weigh them (as a U-Net does). The default
    is "concat": at the CPU size (8 filters) our "mean" runs never learned to
    tell L3 from L4 (L3 Dice 0.0 after 4 epochs, 0.01 after 20), "concat"
    learned all four by epoch 4."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        unknown = set(self.inputs) - set(INPUTS)
        if unknown or not self.inputs:
            raise ValueError(f"inputs must be a non-empty subset of {INPUTS}, got {self.inputs}")
        if self.architecture == "dualpath" and len(self.inputs) < 2:
            raise ValueError("the dual-path network needs at least two inputs (one path each)")
        if self.skip_merge not in ("mean", "concat"):
            raise ValueError(f"skip_merge must be 'mean' or 'concat', got {self.skip_merge!r}")
        if self.base_filters < 1 or not 1 <= self.levels <= 6:
            raise ValueError("base_filters must be >= 1 and levels in 1..6")

    @property
    def size_divisor(self) -> int:
        """Image sides are padded to a multiple of this (one halving per level)."""
        return 2**self.levels

    def filters(self, level: int) -> int:
        return self.base_filters * 2**level

    def to_dict(self) -> dict:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        return data


def conv_bn_act(
    in_channels: int, out_channels: int, kernel: int = 3, dilation: int = 1
) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
    )


class InceptionBlock(nn.Module):
    """conv3x3 -> five branches (1x1, 3x3, 5x5, 3x3 d2, 3x3 d4) -> concat -> 1x1
    -> residual add -> conv3x3: the IVD-Net block, multi-scale at little cost."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        branch = max(out_channels // 4, 1)
        self.entry = conv_bn_act(in_channels, out_channels)
        self.branches = nn.ModuleList(
            [
                conv_bn_act(out_channels, branch, 1),
                conv_bn_act(out_channels, branch, 3),
                conv_bn_act(out_channels, branch, 5),
                conv_bn_act(out_channels, branch, 3, dilation=2),
                conv_bn_act(out_channels, branch, 3, dilation=4),
            ]
        )
        self.merge = conv_bn_act(5 * branch, out_channels, 1)
        self.exit = conv_bn_act(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        merged = self.merge(torch.cat([b(x) for b in self.branches], dim=1))
        return self.exit(x + merged)


class DoubleConv(nn.Sequential):
    """Two conv3x3-BN-ReLU: the plain U-Net block."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            conv_bn_act(in_channels, out_channels), conv_bn_act(out_channels, out_channels)
        )


class _PaddedNetwork(nn.Module):
    """Pads any input to the size divisor and crops the logits back, so odd
    image sizes work; inputs already padded (as the predictor sends) pass as is."""

    config: NetworkConfig

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape[-2], x.shape[-1]
        divisor = self.config.size_divisor
        pad_rows, pad_cols = (-rows) % divisor, (-cols) % divisor
        if pad_rows or pad_cols:
            x = F.pad(x, (0, pad_cols, 0, pad_rows), mode="replicate")
        return self.forward_padded(x)[..., :rows, :cols]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DualPathNet(_PaddedNetwork):
    """IVD-Net-style network: one densely connected encoder path per input."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        paths, levels = len(config.inputs), config.levels
        self.encoders = nn.ModuleList()
        input_channels = [1]
        for level in range(levels):
            self.encoders.append(
                nn.ModuleList(
                    InceptionBlock(input_channels[level], config.filters(level))
                    for _ in range(paths)
                )
            )
            input_channels.append(paths * config.filters(level) + input_channels[level])
        self.bridge = InceptionBlock(paths * input_channels[levels], config.filters(levels))
        self.upsamples = nn.ModuleList(
            nn.ConvTranspose2d(config.filters(level + 1), config.filters(level), 2, stride=2)
            for level in range(levels)
        )
        merged = 1 if config.skip_merge == "mean" else 1 + paths
        self.decoders = nn.ModuleList(
            InceptionBlock(merged * config.filters(level), config.filters(level))
            for level in range(levels)
        )
        self.head = nn.Conv2d(config.filters(0), config.n_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        path_inputs = list(torch.split(x, 1, dim=1))
        skips: list[list[torch.Tensor]] = []
        for blocks in self.encoders:
            outputs = [block(inp) for block, inp in zip(blocks, path_inputs, strict=True)]
            skips.append(outputs)
            pooled_outputs = [F.max_pool2d(out, 2) for out in outputs]
            path_inputs = [
                torch.cat([*pooled_outputs, F.max_pool2d(inp, 2)], dim=1) for inp in path_inputs
            ]
        features = self.bridge(torch.cat(path_inputs, dim=1))
        for level in reversed(range(self.config.levels)):
            up = self.upsamples[level](features)
            if self.config.skip_merge == "mean":
                skip = torch.stack([up, *skips[level]], dim=0).mean(dim=0)
            else:
                skip = torch.cat([up, *skips[level]], dim=1)
            features = self.decoders[level](skip)
        return self.head(features)


class UNet(_PaddedNetwork):
    """Plain U-Net on the inputs stacked as channels: the ablation baseline."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        levels = config.levels
        in_channels = [len(config.inputs)] + [config.filters(level) for level in range(levels)]
        self.encoders = nn.ModuleList(
            DoubleConv(in_channels[level], config.filters(level)) for level in range(levels)
        )
        self.bridge = DoubleConv(config.filters(levels - 1), config.filters(levels))
        self.upsamples = nn.ModuleList(
            nn.ConvTranspose2d(config.filters(level + 1), config.filters(level), 2, stride=2)
            for level in range(levels)
        )
        self.decoders = nn.ModuleList(
            DoubleConv(2 * config.filters(level), config.filters(level)) for level in range(levels)
        )
        self.head = nn.Conv2d(config.filters(0), config.n_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bridge(x)
        for level in reversed(range(self.config.levels)):
            x = self.decoders[level](torch.cat([self.upsamples[level](x), skips[level]], dim=1))
        return self.head(x)


def build_model(config: NetworkConfig) -> nn.Module:
    """The registry: a network from its config."""
    if config.architecture == "dualpath":
        return DualPathNet(config)
    return UNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class LossConfig:
    """Soft Dice over L1..L4 (as published), optionally plus cross-entropy."""

    cross_entropy_weight: float = 1.0
    smooth: float = 1e-5
    ignore: tuple[int, ...] = field(default=(0,))


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes; `target` is one-hot
    (or soft: area-resampled) of the same shape as `logits`. Sums run over the
    whole batch (batch Dice), so a crop without a vertebra does not explode."""
    probs = logits.softmax(dim=1)
    keep = [c for c in range(logits.shape[1]) if c not in config.ignore]
    probs, target_kept = probs[:, keep], target[:, keep]
    dims = (0, 2, 3)
    intersection = (probs * target_kept).sum(dims)
    denominator = probs.sum(dims) + target_kept.sum(dims)
    dice = (2 * intersection + config.smooth) / (denominator + config.smooth)
    loss = 1 - dice.mean()
    if config.cross_entropy_weight:
        loss = loss + config.cross_entropy_weight * F.cross_entropy(logits, target)
    return loss
