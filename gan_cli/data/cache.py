"""Image data sets decoded once: a uint8 array on disk that later runs map instead of decoding again.

A data set too large to hold decoded in memory from the start (a big `folder`, CelebA) is decoded on its
first use at a given resolution into `<cache>/<key>.npy` (N x C x H x W uint8) beside its labels, with a
progress bar. The key hashes what the pixels depend on: the source (for a folder every file's path, size
and modification time), the split, the resolution, the channels and DECODE_VERSION (raised whenever
the decoding changes). Another key is another file, so a changed source is decoded anew, never read
from a stale cache. Files are written under a temporary name and renamed when complete: an interrupted
build leaves no cache behind.

Later runs map the file. Where the array fits in half of the device's free memory (asked of the device:
CUDA's free memory, or the host's available memory for a CPU run) it is held there as the small data sets
are (TensorBatches); otherwise each batch is gathered from the map (MemmapBatches), the next batch read
by a thread while the current one trains.

`dataset.cache=off` streams through a DataLoader instead; `dataset.cache_dir` is where the files go (default:
data/ in gan-cli's cache, the folder gan-eval keeps its classifiers in).
"""

import errno
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gan_cli import UserError, runtime, writes
from gan_cli.data import TensorBatches, _check_batch_size, epoch_order, from_worker, to_unit_range

log = logging.getLogger("gan_cli.data")

DECODE_VERSION = 1
CACHE_MODES = ("auto", "off")


def check_mode(cache) -> str:
    if cache not in CACHE_MODES:
        raise UserError(f"dataset.cache must be auto or off, got {cache!r}")
    return cache


def cache_root(cache_dir=None) -> Path:
    """dataset.cache_dir, else data/ in gan-cli's cache (runtime.cache_dir), where gan-eval keeps its
    classifiers too."""
    return Path(str(cache_dir)).expanduser() if cache_dir else runtime.cache_dir() / "data"


def files_fingerprint(files, root: Path) -> str:
    """A digest of every file's path (relative to root), size and modification time."""
    h = hashlib.sha256()
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def key_of(parts: dict) -> str:
    parts = {**parts, "decode_version": DECODE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _decode_into(dataset, out: np.ndarray, labels: np.ndarray, workers: int, desc: str) -> None:
    """Decode every item in order into `out` and `labels`, with `workers` DataLoader worker processes."""
    # Its own generator: an iterator draws a seed for its workers, which must not come from (and shift) the
    # run's global random stream, or a run that builds the cache would train unlike one that finds it.
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=False, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    with tqdm(total=len(dataset), desc=desc, unit="img", disable=None) as bar:
        start = 0
        try:
            for images, batch_labels in loader:
                out[start:start + len(images)] = images.numpy()
                labels[start:start + len(images)] = batch_labels.numpy()
                start += len(images)
                bar.update(len(images))
        except UserError as e:  # an unreadable image, read by a worker
            raise from_worker(e) from None


def cached(dataset, shape, parts: dict, cache_dir, workers: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of `dataset` (items: a uint8 C x H x W tensor and an integer label) from the cache,
    decoding it there first when it is not there yet. `parts`: what the pixels depend on (the key)."""
    folder = cache_root(cache_dir)
    key = key_of(parts)
    images_path, labels_path, meta_path = (folder / f"{key}{suffix}" for suffix in (".npy", ".labels.npy", ".json"))
    meta = {"key": key, "parts": parts, "decode_version": DECODE_VERSION, "shape": [len(dataset), *shape],
            "name": name}
    if meta_path.is_file() and images_path.is_file() and labels_path.is_file():
        try:
            if json.loads(meta_path.read_text()) == meta:
                return np.load(images_path, mmap_mode="r"), np.load(labels_path)
        except (OSError, ValueError):
            pass  # unreadable: decoded again below
        log.info("the cache %s does not match %s: decoding again", images_path, name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        size_gb = len(dataset) * int(np.prod(shape)) / 2**30
        log.info("decoding %s once into the cache %s (%d images, %.2f GB); later runs map it", name, images_path,
                 len(dataset), size_gb)
        temporary = images_path.with_name(f"{key}.{os.getpid()}.partial.npy")
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(dataset), *shape))
        _reserve(temporary)
        labels = np.zeros(len(dataset), dtype=np.int64)
        try:
            _decode_into(dataset, out, labels, workers, "caching images")
            out.flush()
            del out
            np.save(labels_path, labels)
            os.replace(temporary, images_path)
        finally:
            temporary.unlink(missing_ok=True)
        meta_path.write_text(json.dumps(meta))
    except OSError as e:
        hint = "free space there, set dataset.cache_dir=<folder> or dataset.cache=off"
        if writes.is_write_error(e):  # the machine's answer (a full disk, ...): WriteFailed, exit status 74
            raise writes.failed(e, images_path, hint) from None
        raise UserError(f"cannot write the data cache {images_path} ({e.strerror or e}); {hint}") from None
    return np.load(images_path, mmap_mode="r"), labels


def _reserve(path: Path) -> None:
    """Give the memory-mapped file its blocks now: on a full disk a write into a sparse map would end the
    process with SIGBUS, where reserving fails with ENOSPC (one line)."""
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # a file system without it
                    return
                raise


def free_bytes(device: torch.device) -> int:
    """Free memory of the device: CUDA's own count, the host's available memory for the CPU (and others)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def batches(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, device, seed, name: str,
            hold: str = "auto"):
    """The batch source over a cached array: held on the device where it fits (hold=auto) or is asked to
    (hold=True), else gathered from the map."""
    nbytes = images.size
    if hold is True or (hold == "auto" and nbytes <= free_bytes(device) // 2):
        label_tensor = torch.from_numpy(labels) if num_classes else None
        held = torch.empty(images.shape, dtype=torch.uint8, device=device)
        for start in range(0, len(images), 4096):  # read from the map a slice at a time, without a host copy of all
            held[start:start + 4096].copy_(torch.from_numpy(np.array(images[start:start + 4096])))
        return TensorBatches(held, label_tensor, batch_size, device, seed, name)
    if hold is False:
        log.info("%s: dataset.in_memory=false, batches are gathered from the cache file", name)
    else:
        log.info("%s: %.2f GB, more than half the free memory of %s: batches are gathered from the cache file", name,
                 nbytes / 2**30, device)
    return MemmapBatches(images, labels if num_classes else None, num_classes, batch_size, device, seed, name)


class MemmapBatches:
    """Batches gathered from a memory-mapped uint8 array, in the order StreamBatches draws (epoch_order: the
    same on every process, each its own share), so a resumed run continues inside its epoch."""

    def __init__(self, images: np.ndarray, labels, num_classes, batch_size, device, seed, name):
        _check_batch_size(batch_size, len(images), name)
        self.images, self.labels, self.num_classes = images, labels, num_classes
        self.shape, self.name = tuple(images.shape[1:]), name
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.epoch, self.batches, self.rank, self.world = 0, 0, 0, 1
        self._order, self._pending = None, None
        self._reader = ThreadPoolExecutor(max_workers=1)

    def __len__(self):
        return len(self.images)

    def shard(self, rank: int, world: int):
        _check_batch_size(self.batch_size, len(self.images) // world, f"{self.name} (per process)")
        self.rank, self.world = rank, world
        self._order, self._pending = None, None
        return self

    def _indices(self, epoch: int, batch: int):
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.asarray(epoch_order(len(self.images), self.seed, epoch, self.rank, self.world)))
        order = self._order[1]
        if (batch + 1) * self.batch_size > len(order):
            return None
        return order[batch * self.batch_size:(batch + 1) * self.batch_size]

    def _position_after(self, epoch: int, batch: int) -> tuple[int, int]:
        """(epoch, batch) of the batch drawn after this one."""
        if self._indices(epoch, batch) is None:
            return epoch + 1, 0
        return epoch, batch

    def _read(self, index: np.ndarray):
        ascending = np.argsort(index, kind="stable")
        rows = np.empty((len(index), *self.shape), dtype=np.uint8)
        rows[ascending] = self.images[index[ascending]]  # read in file order, put back in draw order
        images = torch.from_numpy(rows)
        labels = torch.from_numpy(self.labels[index]) if self.labels is not None else None
        if self.device.type == "cuda":
            images = images.pin_memory()
            labels = labels.pin_memory() if labels is not None else None
        return images, labels

    def next(self):
        epoch, batch = self._position_after(self.epoch, self.batches)
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == (epoch, batch):
            images, labels = pending[1].result()
        else:
            images, labels = self._read(self._indices(epoch, batch))
        self.epoch, self.batches = epoch, batch + 1
        upcoming = self._position_after(self.epoch, self.batches)
        self._pending = (upcoming, self._reader.submit(self._read, self._indices(*upcoming)))
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True) if labels is not None else None
        return to_unit_range(images), labels

    def state_dict(self):
        return {"epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state):
        self.epoch, self.batches = state["epoch"], state.get("batches", 0)
        self._pending = None
