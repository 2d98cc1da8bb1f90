"""Image-to-image nets: pix2pix's U-Net and PatchGAN (Isola et al. 2017), CycleGAN's ResNet G (Zhu et al. 2017).

Unlike the z -> x nets, G maps an image (N, C_in, H, W) to an image (N, out_channels, H, W) in [-1, 1],
and the PatchGAN D returns a map of raw scores (N, 1, h, w), one per overlapping patch of its input,
rather than one score per image. `out_channels` is a runtime fact the game sets (keyword-only, so it
is not a config option). Weights are drawn from N(0, 0.02), as both papers' code does.
"""

import torch
from torch import nn

from gan_cli import UserError
from gan_cli.models import apply_spectral_norm, check_flag
from gan_cli.models.dcgan import init_dcgan_weights

NORMS = ("batch", "instance", "none")


def check_norm(who: str, norm: str) -> None:
    if norm not in NORMS:
        raise UserError(f"unknown {who}.norm '{norm}'; choose one of: {', '.join(NORMS)}")


def norm_layer(norm: str, channels: int) -> list[nn.Module]:
    """Batch norm (pix2pix), instance norm without scale and shift and without running statistics
    (CycleGAN's code), or nothing."""
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "instance":
        return [nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)]
    return []


def check_image(shape, who: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise UserError(f"the {who} works on images (C, H, W), but this data set's items have shape {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    return c, h, w


def check_positive(who: str, **values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{who}.{name} must be a positive whole number, got {value!r}")


def output_channels(out_channels, in_channels: int) -> int:
    out = in_channels if out_channels is None else out_channels
    if not isinstance(out, int) or out < 1:
        raise UserError(f"a generator needs at least 1 output channel, got {out!r}")
    return out


class UNetGenerator(nn.Module):
    """pix2pix's U-Net: an encoder of stride-2 4x4 convs halving the side down to 1x1 (log2(side) levels,
    width, 2w, 4w, 8w, 8w, ... feature maps), and a decoder of stride-2 4x4 transposed convs back up, each
    decoder level given the mirror encoder level's features beside its own (the skip connections that
    let low-level detail such as edges bypass the bottleneck). Encoder: Conv-Norm-LeakyReLU(0.2); decoder:
    ReLU-ConvT-Norm(-Dropout) with tanh at the output. No norm on the outermost encoder layer (as the paper)
    nor on the 1x1 bottleneck (as its code: batch statistics of one value per map are degenerate). Dropout
    in the three innermost decoder layers is G's only noise (the paper keeps it on at test time; that is
    the caller's choice of train mode). Biases only where no batch norm follows it."""

    def __init__(self, shape, width: int = 64, norm: str = "batch", dropout: float = 0.5, *,
                 out_channels: int | None = None):
        super().__init__()
        check_positive("generator", width=width)
        check_norm("generator", norm)
        if not 0 <= dropout < 1:
            raise UserError(f"generator.dropout must be in [0, 1), got {dropout}")
        c, h, w = check_image(shape, "unet generator")
        if h != w or h < 32 or h & (h - 1):
            raise UserError(
                f"the unet generator needs square images with a power-of-two side of at least 32, got {h}x{w}; "
                "set dataset.crop_size (or dataset.resolution) to 32, 64, 128, 256, ..."
            )
        self.shape, self.out_channels = (c, h, w), output_channels(out_channels, c)
        self.levels = h.bit_length() - 1  # log2(side): the side halves down to 1x1
        n = self.levels
        ch = [width * min(2 ** i, 8) for i in range(n)]  # encoder level i's feature maps
        bias = norm != "batch"

        # Encoder: level 0 has no norm, the last (1x1) level neither and no activation (the decoder's ReLU follows).
        down = [nn.Sequential(nn.Conv2d(c, ch[0], 4, 2, 1), nn.LeakyReLU(0.2))]
        for i in range(1, n - 1):
            down.append(nn.Sequential(nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, bias=bias), *norm_layer(norm, ch[i]),
                                      nn.LeakyReLU(0.2)))
        down.append(nn.Sequential(nn.Conv2d(ch[n - 2], ch[n - 1], 4, 2, 1)))
        # Decoder: up[j] takes the side of level n-1-j to that of level n-2-j. Its input is the bottleneck
        # (j = 0), or the previous decoder output beside the mirror encoder features (twice the channels).
        up = []
        for j in range(n - 1):
            level = n - 2 - j
            inputs = ch[n - 1] if j == 0 else 2 * ch[level + 1]
            up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(inputs, ch[level], 4, 2, 1, bias=bias),
                                    *norm_layer(norm, ch[level]), *([nn.Dropout(dropout)] if dropout and j < 3 else [])))
        up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * ch[0], self.out_channels, 4, 2, 1), nn.Tanh()))
        self.down, self.up = nn.ModuleList(down), nn.ModuleList(up)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()  # the bottleneck is the decoder's input, not a skip
        for layer in self.up[:-1]:
            x = torch.cat([layer(x), skips.pop()], dim=1)
        return self.up[-1](x)


class ResidualBlock(nn.Module):
    """x + (ReflectionPad 1, Conv 3x3, Norm, ReLU, ReflectionPad 1, Conv 3x3, Norm)(x)."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        bias = norm != "batch"
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), *norm_layer(norm, channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), *norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator, after Johnson et al. 2016: a 7x7 conv (width maps) behind a reflection pad,
    two stride-2 3x3 convs down (2w, 4w), `blocks` residual blocks at a quarter of the side, two stride-2
    3x3 transposed convs back up, and a 7x7 conv to the output channels with tanh. Conv-Norm-ReLU
    throughout; the paper uses 6 blocks at 128x128 and 9 at 256x256, with instance norm."""

    def __init__(self, shape, width: int = 64, blocks: int | None = None, norm: str = "instance", *,
                 out_channels: int | None = None):
        super().__init__()
        c, h, w = check_image(shape, "resnet generator")
        if blocks is None:  # the paper's choice by size: 6 blocks up to 128x128, 9 above
            blocks = 6 if max(h, w) <= 128 else 9
        check_positive("generator", width=width, blocks=blocks)
        check_norm("generator", norm)
        if h % 4 or w % 4 or h < 32 or w < 32:
            raise UserError(
                f"the resnet generator needs image sides that are multiples of 4 and at least 32, got {h}x{w}; "
                "set dataset.crop_size (or dataset.resolution) to 32, 64, 128, 256, ..."
            )
        self.shape, self.out_channels, self.blocks = (c, h, w), output_channels(out_channels, c), blocks
        bias = norm != "batch"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(c, width, 7, bias=bias), *norm_layer(norm, width), nn.ReLU()]
        for k in (1, 2):
            layers += [nn.Conv2d(width * k, width * 2 * k, 3, 2, 1, bias=bias), *norm_layer(norm, width * 2 * k),
                       nn.ReLU()]
        layers += [ResidualBlock(width * 4, norm) for _ in range(blocks)]
        for k in (4, 2):
            layers += [nn.ConvTranspose2d(width * k, width * k // 2, 3, 2, 1, output_padding=1, bias=bias),
                       *norm_layer(norm, width * k // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, self.out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def patch_layers(n_layers: int) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of each of the PatchGAN's convs: n_layers stride-2 4x4 convs, then two
    stride-1 4x4 ones (the last gives the score map); padding 1 throughout, as the reference code."""
    return [(4, 2, 1)] * n_layers + [(4, 1, 1)] * 2


def receptive_field(n_layers: int) -> int:
    """The side of the input square one score of the PatchGAN sees: 16, 34, 70, 142 for n_layers 1, 2, 3, 4."""
    field = 1
    for kernel, stride, _ in reversed(patch_layers(n_layers)):
        field = (field - 1) * stride + kernel
    return field


def score_map_side(side: int, n_layers: int) -> int:
    """The side of the score map for an input side (0 or less: no map)."""
    for kernel, stride, padding in patch_layers(n_layers):
        if side + 2 * padding < kernel:
            return 0
        side = (side + 2 * padding - kernel) // stride + 1
    return side


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN: a fully convolutional D scoring every overlapping patch of its input as real or
    fake, a map of raw scores (N, 1, h, w); the loss averages over the map. A 4x4 stride-2 conv (width maps,
    no norm), n_layers - 1 more doubling the maps (capped at 8x), a stride-1 conv doubling once more, and a
    stride-1 conv to one map; LeakyReLU(0.2). n_layers = 3 gives the paper's 70x70 patches. For pix2pix
    the caller gives it the input image and the (real or fake) output side by side as channels."""

    def __init__(self, shape, width: int = 64, n_layers: int = 3, norm: str = "batch", spectral_norm: bool = False):
        super().__init__()
        check_positive("discriminator", width=width, n_layers=n_layers)
        check_norm("discriminator", norm)
        c, h, w = check_image(shape, "patchgan discriminator")
        if min(score_map_side(h, n_layers), score_map_side(w, n_layers)) < 1:
            raise UserError(
                f"{h}x{w} images are too small for a patchgan discriminator with n_layers={n_layers}: no patch "
                "to score; lower discriminator.n_layers or raise dataset.crop_size (or dataset.resolution)"
            )
        self.shape, self.n_layers, self.receptive_field = (c, h, w), n_layers, receptive_field(n_layers)
        bias = norm != "batch"
        specs = patch_layers(n_layers)
        layers, channels = [], c
        for i, (kernel, stride, padding) in enumerate(specs[:-1]):
            out = width * min(2 ** i, 8)
            layers += [nn.Conv2d(channels, out, kernel, stride, padding, bias=bias or i == 0),
                       *(norm_layer(norm, out) if i else []), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, *specs[-1]))
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)
        if check_flag("discriminator.spectral_norm", spectral_norm):
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
