"""Super-resolution nets: SRGAN's generator (SRResNet) and discriminator (Ledig et al. 2017, "Photo-Realistic
Single Image Super-Resolution Using a Generative Adversarial Network").

G maps a low-resolution image (N, C, h, w) in [-1, 1] to (N, C, scale*h, scale*w); D scores high-resolution
images (N, C, H, W), one raw score per image, shape (N,), like every other D here. `shape` is the
high-resolution item shape (C, H, W), the data's; `scale` (2, 4 or 8) is a runtime fact the game sets
(keyword-only, so it is not a config option). The paper feeds G low-resolution inputs in [0, 1] and
targets in [-1, 1]; here both live in [-1, 1], as every image does in this package.

Weights keep PyTorch's default initialisation (Kaiming-uniform with a = sqrt(5) for convs and linears,
scale 1 and shift 0 for batch norm, 0.25 for PReLU slopes): the paper names no scheme, and batch norm
in every residual block and every D block keeps activations in range whatever the start.
"""

import torch
from torch import nn

from gan_cli import UserError
from gan_cli.models import apply_spectral_norm, check_flag
from gan_cli.models.translation import check_image, check_positive

SCALES = (2, 4, 8)


def check_scale(scale) -> int:
    if not isinstance(scale, int) or isinstance(scale, bool) or scale not in SCALES:
        raise UserError(f"scale must be 2, 4 or 8, got {scale!r}")
    return scale


def conv(inputs: int, outputs: int, kernel: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """A conv with 'same' zero padding (odd kernels): the side is kept at stride 1 and halved at stride 2."""
    return nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, bias=bias)


class SRResidualBlock(nn.Module):
    """x + (Conv 3x3, BN, PReLU, Conv 3x3, BN)(x), the paper's residual block (after Gross & Wilber's
    variant of He et al.'s). No conv bias: batch norm follows each conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3, bias=False), nn.BatchNorm2d(channels), nn.PReLU(channels),
            conv(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRGAN's generator: a 9x9 conv (width maps) with PReLU; `blocks` residual blocks (the paper: 16);
    a 3x3 conv with batch norm whose output is added to the first layer's (the global skip, so the
    blocks learn only the residual detail); log2(scale) upsampling stages, each a 3x3 conv to 4*width maps,
    a pixel shuffle trading those for twice the side (Shi et al. 2016) and PReLU; and a 9x9 conv to C
    channels. PReLUs are channel-wise (one slope per map, as He et al. 2015).

    The output is the last conv's, without tanh, as in the paper: the pixel loss against targets in
    [-1, 1] pulls it into range, and callers clamp it to [-1, 1] for display. Fully convolutional: any
    input size works (whole photos are upscaled at test time); `shape` fixes only the channels, and
    the training sides must be multiples of scale so that each target has a low-resolution input.
    """

    def __init__(self, shape, width: int = 64, blocks: int = 16, *, scale: int):
        super().__init__()
        check_positive("generator", width=width, blocks=blocks)
        self.scale = check_scale(scale)
        c, h, w = check_image(shape, "srresnet generator")
        if h % scale or w % scale:
            raise UserError(
                f"the srresnet generator at scale {scale} needs image sides that are multiples of {scale}, got {h}x{w}; "
                "set dataset.crop_size (or dataset.resolution) to one, e.g. 96 as the paper"
            )
        self.shape, self.blocks = (c, h, w), blocks
        self.stages = scale.bit_length() - 1  # log2(scale): each stage doubles the side
        self.head = nn.Sequential(conv(c, width, 9), nn.PReLU(width))
        self.body = nn.Sequential(*[SRResidualBlock(width) for _ in range(blocks)])
        self.fuse = nn.Sequential(conv(width, width, 3, bias=False), nn.BatchNorm2d(width))
        self.upsample = nn.Sequential(*[
            nn.Sequential(conv(width, 4 * width, 3), nn.PixelShuffle(2), nn.PReLU(width)) for _ in range(self.stages)
        ])
        self.tail = conv(width, c, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.fuse(self.body(h))  # the global skip
        return self.tail(self.upsample(h))


# (output maps as multiples of width, stride) of D's conv layers: the paper's 64 s1, 64 s2, 128 s1, 128 s2,
# 256 s1, 256 s2, 512 s1, 512 s2 at width 64.
D_LAYERS = ((1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))
D_HALVINGS = sum(stride == 2 for _, stride in D_LAYERS)  # 4: the sides must be multiples of 16


class SRDiscriminator(nn.Module):
    """SRGAN's discriminator for high-resolution images (C, H, W): a 3x3 conv (width maps, stride 1,
    no batch norm) with LeakyReLU(0.2), then seven 3x3 Conv-BN-LeakyReLU(0.2) blocks with width, 2w, 2w,
    4w, 4w, 8w, 8w maps and strides 2, 1, 2, 1, 2, 1, 2 (the maps double as the side halves, as in VGG);
    then a dense layer of `dense` units with LeakyReLU(0.2) and a dense layer to one raw score per image,
    shape (N,) (the loss applies the sigmoid). The dense layers fix the input size to `shape`.

    With spectral_norm every conv and dense weight is spectrally normalised (Miyato et al. 2018); the batch
    norms stay, so the net is the paper's with each layer's gain bounded.
    """

    def __init__(self, shape, width: int = 64, dense: int = 1024, spectral_norm: bool = False):
        super().__init__()
        check_positive("discriminator", width=width, dense=dense)
        c, h, w = check_image(shape, "srgan discriminator")
        side = 2 ** D_HALVINGS
        for name, value in (("height", h), ("width", w)):
            if value % side or value < side:
                raise UserError(
                    f"the srgan discriminator needs image sides that are multiples of {side}, but the image {name} "
                    f"is {value} ({h}x{w}); set dataset.crop_size (or dataset.resolution) to one, e.g. 96 as the paper"
                )
        self.shape = (c, h, w)
        blocks, channels = [], c
        for i, (k, stride) in enumerate(D_LAYERS):
            out = width * k
            if i == 0:
                blocks.append(nn.Sequential(conv(channels, out, 3, stride), nn.LeakyReLU(0.2)))
            else:
                blocks.append(nn.Sequential(conv(channels, out, 3, stride, bias=False), nn.BatchNorm2d(out),
                                            nn.LeakyReLU(0.2)))
            channels = out
        self.body = nn.ModuleList(blocks)
        self.flat_features = channels * (h // side) * (w // side)
        self.head = nn.Sequential(nn.Linear(self.flat_features, dense), nn.LeakyReLU(0.2), nn.Linear(dense, 1))
        if check_flag("discriminator.spectral_norm", spectral_norm):
            apply_spectral_norm(self)

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"this discriminator takes images of shape {self.shape}, got {tuple(x.shape[1:])}")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each of the eight conv blocks (after their LeakyReLU), for a
        feature-matching loss: maps (N, C_i, H_i, W_i), the last of them flattened to
        (N, flat_features), what the dense layers see."""
        self._check_input(x)
        out = []
        for block in self.body:
            x = block(x)
            out.append(x)
        out[-1] = out[-1].flatten(1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        for block in self.body:
            x = block(x)
        return self.head(x.flatten(1)).flatten()
