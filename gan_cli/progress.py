"""The training loop's progress: a redrawn bar on a terminal, plain lines elsewhere.

Where stderr is not a terminal (a SLURM job, nohup, CI) a redrawn bar writes every frame into the log
file; there the loop logs one line at most every `seconds` seconds instead, on logging steps (where the
losses have just been read), and one at the end.
"""

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("gan_cli.train")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    def __init__(self, total: int, initial: int, enabled: bool, seconds: float, terminal: bool | None = None):
        self.total, self.initial, self.step = total, initial, initial
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True,
                        disable=not (enabled and self.terminal))
        self.lines = enabled and not self.terminal
        self.seconds = seconds
        self.start = self.last = time.perf_counter()

    def update(self) -> None:
        self.step += 1
        self.bar.update(1)

    def logged(self, losses: dict) -> None:
        """At a logging step: the losses just read."""
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
        now = time.perf_counter()
        if self.lines and (now - self.last >= self.seconds or self.step == self.total):
            self.last = now
            done = self.step - self.initial
            rate = done / max(now - self.start, 1e-9)
            left = (self.total - self.step) / rate if rate > 0 else 0.0
            log.info("step %d/%d (%.0f%%), %.2f steps/s, %s elapsed, %s left%s", self.step, self.total,
                     100 * self.step / max(self.total, 1), rate, duration(now - self.start), duration(left),
                     "".join(f", {k} {v:.3f}" for k, v in losses.items()))

    def close(self) -> None:
        self.bar.close()
