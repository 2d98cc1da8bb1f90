"""Keeping a run safe: stop cleanly on SIGINT / SIGTERM, and stop at once on a non-finite loss."""

import os
import signal
import sys
import threading

import torch


class StopRequested(Exception):
    """Raised by the loop after it checkpointed on a signal; carries the exit code (128 + signal)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class StopSignals:
    """While active, SIGINT and SIGTERM only set `self.received`; the loop finishes its step, writes a
    checkpoint and stops. A second signal exits at once (the last checkpoint on disk is whole, since
    checkpoints are written atomically).

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is not None:
            print(f"\n{name} again: exiting now, without a checkpoint of the current step", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received = signum
        print(f"\n{name}: finishing this step and writing a checkpoint (send it again to exit at once)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


class NonFiniteGuard:
    """Notes the first step whose losses were not finite, without a host sync per step.

    `track` queues a few device-side ops; `problem` (on logging steps and before anything is written)
    reads the result once and names the step and the loss.
    """

    def __init__(self, device):
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)
        self.which = torch.zeros((), dtype=torch.long, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)
        self.names = None

    @torch.no_grad()
    def track(self, step: int, losses: dict) -> None:
        if self.names is None:
            self.names = list(losses)
        values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        bad = ~torch.isfinite(values)
        new = (self.first_step < 0) & bad.any()
        which = bad.long().argmax()
        # gather, not values[which]: indexing with a tensor would read it on the host
        self.which = torch.where(new, which, self.which)
        self.value = torch.where(new, values.gather(0, which.reshape(1)).reshape(()), self.value)
        self.first_step = torch.where(new, torch.full_like(self.first_step, step), self.first_step)

    def problem(self) -> str | None:
        """None while every tracked loss was finite; else a line naming the first bad step and loss."""
        step = int(self.first_step)
        if step < 0:
            return None
        return f"{self.names[int(self.which)]} is {float(self.value)} at step {step}"
