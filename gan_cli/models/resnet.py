"""ResNet G and D for z -> image GANs: the nets of the WGAN-GP (Gulrajani et al. 2017) and SN-GAN
(Miyato et al. 2018; Miyato & Koyama 2018) papers' CIFAR-10 and ImageNet results.

G: z -> linear -> 4x4 map -> one up-sampling residual block per doubling of the side -> BN, ReLU,
   3x3 conv, tanh. A block: BN, ReLU, nearest 2x up-sampling, 3x3 conv, BN, ReLU, 3x3 conv, plus a
   shortcut of the up-sampled input through a 1x1 conv. Under conditioning=projection every block's
   batch norms are class-conditional (the shared class embedding of gan_cli.models).
D: an optimised first block (3x3 conv, ReLU, 3x3 conv, 2x2 average pooling; shortcut: pooling, 1x1
   conv), then residual blocks (ReLU, 3x3 conv, ReLU, 3x3 conv, pooling while the side is above 8;
   shortcut: 1x1 conv, pooling), ReLU, the features summed over positions, a linear score. No
   normalisation but the optional spectral norm; projection and ACGAN/InfoGAN heads act on the summed
   features.

Widths: block i of D (from the image) has min(width * 2^i, max_width) channels; G's block i (from the
image) the same with G's width, and its 4x4 map min(width * 2^blocks, max_width). width = max_width
gives the CIFAR nets (G 256, D 128 channels throughout); width 64, max_width 1024 the 64x64 and
128x128 ones. Weights: Xavier-uniform, gain sqrt(2) in the residual branches and 1 elsewhere, as the
SN-GAN code.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.models import (CLASS_EMBED_DIM, CLASS_INPUTS_D, CLASS_INPUTS_G, ConditionalBatchNorm2d,
                            apply_spectral_norm, check_condition, check_flag, check_init, finish_scores, head_for,
                            one_hot_input, orthogonal_init)
from gan_cli.models.attention import SelfAttention, attention_sides
from gan_cli.models.minibatch import MinibatchDiscrimination, MinibatchStddev, check_minibatch


def _side(shape, who: str) -> int:
    if len(shape) != 3:
        raise UserError(f"the resnet {who} works on images, but this data set holds {len(shape)}-D vectors; "
                        "use generator=mlp discriminator=mlp (or model=gan)")
    _, h, w = shape
    if h != w or h < 8 or h & (h - 1):
        raise UserError(f"the resnet {who} needs square images with a power-of-two side of at least 8, got "
                        f"{h}x{w}; set dataset.resolution to 16, 32, 64, ...")
    return h


def _check_widths(who: str, width, max_width) -> tuple[int, int]:
    for name, value in (("width", width), ("max_width", max_width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{who}.{name} must be a positive integer, got {value!r}")
    if max_width < width:
        raise UserError(f"{who}.max_width ({max_width}) must be at least {who}.width ({width})")
    return width, max_width


def _init(module: nn.Module, gain: float) -> None:
    nn.init.xavier_uniform_(module.weight, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _conv(cin: int, cout: int, kernel: int, gain: float = math.sqrt(2)) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, 1, kernel // 2)
    _init(conv, gain)
    return conv


def spectral_norm_convs(G: nn.Module, conditional_norms: bool = False) -> None:
    """Spectral normalisation of a G's convs and linear layers (not its embeddings). Those of its conditional
    batch norms only with conditional_norms (BigGAN's): they start at zero otherwise, and a spectral norm
    cannot divide by that."""
    for module in list(G.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.Conv2d, nn.Linear)) and \
                    (conditional_norms or not isinstance(module, ConditionalBatchNorm2d)) and \
                    not nn.utils.parametrize.is_parametrized(child, "weight"):
                setattr(module, name, nn.utils.parametrizations.spectral_norm(child))


class GBlock(nn.Module):
    """x (N, cin, s, s) -> (N, cout, 2s, 2s); e: what conditional batch norms read (class embeddings; in
    BigGAN's G the shared embedding beside the block's chunk of z), of embed_dim features."""

    def __init__(self, cin: int, cout: int, cbn: bool, embed_dim: int = CLASS_EMBED_DIM, zero_init: bool = True):
        super().__init__()
        self.cbn = cbn

        def norm(channels):
            return ConditionalBatchNorm2d(channels, embed_dim, zero_init) if cbn else nn.BatchNorm2d(channels)

        self.bn1, self.conv1 = norm(cin), _conv(cin, cout, 3)
        self.bn2, self.conv2 = norm(cout), _conv(cout, cout, 3)
        self.shortcut = _conv(cin, cout, 1, gain=1.0)

    def _norm(self, bn, x, e):
        return bn(x, e) if self.cbn else bn(x)

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(self._norm(self.bn1, x, e)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self._norm(self.bn2, self.conv1(h), e)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """x (N, cin, s, s) -> (N, cout, s/2 or s, ...). `first`: the optimised block on the image (no
    ReLU in front, pooling before the shortcut's conv)."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = _conv(cin, cout, 3), _conv(cout, cout, 3)
        self.shortcut = _conv(cin, cout, 1, gain=1.0) if (cin != cout or down) else None

    def _pool(self, x):
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.shortcut is None:
            return h + x
        skip = self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))
        return h + skip


class ResNetGenerator(nn.Module):
    """z (N, z_dim) -> images. Conditional as the dcgan G: class_input concat (one-hot beside z) or cbn
    (class-conditional batch norm in every block); code_dim for InfoGAN's codes beside z."""

    def __init__(self, shape, z_dim: int = 128, width: int = 256, max_width: int = 256, spectral_norm: bool = False,
                 attention_at=None, *, num_classes: int = 0, class_input: str = "concat", code_dim: int = 0):
        super().__init__()
        if not isinstance(z_dim, int) or z_dim < 1:
            raise UserError(f"generator.z_dim must be a positive integer, got {z_dim!r}")
        width, max_width = _check_widths("generator", width, max_width)
        if num_classes:
            check_condition("generator", num_classes, class_input, CLASS_INPUTS_G)
        self.shape, self.z_dim = tuple(shape), z_dim
        self.num_classes, self.code_dim = int(num_classes), int(code_dim)
        self.cbn = bool(num_classes) and class_input == "cbn"
        self._concat_classes = 0 if self.cbn else self.num_classes
        blocks = int(math.log2(_side(self.shape, "generator") // 4))
        channels = [min(width * 2 ** i, max_width) for i in range(blocks, -1, -1)]  # 4x4 map, then each block
        self.start = channels[0]
        self.linear = nn.Linear(z_dim + self._concat_classes + self.code_dim, 16 * channels[0])
        _init(self.linear, 1.0)
        self.blocks = nn.ModuleList(GBlock(cin, cout, self.cbn) for cin, cout in zip(channels, channels[1:]))
        sides = [8 * 2 ** i for i in range(blocks)]  # what each block puts out
        at = attention_sides(attention_at, self.shape[1], sides, "generator")
        self.attention = nn.ModuleDict({str(i): SelfAttention(channels[i + 1]) for i, side in enumerate(sides)
                                        if side in at})
        self.out_bn = nn.BatchNorm2d(channels[-1])
        self.out_conv = _conv(channels[-1], self.shape[0], 3, gain=1.0)
        if check_flag("generator.spectral_norm", spectral_norm):  # SAGAN's G: every conv and linear layer
            spectral_norm_convs(self)
        self.class_embed = nn.Embedding(num_classes, CLASS_EMBED_DIM) if self.cbn else None  # N(0, 1)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        e = None
        if self.cbn:
            if c is None:
                raise ValueError("this generator is class-conditional: call G(z, labels)")
            e = self.class_embed(c)
        x = self.linear(one_hot_input(z, c, self._concat_classes, self.code_dim)).view(-1, self.start, 4, 4)
        for i, block in enumerate(self.blocks):
            x = block(x, e)
            if str(i) in self.attention:
                x = self.attention[str(i)](x)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(x))))


class ResNetDiscriminator(nn.Module):
    """images -> one raw score each; conditional as the dcgan D (concat, projection, heads)."""

    def __init__(self, shape, width: int = 128, max_width: int = 128, blocks: int = 4, spectral_norm: bool = False,
                 minibatch: str = "none", attention_at=None, init: str = "xavier", *, num_classes: int = 0,
                 class_input: str = "none", head=()):
        super().__init__()
        width, max_width = _check_widths("discriminator", width, max_width)
        if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1:
            raise UserError(f"discriminator.blocks must be a positive integer, got {blocks!r}")
        if num_classes:
            check_condition("discriminator", num_classes, class_input, CLASS_INPUTS_D)
        self.shape, self.num_classes = tuple(shape), int(num_classes)
        self.class_input = class_input if num_classes else "none"
        self.minibatch = check_minibatch(minibatch)
        side = _side(self.shape, "discriminator")
        check_init("discriminator", init)
        sides = [side]  # what each block puts out
        for _ in range(blocks):
            sides.append(sides[-1] // 2 if sides[-1] > 8 else sides[-1])
        sides = sides[1:]
        at = attention_sides(attention_at, side, sides, "discriminator")
        cin = self.shape[0] + (self.num_classes if self.class_input == "concat" else 0)
        layers = []
        for i in range(blocks):
            cout = min(width * 2 ** i, max_width)
            if self.minibatch == "stddev" and i == blocks - 1:
                layers.append(MinibatchStddev())  # in front of the last block
                cin += 1
            down = side > 8
            layers.append(DBlock(cin, cout, down, first=i == 0))
            side, cin = side // 2 if down else side, cout
            if side in at:  # after the first block that makes this side
                layers.append(SelfAttention(cout, init))
                at.discard(side)
        self.body = nn.Sequential(*layers)
        self.linear = nn.Linear(cin, 1)
        _init(self.linear, 1.0)
        self.embed = nn.Embedding(num_classes, cin) if self.class_input == "projection" else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        self.head = head_for(cin, head)
        self.batch_features = MinibatchDiscrimination(cin) if self.minibatch == "features" else None
        if init == "ortho":
            orthogonal_init(self)
        if check_flag("discriminator.spectral_norm", spectral_norm):
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, head: bool = False):
        if self.class_input != "none" and y is None:
            raise ValueError("this discriminator is class-conditional: call D(x, labels)")
        if self.class_input == "concat":
            maps = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], dim=1)
        h = F.relu(self.body(x)).sum(dim=(2, 3))  # sum pooling over positions
        return finish_scores(self, self.linear(h).squeeze(1), h, h, y, head)
