"""The interface of a game: the players, their nets and losses, and how it draws pictures.

A game is one GAN family's rules (z -> G -> D today; later Pix2Pix, CycleGAN, SRGAN, ...). The
training loop (gan_cli/train.py) plays any game the same way:

    for each step:
        game.schedule(step)
        for each player due at this step (its `every`), `repeat` times:
            requires_grad on the nets it trains (and those whose graph it keeps), off on the rest
            batch = a fresh real batch, or the last one
            with autocast: loss, stats = game.loss(player, batch, nets, step)    # never calls backward
            scale, backward, step the player's optimizer
            game.after_update(player, nets)                                     # clipping, a pool, ...
        EMA of the nets game.ema() names; logging, pictures, evaluation, checkpoints

A game never calls backward, never steps an optimizer and never wraps a net; the loop never does loss
arithmetic and never learns a method's name.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Player:
    """One kind of update: which nets it trains with which optimizer, how often and how many times."""

    name: str                     # the update's name: its loss is logged as loss/<name>
    trains: tuple[str, ...]       # the nets whose parameters it changes
    optimizer: str                # the optimizer it steps (a key of Game.optimizers())
    repeat: int = 1               # updates in a row each time it is due (WGAN's n_critic)
    every: int = 1                # due on the steps divisible by this (lazy regularisation: 16)
    fresh_batch: bool = True      # each update draws a new real batch; False: the last batch drawn
    keeps_graph: tuple[str, ...] = ()  # nets not trained here whose autograd graph a later player reuses

    def due(self, step: int) -> bool:
        return step % self.every == 0


class Nets(dict):
    """The nets as one player's update runs them: `nets[name]` is the module to call (compiled, and
    DDP-wrapped where that player trains it); `nets.plain(name)` is the bare module, for what compiled or
    synchronised code cannot do (double backward through a gradient penalty) and for pictures."""

    def __init__(self, running: dict, plain: dict):
        super().__init__(running)
        self._plain = plain

    def plain(self, name: str) -> nn.Module:
        return self._plain[name]


class Game:
    """Base of every game. Subclasses build their nets in __init__ (into self.nets, in a fixed order:
    building draws initial weights from the global random stream)."""

    name = "game"

    def __init__(self):
        self.nets: dict[str, nn.Module] = {}

    def describe(self) -> str:
        """The game in a few words, for the log's first line."""
        return self.name

    # --- what is trained, by whom ---------------------------------------------------------------

    def optimizers(self) -> dict[str, tuple[str, ...]]:
        """Optimizer name -> the nets whose parameters it steps."""
        raise NotImplementedError

    def players(self) -> list[Player]:
        raise NotImplementedError

    def ema(self) -> dict[str, str]:
        """Averaged copies the loop keeps when trainer.g_ema > 0: {copy name: source net}."""
        return {}

    def differentiated_twice(self) -> set[str]:
        """Nets a loss differentiates twice (gradient penalties): they are never converted to
        SyncBatchNorm, and the game runs them through nets.plain()."""
        return set()

    # --- one update -------------------------------------------------------------------------------

    def loss(self, player: Player, batch, nets: Nets, step: int) -> tuple[torch.Tensor, dict]:
        """The loss of one update of `player` and the scalars to log (tensors). Never calls backward."""
        raise NotImplementedError

    def after_update(self, player: Player, nets: Nets) -> None:
        """After a player's optimizer step: weight clipping, an image pool, a running mean."""

    def schedule(self, step: int) -> dict:
        """Called before each step: a growth level, a fade-in; returns what changed (empty: nothing)."""
        return {}

    def diagnostics(self, nets: Nets, batch) -> dict:
        """Extra scalars on logging steps (tensors). The loop restores every buffer and random stream
        after this, so it may run nets in training mode."""
        return {}

    # --- pictures and samples ---------------------------------------------------------------------

    def fixed_inputs(self, seed: int, count: int, device):
        """The inputs of the preview grid, drawn from `seed` alone (a resumed run draws the same)."""
        raise NotImplementedError

    def preview(self, nets: dict, fixed) -> tuple:
        """(picture as an H x W x 3 uint8 array, metrics dict) of the fixed inputs."""
        raise NotImplementedError

    def generate(self, nets: dict, n: int, seed: int, device, batch_size: int):
        """Yield batches of n samples (values in [-1, 1]) for evaluation, the same for a given seed."""
        raise NotImplementedError

    def refresh_statistics(self, name: str, net: nn.Module, device) -> None:
        """Make an averaged copy's batch-norm statistics its own (they are not averaged)."""

    # --- the game's own state -------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@contextmanager
def evaluating(net: nn.Module):
    """Run `net` in eval mode inside the block and give it back in the mode it was in."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


@torch.no_grad()
def standing_statistics(net: nn.Module, inputs, batches: int) -> None:
    """Batch-norm running statistics recomputed as the plain mean over `batches` forward passes of
    `inputs()` in training mode ("standing statistics", Brock et al. 2019, BigGAN). Nothing else of the
    net changes; it is left in eval mode."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    net.train()
    for _ in range(batches):
        args = inputs()
        net(*args)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()
