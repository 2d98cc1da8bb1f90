"""The games the training loop can play (see base.py for the interface): config word -> class."""

from gan_cli.games.adversarial import Adversarial
from gan_cli.games.base import Game, Nets, Player

GAMES = {"adversarial": Adversarial}

__all__ = ["GAMES", "Adversarial", "Game", "Nets", "Player"]
