"""Any folder of images, with or without one subfolder per class."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from gan_cli import UserError, WriteFailed, writes
from gan_cli.data import StreamBatches, TensorBatches
from gan_cli.data.cache import batches, cache_root, cached, check_mode, files_fingerprint, key_of
from gan_cli.data.images import check_resolution

log = logging.getLogger("gan_cli.data")

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def scan(root: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files under root (sorted), their labels and the class names.

    When every image sits inside a first-level subfolder, those subfolders are the classes;
    otherwise the images are unlabelled (labels None).
    """
    if not root.is_dir():
        raise UserError(f"dataset folder: {root} is not a folder; set dataset.root=<folder of images>")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise UserError(f"dataset folder: no images ({', '.join(EXTENSIONS)}) under {root}")
    tops = [p.relative_to(root).parts for p in files]
    if all(len(parts) > 1 for parts in tops):
        classes = sorted({parts[0] for parts in tops})
        index = {c: i for i, c in enumerate(classes)}
        return files, [index[parts[0]] for parts in tops], classes
    return files, None, []


GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def eight_bit(image: Image.Image) -> Image.Image:
    """Integer images of more than 8 bits ("I;16*", "I": a 16-bit range, 0..65535) and float images ("F":
    0..1 where every value lies in [0, 1], else 0..255) scaled to 8-bit "L" (rounded, clipped); other modes
    as they are. Pillow's own convert("L") clips instead, so 16-bit levels above 255 all became white."""
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        finite = array[np.isfinite(array)]
        scale = 255.0 if finite.size and finite.min() >= 0 and finite.max() <= 1 else 1.0
        array = np.nan_to_num(array * scale)
    elif image.mode == "I" or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
    else:
        return image
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")


def to_tensor(image: Image.Image, resolution: int, channels: int) -> torch.Tensor:
    """A decoded image as a uint8 C x R x R tensor: 8 bits, resized (shorter side) and centre-cropped."""
    image = eight_bit(image).convert("L" if channels == 1 else "RGB")
    image = ImageOps.fit(image, (resolution, resolution), method=Image.BICUBIC)
    array = np.asarray(image, dtype=np.uint8)
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


def load_image(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """Decode one image as a uint8 C x R x R tensor: resized (shorter side) and centre-cropped. A JPEG is
    decoded at the smallest of its DCT scales (1/2, 1/4, 1/8) that still covers R x R (Pillow's draft
    mode): up to 64 times fewer pixels to decode for a small R."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft(image.mode, (resolution, resolution))
            return to_tensor(image, resolution, channels)
    except (OSError, ValueError) as e:
        raise UserError(f"dataset folder: cannot read image {path} ({e})") from None


def is_colour(path: Path) -> bool:
    """Whether an image holds colour, from its header: its mode, and for palette images their palette
    (a palette of grays only is grayscale)."""
    try:
        with Image.open(path) as image:
            if image.mode in GRAY_MODES:
                return False
            if image.mode in ("P", "PA"):
                palette = np.asarray(image.getpalette("RGB") or [], dtype=np.int64).reshape(-1, 3)
                return bool((palette != palette[:, :1]).any())
            return True
    except (OSError, ValueError) as e:
        raise UserError(f"dataset folder: cannot read image {path} ({e})") from None


BAD_FILE_MODES = ("error", "skip")


def unreadable(path: Path) -> str | None:
    """None where the image decodes whole; else why it does not (truncated, not an image, ...)."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, SyntaxError) as e:
        return str(e) or type(e).__name__
    return None


def leave_out_unreadable(files, labels, root: Path, cache_dir, workers: int):
    """dataset.on_bad_file=skip: (files, labels) without the images that do not decode, and a list of
    (path, reason) of those left out. Every image is decoded once; the verdict is kept in the cache folder
    under a digest of the files' names, sizes and times, so later starts on the same files read it."""
    record = cache_root(cache_dir) / "checked" / f"{key_of({'files': files_fingerprint(files, root)})}.json"
    try:
        bad = {root / name: why for name, why in json.loads(record.read_text()).items()}
    except (OSError, ValueError):
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            verdicts = tqdm(pool.map(unreadable, files, chunksize=16), total=len(files), desc="checking images",
                            leave=False, disable=None)
            bad = {path: why for path, why in zip(files, verdicts) if why is not None}
        try:
            writes.write_text(record, json.dumps({str(p.relative_to(root)): why for p, why in bad.items()}))
        except WriteFailed:  # no cache to keep it in: the next start checks again
            pass
    keep = [i for i, path in enumerate(files) if path not in bad]
    if not keep:
        raise UserError(f"dataset folder: none of the {len(files)} images under {root} can be read "
                        f"(the first: {files[0]}: {bad[files[0]]})")
    return ([files[i] for i in keep], None if labels is None else [labels[i] for i in keep],
            sorted(bad.items()))


def folder_channels(files, workers: int = 2) -> tuple[int, int]:
    """(channels, how many images hold colour): 3 when any image holds colour, else 1. Every image's
    header is read, so the order of the files decides nothing."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        flags = pool.map(is_colour, files, chunksize=64)
        colour = sum(tqdm(flags, total=len(files), desc="reading image headers", leave=False, disable=None))
    return (3 if colour else 1), colour


class FolderDataset(torch.utils.data.Dataset):
    def __init__(self, files, labels, resolution, channels):
        self.files, self.labels = files, labels
        self.resolution, self.channels = resolution, channels

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        label = 0 if self.labels is None else self.labels[i]
        return load_image(self.files[i], self.resolution, self.channels), label


def folder(
    root,
    resolution=32,
    channels=None,
    in_memory="auto",
    max_memory_mb=2048,
    cache="auto",
    cache_dir=None,
    on_bad_file="error",
    *,
    batch_size,
    device,
    seed,
    num_workers=2,
):
    """Build the folder batch source (`dataset=folder dataset.root=...`)."""
    root = Path(str(root)).expanduser()
    check_resolution(resolution)
    if in_memory not in ("auto", True, False):
        raise UserError(f"dataset.in_memory must be auto, true or false, got {in_memory!r}")
    check_mode(cache)
    if channels not in (None, 1, 3):
        raise UserError(f"dataset.channels must be 1, 3 or null, got {channels!r}")
    if on_bad_file not in BAD_FILE_MODES:
        raise UserError(f"dataset.on_bad_file must be error or skip, got {on_bad_file!r}")
    files, labels, classes = scan(root)
    skipped = []
    if on_bad_file == "skip":
        files, labels, skipped = leave_out_unreadable(files, labels, root, cache_dir, num_workers)
        if skipped:
            log.warning("folder %s: left out %d unreadable files (dataset.on_bad_file=skip), e.g. %s: %s", root,
                        len(skipped), *skipped[0])
    if channels is None:
        channels, colour = folder_channels(files, num_workers)
        how = f"{colour} colour, {len(files) - colour} grayscale: read as {'colour' if colour else 'grayscale'}"
    else:
        how = f"read as {'colour' if channels == 3 else 'grayscale'} (dataset.channels={channels})"
    log.info("folder %s: %d images (%s) at %dx%d%s", root, len(files), how, resolution, resolution,
             f", {len(classes)} classes" if classes else ", no classes")
    name = f"folder {root}"
    size_mb = len(files) * channels * resolution * resolution / 2**20
    if in_memory is True or (in_memory == "auto" and size_mb <= max_memory_mb):
        # Decode every image once (threads: PIL releases the GIL while decoding) and keep them on the device.
        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
            decoded = pool.map(lambda p: load_image(p, resolution, channels), files)
            images = torch.stack(list(tqdm(decoded, total=len(files), desc="loading images", leave=False, disable=None)))
        label_tensor = None if labels is None else torch.tensor(labels, dtype=torch.long)
        return with_skipped(TensorBatches(images, label_tensor, batch_size, device, seed, name), skipped)
    dataset = FolderDataset(files, labels, resolution, channels)
    shape = (channels, resolution, resolution)
    if cache == "off":
        return with_skipped(StreamBatches(dataset, shape, len(classes), batch_size, device, seed, num_workers, name),
                            skipped)
    # Larger than max_memory_mb: decoded once into the cache, then held where it fits or gathered from the map.
    parts = {"source": "folder", "root": str(root.resolve()), "files": files_fingerprint(files, root),
             "classes": classes, "resolution": resolution, "channels": channels}
    images, label_array = cached(dataset, shape, parts, cache_dir, num_workers, name)
    return with_skipped(batches(images, label_array, len(classes), batch_size, device, seed, name,
                                hold=False if in_memory is False else "auto"), skipped)


def with_skipped(source, skipped):
    """The batch source, carrying the (path, reason) of the files left out (the run folder lists them)."""
    source.skipped = skipped
    return source
