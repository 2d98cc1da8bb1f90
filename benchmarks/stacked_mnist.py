"""Mode coverage on Stacked MNIST (1,000 modes) beside the published rows: DCGAN, DCGAN with its D at a quarter
of the width (the setting in which the unrolled-GAN and VEEGAN papers saw DCGAN collapse), DCGAN with PacGAN's
packing (also with a moving average of G, G_ema), RpGAN + R1 + R2 on the DCGAN nets, and R3GAN (the CPU preset's
one width, and a width a stage).

    python benchmarks/stacked_mnist.py                      3 seeds x 7 settings, 1,500 CPU seconds of training each
    python benchmarks/stacked_mnist.py --table-only         the report again from the stored runs
    python benchmarks/stacked_mnist.py --steps 40 --seeds 0 --samples 1000 --out /tmp/smoke   a smoke run

Stacked MNIST is built from the MNIST test images (dataset.split=test; --root, default ../shared/data/mnist-t10k).
Every setting gets the same CPU budget (--budget seconds; its steps = budget / its seconds a step, measured
once by timing 5 and 25 steps of it on an otherwise idle machine and kept in <out>/stacked_mnist.calibration.json;
--steps N gives every setting N steps instead). A run trains at batch 64 on one thread (two runs at a time, seed 0
of every setting first), measuring the modes of --eval-samples samples every --steps / 10 steps
(trainer.eval_every, for the figure), then `gan-eval metrics=[modes] num_samples=--samples` counts its modes and
KL(p || uniform) as PacGAN does (26,000 samples).
Each finished run is appended to <out>/stacked_mnist.runs.jsonl and the report is rewritten, so the benchmark
can be stopped at any time and continued later, even from a fresh clone: stored runs of the same steps are kept.
Writes <out>/stacked_mnist.md, .json, .png (modes covered against steps, mean over seeds) and _digits.png
(each channel's share of each digit). The report splits each
run's KL into its channels' digit skews and their dependence (gan-eval's channel_kl, between_channels_kl), and
sets real stacks beside the runs: the floor a perfect G would reach with this many samples and this classifier.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, machine, run_command, table  # noqa: E402

HERE = Path(__file__).parent
SETTINGS = {  # name -> the gan-train overrides beside dataset=stacked_mnist
    "dcgan": ["model=dcgan"],
    "dcgan, D width 16": ["model=dcgan", "discriminator.width=16"],
    "dcgan, pack=2": ["model=dcgan", "discriminator.pack=2"],
    "dcgan, pack=2, G_ema": ["model=dcgan", "discriminator.pack=2", "trainer.g_ema=0.999"],
    "RpGAN + R1 + R2, dcgan nets": ["model=dcgan", "loss=relativistic", "loss.r1_gamma=0.05", "loss.r2_gamma=0.05",
                                    "loss.gamma_end_factor=0.1", "optimizer.betas=[0.0,0.9]"],
    "r3gan": ["model=r3gan"],
    "r3gan, widths 128-64-32-16": ["model=r3gan", "generator.width=[128,64,32,16]",
                                   "discriminator.width=[128,64,32,16]"],
}
# Settings that differ from another only by a moving average of G's weights (one lerp a step) take its steps.
SAME_STEPS = {"dcgan, pack=2, G_ema": "dcgan, pack=2"}
PUBLISHED = [  # (setting, modes, KL, source)
    ("DCGAN", "99", "3.40", "PacGAN (Lin et al. 2018), Table 2"),
    ("VEEGAN", "150", "2.95", "PacGAN, Table 2"),
    ("PacDCGAN2", "1000", "0.06", "PacGAN, Table 2"),
    ("RpGAN + R1 + R2", "1000", "0.078", "Huang et al. 2024"),
    ("R3GAN", "1000", "about 0.03", "Huang et al. 2024"),
]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def train_args(name, seed, args, steps, run) -> list:
    return [BIN / "gan-train", *SETTINGS[name], "dataset=stacked_mnist", f"dataset.root={args.root}",
            "dataset.split=test", f"seed={seed}", f"trainer.steps={steps}", "trainer.batch_size=64",
            "trainer.objective=none", "trainer.progress=false", f"hydra.run.dir={run}"]


def steps_of(name, args, env) -> int:
    """--steps, or the steps --budget CPU seconds buy this setting: timed once (5 and 25 steps, the
    difference over 20, so a run's fixed costs do not count) and kept beside the results."""
    if args.steps:
        return args.steps
    name = SAME_STEPS.get(name, name)
    record = args.out / "stacked_mnist.calibration.json"
    seconds_a_step = json.loads(record.read_text()) if record.exists() else {}
    if name not in seconds_a_step:
        seconds = {}
        for steps in (5, 25):
            run = args.work / f"calibration-{slug(name)}-{steps}"
            shutil.rmtree(run, ignore_errors=True)  # what an interrupted calibration left
            start = time.perf_counter()
            run_command(*train_args(name, 0, args, steps, run), "trainer.sample_every=0", env=env)
            seconds[steps] = time.perf_counter() - start
            shutil.rmtree(run, ignore_errors=True)
        seconds_a_step[name] = max(seconds[25] - seconds[5], 0.01) / 20
        record.write_text(json.dumps(seconds_a_step, indent=1) + "\n")
    return max(10, int(args.budget / seconds_a_step[name]))


def one_run(name, seed, steps, args, env) -> dict:
    """Trains and counts one run in the work folder (an interrupted run there starts afresh)."""
    run = args.work / f"{slug(name)}-seed{seed}-{steps}-steps"
    report = run / "eval-modes.json"
    shutil.rmtree(run, ignore_errors=True)
    start = time.perf_counter()
    run_command(*train_args(name, seed, args, steps, run), f"trainer.eval_every={max(1, steps // 10)}",
                "trainer.eval_metric=modes", f"trainer.eval_samples={args.eval_samples}",
                f"trainer.sample_every={steps}", env=env)
    seconds = time.perf_counter() - start
    run_command(BIN / "gan-eval", f"ckpt={run}", "metrics=[modes]", f"num_samples={args.samples}",
                f"out={report}", "progress=false", env=env)
    data = json.loads(report.read_text())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    curve = [(e.step, e.value) for e in events.Scalars("eval/modes")] if "eval/modes" in events.Tags()["scalars"] \
        else []
    m = data["metrics"]
    return {"name": name, "seed": seed, "steps": steps, "modes": m["modes"], "kl": m["reverse_kl"],
            "channel_kl": m.get("channel_kl"), "between_channels_kl": m.get("between_channels_kl"),
            "digit_shares": m.get("digit_shares"),
            "seconds": seconds, "accuracy": data.get("classifier_test_accuracy"), "curve": curve}


def floor(args, env) -> dict:
    """The metric on real stacks (--samples of them from the MNIST test digits, written as PNGs and read by
    gan-eval fake=<folder>): what a perfect G would score, sampling noise and classifier errors included.
    Kept in <out>/stacked_mnist.floor.json."""
    record = args.out / "stacked_mnist.floor.json"
    kept = json.loads(record.read_text()) if record.exists() else {}
    if kept.get("samples") == args.samples:
        return kept
    from PIL import Image

    from gan_cli.data.stacked import digits_of, epoch_triples, stack

    folder = Path(tempfile.mkdtemp(prefix="real-stacks-", dir=args.work))  # two runs started at once do not clash
    digits, labels = digits_of(args.root, "test", 32)
    images, _ = stack(digits, labels, epoch_triples(len(digits), args.samples, 12345, 0))
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    report = folder.with_suffix(".json")
    run_command(BIN / "gan-eval", f"fake={folder}", "real=stacked_mnist", f"real_root={args.root}", "real_split=test",
                "metrics=[modes]", f"num_samples={args.samples}", f"out={report}", "progress=false", env=env)
    m = json.loads(report.read_text())["metrics"]
    shutil.rmtree(folder, ignore_errors=True)
    report.unlink()
    result = {"samples": args.samples, "modes": m["modes"], "kl": m["reverse_kl"], "channel_kl": m["channel_kl"],
              "between_channels_kl": m["between_channels_kl"], "digit_shares": m["digit_shares"]}
    record.write_text(json.dumps(result, indent=1) + "\n")
    return result


def plot(rows, path: Path, eval_samples: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in SETTINGS:
        curves = [r["curve"] for r in rows if r["name"] == name and r["curve"]]
        if not curves:
            continue
        steps = [s for s, _ in curves[0]]
        means = [statistics.fmean(c[i][1] for c in curves if len(c) > i) for i in range(len(steps))]
        ax.plot(steps, means, marker="o", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(f"modes covered by {eval_samples:,} samples (of 1,000)")
    ax.set_title("Stacked MNIST: modes against steps (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_digits(rows, real, path: Path, samples: int) -> None:
    """Each channel's share of each digit (mean over seeds) for the settings that keep their modes (KL < 1),
    beside the real stacks': where a channel's part of the KL comes from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    lines = [(name, [r["digit_shares"] for r in rows if r["name"] == name and r.get("digit_shares")])
             for name in SETTINGS if all(r["kl"] < 1 for r in rows if r["name"] == name)]
    lines = [(name, shares) for name, shares in lines if shares]
    if real and real.get("digit_shares"):
        lines.append(("real stacks", [real["digit_shares"]]))
    for c, (ax, channel) in enumerate(zip(axes, ("red", "green", "blue"))):
        for name, shares in lines:
            mean = [100 * statistics.fmean(s[c][d] for s in shares) for d in range(10)]
            label = name if name == "real stacks" else f"{name} ({len(shares)} seed{'s' * (len(shares) > 1)})"
            ax.plot(range(10), mean, marker="o", label=label if c == 0 else None,
                    **({"color": "black", "linewidth": 2.5} if name == "real stacks" else {}))
        ax.axhline(10, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(10))
        ax.set_xlabel(f"digit in the {channel} channel")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"share of {samples:,} samples (%)")
    fig.suptitle("Stacked MNIST: how often each digit is drawn, channel by channel (mean over seeds)")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=1500, help="CPU seconds of training per run")
    parser.add_argument("--steps", type=int, default=0, help="steps per run (0: as many as --budget buys)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--samples", type=int, default=26_000, help="samples gan-eval counts the modes of")
    parser.add_argument("--eval-samples", type=int, default=5_000, help="samples of each count during training")
    parser.add_argument("--root", type=Path, default=HERE.parents[1] / "shared" / "data" / "mnist-t10k")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "stacked_mnist")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--table-only", action="store_true", help="redraw the report from the stored runs; train none")
    args = parser.parse_args()
    if not (args.root / "MNIST" / "raw").is_dir():
        raise SystemExit(f"no MNIST files under {args.root}/MNIST/raw: pass --root <folder holding MNIST/raw>")
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = {name: steps_of(name, args, env) for name in args.settings}  # timed one at a time, before the runs
    args.floor = floor(args, env)  # no training: --table-only measures it too where it is missing
    store = args.out / "stacked_mnist.runs.jsonl"
    stored = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    rows = {(r["name"], r["seed"]): r for r in stored if r["name"] in steps and r["steps"] == steps[r["name"]]
            and r["seed"] in args.seeds}
    jobs = [(name, seed, steps[name]) for seed in args.seeds for name in args.settings if (name, seed) not in rows]
    if args.table_only:
        jobs = []
    print(f"{len(rows)} runs stored, {len(jobs)} to train", flush=True)
    lock = threading.Lock()

    def train(job):
        row = one_run(*job, args, env)
        with lock:  # kept as soon as it is counted, and the report redrawn
            rows[(row["name"], row["seed"])] = row
            with store.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{row['name']}, seed {row['seed']}: {row['modes']} modes, KL {row['kl']:.3f} "
                  f"({row['steps']} steps, {row['seconds']:.0f} s)", flush=True)
            report(list(rows.values()), args, steps)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(train, jobs))
    if rows:
        print("\n".join(report(list(rows.values()), args, steps)))


def report(rows, args, steps) -> list:
    """Writes <out>/stacked_mnist.md, .json and .png from the runs counted so far; returns the Markdown lines."""
    def mean_sd(values, digits):
        spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
        return f"{statistics.fmean(values):.{digits}f}{spread}"

    def split(r):  # the KL's parts: each channel's digit skew, then the channels' dependence
        if not r.get("channel_kl"):
            return "-"
        return f"{' + '.join(f'{k:.3f}' for k in r['channel_kl'])} + {r['between_channels_kl']:.3f}"

    measured = []
    for name in args.settings:
        own = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        if not own:
            measured.append((name, "", "", "not run yet", "", steps[name], ""))
            continue
        measured.append((name, mean_sd([r["modes"] for r in own], 1), mean_sd([r["kl"] for r in own], 3),
                         ", ".join(f"{r['seed']}: {r['modes']} / {r['kl']:.3f}" for r in own),
                         "; ".join(split(r) for r in own), steps[name],
                         f"{statistics.fmean(r['seconds'] for r in own):.0f}"))
    real = args.floor
    if real:
        measured.append((f"real stacks ({real['samples']:,} of the MNIST test digits: the floor)", str(real["modes"]),
                         f"{real['kl']:.3f}", "", split(real), "", ""))
    accuracy = rows[0]["accuracy"]
    lines = ["# Stacked MNIST: modes covered (of 1,000) and KL(p || uniform)", "",
             f"Machine: {machine('cpu')}; one thread a run, two runs at a time. Stacked MNIST from the MNIST test "
             f"images; {f'{args.steps} steps' if args.steps else f'{args.budget:.0f} CPU seconds of training'} at "
             f"batch 64 per run, seeds {', '.join(map(str, args.seeds))}; modes and KL "
             f"of {args.samples:,} samples read by the digit classifier (test accuracy "
             f"{100 * accuracy:.2f}% on held-out digits).", "",
             *table(("setting", "modes", "KL", "per seed (seed: modes / KL)",
                     "KL = channels R + G + B + between (per seed)", "steps", "train s"), measured), "",
             "Published (other nets, 128,000 stacks of the MNIST training images, longer training):", "",
             *table(("setting", "modes", "KL", "source"), PUBLISHED), "",
             "![modes against steps](stacked_mnist.png)", "",
             "![each channel's share of each digit](stacked_mnist_digits.png)"]
    (args.out / "stacked_mnist.md").write_text("\n".join(lines) + "\n")
    (args.out / "stacked_mnist.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / "stacked_mnist.png", args.eval_samples)
    plot_digits(rows, args.floor, args.out / "stacked_mnist_digits.png", args.samples)
    return lines


if __name__ == "__main__":
    main()
