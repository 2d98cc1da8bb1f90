"""Sample quality of every image preset after a fixed CPU budget, beside the real-versus-real floor.

    python benchmarks/image_quality.py                    # 150 CPU seconds per run, digits and MNIST
    python benchmarks/image_quality.py --budget 600 --jobs 2
    python benchmarks/image_quality.py --quick            # 10 CPU seconds per run, digits only

Data: scikit-learn's digits, and the real MNIST test images (`dataset=folder` on
../shared/data/mnist-t10k-png, or --mnist <folder with one subfolder per class>; left out with a note
where the folder is absent). Both at 32x32.

Each run: `gan-train model=<preset> dataset=<data> trainer.steps=N` on one thread. A preset may carry
variants, e.g. `--presets dcgan dcgan+diffaug sngan_resnet+w32+diffaug` (VARIANTS below: DiffAugment,
its adaptive form, ResNet nets narrowed for a CPU budget). N is the budget
turned into steps: after a 3-step warm-up, runs of 1 and 1 + k steps measure the preset's CPU seconds
per step (their difference over k, with k raised until that difference is at least 3 CPU seconds), and N = budget / that. (So a preset with n_critic=5 gets fewer G steps, as it would on the
same machine time; the run itself is deterministic, and its row gives the command that repeats it.)

Evaluation: the data set's images, as the training loop sees them, are split into two halves that
keep every class's share. gan-eval scores G's samples (as many as half A holds) against half B with
the classifier backbone (a small CNN trained on half B): FID, precision/recall and IS. The floor is
half A itself scored the same way: the FID a perfect generator would get with this many samples.
The class-conditional presets (cgan, acgan, sngan_projection) also draw their samples class by class
(0, 1, ..., 9, 0, ...) and are scored per class: the share the classifier labels as the class asked
for (class accuracy; the goal for acgan and sngan_projection: above 90 %, measured by run_all.py with
--budget 1500), and the mean over classes of the FID of each class's samples against half B's images
of that class (intra-class FID).
With --curve K each run also saves a checkpoint after every K-th of its steps, and each is scored (FID
only): how FID moves with steps.
Writes benchmarks/results/image_quality.md and a PNG of the final sample grids per data set.
"""

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, compose, machine, table  # noqa: E402

PRESETS = ["gan", "dcgan", "lsgan", "wgan", "wgan_gp", "sngan", "cgan", "acgan", "sngan_projection", "infogan"]
CLASS_CONDITIONAL = ("cgan", "acgan", "sngan_projection", "sngan_projection_resnet", "sagan", "biggan")  # per class too
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k-png"


# Variants of a preset, written preset+variant (e.g. dcgan+diffaug): overrides added to its run.
VARIANTS = {
    "diffaug": ["trainer.augment=[color,translation,cutout]"],  # DiffAugment's policy for CIFAR-10 and small sets
    "adaptive": ["trainer.augment=[color,translation,cutout]", "trainer.augment_target=0.6"],
    # ResNet (or progan, stylegan2) nets narrowed to 32 maps in G and D (the presets: 256 and 128, or 512), so
    # that a CPU budget buys hundreds of steps rather than tens (sngan_resnet at 32x32, batch 64: 2.3 CPU s
    # per G step narrowed).
    "w32": ["generator.width=32", "generator.max_width=32", "discriminator.width=32", "discriminator.max_width=32"],
    # BigGAN's nets narrowed the same way: 32 maps in every G block (4 x width 8) and in D (the preset: 384, 192).
    "bw8": ["generator.width=8", "discriminator.width=32", "discriminator.max_width=32"],
}


def preset_overrides(spec: str) -> list[str]:
    """model=<preset> and its variants' overrides, for a spec such as sngan_resnet+w32+diffaug."""
    name, *variants = spec.split("+")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant '{unknown[0]}' in {spec}; choose from: {', '.join(VARIANTS)}")
    return [f"model={name}", *(o for v in variants for o in VARIANTS[v])]


def dataset_overrides(name, mnist_root):
    return ["dataset=digits"] if name == "digits" else ["dataset=folder", f"dataset.root={mnist_root}"]


def run_overrides(preset, data, mnist_root, steps, ckpt_every=0):
    return [*preset_overrides(preset), *dataset_overrides(data, mnist_root), f"trainer.steps={steps}",
            f"trainer.sample_every={steps}", f"trainer.ckpt_every={ckpt_every}", "trainer.keep_checkpoints=0",
            "trainer.progress=false", "trainer.objective=none"]


def export_halves(data, mnist_root, folder: Path) -> tuple[Path, Path, int]:
    """The data set's images at the training resolution, as PNGs in class folders: halves A and B."""
    from gan_cli import registry

    node = dict(compose(dataset_overrides(data, mnist_root)).dataset)
    source = registry.build("dataset", node, batch_size=1, device=torch.device("cpu"), seed=0)
    images, labels = source.images.numpy(), source.labels.numpy()
    halves = folder / "half_a", folder / "half_b"
    for c in np.unique(labels):
        for i, index in enumerate(np.flatnonzero(labels == c)):
            target = halves[i % 2] / str(c) / f"{index:05d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index, 0]).save(target)
    return halves[0], halves[1], sum(1 for _ in halves[0].rglob("*.png"))


def scores(options):
    from gan_cli.evaluate import evaluate, parse_args

    result = evaluate(parse_args(options))
    return result["metrics"], result.get("classifier_test_accuracy")


def eval_options(half_b, count, cache, out, per_class=False, metrics=None):
    metrics = metrics or ("[fid,pr,is,accuracy,intra_fid]" if per_class else "[fid,pr,is]")
    return [f"real={half_b}", f"cache_dir={cache}", "progress=false", f"num_samples={count}",
            f"metrics={metrics}", f"out={out}"]


def cpu_per_step(preset, data, mnist_root) -> float:
    """CPU seconds per G step of a preset without the fixed costs of a run (setup, the final grid and
    checkpoint): after a 3-step warm-up, the difference between runs of 1 and 1 + k steps, k growing until
    that difference is >= 3 CPU seconds (for a fast preset 10 steps are lost in the noise of the fixed costs)."""
    from gan_cli.train import train

    with tempfile.TemporaryDirectory() as tmp:
        train(compose(run_overrides(preset, data, mnist_root, 3)), Path(tmp) / "warm-up")

        def cpu_of(steps):
            start = time.process_time()
            train(compose(run_overrides(preset, data, mnist_root, steps)), Path(tmp) / f"calibration-{steps}")
            return time.process_time() - start

        fixed, k = cpu_of(1), 10
        while (extra := cpu_of(1 + k) - fixed) < 3 and k < 10_000:
            k *= 4
        return max(extra, 1e-3) / k


def finished_run(run_dir: Path) -> dict | None:
    """The steps and seconds of a finished run kept by an earlier run of this benchmark (None if there is
    none): from the benchmark.json it writes beside the run, else from the run's own metrics.json (its wall
    seconds; its CPU seconds then unknown)."""
    ours, theirs = run_dir / "benchmark.json", run_dir / "metrics.json"
    if ours.is_file():
        return json.loads(ours.read_text())
    if theirs.is_file() and (m := json.loads(theirs.read_text()))["status"] == "finished":
        return {"steps": m["steps"], "cpu_s": None, "wall_s": m["wall_s"]}
    return None


def run_one(preset, data, mnist_root, budget, work: Path, half_b, count, threads, keep: Path | None = None,
            curve: int = 0, reuse: bool = False):
    """Calibrate, train for the budget, score; in a process of its own with `threads` threads. The run
    folder goes under `keep` when given (for figures drawn from the trained nets), else into `work`. With
    curve=K the run also saves a checkpoint at every K-th of its steps and each is scored (FID only). With
    reuse, a finished run already in its folder is scored without training."""
    from gan_cli.train import train

    torch.set_num_threads(threads)
    run_dir = (keep or work) / f"{data}-{preset}"
    kept = finished_run(run_dir) if reuse else None
    if kept:
        steps, cpu, wall = kept["steps"], kept["cpu_s"], kept["wall_s"]
        every = steps // curve if curve > 1 and steps >= curve else 0
        result = {"grid": run_dir / "samples" / f"step_{steps:07d}.png"}
    else:
        steps = max(1, int(budget / cpu_per_step(preset, data, mnist_root)))
        every = steps // curve if curve > 1 and steps >= curve else 0
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        result = train(compose(run_overrides(preset, data, mnist_root, steps, every)), run_dir)
        cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
        (run_dir / "benchmark.json").write_text(json.dumps({"steps": steps, "cpu_s": cpu, "wall_s": wall}))
    metrics, _ = scores(["ckpt=" + str(run_dir), *eval_options(half_b, count, work / f"cache-{data}",
                                                                   work / f"eval-{data}-{preset}.json",
                                                                   preset.split("+")[0] in CLASS_CONDITIONAL)])
    fid_curve = []  # (step, FID) of the checkpoints saved on the way, then of the end
    for step in (every * i for i in range(1, curve)) if every else ():
        point, _ = scores([f"ckpt={run_dir}/checkpoints/step_{step:07d}.pt", *eval_options(
            half_b, count, work / f"cache-{data}", work / f"eval-{data}-{preset}-{step}.json", metrics="[fid]")])
        fid_curve.append((step, point["fid"]))
    return {"preset": preset, "data": data, "steps": steps, "cpu_s": cpu, "wall_s": wall, "metrics": metrics,
            "grid": str(result["grid"]), "threads": threads,
            "fid_curve": fid_curve + [(steps, metrics["fid"])] if fid_curve else []}


def grid_figure(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(2.6 * len(rows), 5.2)  # inches
    fig, axes = plt.subplots(1, len(rows), figsize=(width, 3.2))
    for ax, row in zip(np.atleast_1d(axes), rows):
        ax.imshow(Image.open(row["grid"]).convert("RGB"))
        ax.set_title(f"{row['preset']}\nFID {row['metrics']['fid']:.1f}, {row['steps']} steps", fontsize=9)
        ax.axis("off")
    fig.suptitle(textwrap.fill(title, width=int(width * 14)), fontsize=9)  # ~14 characters an inch
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=150, help="CPU seconds of training per run")
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--data", nargs="+", default=["digits", "mnist"], choices=["digits", "mnist"])
    parser.add_argument("--mnist", type=Path, default=MNIST, help="MNIST images in one folder per class")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--quick", action="store_true", help="10 CPU seconds per run, digits only")
    parser.add_argument("--out", type=Path, default=RESULTS / "image_quality.md")
    parser.add_argument("--keep", type=Path, help="keep the run folders (checkpoints, grids) under this folder")
    parser.add_argument("--reuse", action="store_true",
                        help="score the finished runs already under --keep instead of training them again")
    parser.add_argument("--curve", type=int, default=0, metavar="K",
                        help="also score each run after every K-th of its steps (FID only): how FID moves with steps")
    parser.add_argument("--title", default="Sample quality after a fixed CPU budget", help="the section heading")
    args = parser.parse_args()
    if args.quick:
        args.budget, args.data = 10, ["digits"]
    command = "python benchmarks/image_quality.py" + (" --quick" if args.quick else f" --budget {args.budget:g}")
    if args.data != ["digits", "mnist"] and not args.quick:
        command += " --data " + " ".join(args.data)
    if args.presets != PRESETS:
        command += " --presets " + " ".join(args.presets)
    if args.curve:
        command += f" --curve {args.curve}"
    notes = []
    if "mnist" in args.data and not args.mnist.is_dir():
        args.data = [d for d in args.data if d != "mnist"]
        notes.append(f"MNIST left out: no folder {args.mnist.name} here (--mnist <folder> points to one).")
    torch.set_num_threads(max(1, (torch.get_num_threads() // args.jobs)))
    where = machine()
    lines = [
        f"## {args.title}",
        "",
        f"`{command}`; {where}; {args.jobs} run{'s' if args.jobs > 1 else ''} at a time, one thread each. "
        "Every run trains for "
        f"{args.budget:g} CPU seconds (the step count comes from a calibration run of the preset), then gan-eval "
        "scores as many samples as half A holds against half B with the classifier backbone. The floor: half A "
        "against half B, the FID of a perfect generator at this sample size.",
        "",
        *notes,
    ]
    if args.keep:  # a run folder left by an earlier run would fail its job only after the others have trained
        stale = [folder for folder in (args.keep / f"{data}-{preset}" for data in args.data for preset in args.presets)
                 if folder.exists() and not (args.reuse and finished_run(folder))]
        if stale:
            raise SystemExit(f"{stale[0]} exists (from an earlier run of this benchmark"
                             f"{', unfinished' if args.reuse else ''}); remove it, keep the runs elsewhere with "
                             f"--keep{'' if args.reuse else ', or score the finished ones with --reuse'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        floors, jobs = {}, []
        for data in args.data:
            half_a, half_b, count = export_halves(data, args.mnist, work / f"halves-{data}")
            # The floor, measured first: it also trains (and caches) the data set's classifier.
            start = time.perf_counter()
            metrics, accuracy = scores([f"fake={half_a}", *eval_options(half_b, count, work / f"cache-{data}",
                                                                         work / f"eval-{data}-floor.json")])
            floors[data] = (metrics, accuracy, count, time.perf_counter() - start)
            print(f"{data}: floor FID {metrics['fid']:.3f} ({count} images a side, classifier "
                  f"{100 * accuracy:.1f}%)", flush=True)
            jobs += [(preset, data, args.mnist, args.budget, work, half_b, count, 1, args.keep, args.curve,
                      args.reuse) for preset in args.presets]
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_one, *job) for job in jobs]):
                row = future.result()
                results.append(row)
                with args.out.with_suffix(".runs.jsonl").open("a") as f:  # each run kept as it finishes
                    f.write(json.dumps({k: v for k, v in row.items() if k != "grid"}) + "\n")
                print(f"{row['data']:6s} {row['preset']:8s} {row['steps']:5d} steps, {row['cpu_s'] or 0:.0f} CPU s: "
                      f"FID {row['metrics']['fid']:.2f}", flush=True)

        for data in args.data:
            metrics, accuracy, count, _ = floors[data]
            rows = sorted((r for r in results if r["data"] == data), key=lambda r: args.presets.index(r["preset"]))
            name = "digits (scikit-learn, 1,797 images)" if data == "digits" else f"MNIST test images ({args.mnist.name})"
            figure = args.out.parent / f"{args.out.stem}_{data}.png"
            grid_figure(rows, figure, f"{name}: final samples after {args.budget:g} CPU s per run; {where}")
            table_rows = [["real half A (the floor)", "", "", f"{metrics['fid']:.2f}", f"{metrics['precision']:.3f}",
                           f"{metrics['recall']:.3f}", f"{metrics['is_mean']:.2f}", "", "", ""]]
            for r in rows:
                m = r["metrics"]
                shown_root = os.path.relpath(args.mnist, Path(__file__).parents[1])
                run = " ".join(run_overrides(r["preset"], data, shown_root, r["steps"])[:-4])
                class_accuracy = f"{100 * m['accuracy']:.1f}" if "accuracy" in m else ""
                if "accuracy" in m and r["preset"].split("+")[0] in ("acgan", "sngan_projection"):
                    class_accuracy += " (goal > 90: " + ("met)" if m["accuracy"] > 0.9 else "missed)")
                intra = f"{m['intra_fid']:.2f}" if "intra_fid" in m else ""
                seconds = f"{r['cpu_s']:.0f}" if r["cpu_s"] is not None else f"({r['wall_s']:.0f} wall)"
                table_rows.append([f"`{r['preset']}`", r["steps"], seconds, f"{m['fid']:.2f}",
                                   f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['is_mean']:.2f}",
                                   class_accuracy, intra, f"`gan-train {run}`"])
                if args.curve:
                    table_rows[-1].insert(-1, ", ".join(f"{fid:.1f}" for _, fid in r.get("fid_curve", [])))
            if args.curve:
                table_rows[0].insert(-1, "")
            lines += [
                f"### {name}",
                "",
                f"{count} samples against half B ({count} or so real images); classifier test accuracy "
                f"{100 * accuracy:.1f}% on its held-out tenth of half B.",
                "",
                *table(["preset", "G steps", "CPU s", "FID (classifier)", "precision", "recall", "IS",
                        "class accuracy %", "intra-class FID", *(["FID at each " + ("quarter" if args.curve == 4
                        else f"1/{args.curve}") + " of the steps"] if args.curve else []), "run"], table_rows),
                "",
                f"![{data} samples]({args.out.parent.name}/{figure.name})",
                "",
            ]
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"command": command, "machine": where, "floors": {d: f[0] for d, f in floors.items()},
         "runs": [{k: v for k, v in r.items() if k != "grid"} for r in results]}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
