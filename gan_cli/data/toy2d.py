"""2-D Gaussian mixtures for studying mode collapse (the PacGAN experiments, Lin et al. 2018)."""

import math

import torch

from gan_cli import UserError

MIXTURES = ("ring", "grid")


def mixture_centres(mixture: str) -> tuple[torch.Tensor, float]:
    """The modes and their standard deviation: `ring` = 8 on the unit circle (sigma 0.01),
    `grid` = 25 at {-4, -2, 0, 2, 4}^2 (sigma 0.05)."""
    if mixture == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], 1).float(), 0.01
    if mixture == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise UserError(f"unknown dataset.mixture '{mixture}'; choose one of: {', '.join(MIXTURES)}")


class MixtureBatches:
    """Fresh points every batch: pick a mode uniformly, add N(0, sigma^2 I). Labels are the mode index."""

    def __init__(self, mixture, batch_size, device, seed):
        self.name = f"toy2d ({mixture})"
        self.mixture = mixture
        centres, self.sigma = mixture_centres(mixture)
        self.centres = centres.to(device)
        self.shape, self.num_classes = (2,), len(centres)
        self.batch_size, self.device, self.seed = batch_size, device, seed
        # The points are drawn on the host, from a generator that stays there: its state then means the
        # same on any device, so a run resumes on another one. (The batches are a few hundred numbers.)
        self.generator = torch.Generator().manual_seed(seed)

    def shard(self, rank: int, world: int):
        """Points are drawn fresh: each process draws its own, from a stream of its own."""
        if rank:
            self.generator.manual_seed(self.seed + rank)
        return self

    def next(self):
        modes = torch.randint(len(self.centres), (self.batch_size,), generator=self.generator)
        noise = torch.randn(self.batch_size, 2, generator=self.generator)
        if self.device.type == "cuda":  # copied without waiting for the device
            modes, noise = modes.pin_memory(), noise.pin_memory()
        modes = modes.to(self.device, non_blocking=True)
        noise = noise.to(self.device, non_blocking=True)
        return self.centres[modes] + self.sigma * noise, modes

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


def toy2d(mixture: str = "ring", *, batch_size, device, seed, num_workers=0):
    """Build the toy2d batch source (`dataset=toy2d dataset.mixture=ring|grid`)."""
    mixture_centres(mixture)  # validates the name
    return MixtureBatches(mixture, batch_size, device, seed)
