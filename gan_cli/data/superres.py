"""Super-resolution data (SRGAN, Ledig et al. 2017): high-resolution (HR) crops and their bicubic downscales.

    dataset=superres dataset.source=photos   the offline demo: colour photos bundled with scikit-image and
                                             scikit-learn; five for training crops, two whole ones held out
    dataset.source=digits                    scikit-learn's digits at 32x32 (8x8 inputs at scale 4); a fixed
                                             15 % held out
    dataset.source=mnist|fashion_mnist|cifar10|celeba   their train split for training, test split for testing
    dataset.source=folder dataset.root=...   any folder of images at their own sizes; <root>/train/ and
                                             <root>/test/ (or val/) where present, else a seeded tenth held out

A batch is (LR, HR, labels) in [-1, 1]: HR a random crop of `crop_size` (random horizontal flips on top),
LR its antialiased bicubic downscale by `scale` (gan_cli.metrics.superres.downscale), rounded to 8-bit
levels as a stored low-resolution image is. Test images are whole (photos, folders: trimmed to a multiple
of `scale`, or centre crops of `test_crop`), never flipped.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from gan_cli import DataMissing, UserError
from gan_cli.data import TensorBatches, to_unit_range
from gan_cli.data import images as image_sets
from gan_cli.data.folder import EXTENSIONS, eight_bit, folder_channels
from gan_cli.data.translation import Jitter, demo_split

log = logging.getLogger("gan_cli.data")

SOURCES = ("photos", "digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder")
SCALES = (2, 4, 8)
# The bundled colour photos: training crops come from the first five, the last two are held out whole.
PHOTOS_TRAIN = ("astronaut", "coffee", "rocket", "china", "motorcycle_left")
PHOTOS_TEST = ("chelsea", "flower")
SOURCE_SIDE = {"digits": 32, "mnist": 32, "fashion_mnist": 32, "cifar10": 32, "celeba": 64}


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] rounded to the 256 levels of an 8-bit image."""
    return x.add(1).mul_(127.5).round_().clamp_(0, 255).div_(127.5).sub_(1)


def low_resolution(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The input SR models get for HR images in [-1, 1]: the bicubic downscale, stored as 8 bits."""
    from gan_cli.metrics.superres import downscale

    return quantise(downscale(hr, scale))


def to_array(image: Image.Image, channels: int) -> torch.Tensor:
    """A decoded image at its own size as a uint8 C x H x W tensor."""
    image = eight_bit(image).convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy((array[None] if channels == 1 else array.transpose(2, 0, 1)).copy())


def read_whole(path: Path, channels: int) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            return to_array(image, channels)
    except (OSError, ValueError) as e:
        raise UserError(f"dataset superres: cannot read image {path} ({e})") from None


def bundled_photo(name: str) -> torch.Tensor:
    """One of the sample photos scikit-image and scikit-learn install, as uint8 3 x H x W."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        array = load_sample_image(f"{name}.jpg")
    else:  # read from the files the scikit-image wheel installs (its loaders of some photos would download)
        import skimage.data

        found = sorted(Path(skimage.data.__file__).parent.glob(f"{name}.*"))
        if not found:
            raise DataMissing(f"dataset superres: the photo {name!r} is not installed with this scikit-image; "
                              "set dataset.source=folder dataset.root=<photos>")
        with Image.open(found[0]) as image:
            array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(np.ascontiguousarray(array[..., :3]).transpose(2, 0, 1).copy())


class CropBatches:
    """Random crops from images of any sizes (each at least `crop` on both sides): each epoch visits the
    images in a fresh seeded order, one random crop of each, `batch_size` at a time (crops of distinct
    images, as the paper's minibatches); with fewer images than a batch, an epoch is as many such orders
    in a row as a batch needs. On the device; crops are drawn from a generator of its own."""

    def __init__(self, images: list, crop: int, batch_size: int, device, seed: int, name: str):
        small = [tuple(x.shape[1:]) for x in images if min(x.shape[1:]) < crop]
        if small:
            raise UserError(f"{name}: {len(small)} images are smaller than dataset.crop_size={crop} (e.g. "
                            f"{small[0][1]}x{small[0][0]}); lower crop_size or remove them")
        self.images = [x.to(device) for x in images]
        self.crop, self.batch_size, self.device, self.name = crop, batch_size, device, name
        self.shape = (images[0].shape[0], crop, crop)
        self.num_classes, self.labels = 0, None
        self.generator = torch.Generator().manual_seed(seed)
        self.rank, self.world = 0, 1
        self.order, self.pos = None, len(images)

    def __len__(self):
        return len(self.images)

    def shard(self, rank: int, world: int):
        self.rank, self.world = rank, world
        return self

    def next(self):
        n = len(self.images)
        rounds = -(-self.batch_size * self.world // n)  # orders per epoch: at least a batch for each process
        share = rounds * n // self.world
        if self.pos + self.batch_size > share:
            order = torch.cat([torch.randperm(n, generator=self.generator) for _ in range(rounds)])
            self.order = order[self.rank::self.world][:share] if self.world > 1 else order
            self.pos = 0
        chosen = self.order[self.pos:self.pos + self.batch_size].tolist()
        self.pos += self.batch_size
        crops = []
        for i in chosen:
            _, h, w = self.images[i].shape
            top = int(torch.randint(0, h - self.crop + 1, (), generator=self.generator))
            left = int(torch.randint(0, w - self.crop + 1, (), generator=self.generator))
            crops.append(self.images[i][:, top:top + self.crop, left:left + self.crop])
        return to_unit_range(torch.stack(crops)), None

    def state_dict(self):
        return {"generator": self.generator.get_state(), "order": self.order, "pos": self.pos}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.order, self.pos = state["order"], state["pos"]


class SuperResBatches:
    """The batch source of `dataset=superres` (see the module's docstring). `test_split`: uint8 HR test
    images, a list of C x H x W tensors (sides multiples of the scale), and their labels or None."""

    def __init__(self, base, scale: int, crop: int, flip: bool, seed: int, name: str, test: list, test_labels):
        self.sources, self.scale, self.name = [base], scale, name
        self.channels = base.shape[0]
        self.shape = (self.channels, crop, crop)  # what G makes
        self.shape_lr = (self.channels, crop // scale, crop // scale)
        self.num_classes = base.num_classes
        self.batch_size = base.batch_size
        self.jitter = Jitter(crop, flip, seed + 2)
        self.test_images, self.test_labels = test, test_labels

    def __len__(self):
        return len(self.sources[0])

    def shard(self, rank: int, world: int):
        self.sources[0].shard(rank, world)
        return self

    def next(self):
        hr, labels = self.sources[0].next()
        hr = self.jitter(hr)
        return low_resolution(hr, self.scale), hr, labels

    def test(self, n: int | None = None, device="cpu") -> dict:
        """The first n test images (all by default): {"hr": list of 1 x C x H x W tensors in [-1, 1],
        "lr": their inputs, "labels": tensor or None}."""
        images = self.test_images[:n] if n else self.test_images
        hr = [to_unit_range(x[None]).to(device) for x in images]
        labels = None if self.test_labels is None else self.test_labels[:len(images)].to(device)
        return {"hr": hr, "lr": [low_resolution(x, self.scale) for x in hr], "labels": labels}

    def state_dict(self):
        return {"sources": [self.sources[0].state_dict()], "jitter": self.jitter.state_dict()}

    def load_state_dict(self, state):
        self.sources[0].load_state_dict(state["sources"][0])
        self.jitter.load_state_dict(state["jitter"])


def _trim(x: torch.Tensor, scale: int, side: int | None) -> torch.Tensor:
    """A test image centre-cropped to side x side (when given and it fits), else trimmed to multiples of
    scale, centred."""
    _, h, w = x.shape
    th, tw = (side, side) if side and min(h, w) >= side else (h - h % scale, w - w % scale)
    top, left = (h - th) // 2, (w - tw) // 2
    return x[:, top:top + th, left:left + tw]


def _read_all(paths, channels: int, workers: int, desc: str) -> list:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(tqdm(pool.map(lambda p: read_whole(p, channels), paths), total=len(paths), desc=desc,
                         leave=False, disable=None))


def _folder_split(root: Path, seed: int) -> tuple[list, list, str]:
    def images_under(folder: Path):
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())

    if not root.is_dir():
        raise UserError(f"dataset superres: {root} is not a folder; set dataset.root=<folder of images> "
                        "(with train/ and test/ subfolders, or all images together)")
    train = images_under(root / "train")
    test = images_under(root / "test") or images_under(root / "val")
    if train and test:
        return train, test, "train/ and test/"
    files = images_under(root)
    if len(files) < 2:
        raise UserError(f"dataset superres: {root} holds {len(files)} images ({', '.join(EXTENSIONS)}); "
                        "super-resolution needs at least 2 (training and held-out ones)")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, len(files) // 10)
    return [files[i] for i in sorted(order[cut:])], [files[i] for i in sorted(order[:cut])], \
        "a seeded tenth held out for testing"


def superres(source="photos", root=None, scale=4, crop_size=None, resolution=None, flip=True, test_crop=None,
             test_count=1024, max_memory_mb=2048, download=False, *, batch_size, device, seed, num_workers=2):
    """Build the super-resolution batch source (`dataset=superres`)."""
    if source not in SOURCES:
        raise UserError(f"unknown dataset.source '{source}' for superres; choose one of: {', '.join(SOURCES)}")
    if scale not in SCALES or isinstance(scale, bool):
        raise UserError(f"dataset.scale must be 2, 4 or 8, got {scale!r}")
    crop = crop_size if crop_size is not None else SOURCE_SIDE.get(source, 96)
    if not isinstance(crop, int) or isinstance(crop, bool) or crop < 16 or crop % 16:
        raise UserError(f"dataset.crop_size must be a multiple of 16 (the SRGAN D halves it four times), "
                        f"got {crop!r}")
    if crop % scale:
        raise UserError(f"dataset.crop_size={crop} is not a multiple of dataset.scale={scale}")
    if not isinstance(test_count, int) or test_count < 1:
        raise UserError(f"dataset.test_count must be a positive whole number, got {test_count!r}")
    if test_crop is not None and (not isinstance(test_crop, int) or test_crop < 16 or test_crop % scale):
        raise UserError(f"dataset.test_crop must be null (whole images) or a multiple of scale={scale} of at "
                        f"least 16, got {test_crop!r}")

    if source in SOURCE_SIDE:  # a set of small images of one size
        side = resolution if resolution is not None else crop
        if not isinstance(side, int) or side < crop:
            raise UserError(f"dataset.resolution must be at least crop_size={crop}, got {side!r}")
        node = {"name": source, "resolution": side}
        if source != "digits":
            node.update(root=root or "data", download=download)
        if source == "digits":
            images, labels = image_sets.digit_images(side)
            train, test = demo_split(len(images))
            base = TensorBatches(images[train], labels[train], batch_size, device, seed, "digits")
            test_images, test_labels = images[test], labels[test]
        else:
            build = getattr(image_sets, source)
            options = {k: v for k, v in node.items() if k != "name"}
            base = build(**options, split="train", batch_size=batch_size, device=device, seed=seed,
                         num_workers=num_workers)
            held = build(**options, split="valid" if source == "celeba" else "test", batch_size=1,
                         device=torch.device("cpu"), seed=seed, num_workers=0)
            if hasattr(held, "images"):
                test_images = held.images[:test_count]
                test_labels = None if held.labels is None else held.labels[:test_count]
            else:
                test_images = torch.stack([held.dataset[i][0] for i in range(min(test_count, len(held)))])
                test_labels = None
        test_images = [_trim(x, scale, crop) for x in test_images[:test_count]]
        test_labels = None if test_labels is None else test_labels[:test_count].cpu()
        name = f"{source} for super-resolution"
    else:
        if source == "photos":
            train_images = [bundled_photo(p) for p in PHOTOS_TRAIN]
            test_images = [bundled_photo(p) for p in PHOTOS_TEST]
            name, how = "photos demo for super-resolution", "bundled photos"
            log.info("superres photos: %d training photos (%s), %d held out whole (%s)", len(train_images),
                     ", ".join(PHOTOS_TRAIN), len(test_images), ", ".join(PHOTOS_TEST))
        else:
            if root is None:
                raise UserError("dataset superres: source=folder needs dataset.root=<folder of images>")
            root_path = Path(str(root)).expanduser()
            train_files, test_files, how = _folder_split(root_path, seed)
            channels = folder_channels(train_files + test_files, num_workers)[0]
            megabytes = sum(_pixels(p) for p in train_files) * channels / 2**20
            if megabytes > max_memory_mb:
                raise UserError(f"dataset superres: the {len(train_files)} training images of {root_path} take "
                                f"{megabytes:.0f} MB decoded, above dataset.max_memory_mb={max_memory_mb}; raise it "
                                "or train on a subset (they are held in memory)")
            train_images = _read_all(train_files, channels, num_workers, "loading training images")
            test_images = _read_all(test_files[:test_count], channels, num_workers, "loading test images")
            name = f"folder {root_path} for super-resolution"
            log.info("superres %s: %d training images, %d test images (%s), %s", root_path, len(train_images),
                     len(test_images), how, "colour" if channels == 3 else "grayscale")
        base = CropBatches(train_images, crop, batch_size, device, seed, name)
        test_images = [_trim(x, scale, test_crop) for x in test_images[:test_count]]
        test_labels = None
    return SuperResBatches(base, scale, crop, flip, seed, name + f" (x{scale})", test_images, test_labels)


def _pixels(path: Path) -> int:
    try:
        with Image.open(path) as image:
            return image.width * image.height
    except (OSError, ValueError) as e:
        raise UserError(f"dataset superres: cannot read image {path} ({e})") from None
