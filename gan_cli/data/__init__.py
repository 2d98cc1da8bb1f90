"""Data sets and the batch sources the training loop draws from.

Each builder (see gan_cli.registry) returns a batch source with:
    shape         the shape of one item, (C, H, W) for images or (2,) for points
    num_classes   number of labels, 0 when the data are unlabelled
    next()        -> (real, labels): a batch on the device, images scaled to [-1, 1]; labels or None
    state_dict() / load_state_dict()   the data-order state a checkpoint keeps

Small sets live on the device as one uint8 tensor (TensorBatches); large ones stream from disk
through a DataLoader with workers and pinned memory (StreamBatches).
"""

import torch
from torch.utils.data import DataLoader, Dataset

from gan_cli import UserError


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float images in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


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
        self.order, self.pos = None, len(images)  # start with a new epoch

    def __len__(self):
        return len(self.images)

    def next(self):
        if self.pos + self.batch_size > len(self.images):
            self.order = torch.randperm(len(self.images), generator=self.generator).to(self.device)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        labels = None if self.labels is None else self.labels[idx]
        return to_unit_range(self.images[idx]), labels

    def state_dict(self):
        order = None if self.order is None else self.order.cpu()
        return {"generator": self.generator.get_state(), "order": order, "pos": self.pos}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.order = None if state["order"] is None else state["order"].to(self.device)
        self.pos = state["pos"]


class StreamBatches:
    """Batches streamed from disk: a shuffled DataLoader with workers, pinned memory and async copies.

    `dataset[i]` must return (uint8 image tensor C x H x W, integer label); labelled=False drops the labels.
    """

    def __init__(self, dataset: Dataset, shape, num_classes, batch_size, device, seed, num_workers, name):
        _check_batch_size(batch_size, len(dataset), name)
        self.name, self.shape, self.num_classes = name, tuple(shape), num_classes
        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.seed, self.num_workers, self.epoch = seed, num_workers, 0
        self._iter = None

    def __len__(self):
        return len(self.dataset)

    def _start_epoch(self):
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed + self.epoch),
        )
        self._iter = iter(loader)

    def next(self):
        if self._iter is None:
            self._start_epoch()
        try:
            images, labels = next(self._iter)
        except StopIteration:
            self.epoch += 1
            self._start_epoch()
            images, labels = next(self._iter)
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True) if self.num_classes else None
        return to_unit_range(images), labels

    def state_dict(self):
        # Resuming starts the next epoch; the order within an interrupted epoch is not kept.
        return {"epoch": self.epoch + 1}

    def load_state_dict(self, state):
        self.epoch, self._iter = state["epoch"], None
