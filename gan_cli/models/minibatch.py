"""Features of the whole batch for D, so that it can tell a collapsed batch from a varied one.

A D that scores each image alone cannot see that G gives the same image for every z; these layers
hand it a statistic of the batch. `discriminator.minibatch` picks one on the dcgan, resnet and mlp Ds:

    features  minibatch discrimination (Salimans et al. 2016): a learnt tensor T maps each item's
              features f_i to B rows M_i,b of C values; item i gets o_i,b = sum over j != i of
              exp(-||M_i,b - M_j,b||_1), B numbers that are large when other items lie close to it.
              D's score gains a learnt linear function of o_i (the same as appending o_i to the last
              features in front of a linear score layer). B = 100 kernels of C = 5, as the paper's code.
    stddev    minibatch standard deviation (Karras et al. 2018): the batch is split into groups of
              up to 4; the standard deviation of every feature over a group, averaged over features and
              positions, is one number, appended as a constant feature map (or feature) to each
              item of the group, in front of D's last hidden layer so that D can use it nonlinearly.
"""

import math

import torch
from torch import nn

from gan_cli import UserError

MINIBATCH = ("none", "features", "stddev")
KERNELS, KERNEL_DIM = 100, 5  # minibatch discrimination's B and C
GROUP_SIZE = 4                # minibatch stddev's group


def check_minibatch(value: str) -> str:
    if value not in MINIBATCH:
        raise UserError(f"unknown discriminator.minibatch '{value}'; choose one of: {', '.join(MINIBATCH)}")
    return value


class MinibatchStddev(nn.Module):
    """(N, C, H, W) -> (N, C + 1, H, W), or (N, F) -> (N, F + 1): the group's mean standard deviation
    appended. Groups are items i, i + N/g, i + 2N/g, ... (g = the largest divisor of N up to 4)."""

    def __init__(self, group_size: int = GROUP_SIZE):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = math.gcd(n, self.group_size)
        grouped = x.float().reshape(g, n // g, *x.shape[1:])
        std = (grouped.var(dim=0, unbiased=False) + 1e-8).sqrt()       # (N/g, ...) per feature
        stat = std.flatten(1).mean(dim=1).to(x.dtype).repeat(g)        # (N,), one value per group
        extra = stat.view(n, 1, *([1] * (x.dim() - 2))).expand(n, 1, *x.shape[2:])
        return torch.cat([x, extra], dim=1)


class MinibatchDiscrimination(nn.Module):
    """(N, F) features -> (N,) an extra score from the closeness of each item to the rest of its batch."""

    def __init__(self, features: int, kernels: int = KERNELS, kernel_dim: int = KERNEL_DIM):
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.T = nn.Linear(features, kernels * kernel_dim, bias=False)
        nn.init.normal_(self.T.weight, 0.0, 0.05)
        self.score = nn.Linear(kernels, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def closeness(self, h: torch.Tensor) -> torch.Tensor:
        """o: (N, B), each item's summed closeness to the other items of the batch, per kernel."""
        m = self.T(h.flatten(1)).view(-1, self.kernels, self.kernel_dim)              # (N, B, C)
        distance = (m[:, None] - m[None, :]).abs().sum(dim=3)                      # (N, N, B), L1
        closeness = torch.exp(-distance)
        return closeness.sum(dim=1) - 1.0  # minus each item's closeness to itself (exp(0) = 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.score(self.closeness(h)).squeeze(1)
