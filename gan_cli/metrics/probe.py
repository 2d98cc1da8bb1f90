"""The DCGAN linear probe (Radford et al. 2016, section 5.1): how well D's features classify real images.

    gan-eval ckpt=<run> metrics=[probe]                    every labelled training image
    gan-eval ckpt=<run> metrics=[probe] probe_labels=10    10 labels per class, probe_draws random draws
    gan-eval ckpt=<run> metrics=[probe] probe_test=<folder>   trained on all the run's data, tested there

D runs in eval mode on the run's data set (or real=): each of its layers' outputs (dcgan: every conv
block's activation; resnet: every residual block; mlp: every hidden layer) is max-pooled to a 4x4 grid,
flattened, and all of them are concatenated. The features are standardised (mean and scale of the
training images) and a linear SVM (squared hinge, one class against the rest) is trained on the labelled
training split (the data set's train split, or 90 % of its images; with probe_test=, all of them), C
chosen from PROBE_C on a validation fifth of it (from the smallest up, until two in a row do no better),
then refitted on all of it with that C and scored on the test split. Baselines, scored the same way: the
same D architecture with its random initial weights (seeded), and the raw pixels.
"""

import copy
from pathlib import Path
import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.data import to_unit_range

log = logging.getLogger("gan_cli.probe")

PROBE_C = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the SVM's C, chosen on the validation split
ROUND = 50  # L-BFGS iterations between updates of the SVM's preconditioner
TOLERANCE = 1e-7  # the SVM's fit ends when a round of ROUND iterations lowers its objective by less than this fraction
POOLED = 4  # each layer's output is max-pooled to POOLED x POOLED positions


def probe_layers(D: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are D's features: the activation after each conv (or linear) layer of a
    dcgan or mlp D, each residual block of a resnet D; the scoring layer is never one of them."""
    from gan_cli.models.pack import Packed
    from gan_cli.models.resnet import DBlock

    if isinstance(D, Packed):
        raise UserError(f"this D scores {D.pack} samples at once (discriminator.pack={D.pack}): its features describe "
                        "a pack, not one image, and no probe or inversion reads them")
    if hasattr(D, "body"):
        layers = [m for m in D.body if isinstance(m, DBlock)]
    elif hasattr(D, "net"):
        layers = [m for m in D.net if isinstance(m, (nn.LeakyReLU, nn.ReLU))]
    else:
        layers = []
    if not layers:
        raise UserError(f"metrics=[probe] reads the layers of dcgan, resnet and mlp critics; this D is "
                        f"{type(D).__name__}")
    return layers


def pool(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * 4 * 4) by max-pooling to a 4x4 grid (maps smaller than that as they are);
    (N, F) from a linear layer as it is."""
    if features.dim() == 4 and features.shape[-1] > POOLED:
        features = F.adaptive_max_pool2d(features, POOLED)
    return features.flatten(1)


@torch.no_grad()
def d_features(D: nn.Module, images: torch.Tensor, device, batch_size: int = 250) -> np.ndarray:
    """D's pooled, concatenated layer outputs for images in [-1, 1] (N, C, H, W). D runs in eval mode and
    is left as it was (mode, weights, buffers: it works on a copy)."""
    if getattr(D, "class_input", "none") == "concat":
        raise UserError("metrics=[probe] needs a D that reads images alone; this one takes the label as an input "
                        "(conditioning cgan), so its features would be told the answer")
    net = copy.deepcopy(D).to(device).eval()
    out = [layer_features(net, images[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def layer_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One forward pass of D: its probe layers' outputs, pooled and concatenated (differentiable; the
    caller sets the mode and no_grad)."""
    kept: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: kept.append(pool(out))) for m in probe_layers(net)]
    try:  # a projection D takes labels, but its features come before the projection: any label will do
        net(x, torch.zeros(len(x), dtype=torch.long, device=x.device)) \
            if getattr(net, "class_input", "none") == "projection" else net(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(kept, dim=1)


def pixel_features(images: torch.Tensor) -> np.ndarray:
    return images.float().flatten(1).numpy()


class LinearSVM:
    """A linear SVM with the squared hinge, one class against the rest, on standardised features: for each
    class k, min_w 1/2 |w|^2 + C sum_i max(0, 1 - y_ik <w, [x_i, 1]>)^2 with y_ik = +1 for class k, else -1.
    That is scikit-learn's LinearSVC objective (the intercept a weight on a constant feature of 1, and
    regularised with the rest; tests check the two agree). Solved by L-BFGS in torch, in the span of the
    training rows (the optimum lies there: see RowSpace) and preconditioned: on 4,000 rows of 7,168-d
    features a fit takes 20 to 350 iterations, five C together a fifth of plain L-BFGS's time in the full space."""

    def __init__(self, c: float, max_iter: int = 500):
        self.c, self.max_iter = c, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray, init: "LinearSVM | None" = None,
            space: "RowSpace | None" = None) -> "LinearSVM":
        """init: a fit on the same rows (another C) to start from; space: RowSpace(x), when the caller
        fits several C on the same x."""
        space = space or RowSpace(x)
        self.mean, self.scale, self.classes = space.mean, space.scale, np.unique(y)
        signs = torch.where(torch.as_tensor(y)[:, None] == torch.as_tensor(self.classes)[None], 1.0, -1.0).double()
        # Preconditioned L-BFGS: in the row space's basis (orthogonal columns) the Hessian of class k's
        # objective has the diagonal 1 + 2 C sum_{i active} rows_ij^2 (active: inside the margin), and
        # component j is scaled by the root of it. The active sets move as the fit goes, so the scaling is
        # recomputed every ROUND iterations, each round starting where the last ended, until a round lowers
        # the objective by less than TOLERANCE of it (the predictions have long stopped changing by then).
        coords = init.coords.clone() if init is not None and init.coords.shape == (space.rows.shape[1],
                                                                                   len(self.classes)) else \
            torch.zeros(space.rows.shape[1], len(self.classes), dtype=torch.float64)
        squares = space.rows.square()

        def objective_of(coords):
            slack = F.relu(1 - signs * (space.rows @ coords))
            return 0.5 * coords.square().sum() + self.c * slack.square().sum()

        self.iterations, before = 0, float(objective_of(coords))
        while self.iterations < self.max_iter:
            active = (signs * (space.rows @ coords) < 1).double()
            root = (1 + 2 * self.c * squares.T @ active).sqrt()
            scaled = (coords * root).requires_grad_(True)
            opt = torch.optim.LBFGS([scaled], lr=1, max_iter=ROUND, tolerance_grad=1e-12,
                                    tolerance_change=TOLERANCE * before / 100, history_size=20,
                                    line_search_fn="strong_wolfe")

            def objective():
                opt.zero_grad()
                loss = objective_of(scaled / root)
                loss.backward()
                return loss

            opt.step(objective)
            coords = (scaled / root).detach()
            self.iterations += opt.state[scaled]["n_iter"]
            after = float(objective_of(coords))
            if before - after < TOLERANCE * before:
                break
            before = after
        self.coords = coords
        self.weights = space.basis @ self.coords  # (features + 1, classes): the last row is the intercept
        return self

    def decision_function(self, x) -> np.ndarray:
        return (_design(x, self.mean, self.scale) @ self.weights).numpy()

    def predict(self, x) -> np.ndarray:
        return self.classes[self.decision_function(x).argmax(1)]


def _design(x, mean, scale) -> torch.Tensor:
    """Standardised features and a constant 1, in float64 (in float32 L-BFGS stalls short of the optimum)."""
    x = (torch.as_tensor(x, dtype=torch.float64) - mean) / scale
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)


class RowSpace:
    """The standardised design matrix X (n rows, d features and the constant) in an orthonormal basis of
    its row space. Any w splits into a part in that space and one orthogonal to every row; the second
    only adds to |w|^2, so the SVM's optimum is w = basis @ a with a in rank(X) <= min(n, d + 1)
    dimensions, and X w = rows @ a, |w| = |a| exactly. basis comes from the eigenvectors of the smaller
    of X X^T and X^T X; rows = X @ basis has orthogonal columns of squared norms `eigenvalues`."""

    def __init__(self, x: np.ndarray):
        x = torch.as_tensor(x, dtype=torch.float64)
        self.mean, self.scale = x.mean(0), x.std(0, unbiased=False)
        self.scale[self.scale == 0] = 1.0  # constant features (as StandardScaler)
        design = _design(x, self.mean, self.scale)
        n, d = design.shape
        gram = design @ design.T if n < d else design.T @ design
        eigenvalues, vectors = torch.linalg.eigh(gram)
        keep = eigenvalues > eigenvalues.max() * max(n, d) * torch.finfo(torch.float64).eps
        self.eigenvalues, vectors = eigenvalues[keep], vectors[:, keep]
        self.basis = design.T @ vectors / self.eigenvalues.sqrt() if n < d else vectors
        self.rows = design @ self.basis


def fit_svm(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """The SVM with C chosen from PROBE_C on a stratified validation fifth of (x, y), then refitted on all
    of it. The C are tried from the smallest up, until two in a row have not raised the validation
    accuracy. Returns (predict function, C)."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    if (counts[counts > 0] >= 2).all() and len(y) >= 2 * len(np.unique(y)):
        fit_x, val_x, fit_y, val_y = train_test_split(x, y, test_size=max(0.2, len(np.unique(y)) / len(y)),
                                                      stratify=y, random_state=seed)
        scores, previous, space = [], None, RowSpace(fit_x)
        for c in PROBE_C:  # from the strongest regularisation up, each fit starting from the last
            previous = LinearSVM(c).fit(fit_x, fit_y, init=previous, space=space)
            scores.append((float((previous.predict(val_x) == val_y).mean()), -c))
            if len(scores) > 2 and max(scores[-2:])[0] <= max(scores[:-2])[0]:
                break  # two larger C in a row no better: the weakly regularised fits are the slow ones
        best = -max(scores)[1]  # ties: the smaller C (the stronger regularisation)
    else:  # one label of some class: nothing to validate on
        best = 1e-2
    return LinearSVM(best).fit(x, y).predict, best


def few_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` labelled items of each class, drawn at random (all of a class with fewer)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))


def probe_accuracy(train_x, train_y, test_x, test_y, per_class=None, draws=5, seed=0) -> dict:
    """Test accuracy of the SVM on these features: with every training label, or mean and std over
    `draws` random draws of `per_class` labels per class."""
    runs = [None] if per_class is None else [few_labels(train_y, per_class, seed + d) for d in range(draws)]
    accuracies, cs = [], []
    for chosen in runs:
        x, y = (train_x, train_y) if chosen is None else (train_x[chosen], train_y[chosen])
        predict, c = fit_svm(x, y, seed)
        accuracies.append(float((predict(test_x) == test_y).mean()))
        cs.append(c)
    return {"mean": float(np.mean(accuracies)), "std": float(np.std(accuracies)), "accuracies": accuracies,
            "C": cs, "train_images": len(train_y) if per_class is None else len(runs[0])}


def probe_data(node: dict, options: dict, shape) -> tuple:
    """(train images, labels, test images, labels, description): the data set's train and test splits (or
    a seeded 90/10 split, as for the classifier backbone); with probe_test=, all of the data for training
    and probe_test's labelled images for testing (class folders of the same names)."""
    from gan_cli.data.folder import scan
    from gan_cli.metrics.protocol import build_data, dataset_node, labelled_split

    if options["probe_test"] is None:
        return labelled_split(node, options["seed"])
    test_node = dataset_node(options["probe_test"], None, shape[1], shape[0])
    train, test = build_data(node), build_data(test_node)
    for data, what in ((train, "the probe's training data"), (test, f"probe_test={options['probe_test']}")):
        if getattr(data, "labels", None) is None:
            raise UserError(f"metrics=[probe] needs labelled images; {what} ({data.name}) has no labels or streams "
                            "from disk")
    def class_names(n):
        return scan(Path(str(n["root"])).expanduser())[2]

    if node["name"] == test_node["name"] == "folder" and class_names(node) != class_names(test_node):
        raise UserError(f"probe_test={options['probe_test']} has other class folders than {node['root']}")
    return train.images, train.labels, test.images, test.labels, f"{train.name}, tested on {test.name}"


def evaluate_probe(loaded, node: dict, options: dict, device, result: dict) -> dict:
    """gan-eval metrics=[probe]: D of the checkpoint against its random initial weights and raw pixels."""
    from gan_cli import build
    if "D" not in loaded.nets:
        raise UserError(f"metrics=[probe] reads a discriminator D; this checkpoint's nets are {', '.join(loaded.nets)}")
    trained = loaded.nets["D"]
    train_images, train_labels, test_images, test_labels, description = probe_data(node, options, trained.shape)
    shape = tuple(trained.shape) if hasattr(trained, "shape") else None
    if shape is not None and tuple(train_images.shape[1:]) != shape:
        raise UserError(f"metrics=[probe]: D reads {'x'.join(map(str, shape))} images and the probe's data are "
                        f"{'x'.join(map(str, train_images.shape[1:]))}")
    if options["num_real"] is not None and options["num_real"] < len(train_images):  # a seeded subset
        from gan_cli.metrics.protocol import seeded_order

        keep = seeded_order(len(train_images), options["num_real"], options["seed"])
        train_images, train_labels = train_images[keep], train_labels[keep]
        description += f" (a seeded subset of {len(keep)} training images)"
    train_x, test_x = to_unit_range(train_images), to_unit_range(test_images)
    train_y, test_y = train_labels.numpy(), test_labels.numpy()
    torch.manual_seed(options["seed"])  # the random D's initial weights
    fresh = build.game(copy.deepcopy(loaded.config), loaded.data, torch.device("cpu"),
                       num_classes=loaded.state.get("num_classes", loaded.data.num_classes)).nets["D"]
    per_class, draws, batch = options["probe_labels"], options["probe_draws"], options["batch_size"]
    rows = {}
    for name, net in (("D (trained)", trained), ("D (random init)", fresh), ("pixels", None)):
        if net is None:
            a, b = pixel_features(train_x), pixel_features(test_x)
        else:
            a, b = d_features(net, train_x, device, batch), d_features(net, test_x, device, batch)
        log.info("probe: %s, %d features", name, a.shape[1])
        rows[name] = {**probe_accuracy(a, train_y, b, test_y, per_class, draws, options["seed"]),
                      "features": int(a.shape[1])}
    m = result["metrics"]
    key = "probe" if per_class is None else f"probe_{per_class}"
    m[f"{key}_accuracy"] = rows["D (trained)"]["mean"]
    m[f"{key}_random_d_accuracy"] = rows["D (random init)"]["mean"]
    m[f"{key}_pixels_accuracy"] = rows["pixels"]["mean"]
    if per_class is not None:
        for name, k in (("D (trained)", key), ("D (random init)", f"{key}_random_d"), ("pixels", f"{key}_pixels")):
            m[f"{k}_accuracy_std"] = rows[name]["std"]
    result["probe"] = rows
    result["protocol"].update({
        "probe": "DCGAN's linear probe: each layer of D max-pooled to 4x4, concatenated, standardised; a linear "
                 "SVM (squared hinge) with C chosen on a validation fifth of the labelled training images, "
                 "refitted on all of them, scored on the test split",
        "probe_data": description,
        "probe_labels": "all" if per_class is None else f"{per_class} per class, {draws} random draws",
        "probe_test_images": len(test_y),
    })
    return result
