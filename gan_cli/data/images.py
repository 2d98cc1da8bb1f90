"""Image data sets: scikit-learn's digits, MNIST / Fashion-MNIST (IDX files), CIFAR-10 and CelebA."""

import functools
import gzip
import random
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gan_cli import DataMissing, UserError
from gan_cli.data import StreamBatches, TensorBatches

SPLITS = ("train", "test")


def check_resolution(resolution: int) -> int:
    if not isinstance(resolution, int) or resolution < 4:
        raise UserError(f"dataset.resolution must be an integer of at least 4, got {resolution!r}")
    return resolution


def resize_uint8(images: torch.Tensor, resolution: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 N x C x H x W images to resolution x resolution (bilinear, antialiased when shrinking)."""
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = torch.empty(len(images), images.shape[1], resolution, resolution, dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].float()
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def digit_images(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 bundled 8x8 digits as uint8 images (white ink on black) at `resolution`, and
    their labels (copies: the caller may change them)."""
    images, labels = _digit_images(resolution)
    return images.clone(), labels.clone()


@functools.lru_cache(maxsize=4)
def _digit_images(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Importing scikit-learn the first time draws from Python's global random stream (rich, which its
    # progress bars import, seeds an id counter from it): the run's stream is left as the seed made it.
    state = random.getstate()
    from sklearn.datasets import load_digits

    random.setstate(state)

    bunch = load_digits()
    # Pixel values are 0..16.
    images = torch.from_numpy(bunch.images * (255.0 / 16.0)).float().unsqueeze(1).round().to(torch.uint8)
    return resize_uint8(images, resolution), torch.from_numpy(bunch.target).long()


def digits(resolution: int = 32, *, batch_size, device, seed, num_workers=0):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels 0-9), upsampled to `resolution`."""
    images, labels = digit_images(check_resolution(resolution))
    return TensorBatches(images, labels, batch_size, device, seed, "digits")


# --- MNIST and Fashion-MNIST: the IDX files as published -------------------------------------

_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise UserError(f"{path} is not a uint8 IDX file (magic number {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {array.size}")
    return array.reshape(dims)


def _find_idx(raw_dirs, stem: str) -> Path | None:
    for folder in raw_dirs:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def idx_files(name, root, split) -> list[Path]:
    """The IDX files of a split that are on disk (images, labels; either may be missing)."""
    folder = _IDX_FOLDERS[name]
    root = Path(root).expanduser()
    stems = [f"{_IDX_PREFIX.get(split, split)}-images-idx3-ubyte", f"{_IDX_PREFIX.get(split, split)}-labels-idx1-ubyte"]
    return [p for p in (_find_idx([root / folder / "raw", root], s) for s in stems) if p is not None]


def _idx_dataset(name, root, split, resolution, download, batch_size, device, seed):
    if split not in SPLITS:
        raise UserError(f"unknown dataset.split '{split}' for {name}; choose one of: {', '.join(SPLITS)}")
    check_resolution(resolution)
    folder = _IDX_FOLDERS[name]
    root = Path(root).expanduser()
    raw_dirs = [root / folder / "raw", root]  # torchvision's layout, or the files themselves
    stems = [f"{_IDX_PREFIX[split]}-images-idx3-ubyte", f"{_IDX_PREFIX[split]}-labels-idx1-ubyte"]
    paths = [_find_idx(raw_dirs, s) for s in stems]
    if None in paths and download:
        import torchvision

        cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
        try:
            cls(str(root), train=split == "train", download=True)
        except Exception as e:  # network errors come in many types
            raise UserError(
                f"dataset {name}: download into {root} failed ({download_failure(e)}); "
                f"fetch the IDX files elsewhere and put them in {root / folder / 'raw'}"
            ) from None
        paths = [_find_idx(raw_dirs, s) for s in stems]
    if None in paths:
        missing = stems[paths.index(None)]
        message = (f"dataset {name}: {missing}(.gz) not found in {root / folder / 'raw'}; "
                   f"set dataset.root=<folder holding {folder}/raw> or dataset.download=true")
        if all(p is None for p in paths):
            raise DataMissing(message)
        raise UserError(message.replace(" not found in ", f" not found beside {paths[1 - stems.index(missing)].name} in "))
    images = torch.from_numpy(read_idx(paths[0]).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(paths[1]).astype(np.int64))
    if len(images) != len(labels):
        raise UserError(f"dataset {name}: {len(images)} images but {len(labels)} labels in {paths[0].parent}")
    return TensorBatches(resize_uint8(images, resolution), labels, batch_size, device, seed, name)


def mnist(root="data", split="train", resolution=32, download=False, *, batch_size, device, seed, num_workers=0):
    """MNIST (LeCun et al. 1998) from <root>/MNIST/raw/."""
    return _idx_dataset("mnist", root, split, resolution, download, batch_size, device, seed)


def fashion_mnist(root="data", split="train", resolution=32, download=False, *, batch_size, device, seed, num_workers=0):
    """Fashion-MNIST (Xiao et al. 2017) from <root>/FashionMNIST/raw/."""
    return _idx_dataset("fashion_mnist", root, split, resolution, download, batch_size, device, seed)


# --- torchvision sets -----------------------------------------------------------------------


def _open_torchvision(name, cls, root, download, folder, **kwargs):
    """torchvision's data set `cls` under root; `folder` is the one its files unpack to (absent: DataMissing;
    present but failing torchvision's checks: damaged, a plain UserError)."""
    root = Path(root).expanduser()
    try:
        return cls(str(root), download=download, **kwargs)
    except RuntimeError as e:
        if download:
            raise UserError(f"dataset {name}: download into {root} failed ({download_failure(e)})") from None
        if (root / folder).exists():
            raise UserError(f"dataset {name}: {root / folder} is there but incomplete or damaged "
                            f"(torchvision: {str(e).splitlines()[0]}); download it again") from None
        raise DataMissing(
            f"dataset {name}: not found under {root}; set dataset.root=<folder holding it> or dataset.download=true"
        ) from None
    except Exception as e:  # network errors during download come in many types
        raise UserError(
            f"dataset {name}: download into {root} failed ({download_failure(e)}); "
            "fetch it elsewhere and set dataset.root"
        ) from None


def download_failure(error: Exception) -> str:
    """Why a download failed, in a few words on one line (torchvision's messages run over several lines,
    one per mirror tried)."""
    text = str(error)
    unreachable = re.search(r"<urlopen error (.+?)>", text)
    if unreachable:
        return f"no connection to the server: {unreachable.group(1)}"
    return f"{type(error).__name__}: {' '.join(text.split())}"


def cifar10(root="data", split="train", resolution=32, download=False, *, batch_size, device, seed, num_workers=0):
    """CIFAR-10 (Krizhevsky 2009) through torchvision, held on the device."""
    import torchvision

    if split not in SPLITS:
        raise UserError(f"unknown dataset.split '{split}' for cifar10; choose one of: {', '.join(SPLITS)}")
    check_resolution(resolution)
    ds = _open_torchvision("cifar10", torchvision.datasets.CIFAR10, root, download, "cifar-10-batches-py",
                           train=split == "train")
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # N x 32 x 32 x 3 -> N x 3 x 32 x 32
    labels = torch.tensor(ds.targets, dtype=torch.long)
    return TensorBatches(resize_uint8(images, resolution), labels, batch_size, device, seed, "cifar10")


class _CelebA(torch.utils.data.Dataset):
    """CelebA images resized and centre-cropped to a square, as uint8 tensors (no labels)."""

    def __init__(self, base, resolution):
        from torchvision import transforms

        self.base = base
        self.transform = transforms.Compose(
            [transforms.Resize(resolution), transforms.CenterCrop(resolution), transforms.PILToTensor()]
        )

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, _ = self.base[i]
        return self.transform(image), 0


def celeba(root="data", split="train", resolution=64, download=False, cache="auto", cache_dir=None, *, batch_size,
           device, seed, num_workers=2):
    """CelebA (Liu et al. 2015) through torchvision: decoded once into the data cache (gan_cli.data.cache) and
    mapped from there, or streamed from the JPEGs with cache=off."""
    import torchvision

    from gan_cli.data.cache import batches, cached, check_mode

    check_mode(cache)

    celeba_splits = ("train", "valid", "test", "all")
    if split not in celeba_splits:
        raise UserError(f"unknown dataset.split '{split}' for celeba; choose one of: {', '.join(celeba_splits)}")
    check_resolution(resolution)
    base = _open_torchvision("celeba", torchvision.datasets.CelebA, root, download, "celeba", split=split,
                             target_type=[])
    dataset = _CelebA(base, resolution)
    shape = (3, resolution, resolution)
    if cache == "off":
        return StreamBatches(dataset, shape, 0, batch_size, device, seed, num_workers, "celeba")
    folder = Path(base.root) / base.base_folder
    listing = folder / "list_eval_partition.txt"
    parts = {"source": "celeba", "folder": str(folder.resolve()), "split": split, "count": len(dataset),
             "listing": listing.stat().st_mtime_ns if listing.exists() else None, "resolution": resolution,
             "transform": "torchvision Resize(shorter side, bilinear) + CenterCrop"}
    images, labels = cached(dataset, shape, parts, cache_dir, num_workers, f"celeba ({split})")
    return batches(images, labels, 0, batch_size, device, seed, "celeba")
