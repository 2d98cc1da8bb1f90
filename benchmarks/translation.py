"""Image-to-image translation on the offline demos, scored on their held-out test split.

    python benchmarks/translation.py                    Pix2Pix and the L1 baseline, 1,000 steps each
                                                        (batch 16); CycleGAN, 4,000 steps (batch 1) on the
                                                        printed demo, 1,000 on the photo demo; CycleGAN and
                                                        CyCADA, 1,000 each on both; about 90 minutes on 2 cores
    python benchmarks/translation.py --quick            50 steps each, to check that all works
    python benchmarks/translation.py --parts cycada --out benchmarks/results/translation_cycada.md
                                                        only the CyCADA comparison (about 40 minutes)

Pix2Pix (model=pix2pix) on the paired demo (digit edge maps -> digits) beside the same U-Net trained on L1
alone (game.adversarial_weight=0: no D), as in the paper's Table 1: L1, PSNR, SSIM against the targets, the
classifier FID against the digits, and the share of translations the digits classifier reads as the source's
digit. CycleGAN (model=cyclegan) on the unpaired demos (handwritten <-> printed digits; handwritten <-> digits
on photo patches) beside the identity baseline (the handwritten digit itself, read by the target
domain's classifier): its label preservation. CyCADA (model=cycada) beside plain CycleGAN at the same steps,
on the printed and the photo demos, both directions, read by the target domain's classifier and by the
classifier of both domains.
Each run is a plain gan-train command, scored by gan-eval; the figure shows the first test inputs.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import BIN, RESULTS, machine, run_command, table, train_and_score  # noqa: E402


def identity_preservation(env_cache: Path, demo: str = "printed", direction: str = "AtoB") -> tuple[float, float]:
    """Label preservation of no translation at all, and the classifier's test accuracy: the target domain's
    classifier (the one gan-eval trains; with direction=BtoA, domain A's, as `gan-eval direction=BtoA`)
    reading the source domain's test images as they are."""
    from gan_cli.data.translation import unpaired
    from gan_cli.metrics.backbones import ClassifierBackbone
    from gan_cli.metrics.protocol import to_uint8
    from gan_cli.metrics.translation import _target_images

    data = unpaired(batch_size=16, device=torch.device("cpu"), seed=0, num_workers=0, demo=demo)
    test = data.test(None)
    source, target = ("A", "B") if direction == "AtoB" else ("B", "A")
    real, labels = _target_images(data, target)
    description = f"the target domain of {data.name}: its training images, its test images held out"
    backbone = ClassifierBackbone((real, labels, to_uint8(test[target]), test[f"labels_{target}"], description),
                                  torch.device("cpu"), str(env_cache), progress=False)
    _, probs = backbone.features(to_uint8(test[source]))
    return float((probs.argmax(1) == test[f"labels_{source}"].numpy()).mean()), backbone.accuracy


def cycle_table(target: str, rows) -> list[str]:
    """Label preservation of each CycleGAN G beside no translation at all; rows: (label, identity, gan-eval
    metrics, training seconds or None); the label names the source domain after "G_XY: "."""
    out = []
    for label, identity, m, seconds in rows:
        source = label.split(": ")[1].split(" -> ")[0] if ": " in label else "handwritten"
        out += [[f"no translation (the {source} digit as it is)", f"{100 * identity:.1f} %", "", ""],
                [f"CycleGAN {label}", f"{100 * m['label_preservation']:.1f} %", f"{m['fid']:.2f}",
                 "" if seconds is None else f"{seconds:.0f}"]]
    return table(["translation", "label preservation", f"FID against {target}", "train s"], out)


def len_test(result) -> int:
    from gan_cli import build

    return len(build.load(result["run"], True, torch.device("cpu")).data.test(None)["A"])


def figure(runs: dict, path: Path, columns: int = 10):
    """Rows: input, each run's translation, target (Pix2Pix); A and G_AB(A) (CycleGAN)."""
    from gan_cli import build, plots

    rows, labels = [], []
    for name, result in runs.items():
        loaded = build.load(result["run"], True, torch.device("cpu"))
        test = loaded.data.test(columns)
        if not rows:
            rows.append(test["A"])
            labels.append("input")
        rows.append(loaded.game.translate(loaded.nets, test["A"]))
        labels.append(name)
        if loaded.data.paired and name == list(runs)[-1]:
            rows.append(test["B"])
            labels.append("target")
    grid = plots.image_grid(torch.cat([r.expand(-1, 3, -1, -1) if r.shape[1] == 1 else r for r in rows]),
                            nrow=columns)
    plots.save_png(plots.label_rows(grid, labels, margin=70), path)


PARTS = ("pix2pix", "cyclegan", "photo", "cycada")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="steps of each Pix2Pix run")
    parser.add_argument("--cycle-steps", type=int, default=4000, help="steps of the CycleGAN run on the printed demo")
    parser.add_argument("--photo-steps", type=int, default=1000, help="steps of the CycleGAN run on the photo demo")
    parser.add_argument("--cycada-steps", type=int, default=1000,
                        help="steps of each run of the CyCADA comparison (CycleGAN, CyCADA; printed, photo demos)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which comparisons to run")
    parser.add_argument("--quick", action="store_true", help="50 steps each")
    parser.add_argument("--out", type=Path, default=RESULTS / "translation.md")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench-translation"))
    args = parser.parse_args()
    if args.quick:
        args.steps = args.cycle_steps = args.photo_steps = args.cycada_steps = 50
    cache = args.work / "cache"
    env = {**os.environ, "GAN_CLI_CACHE": str(cache)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stem = args.out.with_suffix("")
    lines = [f"Measured on {machine()}.", ""]
    if "pix2pix" in args.parts:
        lines += pix2pix_part(args, env, stem)
    if "cyclegan" in args.parts:
        lines += cyclegan_part(args, env, stem, cache)
    if "photo" in args.parts:
        lines += photo_part(args, env, stem, cache)
    if "cycada" in args.parts:
        lines += cycada_part(args, env, stem, cache)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def pix2pix_part(args, env, stem) -> list[str]:
    common = ["trainer.sample_every=0", f"trainer.steps={args.steps}"]
    pix = {
        "L1 alone": train_and_score("l1", ["model=pix2pix", "game.adversarial_weight=0", *common], args.work, env),
        "pix2pix": train_and_score("pix2pix", ["model=pix2pix", *common], args.work, env),
    }
    figure(pix, Path(f"{stem}_pix2pix.png"))
    lines = [f"**Pix2Pix on the paired demo** (digit edge maps -> digits, 32x32, batch 16, {args.steps} steps each; "
             "269 held-out pairs; FID with the digits classifier):", ""]
    rows = []
    for name, r in pix.items():
        m = r["metrics"]
        rows.append([name, f"{m['l1']:.4f}", f"{m['psnr']:.2f}", f"{m['ssim']:.4f}", f"{m['fid']:.2f}",
                     f"{100 * m['label_preservation']:.1f} %", f"{r['seconds']:.0f}"])
    lines += table(["G trained on", "L1", "PSNR (dB)", "SSIM", "FID", "read as the source's digit",
                    "train s"], rows)
    return lines + ["", f"![Pix2Pix beside L1 alone]({Path(f'{stem}_pix2pix.png').name})", ""]


def cyclegan_part(args, env, stem, cache) -> list[str]:
    cycle = train_and_score("cyclegan", ["model=cyclegan", "trainer.sample_every=0",
                                         f"trainer.steps={args.cycle_steps}"], args.work, env)
    identity, printed_accuracy = identity_preservation(cache)
    figure({"cyclegan": cycle}, Path(f"{stem}_cyclegan.png"))
    lines = [f"**CycleGAN on the unpaired demo** (handwritten <-> printed digits, 32x32, batch 1, {args.cycle_steps} "
             "steps; 269 held-out handwritten digits, read by a classifier of the printed ones, test accuracy "
             f"{100 * printed_accuracy:.1f} %):", ""]
    lines += cycle_table("printed digits", [("G_AB", identity, cycle["metrics"], cycle["seconds"])])
    return lines + ["", f"![CycleGAN]({Path(f'{stem}_cyclegan.png').name})", ""]


def photo_part(args, env, stem, cache) -> list[str]:
    photo = train_and_score("cyclegan-photo", ["model=cyclegan", "dataset.demo=photo", "trainer.sample_every=0",
                                               f"trainer.steps={args.photo_steps}"], args.work, env)
    photo_identity, photo_accuracy = identity_preservation(cache, "photo")
    back_identity, back_accuracy = identity_preservation(cache, "photo", "BtoA")
    back = score_back(photo, env)
    figure({"cyclegan": photo}, Path(f"{stem}_cyclegan_photo.png"))
    lines = [f"**CycleGAN on the photo demo** (handwritten digits (A) <-> other handwritten digits blended into "
             f"photo patches (B), 32x32, batch 1, {args.photo_steps} steps; {len_test(photo)} held-out digits a side; "
             f"G_AB read by a classifier of the photo digits (test accuracy {100 * photo_accuracy:.1f} %), "
             f"G_BA (`gan-eval direction=BtoA`) by one of the handwritten digits (test accuracy "
             f"{100 * back_accuracy:.1f} %)):", ""]
    lines += cycle_table("the target domain", [("G_AB: handwritten -> photo", photo_identity, photo["metrics"],
                                                photo["seconds"]),
                                               ("G_BA: photo -> handwritten", back_identity, back, None)])
    return lines + ["", f"![CycleGAN on the photo demo]({Path(f'{stem}_cyclegan_photo.png').name})", ""]


def score_back(result, env, metrics="[fid,label_preservation]") -> dict:
    """gan-eval of a CycleGAN run's G_BA (direction=BtoA)."""
    out = Path(result["run"]) / "eval-BtoA.json"
    run_command(BIN / "gan-eval", f"ckpt={result['run']}", "direction=BtoA", f"metrics={metrics}", f"out={out}",
                "progress=false", env=env)
    return json.loads(out.read_text())["metrics"]


def cycada_part(args, env, stem, cache) -> list[str]:
    """Plain CycleGAN and CyCADA at the same steps on the printed and photo demos, both directions, each read by
    the target domain's classifier and by the classifier of both domains (label_preservation_joint)."""
    both = "[fid,label_preservation,label_preservation_joint]"
    common = ["trainer.sample_every=0", f"trainer.steps={args.cycada_steps}"]
    rows, figures = [], []
    for demo, title in (("printed", "handwritten <-> printed"), ("photo", "handwritten <-> photo")):
        runs = {}
        per_way = {way: [[title, "no translation", way, f"{100 * identity_preservation(cache, demo, d)[0]:.1f} %",
                          "", "", ""]] for way, d in (("G_AB", "AtoB"), ("G_BA", "BtoA"))}
        for model in ("cyclegan", "cycada"):
            name = f"{model}-{demo}-{args.cycada_steps}"
            result = train_and_score(name, [f"model={model}", f"dataset.demo={demo}", *common], args.work, env)
            out = Path(result["run"]) / "eval-both-judges.json"
            run_command(BIN / "gan-eval", f"ckpt={result['run']}", f"metrics={both}", f"out={out}", "progress=false",
                        env=env)
            forward, back = json.loads(out.read_text())["metrics"], score_back(result, env, both)
            runs[model] = result
            for way, m in (("G_AB", forward), ("G_BA", back)):
                per_way[way].append([title, f"`model={model}`", way, f"{100 * m['label_preservation']:.1f} %",
                                     f"{100 * m['label_preservation_joint']:.1f} %", f"{m['fid']:.2f}",
                                     f"{result['seconds']:.0f}" if way == "G_AB" else ""])
        rows += per_way["G_AB"] + per_way["G_BA"]
        picture = Path(f"{stem}_{demo}.png" if stem.name.endswith("cycada") else f"{stem}_cycada_{demo}.png")
        figure(runs, picture, columns=10)
        figures.append(f"![CycleGAN and CyCADA, {title}]({picture.name})")
    lines = [f"**CyCADA beside CycleGAN** (the unpaired demos, 32x32, batch 1, {args.cycada_steps} steps each; the "
             "held-out test digits of each side; G_AB read by the classifier of side B, G_BA (`gan-eval "
             "direction=BtoA`) by that of side A, and both by a classifier of both sides' training images):", ""]
    lines += table(["demo", "run", "G", "label preservation (target classifier)", "(classifier of both sides)",
                    "FID against the target side", "train s"], rows)
    return lines + ["", *figures, ""]


if __name__ == "__main__":
    main()
