"""The games the training loop can play (see base.py for the interface): config word -> class."""

from gan_cli.games.adversarial import Adversarial
from gan_cli.games.base import Game, Nets, Player
from gan_cli.games.progan import ProGAN
from gan_cli.games.stylegan2 import StyleGAN2
from gan_cli.games.superres import SuperResolution
from gan_cli.games.translation import CycleGAN, Pix2Pix

GAMES = {"adversarial": Adversarial, "progan": ProGAN, "stylegan2": StyleGAN2, "pix2pix": Pix2Pix,
         "cyclegan": CycleGAN, "superres": SuperResolution}

__all__ = ["GAMES", "Adversarial", "CycleGAN", "Game", "Nets", "Pix2Pix", "Player", "ProGAN", "StyleGAN2",
           "SuperResolution"]
