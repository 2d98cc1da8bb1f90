"""Fully connected G and D, as in the original GAN (Goodfellow et al. 2014)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.models import (CLASS_INPUTS_D, apply_spectral_norm, check_condition, check_flag, features, finish_scores,
                            head_for, one_hot_input)
from gan_cli.models.minibatch import MinibatchDiscrimination, MinibatchStddev, check_minibatch


def _check_hidden(hidden) -> list[int]:
    hidden = list(hidden)
    if not hidden or any(int(h) < 1 for h in hidden):
        raise UserError(f"hidden must be a non-empty list of positive layer sizes, got {hidden}")
    return [int(h) for h in hidden]


class MLPGenerator(nn.Module):
    """z -> ReLU hidden layers -> data. Images get a tanh output in [-1, 1]; 2-D points a linear one.
    Conditional (keyword-only): num_classes > 0 puts the one-hot label beside z (class_input concat;
    conditional batch norm needs the dcgan G); code_dim > 0 puts InfoGAN's codes there."""

    def __init__(self, shape, z_dim: int = 100, hidden=(512, 512), *, num_classes: int = 0,
                 class_input: str = "concat", code_dim: int = 0):
        super().__init__()
        if z_dim < 1:
            raise UserError(f"generator z_dim must be positive, got {z_dim}")
        if num_classes and class_input == "cbn":
            raise UserError("conditioning=projection needs class-conditional batch norm in G, which the dcgan and "
                            "resnet generators have; the mlp one takes labels with conditioning=cgan or acgan")
        if num_classes:
            check_condition("generator", num_classes, class_input, ("concat",))
        self.shape, self.z_dim = tuple(shape), int(z_dim)
        self.num_classes, self.code_dim = int(num_classes), int(code_dim)
        layers, width = [], self.z_dim + self.num_classes + self.code_dim
        for h in _check_hidden(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, math.prod(self.shape)))
        if len(self.shape) == 3:  # images live in [-1, 1]
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(one_hot_input(z, c, self.num_classes, self.code_dim)).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """data -> LeakyReLU(0.2) hidden layers -> one raw score per item. Conditional (keyword-only):
    class_input concat (one-hot label beside the flattened input) or projection (<embed(y), last
    hidden layer> added to the score); head as for the dcgan D, on the last hidden layer. minibatch: see
    gan_cli/models/minibatch.py (stddev goes in front of the last hidden layer, features on its output)."""

    def __init__(self, shape, hidden=(512, 512), dropout: float = 0.0, spectral_norm: bool = False,
                 minibatch: str = "none", *, num_classes: int = 0, class_input: str = "none", head=()):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"discriminator dropout must be in [0, 1), got {dropout}")
        if num_classes:
            check_condition("discriminator", num_classes, class_input, CLASS_INPUTS_D)
        self.shape = tuple(shape)
        self.num_classes = int(num_classes)
        self.class_input = class_input if num_classes else "none"
        extra = self.num_classes if self.class_input == "concat" else 0
        self.minibatch = check_minibatch(minibatch)
        layers, width = [nn.Flatten()], math.prod(self.shape) + extra
        hidden = _check_hidden(hidden)
        for i, h in enumerate(hidden):
            if self.minibatch == "stddev" and i == len(hidden) - 1:
                layers.append(MinibatchStddev())
                width += 1
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.embed = nn.Embedding(num_classes, width) if self.class_input == "projection" else None
        self.head = head_for(width, head)
        self.batch_features = MinibatchDiscrimination(width) if self.minibatch == "features" else None
        if check_flag("discriminator.spectral_norm", spectral_norm):
            apply_spectral_norm(self)
        self.plain = self.class_input == "none" and self.head is None and self.batch_features is None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, head: bool = False):
        if self.plain:
            scores = self.net(x).squeeze(1)
            return (scores, None) if head else scores
        if self.class_input != "none" and y is None:
            raise ValueError("this discriminator is class-conditional: call D(x, labels)")
        if self.class_input == "concat":
            x = torch.cat([x.flatten(1), F.one_hot(y, self.num_classes).to(x.dtype)], dim=1)
        h = features(self.net, x)
        return finish_scores(self, self.net[-1](h).squeeze(1), h, h, y, head)
