"""What a GAN learned, on the MNIST test images: DCGAN's linear probe on D's features, and inversion.

    python benchmarks/probe_invert.py                   dcgan, sngan, acgan trained 1,500 CPU s each
    python benchmarks/probe_invert.py --budget 300 --jobs 2
    python benchmarks/probe_invert.py --quick           20 CPU s each, fewer images: to check that all works

The 10,000 MNIST test images (../shared/data/mnist-t10k-png, or --mnist) are split in two halves that
keep every class's share (as benchmarks/image_quality.py does). Each preset trains on half A only, for the
same CPU budget (image_quality.py's calibration turns it into steps).

Probe: `gan-eval metrics=[probe] probe_test=<half B>`: a linear SVM on D's pooled layer features learns
from half A's labels (all 5,000, then 10 per class over 5 random draws) and is scored on half B; the
same for D's architecture with random weights and for the raw pixels.

Inversion: `gan-sample mode=invert` with dcgan's G on `--invert` images of half B (the same number from
each class): PSNR and SSIM of the reconstructions, the share the classifier backbone (trained on half A)
labels as the input's class, and for each image the PSNR of the best of 1,000 random z beside it. Then
G's own samples inverted: |z - z_true| / |z_true| beside a random z's. The figure: inputs beside their
reconstructions, and morphs between inverted real digits (mode=interpolate codes=).
"""

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import BIN, RESULTS, machine, table  # noqa: E402
from image_quality import MNIST, export_halves, run_one  # noqa: E402

PRESETS = ["dcgan", "sngan", "acgan"]


def gan_eval(*args) -> dict:
    out = Path(tempfile.mkdtemp()) / "eval.json"
    subprocess.run([str(BIN / "gan-eval"), *args, f"out={out}", "progress=false"], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def gan_sample(*args) -> None:
    subprocess.run([str(BIN / "gan-sample"), *args, "progress=false"], check=True, stdout=subprocess.DEVNULL)


def pick(half: Path, per_class: int, folder: Path) -> Path:
    """The first `per_class` images of each class folder of `half`, copied (class folders kept)."""
    for class_dir in sorted(p for p in half.iterdir() if p.is_dir()):
        (folder / class_dir.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.glob("*.png"))[:per_class]:
            shutil.copy(image, folder / class_dir.name / image.name)
    return folder


def best_random_psnr(run: Path, targets: Path, count: int, work: Path) -> dict:
    """Per target image (by its name under `targets`, no suffix): the highest PSNR any of `count` random
    samples of G reaches against it."""
    from PIL import Image

    gan_sample(f"ckpt={run}", "mode=images", f"n={count}", "seed=50000", f"out={work / 'random'}")
    fakes = np.stack([np.asarray(Image.open(p), dtype=np.float64) / 255
                      for p in sorted((work / "random").glob("*.png"))])
    flat, best = fakes.reshape(len(fakes), -1), {}
    for path in sorted(targets.rglob("*.png")):
        real = np.asarray(Image.open(path), dtype=np.float64).reshape(1, -1) / 255
        mse = ((flat - real) ** 2).mean(1).min()
        best[str(path.relative_to(targets).with_suffix(""))] = float(10 * np.log10(1 / max(mse, 1e-12)))
    return best


def cross_class(codes: Path, work: Path) -> Path:
    """A copy of mode=invert's codes.pt holding the first image of each class, classes in turn: mode=interpolate
    joins codes 0 -> 1, 2 -> 3, ..., so each row morphs a digit into the next one (0 -> 1, 2 -> 3, ...)."""
    saved = torch.load(codes, map_location="cpu", weights_only=True)
    first = {}
    for i, name in enumerate(saved["names"]):  # names are "<class folder>/<file>"
        first.setdefault(name.split("/")[0], i)
    order = [first[c] for c in sorted(first)]
    path = work / "codes_cross_class.pt"
    torch.save({"space": saved["space"], "codes": saved["codes"][order],
                "names": [saved["names"][i] for i in order]}, path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=1500, help="CPU seconds of training per preset")
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--invert", type=int, default=20, help="half B images of each class to invert")
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="20 CPU s a preset, the probe on 500 of half A, 2 images a class, short inversions")
    parser.add_argument("--out", type=Path, default=RESULTS / "probe_invert.md")
    parser.add_argument("--keep", type=Path, default=Path("outputs/bench-probe-invert"),
                        help="the runs and figures' sources")
    parser.add_argument("--reuse", action="store_true",
                        help="take the runs already trained under --keep (same budget) instead of training anew")
    args = parser.parse_args()
    if not args.mnist.is_dir():
        raise SystemExit(f"no MNIST folder at {args.mnist} (--mnist <folder with one subfolder per class>)")
    if args.quick:
        args.budget, args.invert = 20, 2
    steps = ["invert_steps=30", "invert_candidates=64"] if args.quick else []
    command = "python benchmarks/probe_invert.py" + (" --quick" if args.quick else f" --budget {args.budget:g}")
    torch.set_num_threads(max(1, torch.get_num_threads() // args.jobs))
    work = args.keep
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    half_a, half_b, count = export_halves("mnist", args.mnist, work / "halves")
    print(f"halves of {count} and {sum(1 for _ in half_b.rglob('*.png'))} images", flush=True)
    runs = {}

    def record(preset):  # what run_one returned for this preset, kept beside its run folder
        return work / "runs" / f"mnist-{preset}-{args.budget:g}.json"

    if args.reuse:
        runs = {p: json.loads(record(p).read_text()) for p in args.presets if record(p).is_file()}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {preset: pool.submit(run_one, preset, "mnist", half_a, args.budget, work / "tmp", half_b, count, 1,
                                       work / "runs") for preset in args.presets if preset not in runs}
        for preset, future in futures.items():
            runs[preset] = future.result()
            record(preset).write_text(json.dumps(runs[preset]))
    for preset in args.presets:
        print(f"{preset}: {runs[preset]['steps']} steps, FID {runs[preset]['metrics']['fid']:.2f}", flush=True)

    # The probe, with every label of half A and with 10 per class.
    probe = {}
    for preset in args.presets:
        run = work / "runs" / f"mnist-{preset}"
        start = time.perf_counter()
        subset = ["num_real=500"] if args.quick else []
        probe[preset] = {labels: gan_eval(f"ckpt={run}", "metrics=[probe]", f"probe_test={half_b}", *subset,
                                          *([] if labels == "all" else [f"probe_labels={labels}"]))["probe"]
                         for labels in ("all", 10)}
        print(f"{preset}: probe in {time.perf_counter() - start:.0f} s", flush=True)

    # Inversion with dcgan's G.
    run = work / "runs" / "mnist-dcgan"
    targets = pick(half_b, args.invert, work / "invert-inputs")
    folder = work / "inverted"
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    gan_sample(f"ckpt={run}", "mode=invert", f"input={targets}", f"out={folder}", "nrow=10",
               f"cache_dir={work / 'cache'}", *steps)
    invert_seconds = time.perf_counter() - start
    report = json.loads((folder / "invert.json").read_text())
    best_random = best_random_psnr(run, targets, 1000, work / "random-z")
    ours = np.array([row["psnr"] for row in report["per_image"]])
    random_psnr = np.array([best_random[row["name"]] for row in report["per_image"]])
    own = work / "own"
    shutil.rmtree(own, ignore_errors=True)
    gan_sample(f"ckpt={run}", "mode=invert", "input=samples", "n=50", f"out={own}", "invert_features=none", *steps)
    recovery = json.loads((own / "invert.json").read_text())
    morph = work / "morph.png"
    gan_sample(f"ckpt={run}", "mode=interpolate", f"codes={cross_class(folder / 'codes.pt', work)}", "pairs=5",
               "steps=8", f"out={morph}")
    figures = {"sheet": args.out.parent / f"{args.out.stem}_reconstructions.png",
               "morph": args.out.parent / f"{args.out.stem}_morph.png"}
    shutil.copy(folder / "sheet.png", figures["sheet"])
    shutil.copy(morph, figures["morph"])

    trainings = f"{args.jobs} training{'s' if args.jobs > 1 else ''}"
    lines = [f"`{command}`; {machine()}; {trainings} at a time, one thread each. MNIST test images split "
             f"in halves of {count}: the GANs train on half A.", "",
             f"**Linear probe** (test accuracy on half B; all labels: {500 if args.quick else count} of half A's; "
             "10 per class: mean ± std over 5 draws):", ""]
    rows = []
    for preset in args.presets:
        run_row = runs[preset]
        for name in ("D (trained)", "D (random init)", "pixels"):
            if name == "pixels" and preset != args.presets[0]:
                continue
            a, f = probe[preset]["all"][name], probe[preset][10][name]
            label = f"`{preset}` {name}" if name != "pixels" else "raw pixels"
            rows.append([label, f"{f['features']}", f"{100 * a['mean']:.2f}",
                         f"{100 * f['mean']:.2f} ± {100 * f['std']:.2f}",
                         f"{run_row['steps']} steps, FID {run_row['metrics']['fid']:.2f}" if name == "D (trained)"
                         else ""])
    lines += table(["features of", "dimensions", "all labels %", "10 per class %", "the GAN"], rows)
    wins = [p for p in args.presets
            if probe[p][10]["D (trained)"]["mean"] > max(probe[p][10]["D (random init)"]["mean"],
                                                         probe[p][10]["pixels"]["mean"])]
    lines += ["", f"Goal (10 per class, D above the random D and the pixels): met for {', '.join(wins) or 'none'}.",
              "", f"**Inversion** of {len(ours)} half-B digits ({args.invert} a class) by dcgan's G "
              f"({invert_seconds:.0f} s):", ""]
    better = int((ours > random_psnr).sum())
    lines += table(["", "value"], [
        ["PSNR (dB), mean", f"{report['psnr_mean']:.2f}"],
        ["best of 1,000 random z, PSNR (dB), mean", f"{random_psnr.mean():.2f}"],
        ["images whose PSNR beats their best random z", f"{better} of {len(ours)}"],
        ["SSIM, mean", f"{report['ssim_mean']:.4f}"],
        ["class kept (classifier backbone)", f"{100 * report.get('class_kept', float('nan')):.1f} %"],
        ["G's own samples: mean ‖z − z_true‖ / ‖z_true‖", f"{recovery['z_error_mean']:.3f} (a random z: "
                                                         f"{recovery['random_z_error_mean']:.3f})"],
    ])
    kept = report.get("class_kept", 0) >= 0.9
    lines += ["", f"Goal (>= 90 % keep their class, and every image above its best random z): "
              f"{'met' if kept and better == len(ours) else 'not met'}.", "",
              f"![inputs and reconstructions]({args.out.parent.name}/{figures['sheet'].name})", "",
              f"![real-to-real morphs]({args.out.parent.name}/{figures['morph'].name})", ""]
    args.out.write_text("\n".join(lines))
    (args.out.with_suffix(".json")).write_text(json.dumps(
        {"command": command, "runs": {p: {k: v for k, v in r.items() if k != "grid"} for p, r in runs.items()},
         "probe": {p: {str(k): v for k, v in r.items()} for p, r in probe.items()}, "invert": report,
         "random_psnr": random_psnr.tolist(), "recovery": recovery}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
