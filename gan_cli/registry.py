"""Short names -> constructors, and the one function that builds a component from a config node.

The config word and the key are the same word (`loss=hinge` <-> "hinge"). A node is plain data,
e.g. {"name": "dcgan", "width": 64}: `name` picks the constructor, the other keys are its keyword
arguments, and the caller adds runtime facts (the data shape, the parameters to optimise, ...).
Components never see the config object.
"""

import inspect
import math

import torch

from gan_cli import UserError, conditioning, losses
from gan_cli.data import folder, images, stacked, superres as superres_data, toy2d
from gan_cli.data import translation as translation_data
from gan_cli.models import biggan, dcgan, mlp, progan, r3gan, resnet, stylegan2, superres, translation
from gan_cli.models.pack import Packed, check_pack, packed_shape


def adam(params, lr, betas=(0.9, 0.999), weight_decay=0.0):
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair [beta1, beta2], got {betas}")
    params = list(params)
    # On CUDA the fused kernel: one launch for every tensor, and no host read of the step count.
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **({"fused": True} if fused else {}))


def rmsprop(params, lr, alpha=0.99, momentum=0.0, weight_decay=0.0):
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, momentum=momentum, weight_decay=weight_decay)


def sgd(params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


DATASETS = {
    "digits": images.digits,
    "toy2d": toy2d.toy2d,
    "mnist": images.mnist,
    "fashion_mnist": images.fashion_mnist,
    "stacked_mnist": stacked.stacked_mnist,
    "cifar10": images.cifar10,
    "celeba": images.celeba,
    "folder": folder.folder,
    "paired": translation_data.paired,
    "unpaired": translation_data.unpaired,
    "superres": superres_data.superres,
}
GENERATORS = {
    "mlp": mlp.MLPGenerator,
    "dcgan": dcgan.DCGANGenerator,
    "resnet": resnet.ResNetGenerator,
    "biggan": biggan.BigGANGenerator,
    "progan": progan.ProGANGenerator,
    "stylegan2": stylegan2.StyleGAN2Generator,
    "r3gan": r3gan.R3GANGenerator,
    "unet": translation.UNetGenerator,
    "resnet_translation": translation.ResnetGenerator,
    "srresnet": superres.SRResNet,
}
DISCRIMINATORS = {
    "mlp": mlp.MLPDiscriminator,
    "dcgan": dcgan.DCGANDiscriminator,
    "resnet": resnet.ResNetDiscriminator,
    "progan": progan.ProGANDiscriminator,
    "stylegan2": stylegan2.StyleGAN2Discriminator,
    "r3gan": r3gan.R3GANDiscriminator,
    "patchgan": translation.PatchDiscriminator,
    "srgan": superres.SRDiscriminator,
}
LOSSES = {
    "minimax": losses.Minimax,
    "nonsaturating": losses.NonSaturating,
    "lsgan": losses.LeastSquares,
    "hinge": losses.Hinge,
    "wgan": losses.Wasserstein,
    "wgan_gp": losses.WassersteinGP,
    "relativistic": losses.Relativistic,
    "relativistic_average": losses.RelativisticAverage,
}
OPTIMIZERS = {"adam": adam, "rmsprop": rmsprop, "sgd": sgd}
CONDITIONINGS = {
    "none": conditioning.Unconditional,
    "cgan": conditioning.CGAN,
    "projection": conditioning.Projection,
    "acgan": conditioning.ACGAN,
    "infogan": conditioning.InfoGAN,
}

TABLES = {
    "dataset": DATASETS,
    "generator": GENERATORS,
    "discriminator": DISCRIMINATORS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "conditioning": CONDITIONINGS,
}


def options(group: str, name: str) -> list[str]:
    """The keyword options a config node of this group and name may set."""
    params = inspect.signature(TABLES[group][name]).parameters.values()
    own = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "params", "shape")]
    return own + ["pack"] if group == "discriminator" else own  # every D can be packed (gan_cli/models/pack.py)


def build(group: str, node: dict, **runtime):
    """Build the component a config node names, e.g. build("generator", {"name": "dcgan"}, shape=(1, 32, 32))."""
    table = TABLES[group]
    kwargs = dict(node)
    name = kwargs.pop("name", None)
    if not isinstance(name, str) or name not in table:
        raise UserError(f"unknown {group} '{name}'; choose one of: {', '.join(table)}")
    valid = options(group, name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise UserError(
            f"{group} '{name}' has no option {', '.join(unknown)}; its options are: {', '.join(valid) or 'none'} "
            f"(drop a key with ~{group}.{unknown[0]})"
        )
    defaults = {p.name: p.default for p in inspect.signature(table[name]).parameters.values()}
    for key, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{group}.{key} must be a finite number, got {value}")
        if isinstance(defaults.get(key), bool) and not isinstance(value, bool):  # download=-1 is no yes
            raise UserError(f"{group}.{key} must be true or false, got {value!r}")
    pack = check_pack(kwargs.pop("pack", 1)) if group == "discriminator" else 1
    if pack > 1:
        runtime["shape"] = packed_shape(runtime["shape"], pack)
    try:
        built = table[name](**kwargs, **runtime)
        return Packed(built, pack) if pack > 1 else built
    except (ValueError, OverflowError) as e:  # torch's own checks, e.g. "Invalid learning rate: -1"
        raise UserError(f"{group} '{name}': {e}") from None
    except TypeError as e:  # an option of the wrong type, e.g. betas=3
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise UserError(f"{group} '{name}': an option has the wrong type ({e}); given {given}") from None
