"""How training speed and memory grow with batch size and resolution, and what the WGAN-GP penalty and
n_critic cost.

    python benchmarks/scaling.py              # 3 repetitions of every setting
    python benchmarks/scaling.py --quick      # one short repetition

Every setting runs `gan-train` (dataset=digits, upsampled to the resolution) in a fresh process of its
own, so that its peak memory is its own: first a 3-step warm-up, then a timed run whose length is
scaled to take about the same time for every setting. Sample grids and periodic checkpoints are off
(trainer.sample_every=0 ckpt_every=0): this measures the training steps. Reported: G steps/s and
images/s (real images through D per second: batch x n_critic x steps/s), medians over the repetitions,
and the peak resident memory of the process (on CUDA also the peak memory torch allocated on the GPU).

The settings:
  batch     model=dcgan at 32x32, trainer.batch_size 16, 32, 64, 128, 256
  resolution model=dcgan, batch 64, dataset.resolution 16, 32, 64
  loss      at 32x32, batch 64: dcgan; dcgan with n_critic=5; wgan (clipping, RMSProp, n_critic 5);
            wgan_gp; wgan_gp without its penalty (loss=wgan loss.clip=0: the same critic, optimizer and
            n_critic, no penalty); wgan_gp with n_critic=1
Writes benchmarks/results/scaling.md and scaling.png.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, compose, machine, peak_rss_mb, table  # noqa: E402

SETTINGS = {
    # 32x32, batch 64 is the same run in every group (measured once).
    "batch": [(f"batch {b}", ["model=dcgan"] + ([f"trainer.batch_size={b}"] if b != 64 else []))
              for b in (16, 32, 64, 128, 256)],
    "resolution": [(f"{r}x{r}", ["model=dcgan"] + ([f"dataset.resolution={r}"] if r != 32 else []))
                   for r in (16, 32, 64)],
    "loss": [
        ("dcgan (n_critic 1)", ["model=dcgan"]),
        ("dcgan, n_critic 5", ["model=dcgan", "trainer.n_critic=5"]),
        ("wgan (clipping, n_critic 5)", ["model=wgan"]),
        ("wgan_gp (n_critic 5)", ["model=wgan_gp"]),
        ("wgan_gp without the penalty", ["model=wgan_gp", "loss=wgan", "loss.clip=0"]),
        ("wgan_gp, n_critic 1", ["model=wgan_gp", "trainer.n_critic=1"]),
    ],
}


def worker(overrides, steps, device):
    """Runs in its own process: a warm-up, then the timed run. Prints one JSON line."""
    from gan_cli.train import train

    fixed = ["trainer.sample_every=0", "trainer.ckpt_every=0", "trainer.progress=false", "trainer.objective=none",
             f"trainer.device={device}"]
    with tempfile.TemporaryDirectory() as tmp:
        train(compose([*overrides, *fixed, "trainer.steps=3"]), Path(tmp) / "warm-up")
        cfg = compose([*overrides, *fixed, f"trainer.steps={steps}"])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        train(cfg, Path(tmp) / "timed")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    result = {"steps": steps, "seconds": seconds, "rss_mb": peak_rss_mb(), "batch_size": cfg.trainer.batch_size,
              "n_critic": cfg.trainer.n_critic}
    if device.startswith("cuda"):
        result["gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result), flush=True)


def steps_for(overrides, base):
    """A run length that takes about the same time for every setting (cost ~ batch x pixels x n_critic)."""
    cfg = compose(overrides)
    cost = cfg.trainer.batch_size / 64 * (cfg.dataset.resolution / 32) ** 2 * (1 + cfg.trainer.n_critic) / 2
    return max(5, round(base / cost))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--base-steps", type=int, default=60, help="steps of the 32x32 batch-64 dcgan run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="one repetition of 15-step runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.md")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[1:], int(args.worker[0]), args.device)
    if args.quick:
        args.reps, args.base_steps = 1, 15
    command = "python benchmarks/scaling.py" + (" --quick" if args.quick else "") + (
        f" --device {args.device}" if args.device != "cpu" else "")
    where = machine(args.device)

    measured = {}
    jobs = {tuple(overrides): name for settings in SETTINGS.values() for name, overrides in settings}
    if args.quick:  # the quick run leaves out the middle batch sizes
        jobs = {k: v for k, v in jobs.items() if not any(b in k for b in ("trainer.batch_size=32", "trainer.batch_size=128"))}
        for group in SETTINGS:
            SETTINGS[group] = [(n, o) for n, o in SETTINGS[group] if tuple(o) in jobs]
    for rep in range(args.reps):
        for overrides, name in jobs.items():
            steps = steps_for(overrides, args.base_steps)
            out = subprocess.run(
                [sys.executable, __file__, "--device", args.device, "--worker", str(steps), *overrides],
                capture_output=True, text=True,
            )
            if out.returncode:
                sys.exit(f"{name} failed:\n{out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            measured.setdefault(overrides, []).append(result)
            rate = result["steps"] / result["seconds"]
            print(f"rep {rep + 1}/{args.reps} {name:30s} {rate:6.2f} steps/s, "
                  f"{result['rss_mb']:.0f} MiB", flush=True)

    def summary(overrides):
        runs = measured[tuple(overrides)]
        rate = statistics.median(r["steps"] / r["seconds"] for r in runs)
        images = rate * runs[0]["batch_size"] * runs[0]["n_critic"]
        memory = max(r["rss_mb"] for r in runs)
        gpu = max(r.get("gpu_mb", 0) for r in runs)
        return rate, images, memory, gpu, runs

    gpu = args.device.startswith("cuda")
    sections, curves = [], {}
    for group, settings in SETTINGS.items():
        rows = []
        for name, overrides in settings:
            rate, images, memory, gpu_mb, runs = summary(overrides)
            curves.setdefault(group, []).append((name, rate, images, memory, gpu_mb))
            row = [name, f"{rate:.2f}", f"{images:.0f}", f"{1000 / rate:.0f}", f"{memory:.0f}"]
            if gpu:
                row.append(f"{gpu_mb:.0f}")
            rows.append(row + [f"`gan-train {' '.join(overrides)}` ({runs[0]['steps']} steps)"])
        header = ["setting", "G steps/s", "real images/s", "ms per G step", "peak RSS MiB"]
        sections.append((group, table(header + (["peak GPU MiB"] if gpu else []) + ["run"], rows)))

    loss = {name: rate for name, rate, *_ in curves["loss"]}
    penalty = loss["wgan_gp without the penalty"] / loss["wgan_gp (n_critic 5)"]
    critic = loss["dcgan (n_critic 1)"] / loss["dcgan, n_critic 5"]
    lines = [
        "## Scaling with batch size and resolution; the cost of the gradient penalty and of n_critic",
        "",
        f"`{command}`; {where}; each setting in a fresh process, medians of {args.reps} run(s); peak RSS is "
        "the whole process (Python, torch and the data included).",
        "",
    ]
    titles = {"batch": "Batch size (dcgan, 32x32)", "resolution": "Resolution (dcgan, batch 64)",
              "loss": "Loss and n_critic (32x32, batch 64)"}
    for group, rows in sections:
        lines += [f"### {titles[group]}", "", *rows, ""]
    lines += [
        f"The gradient penalty makes a WGAN-GP G step {penalty:.2f}x as long as the same critic without it "
        f"(it adds a double-backward pass through the critic on every critic step); n_critic=5 makes a DCGAN "
        f"G step {critic:.2f}x as long as n_critic=1.",
        "",
        f"![scaling]({args.out.parent.name}/{args.out.with_suffix('.png').name})",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    plot(curves, args.out.with_suffix(".png"), where, gpu)
    raw = {" ".join(o): runs for o, runs in measured.items()}
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": where, "runs": raw}))
    print("\n".join(lines))


def plot(curves, path, where, gpu):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, group in ((axes[0], "batch"), (axes[1], "resolution")):
        xs = [int(c[0].split()[-1].split("x")[0]) for c in curves[group]]
        images = [c[2] for c in curves[group]]
        memory = [c[4] if gpu else c[3] for c in curves[group]]
        ax.plot(xs, images, "o-", color="tab:blue")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        if group == "resolution":
            ax.set_yscale("log")
        ax.set_xlabel("batch size" if group == "batch" else "resolution (side in pixels)")
        ax.set_ylabel("real images / s", color="tab:blue")
        twin = ax.twinx()
        twin.plot(xs, memory, "s--", color="tab:red")
        twin.set_ylabel("peak GPU MiB" if gpu else "peak RSS MiB", color="tab:red")
        ax.set_title("dcgan, 32x32" if group == "batch" else "dcgan, batch 64")
    names = [c[0] for c in curves["loss"]]
    axes[2].barh(range(len(names)), [1000 / c[1] for c in curves["loss"]], color="tab:gray")
    axes[2].set_yticks(range(len(names)), names, fontsize=8)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("ms per G step")
    axes[2].set_title("loss and n_critic (32x32, batch 64)")
    fig.suptitle(where, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
