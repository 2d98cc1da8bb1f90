"""Every benchmark, one after the other, into one Markdown file with tables and plots.

    make bench          = python benchmarks/run_all.py           about 10 hours on a 2-core CPU
    make bench-quick    = python benchmarks/run_all.py --quick   a few minutes: short runs, to check that all works

The full run writes benchmarks/results.md (sections and pictures in benchmarks/results/); the quick
one writes benchmarks/results-quick.md and benchmarks/results-quick/, leaving the full results alone.
--only runs some sections again and --gather none; both then rebuild the Markdown file from every
section file present.

Each section is written by its own script, which can also be run alone (see their docstrings):

  train_speed.py     gan-train beside a plain PyTorch DCGAN loop (pytorch/examples style)
  data_speed.py      images/s of a JPEG folder's DataLoader beside the data cache, and what a DCGAN-64 step consumes
  scaling.py         steps/s and memory against batch size and resolution; cost of the penalty and n_critic
  metric_speed.py    the Frechet distance beside scipy's sqrtm; feature extraction beside torch-fidelity
  toy2d_modes.py     mode collapse on the 2-D mixtures beside PacGAN's rows
  fid_floor.py       the classifier FID of real against real, noise and collapse (real MNIST test images)
  translation.py     Pix2Pix beside L1 alone, CycleGAN beside no translation and CyCADA, on the offline digit demos
  superres.py        bicubic beside SRResNet beside SRGAN, x4 on held-out digits and photos
  probe_invert.py    DCGAN's linear probe on D's features beside a random D and pixels; inversion of
                     held-out MNIST digits (real MNIST test images)
  search_toy2d.py    an Optuna search over model=gan on the toy2d grid, its best setting beside the preset
  stacked_mnist.py   modes of Stacked MNIST (real MNIST test images): DCGAN (full and quarter-width D), packed
                     (with and without G_ema), RpGAN + R1 + R2, R3GAN, beside real stacks (the metric's floor)
  stacked_mnist_judges.py  the same Stacked MNIST samples read by three digit classifiers (CNN, neighbours,
                     perceptron): how much of the KL is the reader's
  class_scale.py     sngan_projection, sagan and biggan (narrowed) after 1,500 CPU seconds on digits and MNIST,
                     BigGAN's truncation curve, and the CPU seconds per step of the full-width presets
  image_quality.py   the classifier FID of each image preset after a fixed CPU budget, with its samples;
                     class accuracy and intra-class FID of the conditional presets; run a second time
                     for acgan and sngan_projection with the longer budget their accuracy goal is set at,
                     a third for DiffAugment on and off with DCGAN, SN-GAN and ResNet nets, and a
                     fourth for ProGAN and StyleGAN2 beside DCGAN

The toy2d runs take hours (every preset, two mixtures, three seeds, up to 20,000 steps each). A run is
stored in results/toy2d_runs.jsonl with a hash of its composed config and is reused while that hash
matches, so `make bench` trains only runs whose preset changed; --fresh trains them all again.
"""

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import machine  # noqa: E402

# The toy2d tables: the budget each preset was measured at (the n_critic=5 presets at the same number of
# critic updates as 10,000 steps of the others).
TOY2D = [("20000", ["gan"]), ("10000", ["gan", "dcgan", "lsgan"]), ("2000", ["wgan", "wgan_gp", "sngan"])]
# The presets with a class-accuracy goal (> 90 %), and the CPU seconds per run it is measured at: the
# projection model with its n_dis = 5 makes about one G step per CPU second, and needs ~1,000 to get there.
CONDITIONAL, CONDITIONAL_BUDGET = ["acgan", "sngan_projection"], "1500"
# DiffAugment on and off for DCGAN, SN-GAN and SN-GAN's ResNet nets (narrowed to 32 maps for a CPU budget).
REAL_NETS = ["dcgan", "dcgan+diffaug", "sngan", "sngan+diffaug", "sngan_resnet+w32", "sngan_resnet+w32+diffaug"]
REAL_NETS_BUDGET = "1500"
# ProGAN and StyleGAN2 (narrowed to 32 maps) beside DCGAN at the same CPU budget, with FID at each quarter
# of every run (how FID moves with steps).
GROWN = ["dcgan", "progan+w32", "stylegan2+w32"]


def sections(quick: bool, out: Path, fresh: bool):
    """(title, command, markdown file written) of every benchmark."""
    py = sys.executable
    q = ["--quick"] if quick else []
    yield "training speed", [py, HERE / "train_speed.py", *q, "--out", out / "train_speed.md"], out / "train_speed.md"
    yield "data path", [py, HERE / "data_speed.py", *q, "--out", out / "data_speed.md"], out / "data_speed.md"
    yield "scaling", [py, HERE / "scaling.py", *q, "--out", out / "scaling.md"], out / "scaling.md"
    yield "metric speed", [py, HERE / "metric_speed.py", *q, "--out", out / "metric_speed.md"], out / "metric_speed.md"
    if quick:
        cmd = [py, HERE / "toy2d_modes.py", "--steps", "500", "--seeds", "0", "--jobs", "2", "--out", out]
        yield "toy2d", cmd, out / "toy2d_modes_500_steps.md"
    else:
        for steps, presets in TOY2D:
            cmd = [py, HERE / "toy2d_modes.py", "--steps", steps, "--presets", *presets, "--jobs", "2", "--out", out,
                   *(["--fresh"] if fresh else [])]
            yield f"toy2d, {steps} steps", cmd, out / f"toy2d_modes_{steps}_steps.md"
        for value in ("stddev", "features"):  # do minibatch layers lift the n_critic = 5 presets' rows?
            cmd = [py, HERE / "toy2d_modes.py", "--steps", "2000", "--presets", "wgan", "wgan_gp", "sngan",
                   "--jobs", "2", "--set", f"discriminator.minibatch={value}", "--out", out,
                   *(["--fresh"] if fresh else [])]
            yield f"toy2d, 2000 steps, minibatch {value}", cmd, out / f"toy2d_modes_2000_steps_{value}.md"
        yield "FID floor", [py, HERE / "fid_floor.py", "--out", out / "fid_floor.md"], out / "fid_floor.md"
    yield "image quality", [py, HERE / "image_quality.py", *q, "--out", out / "image_quality.md"], out / "image_quality.md"
    cmd = [py, HERE / "image_quality.py", *(q or ["--budget", CONDITIONAL_BUDGET]), "--presets", *CONDITIONAL,
           "--title", "Class-conditional samples after a longer CPU budget", "--out", out / "conditional_quality.md"]
    yield "conditional quality", cmd, out / "conditional_quality.md"
    cmd = [py, HERE / "image_quality.py", *(q or ["--budget", REAL_NETS_BUDGET]), "--presets", *REAL_NETS,
           "--title", "ResNet nets and DiffAugment after a longer CPU budget", "--out", out / "real_nets.md"]
    yield "ResNet nets and DiffAugment", cmd, out / "real_nets.md"
    cmd = [py, HERE / "image_quality.py", *(q or ["--budget", REAL_NETS_BUDGET, "--curve", "4"]), "--presets",
           *GROWN, "--title", "ProGAN and StyleGAN2 beside DCGAN", "--out", out / "progan_stylegan2.md"]
    yield "ProGAN and StyleGAN2", cmd, out / "progan_stylegan2.md"
    yield "image-to-image translation", [py, HERE / "translation.py", *q, "--out", out / "translation.md"], \
        out / "translation.md"
    yield "super-resolution", [py, HERE / "superres.py", *q, "--out", out / "superres.md"], out / "superres.md"
    yield "linear probe and inversion", [py, HERE / "probe_invert.py", *q, "--out", out / "probe_invert.md"], \
        out / "probe_invert.md"
    search = ["--trials", "2", "--trial-steps", "200", "--steps", "400", "--work", out / "search_work"] if quick else []
    yield "Optuna search", [py, HERE / "search_toy2d.py", *search, "--out", out], out / "search_toy2d.md"
    stacked = ["--steps", "40", "--seeds", "0", "--samples", "1000", "--eval-samples", "500", "--work",
               out / "stacked_work"] if quick else []
    yield "Stacked MNIST", [py, HERE / "stacked_mnist.py", *stacked, "--out", out], out / "stacked_mnist.md"
    judges = ["--samples", "500", "--work", out / "stacked_work"] if quick else []
    yield "Stacked MNIST's readers", [py, HERE / "stacked_mnist_judges.py", *judges, "--out", out], \
        out / "stacked_mnist_judges.md"
    scale = ["--quick", "--presets", "sagan+w32", "biggan+bw8", "--work", out / "class_scale_work"] if quick else []
    yield "SAGAN and BigGAN", [py, HERE / "class_scale.py", *scale, "--out", out / "class_scale.md"], \
        out / "class_scale.md"


def summary(out: Path, quick: bool) -> list[str]:
    """The goals of the benchmarks and what this run measured."""
    rows = []
    speed = out / "train_speed.json"
    if speed.exists():
        data = json.loads(speed.read_text())
        rates = data["rates"]
        for name in (n for n in rates if n != "plain"):
            ratios = sorted(t / p for t, p in zip(rates[name], rates["plain"]))
            median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
            gpu = data.get("device", "cpu").startswith("cuda")
            goal = 1.5 if gpu else 1.0
            label = "gan-train" + ("" if name == "32" else f" ({name})")
            rows.append(f"| {label} steps/s over the plain PyTorch loop | >= {goal}x | {median:.2f}x "
                        f"| {'yes' if median >= goal else 'no'} |")
    quality = out / "image_quality.json"
    if quality.exists():
        data = json.loads(quality.read_text())
        for name, floor in data["floors"].items():
            runs = [r for r in data["runs"] if r["data"] == name]
            if runs:
                best = min(runs, key=lambda r: r["metrics"]["fid"])
                rows.append(f"| best classifier FID on {name} (floor {floor['fid']:.2f}) | reported | "
                            f"{best['metrics']['fid']:.2f} (`{best['preset']}`) | |")
    conditional = out / "conditional_quality.json"
    if conditional.exists():
        data = json.loads(conditional.read_text())
        for run in data["runs"]:
            if "accuracy" in run["metrics"]:
                accuracy = 100 * run["metrics"]["accuracy"]
                rows.append(f"| class accuracy of `{run['preset']}` samples on {run['data']} after {run['cpu_s']:.0f} "
                            f"CPU s | > 90 % | {accuracy:.1f} % | {'yes' if accuracy > 90 else 'no'} |")
    if not rows:
        return []
    return ["| goal | target | measured | met |", "| --- | --- | --- | --- |", *rows, ""]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs of every benchmark (a few minutes)")
    parser.add_argument("--fresh", action="store_true", help="train the stored toy2d runs again (hours)")
    parser.add_argument("--only", nargs="+", help="run only the sections whose title starts with these words")
    parser.add_argument("--gather", action="store_true",
                        help="run nothing: gather the section files already in results/ into results.md")
    args = parser.parse_args()
    name = "results-quick" if args.quick else "results"
    out, report = HERE / name, HERE / f"{name}.md"
    out.mkdir(exist_ok=True)
    started, timings = time.perf_counter(), []
    for title, cmd, md in sections(args.quick, out, args.fresh):
        if args.gather or (args.only and not any(title.startswith(word) for word in args.only)):
            continue
        print(f"== {title}: {' '.join(str(c) for c in cmd)}", flush=True)
        start = time.perf_counter()
        done = subprocess.run([str(c) for c in cmd])
        timings.append((title, time.perf_counter() - start, done.returncode))
        if done.returncode:
            print(f"== {title} failed (exit {done.returncode}); going on with the others", flush=True)

    command = "make bench-quick" if args.quick else "make bench"
    written = (f"Gathered by `python benchmarks/run_all.py --gather` on {datetime.now():%Y-%m-%d} from the section "
               f"files that `{command}` and the sections run again alone left in {out.name}/" if args.gather else
               f"Written by `{command}` (`python benchmarks/run_all.py{' --quick' if args.quick else ''}`) on "
               f"{datetime.now():%Y-%m-%d}")
    lines = [
        "# Benchmarks",
        "",
        f"{written}; machine: {machine()}. Every section names the command that produced it; speed ratios are "
        "measured side by side in one run, never against numbers from another machine.",
        "",
    ]
    if args.quick:
        lines += ["This is the quick variant: runs too short for the numbers to mean much; `make bench` gives "
                  "the real ones.", ""]
    lines += summary(out, args.quick)
    for title, cmd, md in sections(args.quick, out, args.fresh):
        if md.exists():
            text = md.read_text()
            if title.startswith("toy2d"):
                picture = md.with_suffix(".png")
                text += f"\n![toy2d scatter plots]({out.name}/{picture.name})\n"
            lines += [text.strip(), ""]
    spent = ", ".join(f"{t} {s / 60:.1f} min{'' if rc == 0 else ' (failed)'}" for t, s, rc in timings)
    if timings:
        lines += [f"Time taken by this run: {(time.perf_counter() - started) / 60:.0f} min ({spent}).", ""]
    report.write_text("\n".join(lines))
    print(f"wrote {report}")
    if any(rc for _, _, rc in timings):
        sys.exit(1)


if __name__ == "__main__":
    main()
