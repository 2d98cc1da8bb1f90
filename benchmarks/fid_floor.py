"""Does the classifier FID separate real from fake? Real images split in two halves against each other
(the real-versus-real floor), against noise, and against a collapsed "generator" (one image repeated).

    python benchmarks/fid_floor.py                                   # ../shared/data/mnist-t10k-png
    python benchmarks/fid_floor.py --folder path/to/labelled/images  # any folder with class subfolders

Each half keeps every class's share (alternate files of each class). The classifier backbone is
trained on the real half (its own 90/10 split) in a scratch cache, so the run is self-contained.
Writes benchmarks/results/fid_floor.md.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from gan_cli.evaluate import evaluate, parse_args  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k-png"


def split_halves(folder: Path, out: Path) -> tuple[Path, Path, int]:
    a, b = out / "half_a", out / "half_b"
    n = 0
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(cls.glob("*.png"))
        for i, f in enumerate(files):
            target = (a if i % 2 == 0 else b) / cls.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f.resolve())
            n += 1
    return a, b, n


def write_fakes(out: Path, count: int, like: Path, kind: str, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    first = sorted(like.rglob("*.png"))[0]
    size, mode = Image.open(first).size, Image.open(first).mode
    out.mkdir(parents=True)
    for i in range(count):
        if kind == "noise":
            array = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
            Image.fromarray(array, "L").convert(mode).save(out / f"{i:05d}.png")
        else:  # collapsed: the same real image every time
            (out / f"{i:05d}.png").symlink_to(first.resolve())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fid_floor.md")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"no folder {args.folder}: pass --folder <images in class subfolders>")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        half_a, half_b, n = split_halves(args.folder, tmp)
        count = n // 2
        sides = {
            "real half A (the floor)": half_a,
            "uniform noise": write_fakes(tmp / "noise", count, half_a, "noise"),
            "collapsed: one real image repeated": write_fakes(tmp / "collapsed", count, half_a, "collapsed"),
        }
        for name, fake in sides.items():
            start = time.perf_counter()
            options = parse_args([f"fake={fake}", f"real={half_b}", f"cache_dir={tmp / 'cache'}", "progress=false",
                                  f"num_samples={count}", f"out={tmp / 'eval.json'}"])
            result = evaluate(options)
            rows.append((name, result, time.perf_counter() - start))
    accuracy = rows[0][1].get("classifier_test_accuracy")
    lines = [
        "## Classifier FID: the real-versus-real floor against noise and collapse",
        "",
        f"`python benchmarks/fid_floor.py`{'' if args.folder == DEFAULT else ' --folder ' + str(args.folder)}; "
        f"{machine()}. Real side: half B of {args.folder.name} ({n - count} images); fake side: {count} images. "
        f"Classifier backbone trained on half B (test accuracy {100 * accuracy:.2f}% on its held-out 10%).",
        "",
        "| fake side | FID | KID | precision | recall | IS | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, result, seconds in rows:
        m = result["metrics"]
        lines.append(f"| {name} | {m['fid']:.3f} | {m['kid_mean']:.4f} ± {m['kid_std']:.4f} | {m['precision']:.3f} "
                     f"| {m['recall']:.3f} | {m['is_mean']:.2f} ± {m['is_std']:.2f} | {seconds:.0f} |")
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({name: result["metrics"] for name, result, _ in rows}, indent=1))


if __name__ == "__main__":
    main()
