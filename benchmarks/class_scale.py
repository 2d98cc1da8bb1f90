"""Class-conditional GANs at scale on a CPU budget: sngan_projection, sagan and biggan (their ResNet nets narrowed
to 32 maps: at full width a CPU budget buys too few steps, which step 3 measures), then BigGAN's
fidelity-variety curve from truncation.

    python benchmarks/class_scale.py                 # 1,500 CPU seconds per run, digits and MNIST test images
    python benchmarks/class_scale.py --quick         # 10 CPU seconds per run, digits only (a smoke run)
    python benchmarks/class_scale.py --timing-only   # step 3 alone, appended to the results
    python benchmarks/class_scale.py --curves-only   # steps 2 and 3 on the runs kept by an earlier step 1
    python benchmarks/class_scale.py --reuse         # all steps; finished runs kept under --work are not retrained

Step 1 is benchmarks/image_quality.py (see its docstring: calibration to the budget, classifier FID against
half of the data, precision/recall, IS, class accuracy and intra-class FID, per-class sample grids, FID at each
quarter of the steps), with the run folders kept under --work. Step 2 scores every kept biggan run at each
truncation threshold (`gan-eval truncation=[...] metrics=[fid,pr,accuracy]`, the run's data set as the real
side, the classifier backbone) and draws one curve per run: precision against recall, class accuracy against
FID. Step 3 measures the CPU seconds per G step of each --timed preset, full-width ones included.
Writes benchmarks/results/class_scale.md, .json, the grids of step 1 and class_scale_truncation.png.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, RESULTS, machine, table  # noqa: E402

HERE = Path(__file__).parent
PRESETS = ["sngan_projection", "sagan+w32", "biggan+bw8"]
TIMED = ["sngan_projection", "sagan", "sagan+w32", "biggan", "biggan+bw8"]  # CPU seconds per step measured
THRESHOLDS = [2.0, 1.5, 1.0, 0.75, 0.5, 0.25]


def curve_figure(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for name, rows in curves.items():
        for ax, (x, y) in zip(axes, (("recall", "precision"), ("fid", "accuracy"))):
            xs, ys = [r["metrics"][x] for r in rows], [r["metrics"][y] for r in rows]
            ax.plot(xs, ys, marker="o", label=name)
            for r, a, b in zip(rows, xs, ys):
                ax.annotate(f"{r['truncation']:g}", (a, b), textcoords="offset points", xytext=(3, 3), fontsize=7)
    for ax, (xl, yl) in zip(axes, (("recall (variety)", "precision (fidelity)"),
                                   ("FID, classifier features (lower is better)", "class accuracy (fidelity)"))):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("BigGAN's truncation: one point a threshold (labels), resampled beyond it", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=1500, help="CPU seconds of training per run")
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--quick", action="store_true", help="10 CPU seconds per run, digits only")
    parser.add_argument("--timed", nargs="*", default=TIMED,
                        help="presets whose CPU seconds per G step are measured (on digits) and tabled, trained or not")
    parser.add_argument("--timing-only", action="store_true",
                        help="step 3 alone: append the step times to --out (after a run of steps 1 and 2)")
    parser.add_argument("--reuse", action="store_true",
                        help="step 1 scores the finished runs kept under --work instead of training them again")
    parser.add_argument("--curves-only", action="store_true",
                        help="steps 2 and 3 on the runs kept under --work (step 1's section already in --out)")
    parser.add_argument("--samples", type=int, default=5000, help="samples scored at each truncation threshold")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "class_scale")
    parser.add_argument("--out", type=Path, default=RESULTS / "class_scale.md")
    args = parser.parse_args()
    if args.timing_only:
        return step_times(args.timed, args.budget, args.out)
    runs = args.work / "runs"
    step1 = [sys.executable, HERE / "image_quality.py", "--presets", *args.presets, "--keep", runs, "--out", args.out,
             "--title", f"Class-conditional GANs at scale after {10 if args.quick else args.budget:g} CPU seconds"]
    step1 += ["--quick"] if args.quick else ["--budget", str(args.budget), "--curve", "4"]
    step1 += ["--reuse"] if args.reuse else []
    if not args.curves_only:
        subprocess.run([str(a) for a in step1], check=True)

    curves, lines = {}, []
    samples = 500 if args.quick else args.samples
    for run in sorted(runs.glob("*-biggan*")):
        out = args.work / f"eval-{run.name}.json"
        subprocess.run([str(BIN / "gan-eval"), f"ckpt={run}", "metrics=[fid,pr,accuracy]", f"num_samples={samples}",
                        f"truncation=[{','.join(map(str, THRESHOLDS))}]", f"out={out}", "progress=false",
                        f"cache_dir={args.work / 'cache'}"], check=True)
        rows = json.loads(out.with_name(f"{out.stem}-truncation.json").read_text())
        curves[run.name] = rows
        lines += [f"#### {run.name}", "", *table(
            ("truncation", "FID", "precision", "recall", "class accuracy %"),
            [(f"{r['truncation']:g}", f"{r['metrics']['fid']:.2f}", f"{r['metrics']['precision']:.3f}",
              f"{r['metrics']['recall']:.3f}", f"{100 * r['metrics']['accuracy']:.1f}") for r in rows]), ""]
    if curves:
        figure = args.out.with_name(f"{args.out.stem}_truncation.png")
        curve_figure(curves, figure)
        section = ["", "### BigGAN's truncation curve", "",
                   f"{machine('cpu')}. Each kept `biggan` run's G_ema scored at truncation "
                   f"{', '.join(map(str, THRESHOLDS))} (`gan-eval truncation=[...] metrics=[fid,pr,accuracy] "
                   f"num_samples={samples}`, the run's own data set as the real side, classifier backbone): "
                   "lower thresholds should raise precision and class accuracy and lower recall.", "",
                   *lines, f"![truncation curves]({args.out.parent.name}/{figure.name})", ""]
        with args.out.open("a") as f:
            f.write("\n".join(section))
        (args.out.with_suffix(".truncation.json")).write_text(json.dumps(curves, indent=1))
        print("\n".join(section))
    if args.timed and not args.quick:
        step_times(args.timed, args.budget, args.out)


def step_times(presets, budget, out: Path) -> None:
    """A section of the CPU seconds each preset takes per G step at 32x32 (digits, one thread; the
    calibration of image_quality.py) and the G steps a budget buys: why the full-width presets are not
    trained on a CPU budget."""
    import torch

    from image_quality import cpu_per_step

    torch.set_num_threads(1)
    rows = []
    for preset in presets:
        per_step = cpu_per_step(preset, "digits", None)
        rows.append((f"`{preset}`", f"{per_step:.2f}", f"{int(budget / per_step):,}"))
        print(preset, f"{per_step:.2f} CPU s per G step", flush=True)
    section = ["", "### CPU seconds per G step", "", f"{machine('cpu')}, one thread, digits at 32x32 (the "
               "calibration of image_quality.py: runs of 1 and 1 + k steps after a warm-up).", "",
               *table(("preset", "CPU s per G step", f"G steps in {budget:g} CPU s"), rows), ""]
    with out.open("a") as f:
        f.write("\n".join(section))
    print("\n".join(section))


if __name__ == "__main__":
    main()
