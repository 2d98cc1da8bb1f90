"""Schedules: a factor of a base value (a learning rate, a loss weight) as a pure function of the step.

    constant       1 throughout
    linear_decay   1 until `decay_start` (a step, or a fraction of the run such as 0.5), then straight
                   down to 0 at the end of the run
                   (Pix2Pix and CycleGAN: the rate kept for the first half, decayed over the second)
    cosine         1 until `decay_start`, then half a cosine down to 0 at the end of the run

A linear warm-up over the first `warmup` steps multiplies any of them. Steps count from 1 (the first
update); `total` is the step count the run was started with, kept in the checkpoint, so a resumed run
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


def check(kind, warmup, decay_start, where: str = "optimizer") -> None:
    if kind not in KINDS:
        raise UserError(f"unknown {where}.schedule '{kind}'; choose one of: {', '.join(KINDS)}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise UserError(f"{where}.warmup must be a non-negative integer of steps, got {warmup!r}")
    fraction = isinstance(decay_start, float) and 0 < decay_start < 1
    if not fraction and (not isinstance(decay_start, int) or isinstance(decay_start, bool) or decay_start < 0):
        raise UserError(f"{where}.decay_start must be a step count or a fraction of the run in (0, 1), "
                        f"got {decay_start!r}")


class LRSchedule:
    """Sets an optimizer's learning rates to base x factor(step) before each step's updates.

    The base rates are the optimizer's rates from the config; the state a checkpoint keeps is the
    schedule's shape and horizon.
    """

    def __init__(self, optimizer, kind: str = "constant", total: int = 1, warmup: int = 0,
                 decay_start: int | float = 0):
        check(kind, warmup, decay_start)
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
