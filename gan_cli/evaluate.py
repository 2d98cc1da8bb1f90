"""gan-eval: IS, FID, KID and precision/recall of a checkpoint's G, or of a folder of images.

    gan-eval ckpt=outputs/<date>/<time>                       the run's G against the run's data
    gan-eval ckpt=<run> metrics=[fid,kid] num_samples=50000 backbone=inception
    gan-eval fake=<folder of images> real=mnist real_root=data real_split=test

Options and their defaults: conf/eval.yaml. Fake images are made (or read) in batches and go
through the backbone batch by batch, so memory stays bounded by the batch; the real side's
features are computed once and cached (see `real_features`). The result is a table on the
terminal and a JSON file with every value and the protocol that produced it.
"""

import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import gan_cli
from gan_cli import UserError, checkpoint, registry
from gan_cli.data import TensorBatches
from gan_cli.metrics import scores
from gan_cli.metrics import toy2d as toy2d_metrics
from gan_cli.metrics.backbones import ClassifierBackbone, InceptionBackbone, cache_dir
from gan_cli.options import defaults as conf_defaults
from gan_cli.options import parse as parse_options
from gan_cli.options import positive_int

log = logging.getLogger("gan_cli.evaluate")

METRICS = ("fid", "is", "kid", "pr", "accuracy", "intra_fid")
CLASS_METRICS = ("accuracy", "intra_fid")  # of class-conditional checkpoints, with the classifier backbone
REAL_STATS_VERSION = 2  # bump when the way real features are gathered changes: cached ones are then rebuilt


# --- options -------------------------------------------------------------------------------------


def parse_args(args) -> dict:
    """key=value arguments over conf/eval.yaml's defaults; anything else is a one-line error."""
    options = parse_options(args, "eval")
    metrics = options["metrics"]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise UserError(f"unknown metrics {bad or '[]'}; choose from: {', '.join(METRICS)}")
    options["metrics"] = metrics
    if options["backbone"] not in ("classifier", "inception"):
        raise UserError(f"unknown backbone '{options['backbone']}'; choose classifier or inception")
    if bool(options["ckpt"]) == bool(options["fake"]):
        raise UserError("give either ckpt=<checkpoint or run folder> or fake=<folder of images>")
    positive_int(options, "num_samples", "batch_size", "is_splits", "kid_subsets", "kid_subset_size", "pr_k")
    if options["num_real"] is not None and (not isinstance(options["num_real"], int) or options["num_real"] < 2):
        raise UserError(f"num_real must be an integer >= 2 or null, got {options['num_real']!r}")
    return options


# --- the two sides -------------------------------------------------------------------------------


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """G's output in [-1, 1] -> uint8, rounded to the nearest level (not truncated)."""
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def build_data(node: dict, device=torch.device("cpu")):
    return registry.build("dataset", node, batch_size=1, device=device, seed=0, num_workers=0)


def dataset_node(name_or_folder: str, root=None, resolution=None, channels=None) -> dict:
    """A dataset config node for real=: an existing folder, or a data set name with its defaults."""
    if Path(str(name_or_folder)).expanduser().is_dir():
        node = {"name": "folder", "root": str(name_or_folder), "channels": channels}
    else:
        choices = sorted(registry.TABLES["dataset"])
        if name_or_folder not in choices:
            raise UserError(f"real={name_or_folder} is neither a folder nor a data set ({', '.join(choices)})")
        node = conf_defaults("dataset", name_or_folder)
    if root is not None:
        node["root"] = str(root)
    if resolution is not None and "resolution" in registry.options("dataset", node["name"]):
        node["resolution"] = resolution
    return node


def all_images(data, limit=None, seed=0, batch=500):
    """Yield uint8 batches of a data source's images: all of them, or a seeded random subset of `limit`."""
    n = len(data)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if limit and limit < n else torch.arange(n)
    order = order[:limit] if limit else order
    if isinstance(data, TensorBatches):
        for start in range(0, len(order), batch):
            yield data.images[order[start:start + batch].to(data.images.device)]
        return
    subset = torch.utils.data.Subset(data.dataset, order.tolist())
    for images, _ in torch.utils.data.DataLoader(subset, batch_size=batch, num_workers=data.num_workers):
        yield images


def all_labels(data, limit=None, seed=0) -> np.ndarray | None:
    """The labels of the images all_images yields, in the same order (None for unlabelled data)."""
    if not getattr(data, "num_classes", 0):
        return None
    n = len(data)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if limit and limit < n else torch.arange(n)
    order = order[:limit] if limit else order
    if isinstance(data, TensorBatches):
        return data.labels.cpu()[order].numpy()
    return np.array([int(data.dataset[i][1]) for i in order.tolist()])


def labelled_split(node: dict, seed=0):
    """The labelled images a classifier backbone learns from: the data set's train split and its test
    split where it has them, else a seeded 90/10 split of all its images."""
    description = json.dumps({k: v for k, v in node.items() if k not in ("download", "in_memory")}, sort_keys=True)
    options = registry.options("dataset", node["name"])
    data = build_data({**node, "split": "train"} if "split" in options else node)
    if not getattr(data, "num_classes", 0):
        raise UserError(f"backbone=classifier needs labelled data, and {data.name} has no labels; use backbone=inception")
    if not isinstance(data, TensorBatches):
        raise UserError(f"{data.name} is too large to hold for training the classifier backbone; use backbone=inception")
    if "split" in options:
        try:
            test = build_data({**node, "split": "test"})
            return data.images, data.labels, test.images, test.labels, f"{description}: train split, test split held out"
        except UserError:
            pass  # no test split on disk: hold out part of the train split
    order = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(seed))
    cut = len(order) // 10
    test, train = order[:cut], order[cut:]
    return (data.images[train], data.labels[train], data.images[test], data.labels[test],
            f"{description}: 90% of the images, 10% held out")


def extract(backbone, batches, total, desc, progress):
    """Features and class probabilities of uint8 batches, gathered batch by batch."""
    features, probs = [], []
    with tqdm(total=total, desc=desc, unit="img", disable=None if progress else True, leave=False) as bar:
        for images in batches:
            f, p = backbone.features(images)
            features.append(f.astype(np.float32))
            probs.append(p)
            bar.update(len(images))
    return np.concatenate(features), np.concatenate(probs)


def real_features(backbone, node: dict, options: dict, shape) -> dict:
    """Features of the real images, with their mean and covariance (float64), cached on disk.

    The cache key covers the backbone (its weights' hash or the classifier's data fingerprint), the
    data set node, the image shape, the number of images, the seed of the subset and this code's
    version; a cached file whose stored protocol differs from the one asked for is never used.
    """
    protocol = {"version": REAL_STATS_VERSION, "backbone": backbone.key, "data": node, "shape": list(shape),
                "num_real": options["num_real"], "seed": options["seed"]}
    key = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir(options["cache_dir"]) / "real_stats" / f"{key}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache file is rebuilt
            cached = None
        if cached is not None and cached.get("protocol") == json.loads(json.dumps(protocol)):
            log.info("real statistics from the cache: %s", path)
            return {k: cached[k].numpy() if torch.is_tensor(cached[k]) else cached[k] for k in cached}
    data = build_data(node)
    if tuple(data.shape) != tuple(shape):
        raise UserError(f"the real images are {tuple(data.shape)} but the fake ones {tuple(shape)}; "
                        "set real_root / real= to matching data")
    count = min(len(data), options["num_real"] or len(data))
    features, probs = extract(backbone, all_images(data, options["num_real"], options["seed"], options["batch_size"]),
                              count, "real images", options["progress"])
    mu, sigma = scores.gaussian(features.astype(np.float64))
    result = {"protocol": protocol, "features": features, "probs": probs, "mu": mu, "sigma": sigma,
              "count": len(features), "name": data.name, "labels": all_labels(data, options["num_real"], options["seed"])}
    checkpoint.save({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in result.items()}, path)
    return result


def sample_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """The classes of a conditional G's samples: 0, 1, ..., K-1, 0, 1, ...: as many of each as can be."""
    return torch.arange(num_samples) % num_classes


def generated_batches(G, num_samples, batch_size, seed, device, cond=None):
    """G's samples for z drawn on the CPU from `seed` (the same z on any device). A class-conditional G
    draws the classes of sample_labels; InfoGAN's G codes drawn from their prior after z."""
    g = torch.Generator().manual_seed(seed)
    labels = sample_labels(num_samples, cond.num_classes) if cond is not None and cond.num_classes else None
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        z = torch.randn(n, G.z_dim, generator=g).to(device)
        if labels is not None:
            c = labels[start:start + n].to(device)
        else:
            c = None if cond is None else cond.sample(n, None, device, g)
        with torch.no_grad():
            yield G(z) if c is None else G(z, c)


def folder_batches(files, resolution, channels, batch_size):
    from gan_cli.data.folder import load_image

    for start in range(0, len(files), batch_size):
        yield torch.stack([load_image(f, resolution, channels) for f in files[start:start + batch_size]])


# --- during training ------------------------------------------------------------------------------

# trainer.eval_metric: what is better for each (lower, or higher).
LOWER_IS_BETTER = {"fid": True, "kid": True, "is": False, "precision": False, "recall": False,
                   "reverse_kl": True, "hq_percent": False, "modes": False}
TOY2D_METRICS = ("modes", "hq_percent", "reverse_kl")


class TrainingEvaluator:
    """`trainer.eval_every`: one metric of G's samples during training, with the classifier backbone
    (trained once per data set and cached, like the real features) or, on toy2d, the mode metrics."""

    def __init__(self, node: dict, data, metric: str, num_samples: int, batch_size: int, seed: int, device,
                 cache=None, cond=None):
        toy = len(data.shape) == 1
        allowed = TOY2D_METRICS if toy else ("fid", "kid", "is", "precision", "recall")
        if metric not in allowed:
            raise UserError(f"trainer.eval_metric={metric} does not apply to {data.name}; choose one of: "
                            f"{', '.join(allowed)}")
        self.metric, self.num_samples, self.batch_size, self.seed = metric, num_samples, batch_size, seed
        self.data, self.device, self.toy, self.cond = data, device, toy, cond
        self.lower_is_better = LOWER_IS_BETTER[metric]
        if not toy:
            self.backbone = ClassifierBackbone(labelled_split(node), device, cache, progress=False)
            options = {"num_real": None, "seed": seed, "batch_size": batch_size, "progress": False, "cache_dir": cache}
            self.real = real_features(self.backbone, node, options, data.shape)

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value < best if self.lower_is_better else value > best)

    @torch.no_grad()
    def __call__(self, G) -> float:
        was_training = G.training
        G.eval()
        try:
            batches = generated_batches(G, self.num_samples, self.batch_size, self.seed, self.device, self.cond)
            if self.toy:
                points = torch.cat(list(batches))
                return float(toy2d_metrics.mode_metrics(points, self.data.centres, self.data.sigma)[self.metric])
            features, probs = extract(self.backbone, (to_uint8(x) for x in batches), self.num_samples, "", False)
        finally:
            G.train(was_training)
        if self.metric == "fid":
            return scores.frechet_distance(*scores.gaussian(features.astype(np.float64)), self.real["mu"],
                                           self.real["sigma"])
        if self.metric == "kid":
            size = min(1000, len(features), len(self.real["features"]))
            return scores.kernel_inception_distance(self.real["features"], features, 20, size, seed=self.seed)[0]
        if self.metric == "is":
            return scores.inception_score(probs, 10)[0]
        precision, recall = scores.precision_recall(self.real["features"], features)
        return precision if self.metric == "precision" else recall


# --- the command ---------------------------------------------------------------------------------


def load_generator(ckpt: str, use_ema: bool, device):
    """G (G_ema where present and wanted) of a checkpoint, with the run's data set node and its
    conditioning (what G takes besides z: see gan_cli/conditioning.py)."""
    from gan_cli.train import vector_nets

    path = checkpoint.find(ckpt)
    state = checkpoint.load(path)
    config = state["config"]
    data = build_data(config["dataset"])
    if len(data.shape) == 1:
        vector_nets(config)
    cond = registry.build("conditioning", config.get("conditioning") or {"name": "none"})
    cond.setup(state.get("num_classes", data.num_classes), data.name)
    G = registry.build("generator", config["generator"], shape=data.shape, **cond.g_kwargs())
    weights = state["G_ema"] if use_ema and state.get("G_ema") else state["G"]
    checkpoint.load_weights(G, weights, "generator", path)
    G.eval().requires_grad_(False).to(device)
    return G, data, config, state, path, "G_ema" if weights is state.get("G_ema") else "G", cond


def evaluate(options: dict) -> dict:
    from gan_cli.train import pick_device

    device = pick_device(options["device"])
    torch.manual_seed(options["seed"])
    result = {"gan_cli_version": gan_cli.__version__, "metrics": {}, "protocol": {"seed": options["seed"]}}
    protocol = result["protocol"]

    class_metrics = [m for m in options["metrics"] if m in CLASS_METRICS]
    cond = None
    if options["ckpt"]:
        G, data, config, state, path, which, cond = load_generator(options["ckpt"], options["use_ema"], device)
        protocol.update({"fake": f"{which} of {path} (step {state['step']})", "num_fake": options["num_samples"]})
        result["checkpoint"], result["step"] = str(path), state["step"]
        if len(data.shape) == 1:  # toy2d: the mode metrics on generated points, no backbone
            points = torch.cat(list(generated_batches(G, options["num_samples"], options["batch_size"],
                                                      options["seed"], device)))
            result["metrics"] = toy2d_metrics.mode_metrics(points, data.centres, data.sigma)
            protocol.update({"metric": "PacGAN protocol: nearest mode, high quality within 3 sigma",
                             "data": data.name, "modes_total": len(data.centres)})
            return result
        shape = data.shape
        if class_metrics and not cond.num_classes:
            raise UserError(f"metrics {', '.join(class_metrics)} need a class-conditional checkpoint "
                            f"(conditioning cgan, acgan or projection); this one is {cond.name}")
        fake = (to_uint8(x) for x in generated_batches(G, options["num_samples"], options["batch_size"],
                                                      options["seed"], device, cond))
        num_fake = options["num_samples"]
        if options["real"]:
            node = dataset_node(options["real"], options["real_root"], shape[1], shape[0])
        else:
            node = dict(config["dataset"])
            if options["real_root"] is not None:
                node["root"] = str(options["real_root"])
        if options["real_split"] is not None:
            node["split"] = options["real_split"]
    else:
        from gan_cli.data.folder import scan, _channels_of

        if class_metrics:
            raise UserError(f"metrics {', '.join(class_metrics)} need ckpt= (a class-conditional G), not fake=")
        files = scan(Path(str(options["fake"])).expanduser())[0][: options["num_samples"]]
        if not options["real"]:
            raise UserError("fake= needs real=<folder or data set name> to compare with")
        node = dataset_node(options["real"], options["real_root"])
        if options["real_split"] is not None:
            node["split"] = options["real_split"]
        real_probe = build_data(node)
        shape = real_probe.shape
        channels = shape[0] if len(shape) == 3 else _channels_of(files[0])
        fake = folder_batches(files, shape[1], channels, options["batch_size"])
        num_fake = len(files)
        protocol.update({"fake": f"{len(files)} images of {options['fake']}, resized (shorter side, bicubic) and "
                                 f"centre-cropped to {shape[1]}x{shape[2]}", "num_fake": num_fake})

    if class_metrics and options["backbone"] != "classifier":
        raise UserError(f"metrics {', '.join(class_metrics)} need backbone=classifier (it knows the data set's classes)")
    if options["backbone"] == "inception":
        backbone = InceptionBackbone(device, options["inception_weights"])
    else:
        backbone = ClassifierBackbone(labelled_split(node), device, options["cache_dir"], options["progress"])
        result["classifier_test_accuracy"] = backbone.accuracy
    protocol.update(backbone.protocol)

    real = real_features(backbone, node, options, shape)
    protocol.update({"real": f"{real['name']} ({json.dumps(node, sort_keys=True)})", "num_real": int(real["count"]),
                     "image_shape": list(shape)})
    fake_f, fake_p = extract(backbone, fake, num_fake, "fake images", options["progress"])
    protocol["num_fake"] = len(fake_f)

    m = result["metrics"]
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
        m["precision"], m["recall"] = scores.precision_recall(real["features"], fake_f, k=options["pr_k"])
        protocol["pr"] = f"k = {options['pr_k']} nearest-neighbour balls (Kynkaanniemi et al. 2019)"
    if class_metrics:
        per_class(result, options, fake_f, fake_p, real, cond.num_classes)
    return result


def per_class(result, options, fake_f, fake_p, real, num_classes) -> None:
    """Class-conditional samples scored class by class: the share the classifier labels as the class they
    were drawn for (accuracy), and the FID of each class's samples against that class's real images
    (intra-class FID; the mean over classes is reported as intra_fid)."""
    fake_labels = sample_labels(len(fake_f), num_classes).numpy()
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
        return ckpt.parent / f"eval-{options['backbone']}-step_{result['step']:07d}.json"
    return Path("eval.json")


def table(result: dict) -> str:
    names = {"fid": "FID", "is_mean": "IS", "kid_mean": "KID", "precision": "precision", "recall": "recall",
             "accuracy": "class accuracy", "intra_fid": "intra-class FID",
             "modes": "modes", "hq_percent": "high quality %", "reverse_kl": "reverse KL"}
    m, rows = result["metrics"], []
    for key, label in names.items():
        if key not in m:
            continue
        value = f"{m[key]:.4f}" if key != "modes" else str(m[key])
        std_key = key.replace("_mean", "_std")
        if std_key != key and std_key in m:
            value += f" ± {m[std_key]:.4f}"
        rows.append((label, value))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    try:
        options = parse_args(sys.argv[1:])
        result = evaluate(options)
        path = output_path(options, result)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    except UserError as e:
        print(f"gan-eval: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(table(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
