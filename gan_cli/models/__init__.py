"""Generators and discriminators: plain nn.Modules built from keyword arguments.

Every G takes z of shape (N, z_dim) and has `z_dim` and `shape` attributes; every D takes a
batch of data and returns one raw score per item, shape (N,).

Conditional nets (see gan_cli/conditioning.py) take one more argument: G(z, c) with c the class
labels (N,) or InfoGAN's codes (N, code_dim); D(x, y) with the labels where D sees them, and
D(x, head=True) -> (scores, head output) where D has an extra head (ACGAN's classes, InfoGAN's Q).
"""

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError

CLASS_INPUTS_G = ("concat", "cbn")
CLASS_INPUTS_D = ("none", "concat", "projection")


def check_condition(who: str, num_classes: int, class_input: str, choices) -> None:
    if num_classes < 0 or (num_classes == 1):
        raise UserError(f"a conditional {who} needs at least 2 classes, got {num_classes}")
    if class_input not in choices:
        raise UserError(f"unknown {who} class_input '{class_input}'; choose one of: {', '.join(choices)}")


CLASS_EMBED_DIM = 128  # size of the class embedding (N(0, 1) per class) shared by G's conditional batch norms


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm with a per-class scale and shift (de Vries et al. 2017; Miyato & Koyama 2018), given as
    linear maps of the shared class embedding e: (1 + W_g e) * BN(x) + W_b e, as BigGAN does.

    Why not a table of scales and shifts per class: an Adam step moves each parameter by about lr, so a
    class's own scale moves by at most ~lr per step (0.03 after 150 steps at lr 2e-4; 0.006 measured)
    and G stays nearly unconditional against a projection D whose class term it cannot
    answer: sngan_projection collapsed that way. Through a 128-d embedding each step can move it by up to
    ~128 lr. W starts at zero: the layer starts as plain BN."""

    def __init__(self, channels: int, embed_dim: int = CLASS_EMBED_DIM, zero_init: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(embed_dim, channels, bias=False)
        self.shift = nn.Linear(embed_dim, channels, bias=False)
        if zero_init:  # (a spectrally normalised W cannot start at zero: BigGAN's G initialises it as the rest)
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); e: the class embeddings (N, embed_dim)."""
        return (1 + self.gain(e))[:, :, None, None] * self.bn(x) + self.shift(e)[:, :, None, None]


class Head(nn.Module):
    """An extra output on D's body features: ACGAN's class logits, or InfoGAN's Q (categorical logits
    and the means of the continuous codes) behind one hidden layer, as in the InfoGAN paper."""

    def __init__(self, features: int, outputs: int, hidden: int = 0):
        super().__init__()
        layers = [nn.Linear(features, hidden), nn.LeakyReLU(0.2, inplace=True)] if hidden else []
        layers.append(nn.Linear(hidden or features, outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h.flatten(1))


def head_for(features: int, head) -> Head | None:
    """head = () for none, (num_classes,) for ACGAN, (categorical, continuous) for InfoGAN's Q."""
    head = tuple(head or ())
    if not head:
        return None
    if len(head) == 1:
        return Head(features, head[0])
    return Head(features, head[0] + head[1], hidden=128)


def features(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """D's features: every layer of `net` but the last (the score layer), without building a new module."""
    last = len(net) - 1
    for i, layer in enumerate(net):
        if i == last:
            break
        x = layer(x)
    return x


def finish_scores(D: nn.Module, scores: torch.Tensor, h: torch.Tensor, pooled: torch.Tensor, y, head: bool):
    """A D's score with its extra terms: the projection <embed(y), pooled features>, minibatch
    discrimination's term on the features h, and (with head=True) the head's output on h."""
    if D.class_input == "projection":
        scores = scores + (D.embed(y) * pooled).sum(dim=1)
    if D.batch_features is not None:
        scores = scores + D.batch_features(h)
    if head:
        return scores, None if D.head is None else D.head(h)
    return scores


def one_hot_input(z: torch.Tensor, c, num_classes: int, code_dim: int) -> torch.Tensor:
    """z with the condition beside it: the one-hot label, or the code vector."""
    if num_classes:
        if c is None:
            raise ValueError("this generator is class-conditional: call G(z, labels)")
        return torch.cat([z, F.one_hot(c, num_classes).to(z.dtype)], dim=1)
    if code_dim:
        if c is None:
            raise ValueError("this generator takes InfoGAN codes: call G(z, codes)")
        return torch.cat([z, c.to(z.dtype)], dim=1)
    return z


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return value


def apply_spectral_norm(module: nn.Module) -> None:
    """Spectral normalisation (Miyato et al. 2018) of every conv and linear weight: each layer's
    weight is divided by its largest singular value, estimated by one power iteration per forward pass.
    Weights normalised already (a self-attention block's) are left as they are."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.Linear, nn.Embedding)):
            if not nn.utils.parametrize.is_parametrized(child, "weight"):
                setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)


INITS = ("xavier", "ortho")


def check_init(who: str, init) -> str:
    if init not in INITS:
        raise UserError(f"unknown {who}.init {init!r}; choose one of: {', '.join(INITS)}")
    return init


def orthogonal_init(module: nn.Module) -> None:
    """Orthogonal initialisation (Saxe et al. 2014) of every conv, linear and embedding weight, biases at zero,
    as BigGAN initialises G and D. Call it before spectral normalisation is applied: weights normalised
    already (a self-attention block's, initialised by the block) are left alone."""
    for child in module.modules():
        if isinstance(child, (nn.Conv2d, nn.Linear, nn.Embedding)) and \
                not nn.utils.parametrize.is_parametrized(child, "weight"):
            nn.init.orthogonal_(child.weight)
            if getattr(child, "bias", None) is not None:
                nn.init.zeros_(child.bias)
