"""Data-parallel training over processes launched by torchrun (one per GPU, or several on a CPU).

    torchrun --nproc_per_node=4 $(which gan-train) model=dcgan dataset=celeba
    torchrun --nnodes=2 --node_rank=<0|1> --nproc_per_node=8 --master_addr=<host of rank 0> \
        --master_port=29500 $(which gan-train) ...

gan-train sees torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK) and joins the process group
itself. Where CUDA is visible the group has two backends, gloo for CPU tensors and NCCL for CUDA
ones, so each collective goes by the device of the run (`trainer.device=cpu` keeps to gloo on a GPU
machine); elsewhere gloo alone. Outside torchrun every function here is a no-op that describes a world
of one process.
"""

import os
from datetime import datetime, timedelta

import torch
import torch.distributed as dist


def launched() -> bool:
    """True when started by torchrun (or anything setting its variables) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> None:
    if launched() and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda and local_rank() < torch.cuda.device_count():  # more processes than GPUs: see pick_device
            torch.cuda.set_device(local_rank())
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timedelta(minutes=30))


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def cleanup() -> None:
    if active():
        dist.destroy_process_group()


def launch_time() -> datetime:
    """The start time every process agrees on (rank 0's), so all of them name the same run folder."""
    now = [datetime.now()]
    if active():
        dist.broadcast_object_list(now, src=0)
    return now[0]


def mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the processes (the tensor itself in a world of one)."""
    if active():
        values = values.clone()
        dist.all_reduce(values)
        values /= world_size()
    return values


def maximum(value: int, device) -> int:
    if not active():
        return value
    t = torch.tensor(value, dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def gather(obj) -> list:
    """Every process's `obj` (plain data and tensors), in rank order."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def checksums(module: torch.nn.Module) -> list[float]:
    """Each process's checksum of `module`'s weights: equal weights give equal numbers."""
    params = torch.cat([p.detach().double().flatten().cpu() for p in module.parameters()])
    index = torch.arange(1, params.numel() + 1, dtype=torch.float64)
    return gather((params.sum().item(), (params * index).sum().item()))
