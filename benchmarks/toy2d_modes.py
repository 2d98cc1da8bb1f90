"""Mode collapse on the 2-D mixtures: every preset, ring and grid, several seeds, beside PacGAN's rows.

    python benchmarks/toy2d_modes.py                      # the full run: 20,000 steps, 3 seeds
    python benchmarks/toy2d_modes.py --steps 3000 --seeds 0 1 2
    python benchmarks/toy2d_modes.py --quick              # 1,000 steps, one seed: a smoke run

Each run is `gan-train model=<preset> dataset=toy2d dataset.mixture=<mixture> seed=<seed>` with
trainer.steps set to the budget; the metrics are the PacGAN protocol on the run's 2,560 fixed-z
samples at its last step (gan_cli/metrics/toy2d.py). Writes a Markdown table and a PNG of the final
scatter plots (first seed) to --out (default benchmarks/results/).
"""

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from PIL import Image

import gan_cli
from gan_cli.train import register_resolvers, train

# PacGAN (Lin et al. 2018), Table 1 (grid) and its ring experiment: modes / high-quality % / reverse KL.
PUBLISHED = {
    "grid": [("GAN (PacGAN paper)", 17.3, 94.8, 0.70), ("PacGAN4 (PacGAN paper)", 24.8, 93.6, 0.04)],
    "ring": [("GAN (PacGAN paper)", 6.3, 98.2, 0.45), ("PacGAN2 (PacGAN paper)", 7.9, 95.6, 0.07)],
}
PRESETS = ["gan", "dcgan", "lsgan", "wgan", "wgan_gp", "sngan"]
MODES = {"ring": 8, "grid": 25}


def run_one(preset, mixture, seed, steps, folder):
    overrides = [
        f"model={preset}",
        "dataset=toy2d",
        f"dataset.mixture={mixture}",
        f"seed={seed}",
        f"trainer.steps={steps}",
        f"trainer.sample_every={steps}",
        "trainer.ckpt_every=0",
        "trainer.log_every=100",
        "trainer.progress=false",
    ]
    with initialize_config_module(config_module="gan_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    start = time.perf_counter()
    result = train(cfg, folder)
    return result["modes"], time.perf_counter() - start, result["grid"]


def mean_std(values, digits):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, gan-cli {gan_cli.__version__}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20000, help="generator steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--mixtures", nargs="+", default=["ring", "grid"])
    parser.add_argument("--quick", action="store_true", help="1,000 steps and one seed")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 1000, args.seeds[:1]
    register_resolvers()
    args.out.mkdir(parents=True, exist_ok=True)
    # The command that reproduces the numbers (where the files go does not change them).
    argv, shown_args = sys.argv[1:], []
    while argv:
        arg = argv.pop(0)
        if arg == "--out":
            argv = argv[1:]
        elif not arg.startswith("--out="):
            shown_args.append(arg)
    command = "python benchmarks/toy2d_modes.py " + " ".join(shown_args)

    rows, pictures = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mixture in args.mixtures:
            for preset in args.presets:
                results = []
                for seed in args.seeds:
                    folder = Path(tmp) / f"{mixture}-{preset}-{seed}"
                    metrics, seconds, grid = run_one(preset, mixture, seed, args.steps, folder)
                    results.append((metrics, seconds))
                    print(f"{mixture:4s} {preset:8s} seed {seed}: {metrics['modes']:2d}/{MODES[mixture]} modes, "
                          f"{metrics['hq_percent']:5.1f}% HQ, reverse KL {metrics['reverse_kl']:.3f} ({seconds:.0f} s)",
                          flush=True)
                    if seed == args.seeds[0]:
                        pictures[(mixture, preset)] = np.asarray(Image.open(grid).convert("RGB"))
                rows[(mixture, preset)] = results

    lines = [
        "## Mode collapse on toy2d",
        "",
        f"`{command.strip()}`, {args.steps} generator steps per run, seeds {args.seeds}; {machine()}.",
        "Modes captured / high-quality samples / reverse KL(p || uniform) on 2,560 samples (PacGAN protocol).",
        "",
    ]
    for mixture in args.mixtures:
        lines += [f"### {mixture} ({MODES[mixture]} modes)", "",
                  "| preset | modes | high quality % | reverse KL | s per run |", "| --- | --- | --- | --- | --- |"]
        for preset in args.presets:
            results = rows[(mixture, preset)]
            lines.append(
                f"| `{preset}` | {mean_std([m['modes'] for m, _ in results], 1)} "
                f"| {mean_std([m['hq_percent'] for m, _ in results], 1)} "
                f"| {mean_std([m['reverse_kl'] for m, _ in results], 3)} "
                f"| {statistics.mean(s for _, s in results):.0f} |"
            )
        for name, modes, hq, kl in PUBLISHED[mixture]:
            lines.append(f"| {name} | {modes} | {hq} | {kl} | |")
        lines.append("")
    table = args.out / "toy2d_modes.md"
    table.write_text("\n".join(lines))

    # One figure: a row per mixture, a column per preset (first seed), each scatter shrunk to 240 px.
    tiles = [[Image.fromarray(pictures[(m, p)]).resize((240, 240)) for p in args.presets] for m in args.mixtures]
    figure = Image.new("RGB", (240 * len(args.presets), 240 * len(args.mixtures)), "white")
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            figure.paste(tile, (240 * c, 240 * r))
    figure.save(args.out / "toy2d_modes.png")
    print("\n".join(lines))
    print(f"wrote {table} and {args.out / 'toy2d_modes.png'}")


if __name__ == "__main__":
    main()
