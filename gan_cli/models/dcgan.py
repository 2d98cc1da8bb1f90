"""DCGAN generator and discriminator (Radford et al. 2016).

The paper's guidelines: strided convolutions instead of pooling, fractionally-strided ones in G;
batch norm in both nets except G's output and D's input layer; no fully connected hidden layers;
ReLU in G with tanh at the output; LeakyReLU(0.2) in D; weights drawn from N(0, 0.02).
Both nets work at any power-of-two resolution from 16 up and any number of channels: the side
goes 4 -> 8 -> ... -> resolution, and the feature maps double at each halving of the side.
"""

import torch
from torch import nn

from gan_cli import UserError
from gan_cli.models import apply_spectral_norm, check_flag


def _num_stages(shape, who: str) -> int:
    """Number of stride-2 layers between 4x4 and the image side."""
    if len(shape) != 3:
        raise UserError(
            f"the dcgan {who} works on images, but this data set holds {len(shape)}-D vectors; "
            "use generator=mlp discriminator=mlp (or model=gan)"
        )
    _, h, w = shape
    check_side(h, who, w)
    return h.bit_length() - 3  # log2(h) - log2(4)


def check_side(h: int, who: str, w: int | None = None) -> None:
    w = h if w is None else w
    if h != w or h < 16 or h & (h - 1):
        raise UserError(
            f"the dcgan {who} needs square images with a power-of-two side of at least 16, got {h}x{w}; "
            "set dataset.resolution to 16, 32, 64, ..."
        )


def init_dcgan_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    def __init__(self, shape, z_dim: int = 100, width: int = 64):
        super().__init__()
        if z_dim < 1 or width < 1:
            raise UserError(f"generator z_dim and width must be positive, got {z_dim} and {width}")
        self.shape, self.z_dim = tuple(shape), int(z_dim)
        stages = _num_stages(self.shape, "generator")
        channels = width * 2 ** (stages - 1)
        # Project z to a 4x4 map (a transposed conv on a 1x1 input), then double the side per layer.
        layers = [
            nn.ConvTranspose2d(z_dim, channels, 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        # Output layer: no batch norm, tanh to [-1, 1].
        layers += [nn.ConvTranspose2d(channels, self.shape[0], 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


NORMS = ("batch", "layer", "none")


def _norm_layer(norm: str, channels: int) -> list[nn.Module]:
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "layer":  # per-item statistics over (C, H, W): what WGAN-GP advises for a critic
        return [nn.GroupNorm(1, channels)]
    return []


class DCGANDiscriminator(nn.Module):
    def __init__(self, shape, width: int = 64, norm: str = "batch", spectral_norm: bool = False):
        super().__init__()
        if width < 1:
            raise UserError(f"discriminator width must be positive, got {width}")
        if norm not in NORMS:
            raise UserError(f"unknown discriminator.norm '{norm}'; choose one of: {', '.join(NORMS)}")
        self.shape = tuple(shape)
        stages = _num_stages(self.shape, "discriminator")
        # Input layer: no normalisation.
        layers = [nn.Conv2d(self.shape[0], width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=norm == "none"),
                *_norm_layer(norm, channels * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels *= 2
        # 4x4 -> one raw score; the loss applies the nonlinearity.
        layers.append(nn.Conv2d(channels, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)
        if check_flag("discriminator.spectral_norm", spectral_norm):
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()
