"""Mode collapse on the 2-D mixtures: every preset, ring and grid, several seeds, beside PacGAN's rows.

    python benchmarks/toy2d_modes.py                      # the full run: 20,000 steps, 3 seeds
    python benchmarks/toy2d_modes.py --steps 10000 --jobs 2   # two runs at a time, one thread each
    python benchmarks/toy2d_modes.py --quick              # 1,000 steps, one seed: a smoke run

Each run is `gan-train model=<preset> dataset=toy2d dataset.mixture=<mixture> seed=<seed>` with
trainer.steps set to the budget; the metrics are the PacGAN protocol on the run's 2,560 fixed-z
samples at its last step (gan_cli/metrics/toy2d.py). Writes a Markdown table and a PNG of the final
scatter plots (first seed) to --out (default benchmarks/results/), named by the step budget.

Each finished run is appended to <out>/toy2d_runs.jsonl with a hash of its composed config; a rerun
reuses a stored result only when that hash matches (same preset settings, steps and seed), so an
interrupted benchmark continues where it stopped and a changed preset is trained again.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image

from gan_cli.train import register_resolvers, train

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

# PacGAN (Lin et al. 2018), Table 1 (grid) and its ring experiment: modes / high-quality % / reverse KL.
PUBLISHED = {
    "grid": [("GAN (PacGAN paper)", 17.3, 94.8, 0.70), ("PacGAN4 (PacGAN paper)", 24.8, 93.6, 0.04)],
    "ring": [("GAN (PacGAN paper)", 6.3, 98.2, 0.45), ("PacGAN2 (PacGAN paper)", 7.9, 95.6, 0.07)],
}
PRESETS = ["gan", "dcgan", "lsgan", "wgan", "wgan_gp", "sngan"]
MODES = {"ring": 8, "grid": 25}
WATCH_ONLY = ("eval_every", "eval_metric", "eval_samples")  # trainer keys that never change what a run learns


def compose_run(preset, mixture, seed, steps, extra=()):
    overrides = [
        f"model={preset}",
        "dataset=toy2d",
        f"dataset.mixture={mixture}",
        f"seed={seed}",
        f"trainer.steps={steps}",
        f"trainer.sample_every={steps}",
        "trainer.ckpt_every=0",
        "trainer.log_every=100",
        "trainer.progress=false", "trainer.objective=none",
        *extra,
    ]
    with initialize_config_module(config_module="gan_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    settings = OmegaConf.to_container(cfg)
    settings.pop("hydra", None)
    # Left out of the hash: settings that watch a run without changing what it learns, and the
    # unconditional default; both came after the first stored runs, which equal today's runs.
    for key in WATCH_ONLY:
        settings["trainer"].pop(key, None)
    if settings.get("conditioning") == {"name": "none"}:
        settings.pop("conditioning")
    if settings.get("game") == {"name": "adversarial"}:
        settings.pop("game")
    for key, default in (("schedule", "constant"), ("warmup", 0), ("decay_start", 0)):
        if settings["optimizer"].get(key) == default:
            settings["optimizer"].pop(key)
    # Runs with n_critic > 1 stored before G's update drew fresh z (it reused D's last fakes) are stale.
    if settings["trainer"]["n_critic"] > 1:
        settings["g_step"] = "fresh z"
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return cfg, key


def run_one(preset, mixture, seed, steps, picture_path, threads, extra=()):
    """One training run in a scratch folder; returns its metrics and time, and saves its scatter plot."""
    torch.set_num_threads(threads)
    register_resolvers()
    cfg, key = compose_run(preset, mixture, seed, steps, extra)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(cfg, Path(tmp))
        seconds = time.perf_counter() - start
        if picture_path is not None:
            picture_path.parent.mkdir(parents=True, exist_ok=True)
            Image.open(result["grid"]).save(picture_path)
    return {"preset": preset, "mixture": mixture, "seed": seed, "steps": steps, "config": key,
            "metrics": result["modes"], "seconds": seconds, "threads": threads}


def mean_std(values, digits):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20000, help="generator steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--mixtures", nargs="+", default=["ring", "grid"])
    parser.add_argument("--quick", action="store_true", help="1,000 steps and one seed")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each on its own process")
    parser.add_argument("--table-only", action="store_true", help="write the tables from the stored runs alone")
    parser.add_argument("--fresh", action="store_true", help="train every run again, ignoring the stored ones")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="extra gan-train overrides for every run (to try a setting before a preset takes it)")
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
    # Runs share the cores: with several jobs each gets an equal share of threads.
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else torch.get_num_threads()

    store = args.out / "toy2d_runs.jsonl"
    done = {}
    if store.exists() and not args.fresh:
        for line in store.read_text().splitlines():
            entry = json.loads(line)
            done[(entry["preset"], entry["mixture"], entry["seed"], entry["steps"], entry["config"])] = entry
    # Runs with --set get files of their own, named by the values set (e.g. ..._2000_steps_stddev.md).
    tag = "".join("_" + "".join(ch if ch.isalnum() else "-" for ch in s.split("=", 1)[-1]) for s in args.set)
    pictures_dir = args.out / f"toy2d_scatter_{args.steps}_steps{tag}"
    todo, rows = [], {}
    for mixture in args.mixtures:
        for preset in args.presets:
            for seed in args.seeds:
                _, key = compose_run(preset, mixture, seed, args.steps, args.set)
                # The scatter plot of the first seed run; seed 0's is never replaced by another seed's (a table
                # whose seeds were trained one invocation at a time keeps seed 0's picture).
                picture = pictures_dir / f"{mixture}-{preset}.png"
                if seed != args.seeds[0] or (seed != 0 and picture.exists()):
                    picture = None
                entry = done.get((preset, mixture, seed, args.steps, key))
                if entry is not None and (picture is None or picture.exists()):
                    rows[(mixture, preset, seed)] = entry
                else:
                    todo.append((preset, mixture, seed, args.steps, picture, threads, tuple(args.set)))
    print(f"{len(rows)} runs stored, {len(todo)} to train", flush=True)
    if args.table_only:
        todo = []

    def finished(entry):
        rows[(entry["mixture"], entry["preset"], entry["seed"])] = entry
        with store.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        m = entry["metrics"]
        print(f"{entry['mixture']:4s} {entry['preset']:8s} seed {entry['seed']}: {m['modes']:2d}/{MODES[entry['mixture']]}"
              f" modes, {m['hq_percent']:5.1f}% HQ, reverse KL {m['reverse_kl']:.3f} ({entry['seconds']:.0f} s)", flush=True)

    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_one, *job) for job in todo]):
                finished(future.result())
    else:
        for job in todo:
            finished(run_one(*job))

    lines = [
        "## Mode collapse on toy2d" + (f" with {', '.join(args.set)}" if args.set else ""),
        "",
        f"`{command.strip()}`, {args.steps} generator steps per run, seeds {args.seeds}; {machine()}"
        f"{f', {args.jobs} runs at a time with {threads} thread(s) each' if args.jobs > 1 else ''}.",
        "Modes captured / high-quality samples / reverse KL(p || uniform) on 2,560 samples (PacGAN protocol),",
        "mean ± std over the seeds; the goal: every seed with all modes, >= 95 % high quality, reverse KL <= 0.03.",
        "",
    ]
    for mixture in args.mixtures:
        lines += [f"### {mixture} ({MODES[mixture]} modes)", "",
                  "| preset | modes | high quality % | reverse KL | high quality % per seed | goal met | s per run |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for preset in args.presets:
            done_seeds = [seed for seed in args.seeds if (mixture, preset, seed) in rows]
            if not done_seeds:
                lines.append(f"| `{preset}` | not run | | | | | |")
                continue
            results = [rows[(mixture, preset, seed)]["metrics"] for seed in done_seeds]
            seconds = [rows[(mixture, preset, seed)]["seconds"] for seed in done_seeds]
            per_seed = ", ".join(f"{m['hq_percent']:.1f}" for m in results)
            goal = len(done_seeds) == len(args.seeds) and all(
                m["modes"] == MODES[mixture] and m["hq_percent"] >= 95 and m["reverse_kl"] <= 0.03 for m in results)
            if len(done_seeds) < len(args.seeds):
                per_seed += f" (seeds {done_seeds} only)"
            lines.append(
                f"| `{preset}` | {mean_std([m['modes'] for m in results], 1)} "
                f"| {mean_std([m['hq_percent'] for m in results], 1)} "
                f"| {mean_std([m['reverse_kl'] for m in results], 3)} "
                f"| {per_seed} "
                f"| {'yes' if goal else 'no'} | {statistics.mean(seconds):.0f} |"
            )
        for name, modes, hq, kl in PUBLISHED[mixture]:
            lines.append(f"| {name} | {modes} | {hq} | {kl} | | | |")
        lines.append("")
    name = f"toy2d_modes_{args.steps}_steps{tag}"
    table = args.out / f"{name}.md"
    table.write_text("\n".join(lines))

    # One figure: a row per mixture, a column per preset (first seed), each scatter shrunk to 240 px.
    def tile(m, p):
        path = pictures_dir / f"{m}-{p}.png"
        return Image.open(path).convert("RGB").resize((240, 240)) if path.exists() else Image.new("RGB", (240, 240), "white")

    tiles = [[tile(m, p) for p in args.presets] for m in args.mixtures]
    figure = Image.new("RGB", (240 * len(args.presets), 240 * len(args.mixtures)), "white")
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            figure.paste(tile, (240 * c, 240 * r))
    figure.save(args.out / f"{name}.png")
    print("\n".join(lines))
    print(f"wrote {table} and {args.out / f'{name}.png'}")


if __name__ == "__main__":
    main()
