"""What every command sets up the same way: the device, the seeds, mixed precision, and state a
diagnostic must leave as it found it.

Used by gan-train, gan-eval and gan-sample; imports nothing of theirs.
"""

import contextlib
import os
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
        gpus, local = torch.cuda.device_count(), distributed.local_rank()
        if local >= gpus:
            raise UserError(f"torchrun started more processes on this machine than the {gpus} GPU(s) it sees "
                            f"(local rank {local}): one GPU each, so --nproc_per_node={gpus}, or "
                            "trainer.device=cpu")
        return torch.device("cuda", local)
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


# --- the precision policy ---------------------------------------------------------------------------


def set_tf32(on: bool) -> None:
    """TF32 for CUDA's float32 matmuls and cuDNN's convolutions. The allow_tf32 flags, not the newer
    fp32_precision settings: PyTorch refuses to mix the two, and parts of it (torch.export) read the flags."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def tf32_state() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _restore_tf32(state) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = state


@contextlib.contextmanager
def ieee_float32(device):
    """Plain IEEE float32 inside: no TF32 matmuls or convolutions, no autocast. FID and the other metrics'
    features are computed so, whatever precision the run trains in (TF32 moves FID away from the reference)."""
    saved = tf32_state()
    set_tf32(False)
    try:
        with torch.autocast(torch.device(device).type, enabled=False):
            yield
    finally:
        _restore_tf32(saved)


def apply_policy(t: dict, device: torch.device) -> dict:
    """Set what trainer.tf32, cudnn_benchmark and deterministic ask for; returns the record a checkpoint keeps.

    tf32: TF32 tensor cores for float32 matmuls and convolutions (Ampere and later; about 10 significant
    bits). cudnn_benchmark: cuDNN times its algorithms for each new input shape and keeps the fastest.
    deterministic: deterministic algorithms (ops that have none warn), cuDNN's deterministic mode and
    cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG=:4096:8, unless already set), so that a GPU run repeats
    bit for bit on the same machine. They touch CUDA only; CPU runs are deterministic anyway."""
    set_tf32(bool(t["tf32"]))
    torch.backends.cudnn.benchmark = bool(t["cudnn_benchmark"]) and not t["deterministic"]
    if t["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = bool(t["deterministic"])
    torch.use_deterministic_algorithms(bool(t["deterministic"]), warn_only=True)
    return {"precision": str(t["precision"]), "tf32": bool(t["tf32"]), "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "channels_last": bool(t["channels_last"]), "deterministic": bool(t["deterministic"]),
            "device": device_name(device), "torch": str(torch.__version__)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


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


def cache_dir(path=None) -> Path:
    """gan-cli's cache (trained classifiers, reference statistics, decoded data sets): `path` where given
    (cache_dir=), else $GAN_CLI_CACHE, else $XDG_CACHE_HOME/gan-cli, else ~/.cache/gan-cli."""
    if path:
        return Path(str(path)).expanduser()
    if os.environ.get("GAN_CLI_CACHE"):
        return Path(os.environ["GAN_CLI_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "gan-cli"


def one_line(text: str) -> str:
    """A message of several lines (Hydra's, torchvision's) as the one line gan-cli's errors are."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def shown(path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
