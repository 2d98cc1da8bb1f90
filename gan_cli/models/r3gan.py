"""The R3GAN nets (Huang et al. 2024, "The GAN is dead; long live the GAN! A Modern GAN Baseline"), in plain
PyTorch.

Both nets are stages of residual blocks, one stage per side from 4x4 up to the image's, with no
normalisation anywhere:

    block   x + conv1x1(act(grouped conv3x3(act(conv1x1(x)))))   an inverted bottleneck: the 1x1 convs widen
            the width `expansion` times and narrow it back, the 3x3 conv runs in `groups` groups; act is a
            leaky ReLU (0.2) with a learned bias per channel
    G       z (and a class embedding) -> a learned 4x4 basis scaled per channel by a linear map of z ->
            stage 4x4 -> [1x1 conv where the width changes, 2x up-sampling] -> stage 8x8 -> ... -> 1x1 conv
            to the image's channels (no tanh)
    D       1x1 conv from the image -> stage -> [2x down-sampling, 1x1 conv] -> ... -> stage 4x4 -> a
            depthwise 4x4 conv (the 4x4 basis) -> linear to one score, or under conditioning=projection to
            a vector whose inner product with the class embedding is the score

`width` is one number for every stage or a list of one a stage from 4x4 up (D reads it from the image down),
as the paper narrows the stages of the highest resolutions; a 1x1 conv joins two stages of different widths.
Resampling is low-pass filtered: the [1, 2, 1] binomial filter after inserting zeros (up) or before
dropping every other pixel (down). Initialisation (the paper's fix-up style): every weight drawn
N(0, gain^2 / fan_in), the gain of the leaky ReLU inside the blocks and scaled by L^(-1/4) for L blocks in
the whole net (two scaled layers a block), and the last 1x1 conv of each block zero, so that a fresh block
is the identity and the net starts as its transitions alone.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.models import check_condition

LEAKY_GAIN = math.sqrt(2 / (1 + 0.2 ** 2))  # keeps the variance of N(0, 1) inputs through leaky ReLU 0.2


def _init(layer: nn.Module, gain: float) -> nn.Module:
    """N(0, gain^2 / fan_in) weights (zero for gain 0), zero biases."""
    fan_in = layer.weight[0].numel()
    with torch.no_grad():
        if gain:
            layer.weight.normal_(0, gain / math.sqrt(fan_in))
        else:
            layer.weight.zero_()
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
    return layer


def _conv(cin: int, cout: int, kernel: int = 1, gain: float = 1.0, groups: int = 1) -> nn.Conv2d:
    return _init(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False), gain)


class BiasedLeakyReLU(nn.Module):
    """Leaky ReLU 0.2 of x plus a learned bias per channel (the convs themselves have none)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2)


class Block(nn.Module):
    """The residual block: x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))), the last conv starting at 0."""

    def __init__(self, channels: int, expansion: int, groups: int, total_blocks: int):
        super().__init__()
        wide = channels * expansion
        gain = LEAKY_GAIN * total_blocks ** (-1 / 4)  # L^(-1/(2m - 2)) for the block's m = 3 layers
        self.expand = _conv(channels, wide, 1, gain)
        self.act1 = BiasedLeakyReLU(wide)
        self.spatial = _conv(wide, wide, 3, gain, groups)
        self.act2 = BiasedLeakyReLU(wide)
        self.shrink = _conv(wide, channels, 1, 0.0)

    def forward(self, x):
        return x + self.shrink(self.act2(self.spatial(self.act1(self.expand(x)))))


def _binomial(channels: int, gain: float) -> torch.Tensor:
    f = torch.tensor([1.0, 2.0, 1.0])
    kernel = torch.outer(f, f)
    return (kernel / kernel.sum() * gain).expand(channels, 1, 3, 3).contiguous()


class Upsample(nn.Module):
    """2x up-sampling: zeros inserted between pixels, then the [1, 2, 1] filter (x4 to keep the mean)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("kernel", _binomial(channels, 4.0), persistent=False)

    def forward(self, x):
        return F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=1, output_padding=1,
                                  groups=x.shape[1])


class Downsample(nn.Module):
    """2x down-sampling: the [1, 2, 1] filter, then every other pixel."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("kernel", _binomial(channels, 1.0), persistent=False)

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel.to(x.dtype), stride=2,
                        groups=x.shape[1])


def _check(who: str, shape, width, blocks, expansion, groups) -> list[int]:
    """The width of each stage, 4x4 up to the side (one stage a doubling), after one line for each option that
    cannot work. `width` is one number for every stage or a list of one per stage, from 4x4 up."""
    if len(shape) != 3:
        raise UserError(f"the r3gan {who} works on images, but this data set holds {len(shape)}-D vectors; use "
                        "generator=mlp discriminator=mlp (or model=gan)")
    _, h, w = shape
    if h != w or h < 4 or h & (h - 1):
        raise UserError(f"the r3gan {who} needs square images with a power-of-two side of at least 4, got {h}x{w}; "
                        "set dataset.resolution to 16, 32, 64, ...")
    stages = int(math.log2(h // 4)) + 1
    scalar = width is None or isinstance(width, (int, float, str))
    widths = [width] * stages if scalar else list(width)
    sides = ", ".join(str(4 * 2 ** i) for i in range(stages))
    if len(widths) != stages:
        raise UserError(f"{who}.width lists {len(widths)} widths, but {h}x{w} images have {stages} stages "
                        f"({sides}): give one number, or one a stage from 4x4 up")
    if any(not isinstance(value, int) or isinstance(value, bool) or value < 1 for value in widths):
        raise UserError(f"{who}.width must be a positive integer or a list of them, got {width!r}")
    for name, value in (("blocks", blocks), ("expansion", expansion), ("groups", groups)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{who}.{name} must be a positive integer, got {value!r}")
    for value in widths:
        if (value * expansion) % groups:
            raise UserError(f"{who}.groups ({groups}) must divide the blocks' inner width, width x expansion = "
                            f"{value * expansion}")
    return widths


def _stage(width, blocks, expansion, groups, total) -> nn.Sequential:
    return nn.Sequential(*(Block(width, expansion, groups, total) for _ in range(blocks)))


class R3GANGenerator(nn.Module):
    """z (N, z_dim) -> images. Class-conditional (class_input concat): a learned embedding of the label
    (z_dim long, as the paper's) beside z. code_dim: InfoGAN's codes beside z."""

    def __init__(self, shape, z_dim: int = 64, width: int | list[int] = 32, blocks: int = 1, expansion: int = 2,
                 groups: int = 8, *, num_classes: int = 0, class_input: str = "concat", code_dim: int = 0):
        super().__init__()
        if not isinstance(z_dim, int) or isinstance(z_dim, bool) or z_dim < 1:
            raise UserError(f"generator.z_dim must be a positive integer, got {z_dim!r}")
        if num_classes:
            check_condition("generator", num_classes, class_input, ("concat", "cbn"))  # both: the embedding beside z
        widths = _check("generator", shape, width, blocks, expansion, groups)
        self.shape, self.z_dim, self.num_classes, self.code_dim = tuple(shape), z_dim, int(num_classes), int(code_dim)
        total = len(widths) * blocks
        self.embed = _init(nn.Linear(num_classes, z_dim, bias=False), 1.0) if num_classes else None
        inputs = z_dim * (2 if num_classes else 1) + self.code_dim
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.to_basis = _init(nn.Linear(inputs, widths[0], bias=False), 1.0)
        self.stages = nn.ModuleList([_stage(widths[0], blocks, expansion, groups, total)])
        self.ups = nn.ModuleList()
        for before, after in zip(widths, widths[1:]):  # where the width changes: a 1x1 conv, then the up-sampling
            change = [_conv(before, after, 1, 1.0)] if after != before else []
            self.ups.append(nn.Sequential(*change, Upsample(after)))
            self.stages.append(_stage(after, blocks, expansion, groups, total))
        self.to_image = _conv(widths[-1], self.shape[0], 1, 1.0)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if c is None:
                raise ValueError("this generator is class-conditional: call G(z, labels)")
            z = torch.cat([z, self.embed(F.one_hot(c, self.num_classes).to(z.dtype))], dim=1)
        elif self.code_dim:
            if c is None:
                raise ValueError("this generator takes InfoGAN codes: call G(z, codes)")
            z = torch.cat([z, c.to(z.dtype)], dim=1)
        x = self.basis.unsqueeze(0) * self.to_basis(z)[:, :, None, None]
        x = self.stages[0](x)
        for up, stage in zip(self.ups, self.stages[1:]):
            x = stage(up(x))
        return self.to_image(x)


class R3GANDiscriminator(nn.Module):
    """images -> one raw score each; class-conditional by projection (conditioning=projection)."""

    def __init__(self, shape, width: int | list[int] = 32, blocks: int = 1, expansion: int = 2, groups: int = 8, *,
                 num_classes: int = 0, class_input: str = "none", head=()):
        super().__init__()
        if num_classes:
            check_condition("discriminator", num_classes, class_input, ("projection",))
        if head:
            raise UserError("the r3gan discriminator has no classifier head (conditioning acgan, infogan); use "
                            "conditioning=projection or none")
        widths = _check("discriminator", shape, width, blocks, expansion, groups)[::-1]  # the image's side first
        self.shape, self.num_classes = tuple(shape), int(num_classes)
        self.class_input = class_input if num_classes else "none"
        total = len(widths) * blocks
        self.from_image = _conv(self.shape[0], widths[0], 1, 1.0)
        self.stages = nn.ModuleList(_stage(w, blocks, expansion, groups, total) for w in widths)
        self.downs = nn.ModuleList()  # the down-sampling, then a 1x1 conv where the width changes
        for before, after in zip(widths, widths[1:]):
            change = [_conv(before, after, 1, 1.0)] if after != before else []
            self.downs.append(nn.Sequential(Downsample(before), *change))
        last = widths[-1]
        self.basis = _init(nn.Conv2d(last, last, 4, groups=last, bias=False), 1.0)  # depthwise 4x4
        self.embed_dim = last if num_classes else 1
        self.to_score = _init(nn.Linear(last, self.embed_dim, bias=False), 1.0)
        # The projection: a linear embedding of the one-hot label, scaled so that the score starts near N(0, 1).
        self.embed = _init(nn.Linear(num_classes, last, bias=False), 1 / math.sqrt(last)) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, head: bool = False):
        if self.num_classes and y is None:
            raise ValueError("this discriminator is class-conditional: call D(x, labels)")
        x = self.from_image(x)
        for stage, down in zip(self.stages, self.downs):
            x = down(stage(x))
        h = self.to_score(self.basis(self.stages[-1](x)).flatten(1))
        scores = (h * self.embed(F.one_hot(y, self.num_classes).to(h.dtype))).sum(1) if self.num_classes else h[:, 0]
        return (scores, None) if head else scores
