"""Data sets and the batch sources the training loop draws from.

Each builder (see gan_cli.registry) returns a batch source with:
    shape         the shape of one item, (C, H, W) for images or (2,) for points
    num_classes   number of labels, 0 when the data are unlabelled
    next()        -> (real, labels): a batch on the device, images scaled to [-1, 1]; labels or None
    shard(rank, world) -> self: this process's share of the data (see below)
    state_dict() / load_state_dict()   the data-order state a checkpoint keeps

Small sets live on the device as one uint8 tensor (TensorBatches); large ones stream from disk
through a DataLoader with workers and pinned memory (StreamBatches).

Under torchrun every process builds the source with the same seed, so all of them draw the same
order of each epoch, and each takes its own share of it (items rank, rank + world, ...), as
DistributedSampler does: in an epoch no two processes see the same image.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gan_cli import UserError


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float images in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def from_worker(error: UserError) -> UserError:
    """A UserError raised in a DataLoader worker comes back as "Caught UserError in DataLoader worker process
    0.", the worker's traceback and, last, the message: the message alone, so it stays one line."""
    lines = str(error).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught "):
        last = lines[-1]
        prefix = f"{type(error).__module__}.{type(error).__name__}: "
        return type(error)(last[len(prefix):] if last.startswith(prefix) else last)
    return error


def _check_batch_size(batch_size: int, size: int, name: str) -> None:
    if batch_size > size:
        raise UserError(f"trainer.batch_size={batch_size} is larger than the {size} images of {name}; lower it")


class TensorBatches:
    """The whole data set on the device as one uint8 tensor; batches are drawn there.

    Each epoch visits the items in a fresh random order (from its own seeded generator) and
    drops the incomplete last batch, like a shuffled DataLoader with drop_last=True.
    """

    def __init__(self, images, labels, batch_size, device, seed, name):
        _check_batch_size(batch_size, len(images), name)
        self.name, self.batch_size, self.device = name, batch_size, device
        self.images = images.to(device)
        self.labels = None if labels is None else labels.to(device)
        self.shape = tuple(images.shape[1:])
        self.num_classes = 0 if labels is None else int(labels.max()) + 1
        self.generator = torch.Generator().manual_seed(seed)
        self.rank, self.world = 0, 1
        self.order, self.pos = None, len(images)  # start with a new epoch

    def __len__(self):
        return len(self.images)

    def shard(self, rank: int, world: int):
        _check_batch_size(self.batch_size, len(self.images) // world, f"{self.name} (per process)")
        self.rank, self.world = rank, world
        return self

    def next(self):
        share = len(self.images) // self.world
        if self.pos + self.batch_size > share:
            order = torch.randperm(len(self.images), generator=self.generator)
            if self.world > 1:  # this process's share of the epoch, all shares of one size
                order = order[self.rank::self.world][:share]
            # Drawn on the host (the generator stays there, so a resume on another device restores it),
            # copied from pinned memory without waiting for the device.
            if self.device.type == "cuda":
                order = order.pin_memory()
            self.order = order.to(self.device, non_blocking=True)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        # index_select, not images[idx]: the same rows, many times faster on the CPU
        labels = None if self.labels is None else self.labels.index_select(0, idx)
        return to_unit_range(self.images.index_select(0, idx)), labels

    def state_dict(self):
        order = None if self.order is None else self.order.cpu()
        return {"generator": self.generator.get_state(), "order": order, "pos": self.pos}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.order = None if state["order"] is None else state["order"].to(self.device)
        self.pos = state["pos"]


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """The items process `rank` of `world` visits in an epoch: its share of a permutation that depends on
    the seed and the epoch alone (the same on every process), all shares of one size."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    order = torch.randperm(n, generator=g)
    return order[rank::world][: n // world].tolist()


class _EpochSampler(torch.utils.data.Sampler):
    """The rest of the source's current epoch (its share of epoch_order from its current batch on), read
    when the DataLoader starts an epoch: one DataLoader, and so one set of workers, serves every epoch."""

    def __init__(self, source):
        self.source = source

    def _items(self) -> list[int]:
        s = self.source
        return epoch_order(len(s.dataset), s.seed, s.epoch, s.rank, s.world)[s.batches * s.batch_size:]

    def __iter__(self):
        return iter(self._items())

    def __len__(self):
        return len(self._items())


class StreamBatches:
    """Batches streamed from disk: a DataLoader with workers (kept alive from one epoch to the next), pinned
    memory and async copies, over this process's share of each epoch's order (epoch_order). A resumed run
    continues inside the epoch, at the batch after the last one drawn.

    `dataset[i]` must return (uint8 image tensor C x H x W, integer label); labelled=False drops the labels.
    """

    def __init__(self, dataset: Dataset, shape, num_classes, batch_size, device, seed, num_workers, name):
        _check_batch_size(batch_size, len(dataset), name)
        self.name, self.shape, self.num_classes = name, tuple(shape), num_classes
        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.seed, self.num_workers, self.epoch, self.batches = seed, num_workers, 0, 0
        self.rank, self.world = 0, 1
        self._iter, self._loader = None, None

    def __len__(self):
        return len(self.dataset)

    def shard(self, rank: int, world: int):
        _check_batch_size(self.batch_size, len(self.dataset) // world, f"{self.name} (per process)")
        self.rank, self.world = rank, world
        return self

    def _start(self):
        """Iterate the rest of the current epoch, from batch `self.batches` on."""
        if self._loader is None:
            self._loader = DataLoader(
                self.dataset,
                batch_size=self.batch_size,
                sampler=_EpochSampler(self),
                drop_last=True,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                # Its own generator: starting an iterator draws a seed for the workers, which from the global
                # stream would shift the noise of every later step (a resumed run starts its iterator later).
                generator=torch.Generator().manual_seed(self.seed),
            )
        self._iter = iter(self._loader)

    def next(self):
        if self._iter is None:
            self._start()
        try:
            try:
                images, labels = next(self._iter)
            except StopIteration:
                self.epoch, self.batches = self.epoch + 1, 0
                self._start()
                images, labels = next(self._iter)
        except UserError as e:  # an unreadable image, read by a worker
            raise from_worker(e) from None
        self.batches += 1
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True) if self.num_classes else None
        return to_unit_range(images), labels

    def state_dict(self):
        return {"epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state):
        # Checkpoints written before the position in the epoch was kept start the next epoch.
        self.epoch, self.batches, self._iter = state["epoch"], state.get("batches", 0), None
