"""A style-based generator and a residual D after StyleGAN2 (Karras et al. 2019, 2020), in plain PyTorch.

G = mapping + synthesis.
  mapping: z -> normalised to unit mean square -> `mapping_layers` equalised dense layers (LeakyReLU 0.2,
      learning rate x `mapping_lr`, 0.01 in the paper) -> w. A running mean w_avg of the w seen in
      training is kept (decay 0.995) for truncation: w_avg + psi (w - w_avg).
  synthesis: a learned constant 4x4 input; per resolution one block: two modulated 3x3 convolutions
      (the first after a 2x bilinear up-sampling; 4x4 has one), each followed by per-pixel noise times a
      learned per-layer strength, a bias and LeakyReLU 0.2 (x sqrt 2); a toRGB (a modulated 1x1 conv
      without demodulation) per block, the RGB outputs summed across resolutions ("skip" G).
  Modulated convolution: each item's weights are the conv's weights scaled per input channel by its
      style s = affine(w) (bias 1), then demodulated: divided per output channel by the root sum of
      squares, so that unit-variance inputs give unit-variance outputs. One grouped conv for the batch.
  Every layer has its own w (2 per resolution); style mixing draws a second w for the layers from a
  random cut on, with probability `style_mixing` while training.
D: fromRGB (1x1 conv) at the full resolution; per resolution a residual block: two 3x3 convs then 2x2
  average pooling, plus a 1x1-conv pooled skip, summed and scaled by 1/sqrt(2); at 4x4 minibatch stddev,
  a 3x3 conv, a dense layer and the score.
Every weight has an equalised learning rate. Resolution i (0 = 4x4) has min(width * 2^(last - i),
max_width) maps. Not here: the reference's FIR (blur) filters in the resampling, replaced by bilinear
up-sampling and average pooling, and its custom CUDA kernels (none are needed).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.models.equalized import EqualizedConv2d, EqualizedLinear
from gan_cli.models.minibatch import MinibatchStddev
from gan_cli.models.progan import level_widths, unconditional

GAIN = math.sqrt(2)
W_AVG_BETA = 0.995


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * GAIN


def _levels(shape, who: str) -> int:
    if len(shape) != 3:
        raise UserError(f"the stylegan2 {who} works on images, but this data set holds {len(shape)}-D vectors")
    _, h, w = shape
    if h != w or h < 8 or h & (h - 1):
        raise UserError(f"the stylegan2 {who} needs square images with a power-of-two side of at least 8, got "
                        f"{h}x{w}; set dataset.resolution to 32, 64, ...")
    return h.bit_length() - 3


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_multiplier: float):
        super().__init__()
        self.layers = nn.ModuleList(EqualizedLinear(z_dim if i == 0 else w_dim, w_dim, gain=1.0,
                                                    lr_multiplier=lr_multiplier) for i in range(layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = lrelu(layer(x))
        return x


class ModulatedConv2d(nn.Module):
    """x (N, cin, H, W), w (N, w_dim) -> (N, cout, H', W')."""

    def __init__(self, cin: int, cout: int, kernel: int, w_dim: int, demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.scale = 1 / math.sqrt(cin * kernel * kernel)
        self.affine = EqualizedLinear(w_dim, cin, gain=1.0, bias_init=1.0)  # styles start at 1
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2

    def modulated_weights(self, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)                                                          # (N, cin)
        weight = self.weight[None] * self.scale * styles[:, None, :, None, None]         # (N, cout, cin, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        return weight

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        weight = self.modulated_weights(w)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight.reshape(-1, *weight.shape[2:]), padding=self.padding,
                       groups=n)
        return out.view(n, -1, *out.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated conv, noise x learned strength, bias, LeakyReLU (x sqrt 2)."""

    def __init__(self, cin: int, cout: int, w_dim: int, side: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("fixed_noise", torch.randn(1, 1, side, side))  # for noise="const"

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise == "const":
            x = x + self.fixed_noise * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    def __init__(self, cin: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


NOISE_MODES = ("random", "const", "none")


class StyleGAN2Generator(nn.Module):
    def __init__(self, shape, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8, mapping_lr: float = 0.01,
                 width: int = 512, max_width: int = 512, style_mixing=None, **condition):
        super().__init__()
        unconditional("generator", **condition)
        self.shape = tuple(shape)
        last = _levels(self.shape, "generator")
        for name, value in (("z_dim", z_dim), ("w_dim", w_dim), ("mapping_layers", mapping_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"generator.{name} must be a positive integer, got {value!r}")
        if not isinstance(mapping_lr, (int, float)) or mapping_lr <= 0:
            raise UserError(f"generator.mapping_lr must be > 0, got {mapping_lr!r}")
        if style_mixing is None:  # the reference's choice: on from 64x64 (0.9), off for CIFAR's 32x32
            style_mixing = 0.9 if self.shape[1] >= 64 else 0.0
        if not isinstance(style_mixing, (int, float)) or not 0 <= style_mixing <= 1:
            raise UserError(f"generator.style_mixing must be a probability in [0, 1] or null, got {style_mixing!r}")
        self.z_dim, self.w_dim, self.style_mixing = z_dim, w_dim, float(style_mixing)
        maps = level_widths(last, width, max_width, "generator")
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.const = nn.Parameter(torch.randn(maps[0], 4, 4))
        self.layers = nn.ModuleList([SynthesisLayer(maps[0], maps[0], w_dim, 4)])
        self.to_rgb = nn.ModuleList([ToRGB(maps[0], self.shape[0], w_dim)])
        for i in range(1, last + 1):
            side = 4 * 2 ** i
            self.layers.append(SynthesisLayer(maps[i - 1], maps[i], w_dim, side, upsample=True))
            self.layers.append(SynthesisLayer(maps[i], maps[i], w_dim, side))
            self.to_rgb.append(ToRGB(maps[i], self.shape[0], w_dim))
        self.num_ws = len(self.layers) + 1  # one w per conv, and one for the last toRGB

    # --- w ---------------------------------------------------------------------------------------

    def ws(self, z: torch.Tensor, truncation: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """z (N, z_dim) -> ws (N, num_ws, w_dim), one (equal) w per layer; updates w_avg in training
        mode; truncation psi pulls the first `cutoff` layers' w towards w_avg (all layers when None)."""
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, W_AVG_BETA))
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if truncation != 1:
            layers = slice(None, cutoff)
            ws[:, layers] = self.w_avg.to(ws.dtype).lerp(ws[:, layers], truncation)
        return ws

    def mix(self, ws: torch.Tensor, other: torch.Tensor, cutoff: int) -> torch.Tensor:
        """Layers from `cutoff` on take their w from `other` (style mixing)."""
        ws = ws.clone()
        ws[:, cutoff:] = other[:, cutoff:]
        return ws

    # --- synthesis --------------------------------------------------------------------------------

    def synthesis(self, ws: torch.Tensor, noise: str = "random") -> torch.Tensor:
        if noise not in NOISE_MODES:
            raise UserError(f"unknown noise mode '{noise}'; choose one of: {', '.join(NOISE_MODES)}")
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise)
        image = self.to_rgb[0](x, ws[:, 1])
        for i in range(1, len(self.to_rgb)):
            x = self.layers[2 * i - 1](x, ws[:, 2 * i - 1], noise)
            x = self.layers[2 * i](x, ws[:, 2 * i], noise)
            image = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False) \
                + self.to_rgb[i](x, ws[:, 2 * i + 1])
        return image

    def forward(self, z: torch.Tensor, c=None, truncation: float = 1.0, cutoff: int | None = None,
                noise: str = "random") -> torch.Tensor:
        ws = self.ws(z, truncation, cutoff)
        if self.training and self.style_mixing > 0:
            # With probability style_mixing, the layers from a random cut on take a second z's w.
            cut = int(torch.randint(1, self.num_ws, ()))
            if float(torch.rand(())) < self.style_mixing:
                ws = self.mix(ws, self.ws(torch.randn_like(z)), cut)
        return self.synthesis(ws, noise)


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = EqualizedConv2d(cin, cin, 3, gain=1.0), EqualizedConv2d(cin, cout, 3, gain=1.0)
        self.skip = EqualizedConv2d(cin, cout, 1, gain=1.0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = F.avg_pool2d(lrelu(self.conv2(lrelu(self.conv1(x)))), 2)
        return (x + skip) * math.sqrt(0.5)


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, shape, width: int = 512, max_width: int = 512, **condition):
        super().__init__()
        unconditional("discriminator", **condition)
        self.shape = tuple(shape)
        last = _levels(self.shape, "discriminator")
        maps = level_widths(last, width, max_width, "discriminator")
        self.from_rgb = EqualizedConv2d(self.shape[0], maps[-1], 1, gain=1.0)
        self.blocks = nn.Sequential(*(DBlock(maps[i], maps[i - 1]) for i in range(last, 0, -1)))
        self.stddev = MinibatchStddev()
        self.conv = EqualizedConv2d(maps[0] + 1, maps[0], 3, gain=1.0)
        self.dense = EqualizedLinear(maps[0] * 16, maps[0], gain=1.0)
        self.score = EqualizedLinear(maps[0], 1, gain=1.0)

    def forward(self, x: torch.Tensor, y=None, head: bool = False):
        h = self.blocks(lrelu(self.from_rgb(x)))
        h = lrelu(self.conv(self.stddev(h)))
        scores = self.score(lrelu(self.dense(h.flatten(1)))).squeeze(1)
        return (scores, None) if head else scores
