"""StyleGAN2's game (Karras et al. 2020): the z -> x game with lazy regularisation.

Players, in order:
    D      the non-saturating logistic loss on a real and a fake batch, every step
    D_r1   R1 = (gamma / 2) E||grad D(real)||^2, every `r1_every` steps (16), multiplied by the interval
           so that its average strength is the same as taking it every step ("lazy regularisation")
    G      the non-saturating loss through D, every step
    G_pl   the path-length penalty, every `pl_every` steps (4), also multiplied by its interval:
           for w and a random image-space direction y ~ N(0, I) / sqrt(H W), the length
           |J_w^T y| (J_w the Jacobian of the image with respect to w, averaged over layers) is pulled
           towards its running mean a (decay 0.01): pl_weight * E[(|J_w^T y| - a)^2], on half a batch.
Defaults as the reference's: gamma = 0.0002 * side^2 / batch ("auto"); path length weight 2 from 64x64
up and 0 (off) at 32x32, as its CIFAR-10 configuration. Not here: the reference's adjustment of Adam's
rate and betas for the lazy updates.
"""

import math

import torch

from gan_cli import UserError, losses
from gan_cli.games.adversarial import Adversarial
from gan_cli.games.base import Player
from gan_cli.models.stylegan2 import StyleGAN2Generator

PL_DECAY = 0.01


class StyleGAN2(Adversarial):
    name = "stylegan2"

    def __init__(self, *, r1_gamma=None, r1_every: int = 16, pl_weight=None, pl_every: int = 4, **kwargs):
        if len(kwargs["data"].shape) != 3:
            raise UserError("game=stylegan2 draws images; this data set holds points (use model=gan, wgan, ... "
                            "on toy2d)")
        super().__init__(**kwargs)
        if not isinstance(self.nets["G"], StyleGAN2Generator):
            raise UserError("game=stylegan2 needs the style-based G: use generator=stylegan2 (or model=stylegan2)")
        side = self.data.shape[1]
        if r1_gamma is None:
            r1_gamma = 0.0002 * side ** 2 / self.batch_size
        if pl_weight is None:
            pl_weight = 2.0 if side >= 64 else 0.0
        for name, value in (("r1_gamma", r1_gamma), ("pl_weight", pl_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise UserError(f"game.{name} must be >= 0 (0 = off) or null (the default by size), got {value!r}")
        for name, value in (("r1_every", r1_every), ("pl_every", pl_every)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"game.{name} must be a positive number of steps, got {value!r}")
        self.r1_gamma, self.r1_every = float(r1_gamma), r1_every
        self.pl_weight, self.pl_every = float(pl_weight), pl_every
        self.pl_mean = torch.zeros((), device=self.device)

    def describe(self):
        regs = [f"lazy R1 gamma {self.r1_gamma:g} every {self.r1_every}" if self.r1_gamma else "no R1"]
        if self.pl_weight:
            regs.append(f"path length {self.pl_weight:g} every {self.pl_every}")
        return super().describe() + ", " + ", ".join(regs)

    def players(self):
        d, g = super().players()
        out = [d]
        if self.r1_gamma:
            out.append(Player("D_r1", trains=("D",), optimizer="D", every=self.r1_every, fresh_batch=False))
        out.append(g)
        if self.pl_weight:
            out.append(Player("G_pl", trains=("G",), optimizer="G", every=self.pl_every, fresh_batch=False))
        return out

    def differentiated_twice(self):
        return super().differentiated_twice() | ({"D"} if self.r1_gamma else set()) | \
            ({"G"} if self.pl_weight else set())

    def loss(self, player, batch, nets, step):
        if player.name == "D_r1":
            real = self._seen(batch[0])
            with torch.autocast(self.device.type, enabled=False):
                norms = losses.input_gradient_norm(nets.plain("D"), real, create_graph=True)
                r1 = (self.r1_gamma / 2) * norms.square().mean()
            return r1 * self.r1_every, {"penalty/r1": r1.detach()}
        if player.name == "G_pl":
            with torch.autocast(self.device.type, enabled=False):
                penalty, lengths = self.path_length(nets.plain("G"))
            return penalty * self.pl_weight * self.pl_every, {"penalty/path_length": penalty.detach(),
                                                              "G/path_length_mean": self.pl_mean.clone()}
        return super().loss(player, batch, nets, step)

    def path_length(self, G) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[(|J_w^T y| - a)^2], the lengths) on half a batch; updates the running mean a."""
        n = max(1, self.batch_size // 2)
        ws = G.ws(torch.randn(n, self.z_dim, device=self.device))
        image = G.synthesis(ws)
        direction = torch.randn_like(image) / math.sqrt(image.shape[2] * image.shape[3])
        (grad,) = torch.autograd.grad((image * direction).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), PL_DECAY)
        return (lengths - self.pl_mean).square().mean(), lengths

    def state_dict(self):
        return {**super().state_dict(), "pl_mean": self.pl_mean.cpu()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "pl_mean" in state:
            self.pl_mean = state["pl_mean"].to(self.device)
