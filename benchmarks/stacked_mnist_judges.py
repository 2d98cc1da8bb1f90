"""Who reads Stacked MNIST's digits: the same samples read by three digit classifiers of different kinds.

Every run of `stacked_mnist.py` that keeps its 1,000 modes owes most of its KL to each channel drawing some
digits too often and others too seldom, and always the same ones. This asks whether that skew lies in what
G draws or in how gan-eval's classifier (a small CNN) reads G's imperfect digits: it draws --samples stacks
from each run given, and reads every channel with
    cnn    gan-eval's own digit classifier (the cached one `metrics=[modes]` uses)
    knn    3 nearest neighbours in pixel space among the same training digits (no learned features at all)
    mlp    a two-layer perceptron on the pixels (scikit-learn), trained on the same digits
and the real MNIST test digits the stacks are built from the same way (all of them, and the 1,000 that no
reader trained on). It also gives the CNN's reading of its confident reads only (top probability 0.99 or
more).

    python benchmarks/stacked_mnist_judges.py benchmarks/work/stacked_mnist/<run> [<run> ...]
    python benchmarks/stacked_mnist_judges.py      every run of stacked_mnist.py's work folder that kept all 1,000 modes

Writes <out>/stacked_mnist_judges.md, .json and .png (digits of the first run given, read by cnn and knn: a row
where they agree, then rows where they do not).
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, table  # noqa: E402

HERE = Path(__file__).parent
DIGITS = range(10)


def channel_kl(labels: np.ndarray) -> float:
    """KL(the ten digits' shares || uniform), as gan-eval's channel_kl."""
    from gan_cli.metrics.protocol import _kl_from_uniform

    return _kl_from_uniform(np.bincount(labels, minlength=10).astype(np.float64))


def judges(root: Path):
    """{name: (read(uint8 N x 1 x 32 x 32) -> (labels, top probabilities), held-out accuracy)}."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier

    from gan_cli.metrics.backbones import ClassifierBackbone
    from gan_cli.metrics.protocol import digit_split

    split = digit_split({"name": "stacked_mnist", "root": str(root), "split": "test", "resolution": 32})
    train_x, train_y, test_x, test_y, _ = split
    cnn = ClassifierBackbone(split, torch.device("cpu"), progress=False)

    def read_cnn(images):
        _, probs = cnn.features(images)
        return probs.argmax(1), probs.max(1)

    def pixels(images):
        return images.reshape(len(images), -1).numpy().astype(np.float32) / 255

    knn = KNeighborsClassifier(n_neighbors=3).fit(pixels(train_x), train_y.numpy())
    with warnings.catch_warnings():  # 100 epochs reach 95.9 % held out; sklearn would still like more
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(256,), max_iter=100, random_state=0).fit(pixels(train_x),
                                                                                         train_y.numpy())

    def reader(model):
        def read(images):
            probs = model.predict_proba(pixels(images))
            return model.classes_[probs.argmax(1)], probs.max(1)
        return read

    readers = {"cnn": read_cnn, "knn": reader(knn), "mlp": reader(mlp)}
    result = {}
    for name, read in readers.items():
        labels, _ = read(test_x)
        result[name] = (read, float((labels == test_y.numpy()).mean()))
    return result, torch.cat([train_x, test_x]), test_x


def read_channels(readers, images: torch.Tensor) -> dict:
    """uint8 stacks N x C x 32 x 32 -> {judge: (labels N x C, top probabilities N x C)}."""
    out = {}
    for name, (read, _) in readers.items():
        parts = [read(images[:, c:c + 1]) for c in range(images.shape[1])]
        out[name] = (np.stack([p[0] for p in parts], 1), np.stack([p[1] for p in parts], 1))
    return out


def summary(labels: np.ndarray, top: np.ndarray | None = None) -> dict:
    """Mean over channels of the channel KL; the shares of the ten digits over all channels. With the top
    probabilities `top`, of the confident reads (0.99 or more) alone."""
    keep = np.ones(labels.shape, dtype=bool) if top is None else top >= 0.99
    kl = [channel_kl(labels[:, c][keep[:, c]]) for c in range(labels.shape[1])]
    flat = labels[keep]
    return {"channel_kl": float(np.mean(kl)), "shares": (np.bincount(flat, minlength=10) / len(flat)).tolist(),
            "kept": float(len(flat) / labels.size)}


def figure(images: torch.Tensor, cnn: np.ndarray, knn: np.ndarray, path: Path, per_row=12) -> None:
    """Single-channel digits of the stacks with both readings: one row that the two judges read alike, three
    that they read differently."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    digits = images.reshape(-1, 1, *images.shape[-2:])[:, 0].numpy()
    cnn, knn = cnn.reshape(-1), knn.reshape(-1)
    same, differ = np.flatnonzero(cnn == knn)[:per_row], np.flatnonzero(cnn != knn)[:3 * per_row]
    fig, axes = plt.subplots(4, per_row, figsize=(per_row * 0.9, 4 * 1.1))
    for ax, index in zip(axes.flat, [*same, *differ]):
        ax.imshow(digits[index], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{cnn[index]} / {knn[index]}", fontsize=8, color="black" if cnn[index] == knn[index] else "red")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("G's digits read by cnn / knn: first row alike, the rest not", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run folders (or checkpoint files) of dataset=stacked_mnist")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "stacked_mnist",
                        help="without runs: read the runs of stacked_mnist.py here that covered all 1,000 modes")
    parser.add_argument("--samples", type=int, default=10_000, help="stacks drawn from each run")
    parser.add_argument("--root", type=Path, default=HERE.parents[1] / "shared" / "data" / "mnist-t10k")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from gan_cli import api
    from gan_cli.metrics.protocol import to_uint8

    if not args.runs:
        args.runs = [report.parent for report in sorted(args.work.glob("*/eval-modes.json"))
                     if json.loads(report.read_text())["metrics"].get("modes") == 1000]
        print(f"{len(args.runs)} runs of {args.work} covered all 1,000 modes", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    readers, real_digits, held_out = judges(args.root)
    rows, record = [], {"accuracy": {k: v[1] for k, v in readers.items()}, "runs": {}}
    # The real digits, each once: all of them (the data's own shares; 9,000 are the readers' training digits),
    # and the 1,000 none of the readers trained on (how far readers of real digits agree).
    sources = [("real MNIST test digits", real_digits), ("real, the 1,000 held out", held_out)]
    first_run = len(sources)
    for run in args.runs:
        model = api.load(run, device="cpu")
        name = run.name if run.is_dir() else f"{run.parent.parent.name}, {run.stem}"  # a run, or one checkpoint
        sources.append((name, to_uint8(model.sample(args.samples, seed=0))))
    for name, images in sources:
        reads = read_channels(readers, images)
        record["runs"][name] = {}
        for judge, (labels, top) in reads.items():
            s = summary(labels)
            record["runs"][name][judge] = s
            rows.append([name, judge, f"{s['channel_kl']:.3f}", *(f"{100 * v:.1f}" for v in s["shares"])])
        labels, top = reads["cnn"]
        s = summary(labels, top)
        record["runs"][name]["cnn, confident reads"] = s
        rows.append([name, f"cnn, top p >= 0.99 ({100 * s['kept']:.0f} % of reads)", f"{s['channel_kl']:.3f}",
                     *(f"{100 * v:.1f}" for v in s["shares"])])
        cnn, knn = reads["cnn"][0], reads["knn"][0]
        agree = float((cnn == knn).mean())
        if len(sources) > first_run and name == sources[first_run][0]:
            figure(images[:200], cnn[:200], knn[:200], args.out / "stacked_mnist_judges.png")
        record["runs"][name]["cnn_knn_agreement"] = agree
        print(f"{name}: cnn and knn agree on {100 * agree:.1f} % of the digits", flush=True)

    accuracy = ", ".join(f"{k} {100 * v:.2f} %" for k, v in record["accuracy"].items())
    text = ("# Stacked MNIST: who reads the digits\n\n"
            f"Machine: {machine()}. {args.samples} stacks of each run (the z of sample seeds 0 to "
            f"{args.samples - 1}), every channel read by three digit classifiers trained on the same 9,000 MNIST "
            f"test digits (held-out accuracy: {accuracy}); "
            "channel KL: the mean over channels of KL(digit shares || uniform); shares of each digit (%) over "
            "all channels. Real digits: the 10,000 MNIST test digits, each once (9,000 of them are the readers' "
            "training digits), and the 1,000 held out from all three readers.\n\n"
            + "\n".join(table(["source", "judge", "channel KL", *(str(d) for d in DIGITS)], rows))
            + "\n\nAgreement of cnn and knn, digit by digit: "
            + ", ".join(f"{k} {100 * v['cnn_knn_agreement']:.1f} %" for k, v in record["runs"].items()) + "\n")
    (args.out / "stacked_mnist_judges.md").write_text(text)
    (args.out / "stacked_mnist_judges.json").write_text(json.dumps(record, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
