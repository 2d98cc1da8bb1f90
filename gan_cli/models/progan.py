"""Progressive growing of GANs (Karras et al. 2018): G and D built for the full resolution and used
one level at a time, from 4x4 up, each new level faded in.

G: z -> pixel norm -> dense to 4x4 -> conv3x3 (the 4x4 level); each further level: nearest 2x
   up-sampling, two conv3x3; LeakyReLU 0.2 and pixel norm after every conv; a 1x1 toRGB per level with
   a linear output. While level k fades in, the image is (1 - alpha) * up(toRGB_{k-1}(h_{k-1})) +
   alpha * toRGB_k(h_k).
D: a 1x1 fromRGB per level; each level above 4x4: two conv3x3 and 2x2 average pooling; the 4x4 level:
   minibatch stddev, conv3x3, conv4x4 (valid), a linear score. While level k fades in, its input is
   (1 - alpha) * fromRGB_{k-1}(pool(x)) + alpha * block_k(fromRGB_k(x)).
Every weight has an equalised learning rate. Level i (0 = 4x4) has min(width * 2^(L - i), max_width)
maps, L the last level: the paper's 1024x1024 nets are width=16, max_width=512.

The level and alpha live in the nets as integer buffers (`level`, `alpha_q` = alpha * 2^20), set by the
game at every step, saved with the weights and copied to G_ema, so a checkpoint draws at the level it
was trained to. G(z) returns images at the data's size (the level's upscaled, nearest); the game trains
with native=True (the level's own size). D takes images of any size from the level's up and pools them
down to it.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.models.equalized import EqualizedConv2d, EqualizedLinear, PixelNorm, leaky
from gan_cli.models.minibatch import MinibatchStddev

ALPHA_ONE = 2 ** 20  # alpha_q of alpha = 1


def levels_of(shape, who: str) -> int:
    """The index of the last level: log2(side) - 2."""
    if len(shape) != 3:
        raise UserError(f"the progan {who} works on images, but this data set holds {len(shape)}-D vectors")
    _, h, w = shape
    if h != w or h < 8 or h & (h - 1):
        raise UserError(f"the progan {who} needs square images with a power-of-two side of at least 8, got {h}x{w}")
    return h.bit_length() - 3


def level_widths(last: int, width: int, max_width: int, who: str) -> list[int]:
    for name, value in (("width", width), ("max_width", max_width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{who}.{name} must be a positive integer, got {value!r}")
    return [min(width * 2 ** (last - i), max_width) for i in range(last + 1)]


class Growing(nn.Module):
    """The level and fade-in state shared by ProGAN's G and D."""

    def __init__(self, last: int):
        super().__init__()
        self.last = last
        self.register_buffer("level", torch.tensor(last))
        self.register_buffer("alpha_q", torch.tensor(ALPHA_ONE))
        self._cache = None  # ((buffer versions), (level, alpha)): a forward pass need not read the device

    def _versions(self) -> tuple[int, int]:
        return self.level._version, self.alpha_q._version

    def grow(self, level: int, alpha: float) -> None:
        if not 0 <= level <= self.last:
            raise ValueError(f"level {level} outside 0..{self.last}")
        alpha_q = round(min(max(alpha, 0.0), 1.0) * ALPHA_ONE)
        self.level.fill_(level)
        self.alpha_q.fill_(alpha_q)
        self._cache = (self._versions(), (level, alpha_q / ALPHA_ONE))

    def growth(self) -> tuple[int, float]:
        """(level, alpha); read from the buffers only when they changed other than by grow() (loaded from a
        checkpoint, copied into G_ema)."""
        if self._cache is None or self._cache[0] != self._versions():
            self._cache = (self._versions(), (int(self.level), int(self.alpha_q) / ALPHA_ONE))
        return self._cache[1]

    @property
    def alpha(self) -> float:
        return self.growth()[1]


def unconditional(who: str, **condition) -> None:
    if any(condition.values()):
        raise UserError(f"the progan {who} is unconditional; use conditioning=none (the default)")


class ProGANGenerator(Growing):
    def __init__(self, shape, z_dim: int = 512, width: int = 512, max_width: int = 512, **condition):
        super().__init__(levels_of(shape, "generator"))
        unconditional("generator", **condition)
        self.shape = tuple(shape)
        if not isinstance(z_dim, int) or z_dim < 1:
            raise UserError(f"generator.z_dim must be a positive integer, got {z_dim!r}")
        self.z_dim = z_dim
        maps = level_widths(self.last, width, max_width, "generator")
        self.norm = PixelNorm()
        self.dense = EqualizedLinear(z_dim, 16 * maps[0], gain=math.sqrt(2) / 4)  # as the paper's 4x4 "conv"
        self.first = EqualizedConv2d(maps[0], maps[0], 3)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(maps[i - 1], maps[i], 3), EqualizedConv2d(maps[i], maps[i], 3)])
            for i in range(1, self.last + 1))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(m, self.shape[0], 1, gain=1.0) for m in maps)
        self.maps = maps

    def forward(self, z: torch.Tensor, c=None, native: bool = False, growth=None) -> torch.Tensor:
        level, alpha = growth or self.growth()  # growth: a fixed (level, alpha), as an exported G has
        x = self.norm(leaky(self.dense(self.norm(z)).view(z.shape[0], -1, 4, 4)))
        x = self.norm(leaky(self.first(x)))
        previous = x
        for conv1, conv2 in self.blocks[:level]:
            previous = x
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.norm(leaky(conv2(self.norm(leaky(conv1(x))))))
        image = self.to_rgb[level](x)
        if level and alpha < 1:
            old = F.interpolate(self.to_rgb[level - 1](previous), scale_factor=2, mode="nearest")
            image = torch.lerp(old, image, alpha)
        if native or image.shape[-1] == self.shape[-1]:
            return image
        return F.interpolate(image, size=self.shape[1:], mode="nearest")


class ProGANDiscriminator(Growing):
    def __init__(self, shape, width: int = 512, max_width: int = 512, **condition):
        super().__init__(levels_of(shape, "discriminator"))
        unconditional("discriminator", **condition)
        self.shape = tuple(shape)
        maps = level_widths(self.last, width, max_width, "discriminator")
        self.from_rgb = nn.ModuleList(EqualizedConv2d(self.shape[0], m, 1) for m in maps)
        # blocks[i - 1] takes level i (side 4 * 2^i) down to level i - 1.
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(maps[i], maps[i], 3), EqualizedConv2d(maps[i], maps[i - 1], 3)])
            for i in range(1, self.last + 1))
        self.stddev = MinibatchStddev()
        self.final_conv = EqualizedConv2d(maps[0] + 1, maps[0], 3)
        self.final_dense = EqualizedConv2d(maps[0], maps[0], 4, padding=0)  # 4x4 -> 1x1
        self.score = EqualizedLinear(maps[0], 1, gain=1.0)
        self.maps = maps

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        conv1, conv2 = self.blocks[i - 1]
        return F.avg_pool2d(leaky(conv2(leaky(conv1(x)))), 2)

    def forward(self, x: torch.Tensor, y=None, head: bool = False):
        level, alpha = self.growth()
        side = 4 * 2 ** level
        if x.shape[-1] != side:
            x = F.adaptive_avg_pool2d(x, side)
        h = leaky(self.from_rgb[level](x))
        if level:
            h = self._block(level, h)
            if alpha < 1:
                h = torch.lerp(leaky(self.from_rgb[level - 1](F.avg_pool2d(x, 2))), h, alpha)
            for i in range(level - 1, 0, -1):
                h = self._block(i, h)
        h = leaky(self.final_conv(self.stddev(h)))
        scores = self.score(leaky(self.final_dense(h)).flatten(1)).squeeze(1)
        return (scores, None) if head else scores
