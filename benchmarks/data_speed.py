"""The data path alone: images/s from a folder of JPEGs decoded by DataLoader workers, against the same folder
decoded once into the data cache, beside the images/s a DCGAN-64 training step consumes.

    python benchmarks/data_speed.py                       # 50,000 JPEGs of 178x218 (CelebA's size), 64x64
    python benchmarks/data_speed.py --quick               # 5,000 JPEGs, shorter timings
    python benchmarks/data_speed.py --keep /scratch/jpegs # keep (and reuse) the generated folder

The folder is made here: smooth random "photos" (a colour gradient under a few blurred ellipses), saved as
JPEG quality 90, no class folders. Measured, in this order, on one device:
    jpeg     `dataset=folder dataset.cache=off`: a DataLoader with --workers workers decoding each image
             (Pillow, JPEG draft mode, resize and centre crop), batches of 64 handed to the device
    build    the one-off decoding into the cache (uint8 .npy), with the same workers
    held     the cached array held on the device (what a set that fits half its free memory gets)
    mapped   batches gathered from the memory-mapped file (`dataset.in_memory=false`; the file is in the page
             cache after the build, as it is on a machine with the memory to spare)
    consumed images/s of `gan-train model=dcgan dataset=folder dataset.resolution=64`: the difference of a run
             of --steps and one of 2 x --steps, so setup cancels out
The goals (issue "Ready for a GPU and for many"): cached >= 20 x jpeg, and cached >= consumed.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, compose, machine, table  # noqa: E402

from gan_cli.data.folder import folder  # noqa: E402
from gan_cli.train import train  # noqa: E402


def make_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(10, width // 2), rng.integers(10, height // 2)
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image.filter(ImageFilter.GaussianBlur(2))


def make_folder(root: Path, count: int, width: int, height: int) -> Path:
    done = sum(1 for _ in root.glob("*.jpg")) if root.is_dir() else 0
    if done == count:
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in tqdm(range(count), desc="writing JPEGs", unit="img"):
        make_photo(rng, width, height).save(root / f"{i:06d}.jpg", quality=90)
    return root


def rate(source, batches: int, warmup: int, device) -> float:
    """Images/s of `batches` draws after `warmup` ones, each batch on the device before the clock stops."""
    for _ in range(warmup):
        source.next()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        images, _ = source.next()
        n += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def consumed(root: Path, steps: int, batch: int, device: str, work: Path) -> float:
    """Images/s a DCGAN-64 training step consumes: one real batch per step (n_critic 1)."""
    times = []
    for n in (steps, 2 * steps):
        cfg = compose(["model=dcgan", "dataset=folder", f"dataset.root={root}", "dataset.resolution=64",
                       f"dataset.cache_dir={work / 'cache'}", f"trainer.steps={n}", f"trainer.batch_size={batch}",
                       f"trainer.device={device}", "trainer.progress=false", "trainer.objective=none",
                       "trainer.sample_every=0", "trainer.ckpt_every=0"])
        start = time.perf_counter()
        train(cfg, work / f"train-{n}")
        times.append(time.perf_counter() - start)
    return steps * batch / (times[1] - times[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000, help="JPEGs in the generated folder")
    parser.add_argument("--size", default="178x218", help="their width x height (CelebA's aligned photos)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers / decoding threads")
    parser.add_argument("--steps", type=int, default=10, help="training steps of the short consumption run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--keep", type=Path, default=None, help="make (or reuse) the JPEG folder here")
    parser.add_argument("--quick", action="store_true", help="5,000 JPEGs, shorter timings")
    parser.add_argument("--out", type=Path, default=RESULTS / "data_speed.md")
    args = parser.parse_args()
    if args.quick:
        args.images, args.steps = 5_000, 4
    width, height = (int(v) for v in args.size.split("x"))
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="data-speed-"))
    root = make_folder(args.keep or work / "jpegs", args.images, width, height)
    common = dict(resolution=args.resolution, batch_size=args.batch_size, device=device, seed=0,
                  num_workers=args.workers, max_memory_mb=0, channels=3)
    batches = max(20, min(400, args.images // args.batch_size // 2))
    try:
        rates = {}
        rates["jpeg"] = rate(folder(root, cache="off", **common), batches, 5, device)
        print(f"jpeg: {rates['jpeg']:.0f} images/s", flush=True)
        start = time.perf_counter()
        held = folder(root, cache_dir=work / "cache", **common)
        build_seconds = time.perf_counter() - start
        rates["build"] = args.images / build_seconds
        rates["held"] = rate(held, 10 * batches, 20, device)
        del held
        rates["mapped"] = rate(folder(root, cache_dir=work / "cache", in_memory=False, **common), 4 * batches, 20,
                               device)
        print(f"held {rates['held']:.0f}, mapped {rates['mapped']:.0f} images/s", flush=True)
        rates["consumed"] = consumed(root, args.steps, args.batch_size, args.device, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cached = min(rates["held"], rates["mapped"])
    rows = [["JPEG folder, DataLoader workers (dataset.cache=off)", f"{rates['jpeg']:,.0f}", "1.0"],
            ["cache build (once)", f"{rates['build']:,.0f}", f"{rates['build'] / rates['jpeg']:.1f}"],
            ["cache, held on the device", f"{rates['held']:,.0f}", f"{rates['held'] / rates['jpeg']:.0f}"],
            ["cache, gathered from the memory map", f"{rates['mapped']:,.0f}", f"{rates['mapped'] / rates['jpeg']:.0f}"],
            ["consumed by a DCGAN-64 step (gan-train)", f"{rates['consumed']:,.0f}",
             f"{rates['consumed'] / rates['jpeg']:.2f}"]]
    command = "python benchmarks/data_speed.py" + (" --quick" if args.quick else "")
    lines = [f"`{command}`, measured on {machine(args.device)}; {args.workers} workers.", "",
             f"**Data path alone** ({args.images:,} generated JPEGs of {width}x{height} -> {args.resolution}x"
             f"{args.resolution}, batches of {args.batch_size}, on {args.device}):", "",
             *table(["path", "images/s", "x JPEG path"], rows), "",
             f"Goals: cached >= 20 x JPEG: {'met' if cached >= 20 * rates['jpeg'] else 'not met'} "
             f"({cached / rates['jpeg']:.0f}x, the slower of held and mapped); cached >= consumed: "
             f"{'met' if cached >= rates['consumed'] else 'not met'} ({cached / rates['consumed']:.0f}x)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"rates": rates, "images": args.images, "size": [width, height],
                                                         "resolution": args.resolution, "device": args.device,
                                                         "workers": args.workers}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
