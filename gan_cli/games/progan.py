"""Progressive growing (Karras et al. 2018): the z -> x game played one resolution at a time.

The run is split into levels, 4x4 up to the data's side. Level 0 trains at 4x4; each later level
first fades its new layers in, alpha rising linearly from 0 to 1 over the first half of the level,
then trains with them alone. Both nets and the real images follow: D sees real images pooled to the
level's side, and during a fade-in a blend of them with their 2x coarser version, as the paper does.

How long a level lasts: `level_images` images (the paper: 1,600,000 = 800k fading + 800k stable), or,
with level_images null, an equal share of the run's steps, so that any trainer.steps ends at full
resolution. `batch_sizes` gives a batch size per level (the paper lowers it at high resolutions); each
is taken from the front of the loader's batch (trainer.batch_size, which must be the largest).

The level and alpha are a function of the step alone (and of the run's first trainer.steps, kept in the
checkpoint), so a run resumed inside a fade-in continues exactly.
"""

import math

import torch
import torch.nn.functional as F

from gan_cli import UserError
from gan_cli.games.adversarial import Adversarial
from gan_cli.models.pack import unpacked
from gan_cli.models.progan import Growing


class ProGAN(Adversarial):
    name = "progan"

    def __init__(self, *, steps: int, level_images=None, batch_sizes=None, **kwargs):
        if len(kwargs["data"].shape) != 3:
            raise UserError("game=progan grows images from 4x4 up; this data set holds points (use model=gan, "
                            "wgan, ... on toy2d)")
        super().__init__(steps=steps, **kwargs)
        G, D = self.nets["G"], self.nets["D"]
        if not (isinstance(G, Growing) and isinstance(unpacked(D), Growing)):
            raise UserError("game=progan grows its nets level by level: use generator=progan discriminator=progan "
                            "(or model=progan)")
        if self.cond.name != "none":
            raise UserError("game=progan is unconditional; use conditioning=none")
        self.last = G.last
        levels = self.last + 1
        if batch_sizes is None:
            batch_sizes = [self.batch_size] * levels
        if not isinstance(batch_sizes, (list, tuple)):
            raise UserError(f"game.batch_sizes must be a list of {levels} batch sizes (4x4 up to {4 * 2 ** self.last}) "
                            f"or null, got {batch_sizes!r}")
        batch_sizes = list(batch_sizes)
        if len(batch_sizes) != levels or any(not isinstance(b, int) or not 1 <= b <= self.batch_size
                                              for b in batch_sizes):
            raise UserError(f"game.batch_sizes needs {levels} batch sizes (4x4 up to {4 * 2 ** self.last}), each "
                            f"from 1 to trainer.batch_size ({self.batch_size}), got {batch_sizes}")
        pack = getattr(D, "pack", 1)
        if any(b % pack for b in batch_sizes):
            raise UserError(f"discriminator.pack={pack} needs every batch size of game.batch_sizes to be a multiple "
                            f"of {pack}, got {batch_sizes}")
        if level_images is not None and (not isinstance(level_images, int) or level_images < 1):
            raise UserError(f"game.level_images must be a positive number of images or null, got {level_images!r}")
        self.batch_sizes, self.level_images, self.horizon = batch_sizes, level_images, steps
        self.level, self.alpha = self.last, 1.0
        self._plan = self.plan()

    def describe(self):
        return super().describe() + f", growing 4x4 -> {4 * 2 ** self.last}x{4 * 2 ** self.last}"

    def plan(self) -> list[int]:
        """The number of steps of each level (the last one: the rest of the run)."""
        levels = self.last + 1
        if self.level_images is None:
            return [max(1, self.horizon // levels)] * levels
        return [math.ceil(self.level_images / b) for b in self.batch_sizes]

    def level_at(self, step: int) -> tuple[int, float]:
        """(level, alpha) of a 1-based step."""
        done = step - 1
        for level, length in enumerate(self._plan):
            if done < length or level == self.last:
                fade = length // 2 if level else 0
                return level, (min(1.0, done / fade) if fade else 1.0)
            done -= length
        return self.last, 1.0

    def schedule(self, step):
        level, alpha = self.level_at(step)
        changed = level != self.level or step == 1
        self.level, self.alpha = level, alpha
        for net in self.nets.values():
            net.grow(level, alpha)
        return {"level": level, "side": 4 * 2 ** level, "fade_steps": self._plan[level] // 2 if level else 0} \
            if changed else {}

    def real_at_level(self, real: torch.Tensor) -> torch.Tensor:
        """Real images at the level's side; during a fade-in blended with their 2x coarser version."""
        side = 4 * 2 ** self.level
        if real.shape[-1] != side:
            real = F.adaptive_avg_pool2d(real, side)
        if self.level and self.alpha < 1:
            coarse = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
            real = torch.lerp(coarse, real, self.alpha)
        return real

    def _generate(self, G, labels, grad: bool):
        z = torch.randn(self.batch_sizes[self.level], self.z_dim, device=self.device)
        with torch.set_grad_enabled(grad):
            return G(z, native=True), None

    def loss(self, player, batch, nets, step):
        real, labels = batch
        b = self.batch_sizes[self.level]
        batch = (self.real_at_level(real[:b]), None if labels is None else labels[:b])
        loss, stats = super().loss(player, batch, nets, step)
        if player.name == "D":
            stats["progan/level"] = torch.tensor(float(self.level), device=self.device)
            stats["progan/alpha"] = torch.tensor(self.alpha, device=self.device)
        return loss, stats

    def state_dict(self):
        return {**super().state_dict(), "horizon": self.horizon}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.horizon = state.get("horizon", self.horizon)
        self._plan = self.plan()
