"""Differentiable augmentation of D's inputs (DiffAugment, Zhao et al. 2020), with an adaptive strength
in the spirit of ADA (Karras et al. 2020). `trainer.augment=[color,translation,cutout]` turns it on.

Every image D sees, real or fake, in D's update and in G's, goes through the same kinds of random
transforms (each image drawing its own), written with tensor operations only so that G's gradient
flows through them. Augmenting the real images alone would teach G to make augmented images;
augmenting both, in both updates, leaves the distribution G must match unchanged.

    color        brightness + U(-0.5, 0.5); saturation (distance from the pixel's mean over channels)
                 x U(0, 2); contrast (distance from the image's mean) x U(0.5, 1.5)
    translation  a shift of up to 1/8 of the side in each direction, the uncovered border set to 0
    cutout       a square of half the side, at a uniform position (it may stick out), set to 0

(Images live in [-1, 1]; 0 is mid grey.) Each transform is applied to an image with probability p:
p = `trainer.augment_p` (1 = always, as DiffAugment), or adaptive when `trainer.augment_target` is
set: p starts at 0 and, every 4 D updates, moves by +-(images seen in them) / `augment_speed` towards
the side where r_t = E[sign(D(real))] meets the target (ADA: 0.6, and 500,000 images for p from 0 to
1). r_t near 1 means D is sure of every real image: it is overfitting, so augment more.

All randomness comes from torch's global stream on the images' device: the run's random streams,
saved in every checkpoint, so a resumed run draws the same transforms.
"""

import torch
import torch.nn.functional as F

from gan_cli import UserError

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5
ADJUST_EVERY = 4  # D updates between adjustments of an adaptive p


def color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1), device=x.device)
    # Read pixel (y + dy, x + dx) of the image padded with one ring of zeros; indices past the edge
    # are clamped onto that ring.
    rows = (torch.arange(h, device=x.device)[None] + dy + 1).clamp(0, h + 1)  # (N, H)
    cols = (torch.arange(w, device=x.device)[None] + dx + 1).clamp(0, w + 1)  # (N, W)
    padded = F.pad(x, [1, 1, 1, 1])
    items = torch.arange(n, device=x.device)[:, None, None]
    return padded[items, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (N, H, W, C) -> NCHW


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - size_y % 2), (n, 1), device=x.device) - size_y // 2
    left = torch.randint(0, w + (1 - size_x % 2), (n, 1), device=x.device) - size_x // 2
    ys, xs = torch.arange(h, device=x.device)[None], torch.arange(w, device=x.device)[None]
    inside_y = (ys >= top) & (ys < top + size_y)    # (N, H)
    inside_x = (xs >= left) & (xs < left + size_x)  # (N, W)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def check(t: dict) -> list[str]:
    """The trainer's augment keys checked; returns the policy (empty: off)."""
    policy = t.get("augment") or []
    if isinstance(policy, str):  # trainer.augment=color: one policy
        policy = [policy]
    if not isinstance(policy, (list, tuple)):
        raise UserError(f"trainer.augment must be a list of policies ({', '.join(POLICIES)}), e.g. "
                        f"trainer.augment=[color,translation,cutout], or [] for none; got {policy!r}")
    policy = list(policy)
    unknown = [p for p in policy if p not in POLICIES]
    if unknown:
        raise UserError(f"unknown trainer.augment '{unknown[0]}'; choose any of: {', '.join(POLICIES)} "
                        "(e.g. trainer.augment=[color,translation,cutout])")
    p, target, speed = t.get("augment_p", 1.0), t.get("augment_target"), t.get("augment_speed", 100_000)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise UserError(f"trainer.augment_p must be a probability in [0, 1], got {p!r}")
    if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool)
                               or not -1 < target < 1):
        raise UserError(f"trainer.augment_target must be null (fixed p) or in (-1, 1) (ADA: 0.6), got {target!r}")
    if not isinstance(speed, int) or isinstance(speed, bool) or speed < 1:
        raise UserError(f"trainer.augment_speed must be a positive number of images, got {speed!r}")
    return policy


class DiffAugment:
    """policy: the transforms in order; p: their probability (adaptive when target is set)."""

    def __init__(self, policy, p: float = 1.0, target: float | None = None, speed: int = 100_000, device="cpu"):
        self.policy = [TRANSFORMS[name] for name in policy]
        self.names = list(policy)
        self.target, self.speed = target, speed
        self.adaptive = target is not None
        # p, and the running sums of sign(D(real)) and of their count since the last adjustment, live on
        # the device so that no step waits for the host.
        self.p = torch.tensor(0.0 if self.adaptive else float(p), device=device)
        self.always = not self.adaptive and p == 1.0
        self.signs = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device)
        self.updates = 0
        self.last_rt = torch.zeros((), device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for transform in self.policy:
            if self.always:
                x = transform(x)
            else:
                chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
                x = torch.where(chosen, transform(x), x)
        return x

    def observe(self, real_scores: torch.Tensor) -> None:
        """After a D update: its scores on the real batch feed r_t; every 4 updates p moves."""
        if not self.adaptive:
            return
        scores = real_scores.detach().float()
        self.signs += scores.sign().sum()
        self.count += scores.numel()
        self.updates += 1
        if self.updates % ADJUST_EVERY == 0:
            rt = self.signs / self.count
            self.p = (self.p + torch.sign(rt - self.target) * self.count / self.speed).clamp(0.0, 1.0)
            self.last_rt = rt
            self.signs.zero_()
            self.count.zero_()

    def stats(self) -> dict:
        return {"augment/p": self.p, "augment/rt": self.last_rt} if self.adaptive else {}

    def state_dict(self) -> dict:
        return {"p": self.p.cpu(), "signs": self.signs.cpu(), "count": self.count.cpu(), "updates": self.updates,
                "rt": self.last_rt.cpu()}

    def load_state_dict(self, state: dict) -> None:
        device = self.p.device
        self.p, self.signs, self.count = (state[k].to(device) for k in ("p", "signs", "count"))
        self.last_rt = state["rt"].to(device)
        self.updates = int(state["updates"])
