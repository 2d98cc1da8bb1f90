"""Super-resolution x4 on the offline demos: bicubic beside SRResNet beside SRGAN, on held-out images.

    python benchmarks/superres.py            digits: SRResNet 1,000 steps, then SRGAN 1,000 steps from it;
                                             photos (crops of 48x48, --photo-crop): SRResNet 1,000 steps, SRGAN
                                             300 from it (--photo-gan-steps); about 1 hour on 2 cores
    python benchmarks/superres.py --quick    20 steps each, to check that all works

Each run is a plain gan-train command (SRGAN with init_from=<the SRResNet run>, as the paper trains it),
scored by gan-eval: PSNR and SSIM on Y with 4 pixels shaved, of G and of bicubic upsampling, on the held-out
digits (269) and on the two held-out whole photos; on digits also the digit classifier's accuracy on the
upscaled images and their classifier FID against the originals. A sharpness measure for both: the mean
absolute Laplacian of the upscaled images over that of the originals (1 = as much fine detail as the
originals; blur is below 1). The figure shows the first held-out digits and centre crops of the photos.
"train s" is the training loop's own time (gan-train's last log line). --reuse keeps the runs of an
earlier call made with the same overrides, with their gan-eval scores.
"""

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import RESULTS, machine, table, train_and_score  # noqa: E402


def laplacian_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute Laplacian of images in [-1, 1] (per image), on the grey level."""
    grey = x.mean(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(grey, kernel).abs().flatten(1).mean(1)


def upscaled(run_dir: Path):
    """(bicubic, G's outputs, originals) of the run's test images, as lists of 1 x C x H x W tensors."""
    from gan_cli import build
    from gan_cli.metrics.superres import upscale_bicubic

    loaded = build.load(run_dir, True, torch.device("cpu"))
    test, scale = loaded.data.test(None), loaded.data.scale
    bicubic = [upscale_bicubic(lr, scale).clamp(-1, 1) for lr in test["lr"]]
    return bicubic, [loaded.game.upscale(loaded.nets, lr) for lr in test["lr"]], test["hr"]


def sharpness(images, originals) -> float:
    return float(torch.cat([laplacian_energy(x) for x in images]).sum() /
                 torch.cat([laplacian_energy(x) for x in originals]).sum())


def centre(x: torch.Tensor, side: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return x[..., top:top + side, left:left + side]


def figure(rows: dict, path: Path, columns: int):
    from gan_cli import plots

    images = torch.cat([torch.cat(r[:columns]) for r in rows.values()])
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    grid = plots.image_grid(images, nrow=columns)
    plots.save_png(plots.label_rows(grid, list(rows), margin=80), path)


def finished(name, overrides, work: Path) -> dict | None:
    """A run of an earlier call with the same overrides that got as far as its gan-eval, or None."""
    run_dir = work / name
    try:
        given = {line[2:].strip() for line in (run_dir / ".hydra" / "overrides.yaml").read_text().splitlines()
                 if line.startswith("- ")}
        metrics = json.loads((run_dir / "eval.json").read_text())["metrics"]
    except (OSError, ValueError, KeyError):
        return None
    if not set(overrides) <= given:
        return None
    return {"name": name, "seconds": loop_seconds(run_dir), "metrics": metrics, "run": run_dir}


def loop_seconds(run_dir: Path) -> float:
    """The training loop's own seconds, from gan-train's last log line (start-up and saving left out)."""
    return float(re.findall(r"done: step \d+ in (\d+) s", (run_dir / "train.log").read_text())[-1])


def train_or_reuse(name, overrides, work: Path, env, reuse: bool) -> dict:
    if reuse and (done := finished(name, overrides, work)):
        print(f"reusing {work / name} (trained with the same overrides)", flush=True)
        return done
    if (work / name).exists():
        shutil.rmtree(work / name)
    result = train_and_score(name, overrides, work, env)
    return {**result, "seconds": loop_seconds(result["run"])}


def section(kind: str, steps: int, gan_steps: int, extra: list, work: Path, env, stem: Path, reuse: bool):
    common = [f"dataset.source={kind}", "trainer.sample_every=0", *extra]
    pre = train_or_reuse(f"{kind}_srresnet", ["model=srresnet", f"trainer.steps={steps}", *common], work, env, reuse)
    gan = train_or_reuse(f"{kind}_srgan", ["model=srgan", f"init_from={pre['run']}", f"trainer.steps={gan_steps}",
                                           *common], work, env, reuse)
    bicubic, sr_pre, originals = upscaled(pre["run"])
    _, sr_gan, _ = upscaled(gan["run"])
    sharp = {"bicubic": sharpness(bicubic, originals), "SRResNet": sharpness(sr_pre, originals),
             "SRGAN": sharpness(sr_gan, originals)}
    if kind == "digits":
        rows = {"bicubic": bicubic, "SRResNet": sr_pre, "SRGAN": sr_gan, "original": originals}
        figure(rows, Path(f"{stem}_digits.png"), 10)
    else:  # centre crops of each held-out photo, 2x the training crop
        side = 2 * int(next(a.split("=")[1] for a in extra if a.startswith("dataset.crop_size")))
        rows = {k: [centre(x, side) for x in v] for k, v in
                {"bicubic": bicubic, "SRResNet": sr_pre, "SRGAN": sr_gan, "original": originals}.items()}
        figure(rows, Path(f"{stem}_photos.png"), len(originals))
    return pre, gan, sharp


def rows_of(pre, gan, sharp, labelled: bool):
    m0, m1 = pre["metrics"], gan["metrics"]

    def cells(name, m, prefix, seconds):
        row = [name, f"{m[prefix + 'psnr']:.2f}", f"{m[prefix + 'ssim']:.4f}", f"{sharp[name]:.2f}"]
        if labelled:
            row += [f"{100 * m[prefix + 'accuracy']:.1f} %", f"{m[prefix + 'fid']:.2f}"]
        return row + [seconds]

    return [cells("bicubic", m0, "bicubic_", ""), cells("SRResNet", m0, "", f"{pre['seconds']:.0f}"),
            cells("SRGAN", m1, "", f"{gan['seconds']:.0f}")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="steps of each digits run")
    parser.add_argument("--photo-steps", type=int, default=1000, help="steps of each photo run")
    parser.add_argument("--photo-gan-steps", type=int, default=300,
                        help="steps of the photo SRGAN run, from the SRResNet run (its D makes a step ~3x dearer)")
    parser.add_argument("--photo-crop", type=int, default=48, help="side of the HR training crops of photos")
    parser.add_argument("--quick", action="store_true", help="20 steps each")
    parser.add_argument("--out", type=Path, default=RESULTS / "superres.md")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench-superres"))
    parser.add_argument("--reuse", action="store_true",
                        help="keep runs of an earlier call made with the same overrides (their train s from their logs)")
    args = parser.parse_args()
    steps, photo_steps = (20, 20) if args.quick else (args.steps, args.photo_steps)
    photo_gan_steps = photo_steps if args.quick else args.photo_gan_steps
    env = {**os.environ, "GAN_CLI_CACHE": str(args.work / "cache")}
    stem = args.out.with_suffix("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    digits = section("digits", steps, steps, ["dataset.flip=false"], args.work, env, stem, args.reuse)
    photos = section("photos", photo_steps, photo_gan_steps, [f"dataset.crop_size={args.photo_crop}"], args.work, env,
                     stem, args.reuse)

    sharp_note = "sharpness: mean absolute Laplacian against the originals' (1 = as much fine detail)"
    lines = [f"Measured on {machine()}.", "",
             f"**Digits x4** (8x8 inputs -> 32x32; 1,528 training digits, 269 held out; batch 16, {steps} steps "
             "each, SRGAN started from the SRResNet run; PSNR/SSIM on Y with 4 pixels shaved; accuracy and FID "
             f"through the digits classifier, which reads the originals at {100 * digits[0]['metrics']['original_accuracy']:.1f} %; "
             f"{sharp_note}):", ""]
    lines += table(["", "PSNR (dB)", "SSIM", "sharpness", "classifier accuracy", "FID", "train s"],
                   rows_of(*digits, labelled=True))
    lines += ["", f"![digits]({Path(f'{stem}_digits.png').name})", "",
              f"**Photos x4** (crops of {args.photo_crop}x{args.photo_crop} from 5 bundled photos; the two held-out "
              f"photos, chelsea and flower, upscaled whole; batch 16; SRResNet {photo_steps} steps, SRGAN "
              f"{photo_gan_steps} more from it; {sharp_note}):", ""]
    lines += table(["", "PSNR (dB)", "SSIM", "sharpness", "train s"], rows_of(*photos, labelled=False))
    lines += ["", f"![photos]({Path(f'{stem}_photos.png').name})", ""]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
