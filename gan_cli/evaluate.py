"""gan-eval: IS, FID, KID and precision/recall of a checkpoint's G, or of a folder of images.

    gan-eval ckpt=outputs/<date>/<time>                       the run's G against the run's data
    gan-eval ckpt=<run> metrics=[fid,kid] num_samples=50000 backbone=inception
    gan-eval fake=<folder of images> real=mnist real_root=data real_split=test

Options and their defaults: conf/eval.yaml. Fake images are made (or read) in batches and go
through the backbone batch by batch, so memory stays bounded by the batch; the real side's
features are computed once and cached (see `real_features`). The result is a table on the
terminal and a JSON file with every value and the protocol that produced it.
"""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

import gan_cli
from gan_cli import WRITE_FAILED_EXIT, UserError, WriteFailed, build, runtime, writes
from gan_cli.metrics import scores
from gan_cli.metrics import toy2d as toy2d_metrics
from gan_cli.metrics.backbones import InceptionBackbone, StackedClassifierBackbone
from gan_cli.metrics.protocol import (build_data, classifier_backbone, dataset_node, equal_sizes,  # noqa: F401
                                      extract, labelled_split, mode_coverage, real_features, seeded_order,
                                      stacked_channels, to_uint8)
from gan_cli.options import parse as parse_options
from gan_cli.options import positive_int

log = logging.getLogger("gan_cli.evaluate")

METRICS = ("fid", "is", "kid", "pr", "accuracy", "intra_fid", "l1", "psnr", "ssim", "label_preservation",
           "label_preservation_joint", "probe", "modes")
CLASS_METRICS = ("accuracy", "intra_fid")  # of class-conditional checkpoints, with the classifier backbone
# of image-to-image checkpoints
TRANSLATION_METRICS = ("l1", "psnr", "ssim", "label_preservation", "label_preservation_joint")
DEFAULT_METRICS = ["fid", "is", "kid", "pr"]  # metrics=null: what a z -> image checkpoint or a folder gets
NUM_SAMPLES, MODE_SAMPLES = 10_000, 26_000  # num_samples=null: PacGAN counts Stacked MNIST's modes over 26,000


# --- options -------------------------------------------------------------------------------------


def parse_args(args) -> dict:
    """key=value arguments over conf/eval.yaml's defaults; anything else is a one-line error."""
    options = parse_options(args, "eval")
    if options["sweep"] is not None:  # only the summary of a sweep: the other options do not apply
        return options
    metrics = options["metrics"]
    if metrics is not None:  # null: the checkpoint's kind decides (see DEFAULT_METRICS, metrics/translation.py)
        if not isinstance(metrics, (str, list)):
            raise UserError(f"metrics must be a list such as [fid,kid] (or one name), got {metrics!r}")
        metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
        bad = [m for m in metrics if m not in METRICS]
        if bad or not metrics:
            raise UserError(f"unknown metrics {bad or '[]'}; choose from: {', '.join(METRICS)}")
    options["metrics"] = metrics
    if options["backbone"] not in ("classifier", "inception"):
        raise UserError(f"unknown backbone '{options['backbone']}'; choose classifier or inception")
    if bool(options["ckpt"]) == bool(options["fake"]):
        raise UserError("give either ckpt=<checkpoint or run folder> or fake=<folder of images>")
    positive_int(options, "batch_size", "is_splits", "kid_subsets", "kid_subset_size", "pr_k")
    if options["num_samples"] is not None:
        positive_int(options, "num_samples")
    if options["num_real"] is not None and (not isinstance(options["num_real"], int) or options["num_real"] < 2):
        raise UserError(f"num_real must be an integer >= 2 or null, got {options['num_real']!r}")
    if options["resolution"] is not None and (not isinstance(options["resolution"], int)
                                              or isinstance(options["resolution"], bool) or options["resolution"] < 4):
        raise UserError(f"resolution must be an integer of at least 4 or null, got {options['resolution']!r}")
    if options["kid_subset_size"] < 2:
        raise UserError(f"kid_subset_size must be at least 2, got {options['kid_subset_size']}")
    positive_int(options, "probe_draws")
    if options["probe_labels"] is not None:
        positive_int(options, "probe_labels")
    truncation = options["truncation"]
    psis = truncation if isinstance(truncation, list) else [truncation]
    if truncation is not None and (not psis or any(isinstance(p, bool) or not isinstance(p, (int, float)) or p <= 0
                                                   for p in psis)):
        raise UserError(f"truncation must be a threshold > 0 or a list of them such as [2.0,1.0,0.5] (null = off), "
                        f"got {truncation!r}")
    if truncation is not None and not options["ckpt"]:
        raise UserError("truncation draws the z of a checkpoint's G: give ckpt=<checkpoint or run folder>")
    if metrics and "probe" in metrics:
        if metrics != ["probe"]:
            raise UserError("metrics=[probe] runs on its own (it scores D's features, not G's samples); give the "
                            "other metrics to another gan-eval")
        if not options["ckpt"]:
            raise UserError("metrics=[probe] reads the D of a checkpoint: give ckpt=<checkpoint or run folder>")
    return options


def check_count(options: dict, count: int, what: str, real: bool = False) -> None:
    """One line when `count` features on a side are too few for a metric asked for (IS and the
    class metrics look at the fake side only)."""
    for metric in options["metrics"]:
        if real and metric in ("is", "accuracy", "intra_fid"):
            continue
        need = scores.minimum_samples(metric, options["is_splits"], options["pr_k"])
        if count < need:
            why = {"is": f" (two per split, is_splits={options['is_splits']})",
                   "pr": f" (pr_k={options['pr_k']} neighbours and the point itself)"}.get(metric, "")
            raise UserError(f"metrics=[{metric}] needs at least {need} images{why}; {what} is {count}")


# --- reading images ------------------------------------------------------------------------------


def folder_batches(files, resolution, channels, batch_size):
    from gan_cli.data.folder import load_image

    for start in range(0, len(files), batch_size):
        yield torch.stack([load_image(f, resolution, channels) for f in files[start:start + batch_size]])


def own_size(files, where) -> int:
    """The side the fake images are scored at when resolution= is not given: their own (the shorter side,
    where they are not square); one line when they come in several sizes."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def size(path):
        try:
            with Image.open(path) as image:
                return image.size
        except (OSError, ValueError) as e:
            raise UserError(f"fake={where}: cannot read image {path} ({e})") from None

    with ThreadPoolExecutor(max_workers=4) as pool:
        sizes = sorted(set(pool.map(size, files, chunksize=64)))
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (", ..." if len(sizes) > 4 else "")
        raise UserError(f"fake={where}: the images come in {len(sizes)} sizes ({shown}); set resolution=<side> "
                        "to score them all at one size")
    return min(sizes[0])


# --- the command ---------------------------------------------------------------------------------


def real_node(options: dict, shape, config: dict) -> dict:
    """The real data of a checkpoint's evaluation: real= (a folder or data set name) at G's size, else the
    run's own data set; real_root= and real_split= applied."""
    if options["real"]:
        node = dataset_node(options["real"], options["real_root"], shape[1], shape[0])
    else:
        node = dict(config["dataset"])
        if options["real_root"] is not None:
            node["root"] = str(options["real_root"])
    if options["real_split"] is not None:
        node["split"] = options["real_split"]
    return node


def evaluate(options: dict) -> dict:
    if isinstance(options.get("truncation"), list):
        raise UserError("evaluate() scores one truncation threshold; a list of them is the curve gan-eval draws "
                        "(gan_cli.evaluate.truncation_curve)")
    if options.get("sweep") is not None:
        from gan_cli.sweep import summarise

        return {"sweep": summarise(options["sweep"])}
    device = runtime.pick_device(options["device"])
    runtime.seed_everything(options["seed"])
    result = {"gan_cli_version": gan_cli.__version__, "metrics": {}, "protocol": {"seed": options["seed"]}}
    protocol = result["protocol"]

    game = None
    if options["ckpt"]:
        loaded = build.load(options["ckpt"], options["use_ema"], device)
        game, data, config, state, path = loaded.game, loaded.data, loaded.config, loaded.state, loaded.path
        result["checkpoint"], result["step"] = str(path), state["step"]
        if options["metrics"] == ["probe"]:
            from gan_cli.metrics.probe import evaluate_probe

            if hasattr(game, "upscale") or hasattr(game, "translate") or len(data.shape) != 3:
                raise UserError(f"metrics=[probe] reads the D of a z -> image GAN; this checkpoint is of game "
                                f"{game.name} on {data.name}")
            return evaluate_probe(loaded, real_node(options, data.shape, config), options, device, result)
        if options["truncation"] is not None and (hasattr(game, "upscale") or hasattr(game, "translate")):
            raise UserError(f"truncation draws z, and a {game.name} checkpoint maps images to images")
        if hasattr(game, "upscale"):  # SRResNet, SRGAN
            from gan_cli.metrics.superres_eval import evaluate_superres

            return evaluate_superres(loaded, options, device, result)
        if hasattr(game, "translate"):  # Pix2Pix, CycleGAN
            from gan_cli.metrics.translation import evaluate_translation

            return evaluate_translation(loaded, options, device, result)
    counts_modes = (bool(options["ckpt"]) and bool(getattr(data, "mode_classes", 0))) or \
        options["real"] == "stacked_mnist"
    options["metrics"] = options["metrics"] or [*DEFAULT_METRICS, *(["modes"] if counts_modes else [])]
    if options["num_samples"] is None:
        options["num_samples"] = MODE_SAMPLES if "modes" in options["metrics"] else NUM_SAMPLES
    toy = bool(options["ckpt"]) and len(data.shape) == 1  # toy2d: the mode metrics, whatever is asked
    if "modes" in options["metrics"] and not (counts_modes or toy):
        raise UserError("metrics=[modes] counts the 1,000 modes of Stacked MNIST: give a checkpoint trained on "
                        "dataset=stacked_mnist, or fake=<folder> real=stacked_mnist (toy2d checkpoints get their modes "
                        "by default)")
    wrong = [m for m in options["metrics"] if m in TRANSLATION_METRICS]
    if wrong:
        raise UserError(f"metrics {', '.join(wrong)} score image-to-image checkpoints (pix2pix, cyclegan)")
    class_metrics = [m for m in options["metrics"] if m in CLASS_METRICS]
    if options["ckpt"]:
        protocol.update({"fake": f"{loaded.which} of {path} (step {state['step']}): sample i from z (and codes) "
                                 "drawn from the random stream of seed + i, the same at any batch size "
                                 "(gan-sample seed=<seed> draws the same images)",
                         "num_fake": options["num_samples"]})
        if options["truncation"] is not None:
            protocol["truncation"] = options["truncation"]
            protocol["truncation_rule"] = game.truncation_rule(loaded.nets, options["use_ema"])

        def generated():
            return game.generate(loaded.nets, options["num_samples"], options["seed"], device, options["batch_size"],
                                 use_ema=options["use_ema"], truncation=options["truncation"])

        if len(data.shape) == 1:  # toy2d: the mode metrics on generated points, no backbone
            points = torch.cat(list(generated()))
            result["metrics"] = toy2d_metrics.mode_metrics(points, data.centres, data.sigma)
            protocol.update({"metric": "PacGAN protocol: nearest mode, high quality within 3 sigma",
                             "data": data.name, "modes_total": len(data.centres)})
            return result
        check_count(options, options["num_samples"], "num_samples")
        shape = data.shape
        if options["resolution"] is not None and (len(shape) != 3 or options["resolution"] != shape[1]):
            raise UserError(f"resolution={options['resolution']}: a checkpoint's images are scored at G's size "
                            f"({'x'.join(map(str, shape[1:])) or 'points'}); resolution= sets the size of fake= images")
        if class_metrics and game.sample_labels(1) is None:
            raise UserError(f"metrics {', '.join(class_metrics)} need a class-conditional checkpoint "
                            f"(conditioning cgan, acgan or projection); this one is {game.cond.name}")
        fake = (to_uint8(x) for x in generated())
        num_fake = options["num_samples"]
        node = real_node(options, shape, config)
    else:
        from gan_cli.data.folder import scan

        if class_metrics:
            raise UserError(f"metrics {', '.join(class_metrics)} need ckpt= (a class-conditional G), not fake=")
        if not options["real"]:
            raise UserError("fake= needs real=<folder or data set name> to compare with")
        every = scan(Path(str(options["fake"])).expanduser())[0]
        # A seeded random subset, as on the real side: in sorted order, class subfolders come one after another.
        files = [every[i] for i in sorted(seeded_order(len(every), options["num_samples"], options["seed"]).tolist())]
        check_count(options, len(files), f"the number of images in {options['fake']}")
        resolution, how = options["resolution"], "resolution="
        if resolution is None:
            resolution, how = own_size(files, options["fake"]), "the fake images' own size"
        node = dataset_node(options["real"], options["real_root"], resolution)
        if options["real_split"] is not None:
            node["split"] = options["real_split"]
        real_probe = build_data(node)
        shape = real_probe.shape
        if len(shape) != 3:
            raise UserError(f"real={options['real']} holds points, not images; fake= compares folders of images")
        channels = shape[0]
        fake = folder_batches(files, shape[1], channels, options["batch_size"])
        num_fake = len(files)
        subset = "all" if len(files) == len(every) else f"a random subset (seeded by seed) of {len(files)} of the {len(every)}"
        protocol.update({"fake": f"{subset} images of {options['fake']}, resized (shorter side, bicubic) and "
                                 f"centre-cropped to {shape[1]}x{shape[2]} ({how})", "num_fake": num_fake,
                         "resolution": f"{shape[1]}x{shape[2]}, {how}"})

    needs_labels = class_metrics + [m for m in options["metrics"] if m == "modes"]
    if needs_labels and options["backbone"] != "classifier":
        raise UserError(f"metrics {', '.join(needs_labels)} need backbone=classifier (it knows the data set's classes)")
    if options["backbone"] == "inception":
        backbone = InceptionBackbone(device, options["inception_weights"])
    else:
        backbone = classifier_backbone(node, device, options["cache_dir"], options["progress"])
        result["classifier_test_accuracy"] = backbone.accuracy
    protocol.update(backbone.protocol)

    real = None
    if set(options["metrics"]) != {"modes"}:  # counting modes alone compares with no real image
        real = real_features(backbone, node, options, shape)
        check_count(options, int(real["count"]), f"the number of real images ({real['name']})", real=True)
        protocol.update({"real": f"{real['name']} ({json.dumps(node, sort_keys=True)})",
                         "num_real": int(real["count"])})
    protocol["image_shape"] = list(shape)
    fake_f, fake_p = extract(backbone, fake, num_fake, "fake images", options["progress"])
    protocol["num_fake"] = len(fake_f)

    m = result["metrics"]
    if "modes" in options["metrics"]:
        if not isinstance(backbone, StackedClassifierBackbone):  # fake= with a real side of other data
            raise UserError("metrics=[modes] reads Stacked MNIST's digits: give real=stacked_mnist")
        m.update(mode_coverage(fake_p.argmax(1), fake_p.shape[1]))
        m["modes_total"] = fake_p.shape[1]
        m.update(stacked_channels(fake_p.argmax(1)))
        protocol["modes"] = (f"each channel of {len(fake_p)} samples labelled by the digit classifier (test accuracy "
                             f"{100 * backbone.accuracy:.2f}%); modes: triples with at least one sample; reverse KL: "
                             "KL(p || uniform) of the triples' histogram (PacGAN's definition); channel_kl: each "
                             "channel's digit histogram against uniform, between_channels_kl: the rest, KL(p || "
                             "p_R p_G p_B); digit_shares: each channel's share of each digit")
    if "fid" in options["metrics"]:
        mu, sigma = scores.gaussian(fake_f.astype(np.float64))
        m["fid"] = scores.frechet_distance(mu, sigma, real["mu"], real["sigma"])
    if "is" in options["metrics"]:
        m["is_mean"], m["is_std"] = scores.inception_score(fake_p, options["is_splits"], seed=options["seed"])
        protocol["is"] = f"{options['is_splits']} splits of the fake images after a permutation seeded by seed"
    if "kid" in options["metrics"]:
        size = min(options["kid_subset_size"], len(fake_f), len(real["features"]))
        m["kid_mean"], m["kid_std"] = scores.kernel_inception_distance(
            real["features"], fake_f, options["kid_subsets"], size, seed=options["seed"])
        protocol["kid"] = f"{options['kid_subsets']} subsets of {size}, polynomial kernel (x.y/d + 1)^3, unbiased MMD^2"
    if "pr" in options["metrics"]:
        real_pr, fake_pr = equal_sizes(real["features"], fake_f, options["seed"])
        m["precision"], m["recall"] = scores.precision_recall(real_pr, fake_pr, k=options["pr_k"], device=device)
        protocol["pr"] = (f"k = {options['pr_k']} nearest-neighbour balls (Kynkaanniemi et al. 2019), {len(real_pr)} "
                          "real and fake features each (a seeded subset of the larger side)")
    if class_metrics:
        per_class(result, options, fake_f, fake_p, real, game.sample_labels(len(fake_f)).numpy(),
                  game.cond.num_classes)
    return result


def per_class(result, options, fake_f, fake_p, real, fake_labels, num_classes) -> None:
    """Class-conditional samples scored class by class: the share the classifier labels as the class they
    were drawn for (accuracy), and the FID of each class's samples against that class's real images
    (intra-class FID; the mean over classes is reported as intra_fid)."""
    m, protocol = result["metrics"], result["protocol"]
    names = [str(c) for c in range(num_classes)]
    if "accuracy" in options["metrics"]:
        hits = fake_p.argmax(1) == fake_labels
        m["accuracy"] = float(hits.mean())
        m["accuracy_per_class"] = {n: float(hits[fake_labels == c].mean()) for c, n in enumerate(names)}
        protocol["accuracy"] = ("share of the samples drawn for class c that the classifier backbone labels c; "
                                "classes drawn in turn (0, 1, ..., K-1, 0, ...)")
    if "intra_fid" in options["metrics"]:
        if real.get("labels") is None:
            raise UserError("intra_fid needs labelled real images; the real side has no labels")
        real_labels = np.asarray(real["labels"])
        values = {}
        for c, n in enumerate(names):
            f, r = fake_f[fake_labels == c], real["features"][real_labels == c]
            if len(f) < 2 or len(r) < 2:
                raise UserError(f"intra_fid: class {n} has {len(f)} samples and {len(r)} real images; "
                                "raise num_samples")
            values[n] = scores.frechet_distance(*scores.gaussian(f.astype(np.float64)),
                                                *scores.gaussian(r.astype(np.float64)))
        m["intra_fid"] = float(np.mean(list(values.values())))
        m["intra_fid_per_class"] = values
        protocol["intra_fid"] = "FID of each class's samples against the real images of that class; mean over classes"


def output_path(options: dict, result: dict) -> Path:
    if options["out"]:
        return Path(options["out"]).expanduser()
    if "checkpoint" in result:
        ckpt = Path(result["checkpoint"])
        way = "-BtoA" if options.get("direction") == "BtoA" else ""  # G_BA's report beside G_AB's, not over it
        return ckpt.parent / f"eval-{options['backbone']}{way}-step_{result['step']:07d}.json"
    return Path("eval.json")


def table(result: dict) -> str:
    names = {"fid": "FID", "is_mean": "IS", "kid_mean": "KID", "precision": "precision", "recall": "recall",
             "accuracy": "class accuracy", "intra_fid": "intra-class FID",
             "modes": "modes", "hq_percent": "high quality %", "reverse_kl": "reverse KL",
             "balanced_hq": "balanced high quality %",
             "l1": "L1", "psnr": "PSNR (dB)", "ssim": "SSIM", "label_preservation": "label preservation",
             "label_preservation_joint": "label preservation (joint)"}
    m, rows = result["metrics"], []
    if "probe" in result:  # the linear probe: D beside its baselines
        lines = [f"linear probe (labels: {result['protocol']['probe_labels']}), test accuracy:"]
        for name, row in result["probe"].items():
            spread = f" ± {100 * row['std']:.2f}" if len(row["accuracies"]) > 1 else ""
            lines.append(f"  {name:<16} {100 * row['mean']:.2f} %{spread}  ({row['features']} features)")
        return "\n".join(lines)
    if "bicubic_psnr" in m or "bicubic_ssim" in m:  # super-resolution: G beside bicubic (and the originals)
        header = ("", "SR", "bicubic", "original")
        table_rows = [(label, *(f"{m[k]:.4f}" if k in m else "" for k in (key, f"bicubic_{key}", f"original_{key}")))
                      for key, label in (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("accuracy", "class accuracy"),
                                         ("fid", "FID")) if key in m]
        widths = [max(len(r[i]) for r in [header, *table_rows]) for i in range(4)]
        return "\n".join("  ".join(f"{cell:<{w}}" for cell, w in zip(r, widths)).rstrip()
                         for r in [header, *table_rows])
    for key, label in names.items():
        if key not in m:
            continue
        if key == "modes":  # a count, and of how many where that is known (Stacked MNIST's 1,000)
            value = f"{m[key]}" + (f" of {m['modes_total']}" if "modes_total" in m else "")
        elif key == "reverse_kl" and "channel_kl" in m:  # Stacked MNIST: the KL's parts beside it
            value = (f"{m[key]:.4f}  (channels R {m['channel_kl'][0]:.4f}, G {m['channel_kl'][1]:.4f}, "
                     f"B {m['channel_kl'][2]:.4f}; between channels {m['between_channels_kl']:.4f})")
        else:
            value = f"{m[key]:.4f}"
        std_key = key.replace("_mean", "_std")
        if std_key != key and std_key in m:
            value += f" ± {m[std_key]:.4f}"
        rows.append((label, value))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def truncation_curve(options: dict) -> None:
    """gan-eval truncation=[psi, ...]: each threshold scored as truncation=psi alone would be, then one JSON of
    the rows and the curve BigGAN draws (precision against recall, class accuracy or IS against FID; one point a
    threshold) beside it: <out stem>-truncation.json and .png."""
    rows = []
    for psi in options["truncation"]:
        result = evaluate({**options, "truncation": psi})
        print(f"truncation {psi:g}:")
        print(table(result))
        rows.append({"truncation": psi, **result})
    path = output_path(options, rows[0])
    path = path.with_name(f"{path.stem}-truncation.json")
    writes.write_text(path, json.dumps(rows, indent=2) + "\n")
    figure = path.with_suffix(".png")
    truncation_figure(rows, figure)
    print(f"wrote {path} and {figure}")


def truncation_figure(rows: list, path: Path) -> None:
    """One panel per pair of metrics the rows hold: precision against recall; class accuracy (or IS) against FID."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = rows[0]["metrics"]
    pairs = [(x, y) for x, y in (("recall", "precision"), ("fid", "accuracy" if "accuracy" in m else "is_mean"))
             if x in m and y in m]
    if not pairs:
        pairs = [("truncation", next(iter(m)))]
    labels = {"recall": "recall (variety)", "precision": "precision (fidelity)", "fid": "FID (lower is better)",
              "accuracy": "class accuracy (fidelity)", "is_mean": "Inception score", "truncation": "truncation"}
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.2), squeeze=False)
    for ax, (x, y) in zip(axes[0], pairs):
        xs = [r["truncation"] if x == "truncation" else r["metrics"][x] for r in rows]
        ys = [r["metrics"][y] for r in rows]
        ax.plot(xs, ys, marker="o")
        for r, a, b in zip(rows, xs, ys):
            ax.annotate(f"{r['truncation']:g}", (a, b), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(labels.get(x, x))
        ax.set_ylabel(labels.get(y, y))
        ax.grid(alpha=0.3)
    fig.suptitle(f"truncation thresholds of {rows[0].get('checkpoint', '')} (step {rows[0].get('step', '?')})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    from gan_cli.options import show_help

    if show_help(sys.argv[1:], "eval", "gan-eval"):
        return
    writes.setup_cli()
    try:
        options = parse_args(sys.argv[1:])
        if isinstance(options["truncation"], list):  # the fidelity-variety curve: one evaluation per threshold
            return truncation_curve(options)
        result = evaluate(options)
        if "sweep" in result:
            summary = result["sweep"]
            print(f"{summary['finished']} of {summary['jobs']} jobs finished; "
                  + (f"best: {summary['best']['setting']} {summary['metric']} {summary['best']['mean']:.4g}"
                     if summary["best"] else "no scores yet"))
            print(f"wrote {summary['folder'] / 'summary.md'}")
            return
        path = output_path(options, result)
        writes.write_text(path, json.dumps(result, indent=2) + "\n")
    except UserError as e:
        print(f"gan-eval: error: {e}", file=sys.stderr)
        sys.exit(2)
    except WriteFailed as e:
        print(f"gan-eval: error: {e}", file=sys.stderr)
        sys.exit(WRITE_FAILED_EXIT)
    print(table(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
