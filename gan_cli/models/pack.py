"""PacGAN packing (Lin et al. 2018): D scores m samples at once, concatenated along channels.

`discriminator.pack=m` builds the configured D for m times the data's channels (m x 2 inputs for
toy2d's points) and wraps it in Packed: a batch of n samples becomes n / m packed inputs, items
m * i ... m * i + m - 1 together, so D returns n / m scores and the loss sees those. Real batches come
in a random order and fakes from independent z, so every packed input is m independent samples, real
or fake alike. A D that sees m samples at once can tell a collapsed G by their sameness.
"""

import torch
from torch import nn

from gan_cli import UserError


def check_pack(pack) -> int:
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise UserError(f"discriminator.pack must be a positive integer (samples per D input; 1 = no packing), "
                        f"got {pack!r}")
    return pack


def packed_shape(shape, pack: int) -> tuple:
    """The input shape of a D that scores `pack` samples of `shape` at once."""
    return (shape[0] * pack, *shape[1:])


class Packed(nn.Module):
    """A D of m-packed inputs, called with unpacked batches (n x C x ...) whose size m divides."""

    def __init__(self, net: nn.Module, pack: int):
        super().__init__()
        self.net, self.pack = net, pack

    def __getattr__(self, name):  # the wrapped D's own attributes (shape, minibatch, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.net, name)

    def forward(self, x: torch.Tensor, *args, **kwargs):
        n = x.shape[0]
        if n % self.pack:
            raise UserError(f"discriminator.pack={self.pack} scores {self.pack} samples at once; a batch of {n} "
                            "does not split into such groups (make the batch a multiple of pack)")
        return self.net(x.reshape(n // self.pack, self.pack * x.shape[1], *x.shape[2:]), *args, **kwargs)


def unpacked(D: nn.Module) -> nn.Module:
    """The D a Packed wraps (any other D as it is)."""
    return D.net if isinstance(D, Packed) else D
