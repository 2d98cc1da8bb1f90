"""Layers with an equalised learning rate (Karras et al. 2018, "Progressive Growing of GANs").

Weights are stored as N(0, 1) / lr_multiplier and scaled at run time by gain / sqrt(fan_in) *
lr_multiplier, rather than drawn at that scale once (He's initialisation). The forward pass is the same
as a He-initialised layer's, but an adaptive optimizer (Adam), whose steps have about the same size for
every parameter, now changes every layer at the same relative rate. lr_multiplier < 1 slows a layer
further (StyleGAN's mapping network: 0.01).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY = 0.2  # the LeakyReLU slope of ProGAN and StyleGAN
RELU_GAIN = math.sqrt(2)


class EqualizedLinear(nn.Module):
    def __init__(self, inputs: int, outputs: int, gain: float = RELU_GAIN, lr_multiplier: float = 1.0,
                 bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(outputs, inputs) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((outputs,), float(bias_init) / lr_multiplier))
        self.scale = gain / math.sqrt(inputs) * lr_multiplier
        self.lr_multiplier = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_multiplier)


class EqualizedConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, padding: int | None = None, gain: float = RELU_GAIN,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = gain / math.sqrt(cin * kernel * kernel)
        self.padding = kernel // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """Each pixel's feature vector scaled to unit mean square (ProGAN's G, after every conv)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY)
