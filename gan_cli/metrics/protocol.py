"""How the features behind every number are gathered: real images (cached), fake images batch by batch,
the classifier backbone's labelled split, and the one metric trainer.eval_every measures during training.

Used by gan-eval and by the training loop; the metric math itself is in scores.py, the feature
extractors in backbones.py.
"""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gan_cli import DataMissing, UserError, checkpoint, registry
from gan_cli.data import TensorBatches
from gan_cli.data.folder import scan
from gan_cli.data.images import idx_files
from gan_cli.metrics import scores
from gan_cli.metrics import toy2d as toy2d_metrics
from gan_cli.metrics.backbones import ClassifierBackbone, StackedClassifierBackbone
from gan_cli.options import defaults as conf_defaults
from gan_cli.runtime import cache_dir

log = logging.getLogger("gan_cli.metrics")

REAL_STATS_VERSION = 3  # bump when the way real features are gathered changes: cached ones are then rebuilt


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


def seeded_order(n: int, limit=None, seed=0) -> torch.Tensor:
    """Indices of n items: all of them in order, or a random subset of `limit` drawn from `seed`."""
    if limit and limit < n:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    return torch.arange(n)


def all_images(data, limit=None, seed=0, batch=500):
    """Yield uint8 batches of a data source's images: all of them, or a seeded random subset of `limit`."""
    order = seeded_order(len(data), limit, seed)
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
    order = seeded_order(len(data), limit, seed)
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
    classes = len(torch.unique(data.labels))
    if classes < 2:
        raise UserError(f"backbone=classifier learns to tell the classes of {data.name} apart, and it has "
                        f"{classes}; give labelled data of two classes or more, or use backbone=inception")
    if "split" in options:
        try:
            test = build_data({**node, "split": "test"})
            return data.images, data.labels, test.images, test.labels, f"{description}: train split, test split held out"
        except DataMissing:  # no test split on disk at all (a damaged one is an error): hold out 10% of train
            log.info("%s has no test split on disk: the classifier backbone holds out 10%% of the train split",
                     data.name)
    order = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(seed))
    cut = max(1, len(order) // 10)
    test, train = order[:cut], order[cut:]
    if len(torch.unique(data.labels[train])) < 2:
        raise UserError(f"backbone=classifier: {data.name} has too few labelled images ({len(order)}) to train "
                        "on two classes and hold some out; use backbone=inception")
    return (data.images[train], data.labels[train], data.images[test], data.labels[test],
            f"{description}: 90% of the images, 10% held out")


def digit_split(node: dict, seed=0):
    """The single digits a Stacked MNIST set is drawn from (its split, at its resolution): 90 % to train the
    digit classifier on, a seeded 10 % held out."""
    from gan_cli.data.stacked import digits_of

    images, labels = digits_of(node.get("root", "data"), node.get("split", "train"), node.get("resolution", 32),
                               node.get("download", False))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    cut = max(1, len(order) // 10)
    test, train = order[:cut], order[cut:]
    description = (f"MNIST {node.get('split', 'train')} digits at {images.shape[-1]}x{images.shape[-1]} (the digits "
                   f"of {node['name']}; content {content_key({**node, 'name': 'mnist'})}): 90% of them, 10% held out")
    return images[train], labels[train], images[test], labels[test], description


def classifier_backbone(node: dict, device, cache=None, progress=True):
    """The classifier backbone of a data set: one trained on its labels, or for Stacked MNIST a digit
    classifier read channel by channel."""
    if node["name"] == "stacked_mnist":
        return StackedClassifierBackbone(digit_split(node), device, cache, progress)
    return ClassifierBackbone(labelled_split(node), device, cache, progress)


def mode_coverage(labels, modes: int) -> dict:
    """{"modes": how many of the `modes` classes at least one sample is labelled with, "reverse_kl":
    KL(p || uniform) of the samples' class histogram p}, as PacGAN counts Stacked MNIST's 1,000 modes."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=modes).astype(np.float64)
    if len(counts) != modes or not counts.sum():
        raise ValueError(f"labels must lie in [0, {modes}) and there must be some, got {len(counts)} classes")
    return {"modes": int((counts > 0).sum()), "reverse_kl": _kl_from_uniform(counts)}


def _kl_from_uniform(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return max(float((p * np.log(p * len(counts))).sum()), 0.0)


def stacked_channels(labels) -> dict:
    """Where Stacked MNIST's reverse KL comes from. Its uniform target is the product of three uniform digit
    distributions, so KL(p || uniform) = sum over channels c of KL(p_c || uniform over 10) + KL(p || p_R p_G p_B):
    the first terms measure how unevenly each channel draws the ten digits, the last how far the channels are
    from independent. {"digit_shares": 3 lists of the ten digits' shares (red, green, blue), "channel_kl": the
    three channels' terms, "between_channels_kl": the last term} for triple labels 100 R + 10 G + B."""
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels) or labels.min() < 0 or labels.max() >= 1000:
        raise ValueError("Stacked MNIST labels must lie in [0, 1000) and there must be some")
    digits = [labels // 100, labels // 10 % 10, labels % 10]
    counts = [np.bincount(d, minlength=10).astype(np.float64) for d in digits]
    channel = [_kl_from_uniform(c) for c in counts]
    joint = _kl_from_uniform(np.bincount(labels, minlength=1000).astype(np.float64))
    return {"digit_shares": [(c / c.sum()).tolist() for c in counts], "channel_kl": channel,
            "between_channels_kl": max(joint - sum(channel), 0.0)}


def allowed_metrics(data) -> tuple:
    """The metrics trainer.eval_metric and trainer.objective may name on this data."""
    if len(data.shape) == 1:
        return TOY2D_METRICS
    return IMAGE_METRICS + (MODE_METRICS if getattr(data, "mode_classes", 0) else ())


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


def source_files(node: dict) -> list[Path]:
    """The files a data set config reads, for keys that must change when the data on disk change (the
    cache of real statistics). Data shipped with a package (digits) and generated data read none."""
    name, root = node["name"], Path(str(node.get("root") or ".")).expanduser()
    if name in ("mnist", "fashion_mnist"):
        return idx_files(name, root, node.get("split", "train"))
    if name == "cifar10":
        return sorted(p for p in (root / "cifar-10-batches-py").glob("*") if p.is_file())
    if name == "celeba":
        return sorted(p for p in (root / "celeba").rglob("*") if p.is_file())
    if name == "folder":
        return scan(root)[0]
    return []


def content_key(node: dict) -> str:
    """A digest of the files a data set reads: their paths, sizes and modification times (and, for data
    shipped with a package, that package's version). Replacing, adding or removing a file changes it."""
    h = hashlib.sha256()
    if node["name"] == "digits":
        import sklearn

        h.update(f"scikit-learn {sklearn.__version__}".encode())
    for path in source_files(node):
        stat = path.stat()
        h.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def real_features(backbone, node: dict, options: dict, shape) -> dict:
    """Features of the real images, with their mean and covariance (float64), cached on disk.

    The cache key covers the backbone (its weights' hash or the classifier's data fingerprint), the
    data set node, what its files hold (content_key: paths, sizes, modification times), the image shape,
    the number of images, the seed of the subset and this code's version; a cached file whose stored
    protocol differs from the one asked for is never used.
    """
    protocol = {"version": REAL_STATS_VERSION, "backbone": backbone.key, "data": node, "shape": list(shape),
                "content": content_key(node), "num_real": options["num_real"], "seed": options["seed"]}
    key = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir(options["cache_dir"]) / "real_stats" / f"{key}.pt"
    if path.is_file():
        try:
            cached = checkpoint.read_tensors(path, "statistics cache")
        except UserError as e:  # a damaged (or doctored) cache file is rebuilt, never run
            log.warning("%s; computing the real statistics again", e)
            cached = None
        if isinstance(cached, dict) and cached.get("protocol") == json.loads(json.dumps(protocol)):
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


# --- during training ------------------------------------------------------------------------------

# trainer.eval_metric: what is better for each (lower, or higher).
LOWER_IS_BETTER = {"fid": True, "kid": True, "is": False, "precision": False, "recall": False,
                   "reverse_kl": True, "hq_percent": False, "modes": False, "balanced_hq": False}
TOY2D_METRICS = ("modes", "hq_percent", "reverse_kl", "balanced_hq")
IMAGE_METRICS = ("fid", "kid", "is", "precision", "recall")
MODE_METRICS = ("modes", "reverse_kl")  # of data with modes to count (Stacked MNIST)


def direction(metric: str) -> str:
    """"minimize" or "maximize": how a search or a sweep's ranking should move the metric (unknown: minimize)."""
    return "minimize" if LOWER_IS_BETTER.get(metric, True) else "maximize"


def equal_sizes(real, fake, seed: int):
    """Precision and recall compare k-NN balls whose radii shrink as a set grows: both sides are cut to
    the size of the smaller one (a random subset seeded by `seed`), as Kynkaanniemi et al. measure them."""
    n = min(len(real), len(fake))
    rng = np.random.RandomState(seed)
    pick = [x if len(x) == n else x[np.sort(rng.choice(len(x), n, replace=False))] for x in (real, fake)]
    return pick[0], pick[1]


class TrainingEvaluator:
    """`trainer.eval_every`: one metric of the game's samples during training, with the classifier
    backbone (trained once per data set and cached, like the real features) or, on toy2d, the mode
    metrics. Measuring changes nothing of the run: the nets' modes are restored, and the samples and the
    classifier draw from random streams of their own."""

    def __init__(self, node: dict, data, game, metric: str, num_samples: int, batch_size: int, seed: int, device,
                 cache=None):
        if hasattr(game, "upscale"):
            raise UserError(f"trainer.eval_every measures z -> image games; score a {game.name} run's checkpoints "
                            "with gan-eval (PSNR, SSIM against bicubic)")
        if hasattr(game, "translate"):
            raise UserError(f"trainer.eval_every measures z -> image games; score a {game.name} run's checkpoints "
                            "with gan-eval (L1, PSNR, SSIM, FID, label preservation)")
        toy = len(data.shape) == 1
        allowed = allowed_metrics(data)
        if metric not in allowed:
            raise UserError(f"trainer.eval_metric={metric} does not apply to {data.name}; choose one of: "
                            f"{', '.join(allowed)}")
        self.metric, self.num_samples, self.batch_size, self.seed = metric, num_samples, batch_size, seed
        self.data, self.game, self.device, self.toy = data, game, device, toy
        self.lower_is_better = LOWER_IS_BETTER[metric]
        self.rng_devices = [device] if device.type == "cuda" else []
        if not toy:
            # Building the classifier draws its initial weights (even when trained ones are then loaded).
            with torch.random.fork_rng(devices=self.rng_devices):
                self.backbone = classifier_backbone(node, device, cache, progress=False)
            options = {"num_real": None, "seed": seed, "batch_size": batch_size, "progress": False, "cache_dir": cache}
            if metric in IMAGE_METRICS:  # counting modes needs no real features
                self.real = real_features(self.backbone, node, options, data.shape)

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value < best if self.lower_is_better else value > best)

    def __call__(self, nets: dict) -> float:
        with torch.random.fork_rng(devices=self.rng_devices):
            return self._measure(nets)

    @torch.no_grad()
    def _measure(self, nets: dict) -> float:
        modes = {name: net.training for name, net in nets.items()}
        for net in nets.values():
            net.eval()
        try:
            batches = self.game.generate(nets, self.num_samples, self.seed, self.device, self.batch_size)
            if self.toy:
                points = torch.cat(list(batches))
                return float(toy2d_metrics.mode_metrics(points, self.data.centres, self.data.sigma)[self.metric])
            features, probs = extract(self.backbone, (to_uint8(x) for x in batches), self.num_samples, "", False)
        finally:
            for name, net in nets.items():
                net.train(modes[name])
        if self.metric in MODE_METRICS:
            return float(mode_coverage(probs.argmax(1), self.data.mode_classes)[self.metric])
        if self.metric == "fid":
            return scores.frechet_distance(*scores.gaussian(features.astype(np.float64)), self.real["mu"],
                                           self.real["sigma"])
        if self.metric == "kid":
            size = min(1000, len(features), len(self.real["features"]))
            return scores.kernel_inception_distance(self.real["features"], features, 20, size, seed=self.seed)[0]
        if self.metric == "is":
            return scores.inception_score(probs, 10)[0]
        precision, recall = scores.precision_recall(*equal_sizes(self.real["features"], features, self.seed),
                                                    device=self.device)
        return precision if self.metric == "precision" else recall
