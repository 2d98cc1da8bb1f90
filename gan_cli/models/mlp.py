"""Fully connected G and D, as in the original GAN (Goodfellow et al. 2014)."""

import math

import torch
from torch import nn

from gan_cli import UserError
from gan_cli.models import apply_spectral_norm, check_flag


def _check_hidden(hidden) -> list[int]:
    hidden = list(hidden)
    if not hidden or any(int(h) < 1 for h in hidden):
        raise UserError(f"hidden must be a non-empty list of positive layer sizes, got {hidden}")
    return [int(h) for h in hidden]


class MLPGenerator(nn.Module):
    """z -> ReLU hidden layers -> data. Images get a tanh output in [-1, 1]; 2-D points a linear one."""

    def __init__(self, shape, z_dim: int = 100, hidden=(512, 512)):
        super().__init__()
        if z_dim < 1:
            raise UserError(f"generator z_dim must be positive, got {z_dim}")
        self.shape, self.z_dim = tuple(shape), int(z_dim)
        layers, width = [], self.z_dim
        for h in _check_hidden(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, math.prod(self.shape)))
        if len(self.shape) == 3:  # images live in [-1, 1]
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """data -> LeakyReLU(0.2) hidden layers -> one raw score per item."""

    def __init__(self, shape, hidden=(512, 512), dropout: float = 0.0, spectral_norm: bool = False):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"discriminator dropout must be in [0, 1), got {dropout}")
        self.shape = tuple(shape)
        layers, width = [nn.Flatten()], math.prod(self.shape)
        for h in _check_hidden(hidden):
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        if check_flag("discriminator.spectral_norm", spectral_norm):
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
