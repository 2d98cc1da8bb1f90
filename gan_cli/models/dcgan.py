"""DCGAN generator and discriminator (Radford et al. 2016).

The paper's guidelines: strided convolutions instead of pooling, fractionally-strided ones in G;
batch norm in both nets except G's output and D's input layer; no fully connected hidden layers;
ReLU in G with tanh at the output; LeakyReLU(0.2) in D; weights drawn from N(0, 0.02).
Both nets work at any power-of-two resolution from 16 up and any number of channels: the side
goes 4 -> 8 -> ... -> resolution, and the feature maps double at each halving of the side.
"""

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.models import (CLASS_EMBED_DIM, CLASS_INPUTS_D, CLASS_INPUTS_G, ConditionalBatchNorm2d,
                            apply_spectral_norm, check_condition, check_flag, features, finish_scores, head_for,
                            one_hot_input)
from gan_cli.models.minibatch import MinibatchDiscrimination, MinibatchStddev, check_minibatch


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
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """z (N, z_dim) -> images. Conditional (keyword-only, set by the conditioning): num_classes > 0 with
    class_input concat (one-hot label beside z) or cbn (class-conditional batch norm); code_dim > 0 for
    InfoGAN's codes beside z."""

    def __init__(self, shape, z_dim: int = 100, width: int = 64, *, num_classes: int = 0, class_input: str = "concat",
                 code_dim: int = 0):
        super().__init__()
        if z_dim < 1 or width < 1:
            raise UserError(f"generator z_dim and width must be positive, got {z_dim} and {width}")
        if num_classes:
            check_condition("generator", num_classes, class_input, CLASS_INPUTS_G)
        self.shape, self.z_dim = tuple(shape), int(z_dim)
        self.num_classes, self.code_dim = int(num_classes), int(code_dim)
        cbn = bool(num_classes) and class_input == "cbn"
        self._concat_classes = self.num_classes if not cbn else 0
        stages = _num_stages(self.shape, "generator")
        channels = width * 2 ** (stages - 1)

        def norm(c):
            return ConditionalBatchNorm2d(c) if cbn else nn.BatchNorm2d(c)

        # Project z to a 4x4 map (a transposed conv on a 1x1 input), then double the side per layer.
        inputs = z_dim + self._concat_classes + self.code_dim
        layers = [
            nn.ConvTranspose2d(inputs, channels, 4, 1, 0, bias=False),
            norm(channels),
            nn.ReLU(inplace=True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                norm(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        # Output layer: no batch norm, tanh to [-1, 1].
        layers += [nn.ConvTranspose2d(channels, self.shape[0], 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.cbn = cbn
        self.class_embed = nn.Embedding(num_classes, CLASS_EMBED_DIM) if cbn else None  # drawn from N(0, 1)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = one_hot_input(z, c, self._concat_classes, self.code_dim)
        x = x.view(x.shape[0], x.shape[1], 1, 1)
        if not self.cbn:
            return self.net(x)
        if c is None:
            raise ValueError("this generator is class-conditional: call G(z, labels)")
        e = self.class_embed(c)
        for layer in self.net:
            x = layer(x, e) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x


NORMS = ("batch", "layer", "none")


def _norm_layer(norm: str, channels: int) -> list[nn.Module]:
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "layer":  # per-item statistics over (C, H, W): what WGAN-GP advises for a critic
        return [nn.GroupNorm(1, channels)]
    return []


class DCGANDiscriminator(nn.Module):
    """images -> one raw score each. Conditional (keyword-only, set by the conditioning): num_classes > 0
    with class_input concat (one-hot label maps beside the image channels) or projection (the score
    gains <embed(y), sum-pooled last features>); head = (classes,) for ACGAN or (categorical,
    continuous) for InfoGAN's Q, on the flattened last features. minibatch: see gan_cli/models/minibatch.py
    (stddev goes in front of the last stride-2 conv, features on the flattened last features)."""

    def __init__(self, shape, width: int = 64, norm: str = "batch", spectral_norm: bool = False,
                 minibatch: str = "none", *, num_classes: int = 0, class_input: str = "none", head=()):
        super().__init__()
        if width < 1:
            raise UserError(f"discriminator width must be positive, got {width}")
        if norm not in NORMS:
            raise UserError(f"unknown discriminator.norm '{norm}'; choose one of: {', '.join(NORMS)}")
        if num_classes:
            check_condition("discriminator", num_classes, class_input, CLASS_INPUTS_D)
        self.shape = tuple(shape)
        self.num_classes = int(num_classes)
        self.class_input = class_input if num_classes else "none"
        stages = _num_stages(self.shape, "discriminator")
        extra = self.num_classes if self.class_input == "concat" else 0
        # Input layer: no normalisation.
        layers = [nn.Conv2d(self.shape[0] + extra, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        self.minibatch = check_minibatch(minibatch)
        for i in range(stages - 1):
            stddev = self.minibatch == "stddev" and i == stages - 2
            layers += [
                *([MinibatchStddev()] if stddev else []),
                nn.Conv2d(channels + stddev, channels * 2, 4, 2, 1, bias=norm == "none"),
                *_norm_layer(norm, channels * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels *= 2
        # 4x4 -> one raw score; the loss applies the nonlinearity.
        layers.append(nn.Conv2d(channels, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        self.embed = nn.Embedding(num_classes, channels) if self.class_input == "projection" else None
        self.head = head_for(channels * 16, head)
        self.batch_features = MinibatchDiscrimination(channels * 16) if self.minibatch == "features" else None
        init_dcgan_weights(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if check_flag("discriminator.spectral_norm", spectral_norm):
            apply_spectral_norm(self)
        self.plain = self.class_input == "none" and self.head is None and self.batch_features is None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, head: bool = False):
        if self.plain:
            scores = self.net(x).flatten()
            return (scores, None) if head else scores
        if self.class_input != "none" and y is None:
            raise ValueError("this discriminator is class-conditional: call D(x, labels)")
        if self.class_input == "concat":
            maps = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], dim=1)
        h = features(self.net, x)
        # Projection: the inner product of the class embedding with the features pooled over space.
        return finish_scores(self, self.net[-1](h).flatten(), h, h.sum(dim=(2, 3)), y, head)
