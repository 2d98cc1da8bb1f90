"""Stacked MNIST (Metz et al. 2017; the mode-collapse benchmark of VEEGAN and PacGAN): three MNIST digits,
drawn independently, as the red, green and blue channels of one image, so 10 x 10 x 10 = 1,000 modes.

An epoch is a fixed number of stacks (`stacks`; the papers train on 128,000). Epoch e draws its digit triples
from a random stream of its own (the run's seed and e), so a resumed run draws exactly the stacks it would
have drawn, and under torchrun each process takes its share of them. The label of a stack is its digit
triple read as a number, 100 * red + 10 * green + blue (0-999), for scoring.
"""

import numpy as np
import torch
from torch.utils.data import Dataset

from gan_cli import UserError
from gan_cli.data import _check_batch_size, to_unit_range
from gan_cli.data.images import SPLITS, _idx_dataset

MODES = 1000  # digit triples


def stack_label(digits: torch.Tensor) -> torch.Tensor:
    """N x 3 digit labels (red, green, blue) -> the stack's label 100 * red + 10 * green + blue."""
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def epoch_triples(n_digits: int, stacks: int, seed: int, epoch: int) -> torch.Tensor:
    """The stacks of an epoch: `stacks` x 3 indices into the digits, each drawn uniformly and independently
    (with replacement), from a stream that depends on the seed and the epoch alone."""
    state = np.random.SeedSequence([seed, epoch, 3]).generate_state(2)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randint(n_digits, (stacks, 3), generator=g)


def stack(digits: torch.Tensor, labels: torch.Tensor, triples: torch.Tensor):
    """uint8 N x 1 x H x W digits and the N x 3 indices of some stacks -> (uint8 stacks x 3 x H x W, labels)."""
    images = torch.cat([digits.index_select(0, triples[:, k]) for k in range(3)], dim=1)
    return images, stack_label(labels[triples.to(labels.device)])


class StackedDataset(Dataset):
    """One epoch's stacks as a data set of (uint8 3 x H x W image, label): what gan-eval reads as the real side."""

    def __init__(self, digits, labels, triples):
        self.digits, self.labels, self.triples = digits.cpu(), labels.cpu(), triples

    def __len__(self):
        return len(self.triples)

    def __getitem__(self, i):
        images, labels = stack(self.digits, self.labels, self.triples[i:i + 1])
        return images[0], int(labels[0])


class StackedBatches:
    """The batch source of Stacked MNIST: the single digits live on the device; each batch stacks three of
    them per item, the triples taken in order from the epoch's draw (this process's share of it)."""

    num_classes = mode_classes = MODES  # mode_classes: the modes gan-eval metrics=[modes] counts
    num_workers = 0

    def __init__(self, digits, labels, stacks, batch_size, device, seed, name="stacked_mnist"):
        _check_batch_size(batch_size, stacks, name)
        self.name, self.stacks, self.batch_size, self.device, self.seed = name, stacks, batch_size, device, seed
        self.digits, self.labels = digits.to(device), labels.to(device)
        self.digit_labels = labels  # on the host, for the mode classifier
        self.shape = (3, *digits.shape[2:])
        self.rank, self.world = 0, 1
        self.epoch, self.pos = 0, 0
        self._triples = None  # this process's share of the current epoch's triples

    def __len__(self):
        return self.stacks

    @property
    def dataset(self) -> StackedDataset:
        """The first epoch's stacks (the same for every run of this seed), for the real side of a metric."""
        return StackedDataset(self.digits, self.labels, epoch_triples(len(self.digits), self.stacks, self.seed, 0))

    def shard(self, rank: int, world: int):
        _check_batch_size(self.batch_size, self.stacks // world, f"{self.name} (per process)")
        self.rank, self.world, self._triples = rank, world, None
        return self

    def _share(self) -> torch.Tensor:
        if self._triples is None:
            triples = epoch_triples(len(self.digits), self.stacks, self.seed, self.epoch)
            self._triples = triples[self.rank::self.world][: self.stacks // self.world].to(self.device)
        return self._triples

    def next(self):
        if self.pos + self.batch_size > self.stacks // self.world:  # the incomplete last batch is dropped
            self.epoch, self.pos, self._triples = self.epoch + 1, 0, None
        triples = self._share()[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        images, labels = stack(self.digits, self.labels, triples)
        return to_unit_range(images), labels

    def state_dict(self):
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state):
        self.epoch, self.pos, self._triples = int(state["epoch"]), int(state["pos"]), None


def digits_of(root="data", split="train", resolution=32, download=False):
    """The single MNIST digits a Stacked MNIST set is built from: (uint8 N x 1 x R x R, labels) on the host."""
    try:
        source = _idx_dataset("mnist", root, split, resolution, download, batch_size=1, device=torch.device("cpu"),
                              seed=0)
    except UserError as e:  # named as the data set the user chose
        raise type(e)(str(e).replace("dataset mnist:", "dataset stacked_mnist (MNIST's digits):", 1)) from None
    return source.images, source.labels


def stacked_mnist(root="data", split="train", resolution=32, stacks=128_000, download=False, *, batch_size, device,
                  seed, num_workers=0):
    """Stacked MNIST from the MNIST IDX files under <root>/MNIST/raw/ (either split)."""
    if split not in SPLITS:
        raise UserError(f"unknown dataset.split '{split}' for stacked_mnist; choose one of: {', '.join(SPLITS)}")
    if isinstance(stacks, bool) or not isinstance(stacks, int) or stacks < 1:
        raise UserError(f"dataset.stacks must be a positive integer (stacks per epoch), got {stacks!r}")
    digits, labels = digits_of(root, split, resolution, download)
    return StackedBatches(digits, labels, stacks, batch_size, device, seed)
