"""What every command sets up the same way: the device, the seeds, mixed precision, and state a
diagnostic must leave as it found it.

Used by gan-train, gan-eval and gan-sample; imports nothing of theirs.
"""

import contextlib
import random
from pathlib import Path

import numpy as np
import torch

from gan_cli import UserError, distributed

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def pick_device(name: str) -> torch.device:
    """`auto` -> cuda, then mps, then cpu; anything else must be a device torch knows and can see.

    Under torchrun each process takes the GPU of its LOCAL_RANK.
    """
    if distributed.launched() and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown trainer.device '{name}'; choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"trainer.device={name} but MPS is not available; use trainer.device=auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Precision:
    """trainer.precision: autocast around the forward passes; fp16 also scales the losses (bf16 needs not)."""

    def __init__(self, name, device: torch.device):
        name = str(name)
        if name not in PRECISIONS:
            raise UserError(f"unknown trainer.precision '{name}'; choose 32, bf16 or 16")
        self.name, self.dtype, self.device = name, PRECISIONS[name], device
        if self.dtype is torch.float16 and device.type == "mps":
            raise UserError("trainer.precision=16 is not supported on mps; use 32 or bf16")
        # One context object, entered again at every update.
        self.autocast = torch.autocast(device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for one optimizer (a no-op unless fp16)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)


@contextlib.contextmanager
def untouched(modules, device: torch.device):
    """Run a diagnostic without a trace: the modules' buffers (batch-norm statistics, spectral norm's
    power-iteration vectors) and the global random streams (dropout masks, torch.rand) are restored after.

    So how often a run logs never changes what it learns.
    """
    saved = [(b, b.detach().clone()) for m in modules for b in m.buffers()]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)


def shown(path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
