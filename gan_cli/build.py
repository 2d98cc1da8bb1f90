"""From a config to a game ready to train, and from a checkpoint to a game ready to sample.

Used by all three commands: gan-train builds the data, the game, its optimizers and schedules from the
resolved config; gan-eval and gan-sample rebuild the game a checkpoint was trained with and load its
nets by name.
"""

import copy
import inspect
from typing import NamedTuple

import torch

from gan_cli import UserError, augment, checkpoint, registry
from gan_cli.games import GAMES, Adversarial
from gan_cli.schedules import LRSchedule

# The config groups a run is composed of; `model` is the preset that picks the others.
GROUPS = ("dataset", "generator", "discriminator", "loss", "optimizer", "conditioning", "game", "model")
CONV_NETS = ("dcgan", "resnet", "r3gan", "biggan")
WHO = {"G": "generator", "D": "discriminator"}  # how errors name a net


def vector_nets(c: dict) -> list[str]:
    """On vector data (toy2d) the conv nets give way to the mlp ones, as in the WGAN-GP paper's toy runs.

    A replaced node takes conf/<group>/mlp.yaml's defaults plus the options both nets share
    (z_dim, spectral_norm). Returns the groups replaced; `c` is changed in place.
    """
    from gan_cli.options import defaults

    replaced = []
    for group in ("generator", "discriminator"):
        if c[group]["name"] in CONV_NETS:
            node = defaults(group, "mlp")
            shared = set(registry.options(group, "mlp")) & set(c[group])
            c[group] = {**node, **{k: c[group][k] for k in shared}}
            replaced.append(group)
    return replaced


def data(c: dict, device, num_workers: int = 0, batch_size: int = 1):
    """The batch source of the config's data set. Every process passes the same seed: the sources split
    the data between processes themselves (see gan_cli/data)."""
    return registry.build("dataset", c["dataset"], batch_size=batch_size, device=device, seed=c["seed"],
                          num_workers=num_workers)


def game(c: dict, data, device, num_classes: int | None = None):
    """The game the config plays, its nets built on `device` (G before D: each draws its initial weights
    from the global random stream). Fills in the defaults of runs written before a key existed."""
    node = dict(c.setdefault("game", {"name": "adversarial"}))
    c.setdefault("conditioning", {"name": "none"})
    name = node.pop("name", None)
    if name in ("pix2pix", "cyclegan") and c["generator"]["name"] == "resnet":
        if "z_dim" in c["generator"]:
            raise UserError(f"game={name} maps images to images: its ResNet G is generator=resnet_translation "
                            "(generator=resnet maps z to images)")
        c["generator"]["name"] = "resnet_translation"  # its name in runs made before "resnet" meant the z -> x G
    if not isinstance(name, str) or name not in GAMES:
        raise UserError(f"unknown game '{name}'; choose one of: {', '.join(GAMES)}")
    if c["discriminator"].get("pack", 1) != 1 and not issubclass(GAMES[name], Adversarial):
        raise UserError(f"discriminator.pack packs the samples D scores in the z -> x games (adversarial, progan, "
                        f"stylegan2); game={name} scores images against their inputs: leave pack=1")
    loss_name = c["loss"].get("name")
    loss_class = registry.TABLES["loss"].get(loss_name) if isinstance(loss_name, str) else None
    if getattr(loss_class, "needs_real_scores", False) and not issubclass(GAMES[name], Adversarial):
        raise UserError(f"loss={loss_name} compares fake scores with real ones in the z -> x games (adversarial, "
                        f"progan, stylegan2); game={name} takes minimax, nonsaturating, lsgan, hinge, wgan or wgan_gp")
    t = c["trainer"]
    policy = augment.check(t)
    if policy:
        if not issubclass(GAMES.get(name, object), Adversarial):
            raise UserError(f"trainer.augment works in the z -> G -> D games (adversarial, progan), not game={name}")
        if len(data.shape) != 3:
            raise UserError("trainer.augment transforms images; this data set holds vectors (leave trainer.augment=[])")
        node["augment"] = augment.DiffAugment(policy, t.get("augment_p", 1.0), t.get("augment_target"),
                                              t.get("augment_speed", 100_000), device)
    if "steps" in inspect.signature(GAMES[name]).parameters or issubclass(GAMES[name], Adversarial):
        # a game with a schedule that spans the run (progan's growth, a relativistic loss's penalty weights)
        node["steps"] = t["steps"]
    return GAMES[name](generator=c["generator"], discriminator=c["discriminator"], loss=c["loss"],
                       conditioning=c["conditioning"], data=data, device=device, batch_size=t["batch_size"],
                       n_critic=t["n_critic"], num_classes=num_classes, **node)


SCHEDULE_KEYS = ("schedule", "warmup", "decay_start", "decay_to", "beta2_end")


def optimizers(node: dict, game) -> dict:
    """One optimizer per name the game gives, over its nets' parameters. `d_lr` (null = lr) sets the
    rate of the optimizers whose name starts with D; the schedule keys are for `schedules`."""
    node = {k: v for k, v in node.items() if k not in SCHEDULE_KEYS}
    d_lr = node.pop("d_lr", None)
    out = {}
    for name, net_names in game.optimizers().items():
        params = [p for n in net_names for p in game.nets[n].parameters()]
        lr = d_lr if name.startswith("D") and d_lr is not None else node["lr"]
        out[name] = registry.build("optimizer", {**node, "lr": lr}, params=params)
    return out


def schedules(node: dict, optimizers: dict, total: int) -> dict:
    """One learning-rate schedule per optimizer (optimizer.schedule, .warmup, .decay_start, .decay_to,
    .beta2_end)."""
    values = [node.get(k, d) for k, d in zip(SCHEDULE_KEYS, ("constant", 0, 0, 0.0, None))]
    return {name: LRSchedule(opt, *values[:1], total, *values[1:]) for name, opt in optimizers.items()}


class Loaded(NamedTuple):
    """A checkpoint's game, ready to sample: `net` is the net samples come from (`which` names it)."""

    game: object
    nets: dict
    net: torch.nn.Module
    which: str
    data: object
    config: dict
    state: dict
    path: object


def load(ckpt, use_ema: bool, device) -> Loaded:
    """The game of a checkpoint with its sampling nets' weights (G_ema where present and wanted, else G).

    G_ema's batch-norm statistics are its own: checkpoints written before they were computed held G's
    copies, and those are recomputed here."""
    path = checkpoint.find(ckpt)
    state = checkpoint.load(path)
    config = copy.deepcopy(state["config"])
    source = data(config, torch.device("cpu"))
    if len(source.shape) == 1:
        vector_nets(config)
    g = game(config, source, device, num_classes=state.get("num_classes", source.num_classes))
    nets = dict(g.nets)
    which = g.sampling_net(state["ema"], use_ema)
    for name, weights in state["nets"].items():
        if name in nets:
            checkpoint.load_weights(nets[name], weights, WHO.get(name, name), path)
    if which in state["ema"]:
        source_net = g.ema()[which]
        nets[which] = copy.deepcopy(nets[source_net])
        checkpoint.load_weights(nets[which], state["ema"][which], WHO.get(source_net, source_net), path)
        if state.get("upgraded_from"):
            g.refresh_statistics(which, nets[which], device)
    for net in nets.values():
        net.eval().requires_grad_(False)
    return Loaded(g, nets, nets[which], which, source, config, state, path)
