"""Schedules: a factor of a base value (a learning rate, a loss weight) as a pure function of the step.

    constant       1 throughout
    linear_decay   1 until `decay_start` (a step, or a fraction of the run such as 0.5), then straight
                   down to 0 at the end of the run
                   (Pix2Pix and CycleGAN: the rate kept for the first half, decayed over the second)
    cosine         1 until `decay_start`, then half a cosine down to 0 at the end of the run

A linear warm-up over the first `warmup` steps multiplies any of them. `decay_to` > 0 ends the decay at
that fraction of the base value instead of 0 (R3GAN's rates fall to a quarter), and an Adam optimizer's
beta2 can follow the same curve, rising from its base value to `beta2_end` as the rate falls. Steps count
from 1 (the first update); `total` is the step count the run was started with, kept in the checkpoint, so a resumed run
follows the same curve even when it is given more steps.
"""

import math

from gan_cli import UserError

KINDS = ("constant", "linear_decay", "cosine")


def start_of_decay(decay_start, total: int) -> int:
    """decay_start as a step: a fraction in (0, 1) is that part of the run (0.5: its second half decays)."""
    if isinstance(decay_start, float) and 0 < decay_start < 1:
        return round(decay_start * total)
    return int(decay_start)


def factor(step: int, kind: str, total: int, warmup: int = 0, decay_start: int | float = 0) -> float:
    """The multiplier of the base value at update `step` (1, 2, ..., total)."""
    decay_start = start_of_decay(decay_start, total)
    value = 1.0
    if warmup and step <= warmup:
        value = step / warmup
    if kind == "constant" or step <= decay_start:
        return value
    span = max(total - decay_start, 1)
    done = min(step - decay_start - 1, span) / span  # 0 at the first decayed update, 1 after the last
    if kind == "linear_decay":
        return value * (1.0 - done)
    return value * 0.5 * (1.0 + math.cos(math.pi * done))


def check(kind, warmup, decay_start, where: str = "optimizer", decay_to=0.0, beta2_end=None) -> None:
    if kind not in KINDS:
        raise UserError(f"unknown {where}.schedule '{kind}'; choose one of: {', '.join(KINDS)}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise UserError(f"{where}.warmup must be a non-negative integer of steps, got {warmup!r}")
    fraction = isinstance(decay_start, float) and 0 < decay_start < 1
    if not fraction and (not isinstance(decay_start, int) or isinstance(decay_start, bool) or decay_start < 0):
        raise UserError(f"{where}.decay_start must be a step count or a fraction of the run in (0, 1), "
                        f"got {decay_start!r}")
    if isinstance(decay_to, bool) or not isinstance(decay_to, (int, float)) or not 0 <= decay_to <= 1:
        raise UserError(f"{where}.decay_to must be a fraction of the rate in [0, 1], got {decay_to!r}")
    if beta2_end is not None and (isinstance(beta2_end, bool) or not isinstance(beta2_end, (int, float))
                                  or not 0 <= beta2_end < 1):
        raise UserError(f"{where}.beta2_end must be in [0, 1) or null, got {beta2_end!r}")


class LRSchedule:
    """Sets an optimizer's learning rates to base x factor(step) before each step's updates.

    The base rates are the optimizer's rates from the config; the state a checkpoint keeps is the
    schedule's shape and horizon.
    """

    def __init__(self, optimizer, kind: str = "constant", total: int = 1, warmup: int = 0,
                 decay_start: int | float = 0, decay_to: float = 0.0, beta2_end: float | None = None):
        check(kind, warmup, decay_start, decay_to=decay_to, beta2_end=beta2_end)
        if beta2_end is not None and "betas" not in optimizer.param_groups[0]:
            raise UserError("optimizer.beta2_end moves Adam's beta2; this optimizer has no betas (leave it null)")
        self.decay_to, self.beta2_end = float(decay_to), beta2_end
        self.beta2 = [group["betas"][1] for group in optimizer.param_groups] if beta2_end is not None else []
        self.optimizer = optimizer
        self.kind, self.total, self.warmup = kind, int(total), int(warmup)
        self.asked_decay_start = decay_start  # a fraction becomes a step of the run's horizon
        self.decay_start = start_of_decay(decay_start, self.total)
        self.base = [group["lr"] for group in optimizer.param_groups]

    @property
    def changes(self) -> bool:
        return self.kind != "constant" or self.warmup > 0

    def step(self, step: int) -> None:
        if not self.changes:
            return
        f = factor(step, self.kind, self.total, self.warmup, self.decay_start)
        if self.decay_to or self.beta2:
            decay = factor(step, self.kind, self.total, 0, self.decay_start)  # 1 -> 0, without the warm-up
            warm = step / self.warmup if self.warmup and step <= self.warmup else 1.0
            f = warm * (self.decay_to + (1 - self.decay_to) * decay)
            for group, start in zip(self.optimizer.param_groups, self.beta2):
                group["betas"] = (group["betas"][0], start + (self.beta2_end - start) * (1 - decay))
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * f

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"kind": self.kind, "total": self.total, "warmup": self.warmup, "decay_start": self.decay_start}

    def load_state_dict(self, state: dict) -> None:
        """Only the horizon comes back: the shape (kind, warm-up, decay start) is the config's."""
        self.total = int(state["total"])
        self.decay_start = start_of_decay(self.asked_decay_start, self.total)
