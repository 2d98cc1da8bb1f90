"""Generators and discriminators: plain nn.Modules built from keyword arguments.

Every G takes z of shape (N, z_dim) and has `z_dim` and `shape` attributes; every D takes a
batch of data and returns one raw score per item, shape (N,).
"""

from torch import nn

from gan_cli import UserError


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return value


def apply_spectral_norm(module: nn.Module) -> None:
    """Spectral normalisation (Miyato et al. 2018) of every conv and linear weight: each layer's
    weight is divided by its largest singular value, estimated by one power iteration per forward pass."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)
