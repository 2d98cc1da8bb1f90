"""Image-to-image data: aligned pairs (Pix2Pix) and two unaligned collections (CycleGAN).

    dataset=paired     root/ in one of pix2pix's layouts, with train/ val/ test/ splits where present:
                         <split>/A/ + <split>/B/   or   A/<split>/ + B/<split>/   (same file names on both sides)
                         <split>/*.jpg             side-by-side AB images: left half A, right half B
                       root=null: the offline demo, edge maps of scikit-learn's digits -> the digits
    dataset=unpaired   CycleGAN's layout: root/trainA/ trainB/ testA/ testB/ (class subfolders inside a side
                       give labels, for scoring); root=null: the offline demo, scikit-learn's handwritten
                       digits <-> digits rendered from Pillow's bundled font (demo=fonts: from
                       matplotlib's 21 digit fonts)

A batch is (A, B, labels_A, labels_B) in [-1, 1] (labels None where a side has none; a pair shares its
label). Training images are held at `load_size` and each batch gets the papers' jitter on the device: a
random crop to `crop_size` and a random horizontal flip (the same for both images of a pair). Test images
are resized to `crop_size` and never jittered.
"""

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from gan_cli import UserError
from gan_cli.data import StreamBatches, TensorBatches, to_unit_range
from gan_cli.data.folder import EXTENSIONS, FolderDataset, folder_channels, load_image, scan, to_tensor
from gan_cli.data import images as image_sets
from gan_cli.data.images import resize_uint8

log = logging.getLogger("gan_cli.data")

DIRECTIONS = ("AtoB", "BtoA")
PAIRED_LAYOUTS = ("<root>/<split>/A/ and <root>/<split>/B/ with the same file names",
                  "<root>/A/<split>/ and <root>/B/<split>/",
                  "<root>/<split>/ of side-by-side AB images (left half A)")


def check_sizes(load_size, crop_size) -> int:
    if not isinstance(crop_size, int) or isinstance(crop_size, bool) or crop_size < 32 or crop_size & (crop_size - 1):
        raise UserError(f"dataset.crop_size must be a power of two of at least 32, got {crop_size!r}")
    if load_size is None:
        return crop_size * 286 // 256  # the papers' 286 -> 256
    if not isinstance(load_size, int) or isinstance(load_size, bool) or load_size < crop_size:
        raise UserError(f"dataset.load_size must be an integer of at least crop_size={crop_size}, got {load_size!r}")
    return load_size


class Jitter:
    """Random crop to `crop` and random horizontal flip of each image of a batch (N x C x L x L), drawn from
    a generator of its own (kept in checkpoints). Channels stay together: a pair stacked along the channels
    gets one crop and one flip."""

    def __init__(self, crop: int, flip: bool, seed: int, enabled: bool = True):
        self.crop, self.flip, self.enabled = crop, flip, enabled
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if not self.enabled:
            return x if (h, w) == (self.crop, self.crop) else F.interpolate(
                x, size=(self.crop, self.crop), mode="bilinear", align_corners=False, antialias=True)
        top = torch.randint(0, h - self.crop + 1, (n,), generator=self.generator).tolist()
        left = torch.randint(0, w - self.crop + 1, (n,), generator=self.generator).tolist()
        flips = (torch.rand(n, generator=self.generator) < 0.5).tolist() if self.flip else [False] * n
        out = torch.stack([x[i, :, t:t + self.crop, s:s + self.crop] for i, (t, s) in enumerate(zip(top, left))])
        if any(flips):
            flipped = torch.tensor(flips, device=x.device)
            out = torch.where(flipped[:, None, None, None], out.flip(-1), out)
        return out

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


class TranslationBatches:
    """The batch source of a translation data set (see the module's docstring).

    `sources`: one base source of A and B stacked along the channels (paired), or two (unpaired: A, B),
    each a TensorBatches or StreamBatches of uint8 images at load_size. `test`: the test split as uint8
    tensors at crop_size, {"A", "B", "labels_A", "labels_B"} (aligned when paired)."""

    def __init__(self, sources, channels_a: int, channels_b: int, crop: int, flip: bool, jitter: bool, seed: int,
                 name: str, test: dict, paired: bool):
        self.sources, self.paired, self.name, self.test_split = list(sources), paired, name, test
        self.channels_a, self.channels_b = channels_a, channels_b
        self.shape_a, self.shape_b = (channels_a, crop, crop), (channels_b, crop, crop)
        self.shape = self.shape_b  # what G makes
        self.jitter = Jitter(crop, flip, seed + 2, enabled=jitter)
        self.num_classes = max(getattr(s, "num_classes", 0) for s in self.sources)
        self.batch_size = self.sources[0].batch_size

    def __len__(self):
        return len(self.sources[0])

    def shard(self, rank: int, world: int):
        for source in self.sources:
            source.shard(rank, world)
        return self

    def next(self):
        if self.paired:
            x, labels = self.sources[0].next()
            x = self.jitter(x)
            return x[:, :self.channels_a], x[:, self.channels_a:], labels, labels
        (a, labels_a), (b, labels_b) = (s.next() for s in self.sources)
        return self.jitter(a), self.jitter(b), labels_a, labels_b

    def test(self, n: int | None = None, device="cpu") -> dict:
        """The first n test images of each side in [-1, 1] (all of them by default), labels as given."""
        out = {}
        for key, value in self.test_split.items():
            if value is None:
                out[key] = None
                continue
            value = value[:n] if n else value
            out[key] = (to_unit_range(value) if key in ("A", "B") else value).to(device)
        return out

    def state_dict(self):
        return {"sources": [s.state_dict() for s in self.sources], "jitter": self.jitter.state_dict()}

    def load_state_dict(self, state):
        for source, s in zip(self.sources, state["sources"]):
            source.load_state_dict(s)
        self.jitter.load_state_dict(state["jitter"])


# --- reading the layouts ----------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS) \
        if folder.is_dir() else []


def paired_files(root: Path, split: str):
    """("AB", [files]) or ("A|B", [(a, b), ...]) for one split; None when the split is absent."""
    candidates = [(root / split / "A", root / split / "B"), (root / "A" / split, root / "B" / split)]
    if split == "train":
        candidates.append((root / "A", root / "B"))
    for a_dir, b_dir in candidates:
        if a_dir.is_dir() and b_dir.is_dir():
            a_files, b_by_name = _images_in(a_dir), {p.stem: p for p in _images_in(b_dir)}
            missing = [p.name for p in a_files if p.stem not in b_by_name]
            if missing or not a_files:
                raise UserError(f"dataset paired: {b_dir} has no image named like {missing[0]} of {a_dir}" if missing
                                else f"dataset paired: no images in {a_dir}")
            return "A|B", [(p, b_by_name[p.stem]) for p in a_files]
    for folder in ([root / split] + ([root] if split == "train" else [])):
        files = _images_in(folder)
        if files:
            return "AB", files
    return None


def _halves(path: Path, size: int, channels: int) -> torch.Tensor:
    """A side-by-side AB image as A and B stacked along the channels, each resized to size x size."""
    try:
        with Image.open(path) as image:
            image.load()
            w, h = image.size
            a, b = image.crop((0, 0, w // 2, h)), image.crop((w // 2, 0, 2 * (w // 2), h))
            return torch.cat([to_tensor(a, size, channels), to_tensor(b, size, channels)])
    except (OSError, ValueError) as e:
        raise UserError(f"dataset paired: cannot read image {path} ({e})") from None


def _pair(item, size: int, channels_a: int, channels_b: int) -> torch.Tensor:
    if isinstance(item, tuple):
        return torch.cat([load_image(item[0], size, channels_a), load_image(item[1], size, channels_b)])
    return _halves(item, size, channels_a)


def _load_all(fn, items, workers: int, desc: str) -> torch.Tensor:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return torch.stack(list(tqdm(pool.map(fn, items), total=len(items), desc=desc, leave=False, disable=None)))


class _Pairs(torch.utils.data.Dataset):
    """Pairs streamed from disk, A and B stacked along the channels, at load_size."""

    def __init__(self, items, size, channels_a, channels_b):
        self.items, self.size, self.channels = items, size, (channels_a, channels_b)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return _pair(self.items[i], self.size, *self.channels), 0


def _swap(a, b, direction):
    if direction not in DIRECTIONS:
        raise UserError(f"dataset.direction must be AtoB or BtoA, got {direction!r}")
    return (b, a) if direction == "BtoA" else (a, b)


# --- the demos ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)  # built once per process: callers index it, never change it
def digit_images(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled digits (gan_cli.data.images.digit_images), kept for the demos."""
    return image_sets.digit_images(resolution)


def edge_maps(images: torch.Tensor) -> torch.Tensor:
    """Binary edge maps of uint8 images: where the Sobel gradient magnitude exceeds a quarter of its
    largest value in the image (white edges on black)."""
    x = images.float() / 255.0
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    weight = torch.stack([kx, kx.t()]).unsqueeze(1)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight)
    magnitude = g.square().sum(1, keepdim=True).sqrt()
    peak = magnitude.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]
    return ((magnitude > 0.25 * peak).to(torch.uint8) * 255)


# The digit fonts that ship with matplotlib (a dependency): DejaVu Sans, Sans Mono and Serif and STIX in four
# styles each, and five Computer Modern faces (roman, bold, italic, sans, typewriter); its symbol-only fonts
# and old-style figures are left out.
MATPLOTLIB_FONTS = tuple(
    [f"DejaVu{face}{style}.ttf" for face in ("Sans", "SansMono") for style in ("", "-Bold", "-Oblique", "-BoldOblique")]
    + [f"DejaVuSerif{style}.ttf" for style in ("", "-Bold", "-Italic", "-BoldItalic")]
    + [f"STIXGeneral{style}.ttf" for style in ("", "Bol", "Italic", "BolIta")]
    + [f"cm{face}10.ttf" for face in ("r", "b", "ti", "ss", "tt")])


def matplotlib_fonts() -> list[Path]:
    """The paths of MATPLOTLIB_FONTS in this environment's matplotlib."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    missing = [name for name in MATPLOTLIB_FONTS if not (folder / name).is_file()]
    if missing:
        raise UserError(f"dataset.demo=fonts: matplotlib's fonts folder {folder} lacks {', '.join(missing[:3])}; "
                        "reinstall matplotlib or use dataset.demo=printed")
    return [folder / name for name in MATPLOTLIB_FONTS]


@functools.lru_cache(maxsize=4)  # drawing takes seconds: once per process; callers index it, never change it
def font_digits(n: int, resolution: int, seed: int = 0, many_fonts: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """n digits 0-9 (in turn) drawn white on black with Pillow's bundled font (many_fonts: each with one of
    matplotlib's 21 digit fonts, drawn at random), random size (95-120 % of the side), shift (+-8 %) and
    rotation (+-12 degrees), so no two are alike."""
    from PIL import ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fonts = matplotlib_fonts() if many_fonts else None
    big = 4 * resolution  # drawn large, then shrunk (antialiased)
    images = []
    for i in range(n):
        size = int(big * rng.uniform(0.95, 1.2))
        if fonts:
            font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), size)
        else:
            try:
                font = ImageFont.load_default(size=size)
            except TypeError:  # Pillow < 10.1: one small bitmap font
                font = ImageFont.load_default()
        canvas = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(canvas)
        left, top, right, bottom = draw.textbbox((0, 0), str(i % 10), font=font)
        dx, dy = rng.uniform(-0.08, 0.08, 2) * big
        draw.text(((big - (right - left)) / 2 - left + dx, (big - (bottom - top)) / 2 - top + dy), str(i % 10),
                  fill=255, font=font)
        canvas = canvas.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
        images.append(np.asarray(canvas.resize((resolution, resolution), Image.LANCZOS), dtype=np.uint8))
    return torch.from_numpy(np.stack(images)).unsqueeze(1), torch.arange(n) % 10


@functools.lru_cache(maxsize=4)  # built once per process: callers index it, never change it
def photo_digits(resolution: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bundled digits blended into colour photo patches by MNIST-M's recipe (Ganin et al. 2016): a
    random crop p of one of scikit-learn's two sample photos and the digit d give |p - d| per channel, so the
    strokes take the patch's inverted colours. Returns the grey digits, their photo versions and the labels."""
    from sklearn.datasets import load_sample_images

    digits, labels = digit_images(resolution)
    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    blended = np.empty((len(digits), 3, resolution, resolution), dtype=np.uint8)
    for i, digit in enumerate(digits.numpy()[:, 0].astype(np.int16)):
        photo = photos[rng.integers(len(photos))]
        y, x = rng.integers(0, photo.shape[0] - resolution + 1), rng.integers(0, photo.shape[1] - resolution + 1)
        patch = photo[y:y + resolution, x:x + resolution].astype(np.int16)
        blended[i] = np.abs(patch - digit[..., None]).transpose(2, 0, 1)
    return digits, torch.from_numpy(blended), labels


def demo_split(n: int, seed: int = 0, test_share: float = 0.15):
    """A fixed train / test split of n demo items (the same on every machine)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(n * test_share)
    return order[cut:], order[:cut]


# --- the builders -------------------------------------------------------------------------------------


def paired(root=None, direction="AtoB", load_size=None, crop_size=32, flip=True, jitter=True,
           max_memory_mb=2048, *, batch_size, device, seed, num_workers=2):
    """Aligned pairs for Pix2Pix (`dataset=paired`); root=null is the offline digits demo."""
    load = check_sizes(load_size, crop_size)
    if root is None:
        digits, labels = digit_images(load)
        train, test = demo_split(len(digits))
        edges = edge_maps(digits)
        a, b = _swap(edges, digits, direction)
        small_a, small_b = _swap(edge_maps(resize_uint8(digits[test], crop_size)), resize_uint8(digits[test], crop_size),
                                 direction)
        base = TensorBatches(torch.cat([a[train], b[train]], 1), labels[train], batch_size, device, seed,
                             "paired demo (digit edges -> digits)")
        name = f"paired demo ({'digit edges -> digits' if direction == 'AtoB' else 'digits -> digit edges'})"
        return TranslationBatches([base], 1, 1, crop_size, flip, jitter, seed, name,
                                  {"A": small_a, "B": small_b, "labels_A": labels[test], "labels_B": labels[test]},
                                  paired=True)
    root = Path(str(root)).expanduser()
    found = paired_files(root, "train") if root.is_dir() else None
    if found is None:
        raise UserError(f"dataset paired: no pairs under {root}; expected one of: {'; '.join(PAIRED_LAYOUTS)}")
    layout, items = found
    test_found = paired_files(root, "test") or paired_files(root, "val")

    def sides(files):
        if layout == "AB":
            c = folder_channels(files, num_workers)[0]
            return c, c
        return folder_channels([p for p, _ in files], num_workers)[0], folder_channels([q for _, q in files],
                                                                                      num_workers)[0]

    channels_a, channels_b = sides(items)
    log.info("paired %s: %d training pairs (%s layout), %s; A %s, B %s", root, len(items), layout,
             f"{len(test_found[1])} test pairs" if test_found else "no test or val split (previews use train pairs)",
             "colour" if channels_a == 3 else "grayscale", "colour" if channels_b == 3 else "grayscale")
    size_mb = len(items) * (channels_a + channels_b) * load * load / 2**20
    if size_mb <= max_memory_mb:
        stacked = _load_all(lambda it: _pair(it, load, channels_a, channels_b), items, num_workers, "loading pairs")
        base = TensorBatches(stacked, None, batch_size, device, seed, f"paired {root}")
    else:
        base = StreamBatches(_Pairs(items, load, channels_a, channels_b), (channels_a + channels_b, load, load), 0,
                             batch_size, device, seed, num_workers, f"paired {root}")
    test_items = test_found[1] if test_found else items[:64]
    test = _load_all(lambda it: _pair(it, crop_size, channels_a, channels_b), test_items[:1024], num_workers,
                     "loading test pairs")
    ta, tb = test[:, :channels_a], test[:, channels_a:]
    if direction == "BtoA":
        ta, tb, channels_a, channels_b = tb, ta, channels_b, channels_a
        base = _Swapped(base, channels_b)  # the stacked channels stay A|B on disk; swapped per batch
    return TranslationBatches([base], channels_a, channels_b, crop_size, flip, jitter, seed,
                              f"paired {root} ({direction})", {"A": ta, "B": tb, "labels_A": None, "labels_B": None},
                              paired=True)


class _Swapped:
    """A base source of stacked A|B pairs that yields B|A."""

    def __init__(self, base, channels_first: int):
        self.base, self.cut = base, channels_first

    def __getattr__(self, name):
        return getattr(self.base, name)

    def __len__(self):
        return len(self.base)

    def next(self):
        x, labels = self.base.next()
        return torch.cat([x[:, self.cut:], x[:, :self.cut]], 1), labels


UNPAIRED_DEMOS = {"printed": "handwritten <-> printed digits", "fonts": "handwritten <-> digits in 21 fonts",
                  "photo": "handwritten digits <-> digits on photos"}


def unpaired_demo(demo: str, load: int):
    """The two sides of an offline demo: (images, labels) each, and the pair's name. printed: the bundled
    digits and as many drawn from Pillow's font; fonts: the same drawn from 21 fonts; photo: the bundled
    digits split in two disjoint halves, the second blended into photo patches (photo_digits), so no digit
    appears on both sides; both in RGB."""
    if demo not in UNPAIRED_DEMOS:
        raise UserError(f"unknown dataset.demo '{demo}'; choose one of: {', '.join(UNPAIRED_DEMOS)}")
    handwritten, labels = digit_images(load)
    if demo in ("printed", "fonts"):
        return (handwritten, labels), font_digits(len(handwritten), load, 0, demo == "fonts"), UNPAIRED_DEMOS[demo]
    grey, coloured, labels = photo_digits(load)
    order = torch.randperm(len(grey), generator=torch.Generator().manual_seed(2))
    half_a, half_b = order[::2], order[1::2]
    # The grey side in three channels, as CyCADA reads MNIST beside MNIST-M: CycleGAN's identity loss needs
    # as many channels on both sides.
    return ((grey[half_a].repeat(1, 3, 1, 1), labels[half_a]), (coloured[half_b], labels[half_b]),
            UNPAIRED_DEMOS[demo])


def unpaired(root=None, direction="AtoB", load_size=None, crop_size=32, flip=True, jitter=True,
             max_memory_mb=2048, demo="printed", *, batch_size, device, seed, num_workers=2):
    """Two unaligned collections for CycleGAN (`dataset=unpaired`); root=null is an offline digits demo."""
    load = check_sizes(load_size, crop_size)
    if direction not in DIRECTIONS:
        raise UserError(f"dataset.direction must be AtoB or BtoA, got {direction!r}")
    if root is None:
        first, second, pair = unpaired_demo(demo, load)
        (a, la), (b, lb) = _swap(first, second, direction)
        train_a, test_a = demo_split(len(a), 0)
        train_b, test_b = demo_split(len(b), 1)
        bases = [TensorBatches(a[train_a], la[train_a], batch_size, device, seed, "A"),
                 TensorBatches(b[train_b], lb[train_b], batch_size, device, seed + 1, "B")]
        sides = pair.split(" <-> ")
        name = "unpaired demo (" + " <-> ".join(sides if direction == "AtoB" else sides[::-1]) + ")"
        test = {"A": resize_uint8(a[test_a], crop_size), "B": resize_uint8(b[test_b], crop_size),
                "labels_A": la[test_a], "labels_B": lb[test_b]}
        return TranslationBatches(bases, a.shape[1], b.shape[1], crop_size, flip, jitter, seed, name, test,
                                  paired=False)
    root = Path(str(root)).expanduser()
    dirs = {key: root / key for key in ("trainA", "trainB", "testA", "testB")}
    if not (dirs["trainA"].is_dir() and dirs["trainB"].is_dir()):
        raise UserError(f"dataset unpaired: {root} needs trainA/ and trainB/ (and testA/, testB/ for previews and "
                        "scoring), CycleGAN's layout; class subfolders inside a side are optional")
    bases, tests, channels = [], {}, []
    for i, side in enumerate(("A", "B")):
        files, labels, classes = scan(dirs[f"train{side}"])
        c = folder_channels(files, num_workers)[0]
        channels.append(c)
        label_tensor = None if labels is None else torch.tensor(labels, dtype=torch.long)
        if len(files) * c * load * load / 2**20 <= max_memory_mb:
            images = _load_all(lambda p, c=c: load_image(p, load, c), files, num_workers, f"loading train{side}")
            bases.append(TensorBatches(images, label_tensor, batch_size, device, seed + i, f"train{side}"))
        else:
            bases.append(StreamBatches(FolderDataset(files, labels, load, c), (c, load, load), len(classes),
                                       batch_size, device, seed + i, num_workers, f"train{side}"))
        test_dir = dirs[f"test{side}"] if dirs[f"test{side}"].is_dir() else dirs[f"train{side}"]
        test_files, test_labels, _ = scan(test_dir)
        tests[side] = _load_all(lambda p, c=c: load_image(p, crop_size, c), test_files[:1024], num_workers,
                                f"loading test{side}")
        tests[f"labels_{side}"] = None if test_labels is None else torch.tensor(test_labels[:1024])
        log.info("unpaired %s: %d train%s images, %d test%s%s, %s", root, len(files), side, len(test_files), side,
                 "" if dirs[f"test{side}"].is_dir() else " (no test split: train images)",
                 f"{len(classes)} classes" if classes else "no classes")
    if direction == "BtoA":
        bases.reverse()
        channels.reverse()
        tests = {"A": tests["B"], "B": tests["A"], "labels_A": tests["labels_B"], "labels_B": tests["labels_A"]}
    return TranslationBatches(bases, channels[0], channels[1], crop_size, flip, jitter, seed,
                              f"unpaired {root} ({direction})", tests, paired=False)
