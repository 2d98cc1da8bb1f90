"""Feature extractors for the metrics: `features(images)` -> (features, class probabilities).

Both take uint8 images (N x C x H x W, C = 1 or 3) on any device and return float64 NumPy arrays.

    inception   the FID Inception-v3 (the TensorFlow graph of 2015-12-05, torch-fidelity's bit-exact
                port): 2048 pool features, and the softmax of its 1008 unbiased logits for IS
    classifier  a small CNN trained once per data set on its labels and cached: 128 penultimate
                features, and the softmax over the data set's classes
"""

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gan_cli import UserError, checkpoint
from gan_cli.runtime import cache_dir, ieee_float32

log = logging.getLogger("gan_cli.metrics")

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
CLASSIFIER_VERSION = 1  # bump when the classifier or its training changes: cached ones are then retrained


# --- Inception ----------------------------------------------------------------------------------


def inception_network(path: Path):
    """torch-fidelity's Inception-v3 with the weights in `path`, read as tensors only.

    torch-fidelity reads its weights file with torch.load(weights_only=False), which runs whatever code a
    pickle names, and the file's digest is published nowhere but in eight hex digits of its name. So the
    file is read here with weights_only=True (a file that names code is refused in one line, before
    anything of it runs), and the network is built with those tensors: torch-fidelity's own read is handed
    the checked dictionary and never opens the file. Its load_state_dict is strict: names and shapes
    must be the network's."""
    import torch_fidelity.feature_extractor_inceptionv3 as port

    state = checkpoint.read_tensors(path, "Inception weights file")
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path} is not a file of Inception weights (a dictionary of tensors)")

    def checked(*args, **kwargs):
        return state

    original = port.torch.load
    port.torch.load = checked
    try:
        return port.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                feature_extractor_weights_path=str(path))
    except Exception as e:  # other names or shapes
        raise UserError(f"cannot load Inception weights from {path}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}") from None
    finally:
        port.torch.load = original


class InceptionBackbone:
    name = "inception"

    def __init__(self, device, weights=None):
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise UserError(f"inception_weights={weights}: no such file")
        else:
            path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
            if not path.is_file():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch.hub.download_url_to_file(INCEPTION_URL, str(path), progress=True)
                except Exception as e:  # offline, proxy, ...
                    raise UserError(
                        f"cannot download the FID Inception weights ({type(e).__name__}): fetch {INCEPTION_URL} "
                        f"to {path}, or pass inception_weights=<file>"
                    ) from None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.net = inception_network(path)
        self.net.eval().requires_grad_(False).to(device)
        self.device = device
        self.sha256 = digest
        self.protocol = {
            "backbone": "inception",
            "weights": f"{path.name} (sha256 {digest}), torch-fidelity's port of the TF FID Inception-v3, read as "
                       "tensors only",
            "features": "2048-d pool3; IS from the softmax of the 1008 unbiased logits",
            "resize": "uint8 input, resized to 299x299 inside the network (bilinear, as the TF graph)",
        }
        self.key = f"inception-{digest[:16]}"

    @torch.no_grad()
    def features(self, images: torch.Tensor):
        x = images.to(self.device)
        if x.dtype != torch.uint8:
            raise ValueError("the Inception backbone takes uint8 images")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        with ieee_float32(x.device):  # the reference numbers are IEEE float32, whatever the run trains in
            pool, logits = self.net(x)
        return pool.double().cpu().numpy(), F.softmax(logits.double(), dim=1).cpu().numpy()


# --- the domain classifier ---------------------------------------------------------------------


class SmallCNN(nn.Module):
    """32x32 inputs in [-1, 1] -> 128 features -> class logits."""

    def __init__(self, channels: int, classes: int):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(channels, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            *block(64, 128), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(128 * 16, 128), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, classes))

    def forward(self, x):
        features = self.body(x)
        return features, self.head(features)


def classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x C x H x W -> float 32 x 32 in [-1, 1] (bilinear with antialiasing when shrinking)."""
    return at_32(images.float().div(127.5).sub(1.0))


def at_32(x: torch.Tensor) -> torch.Tensor:
    """Float images at the classifier's 32 x 32 (bilinear with antialiasing when shrinking)."""
    if x.shape[-2:] != (32, 32):
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return x


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A digest of every image and label (a classifier trained on other data is never reused)."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().cpu().numpy().tobytes())
    h.update(labels.cpu().numpy().astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def train_classifier(train_x, train_y, test_x, test_y, device, seed=0, progress=True):
    """Fit SmallCNN on uint8 images with integer labels; returns (model, test accuracy).

    Seeded on forked random streams: a caller's own streams (a training run's) are as they were after."""
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        return _fit(train_x, train_y, test_x, test_y, device, seed, progress)


def _fit(train_x, train_y, test_x, test_y, device, seed, progress):
    classes = int(max(train_y.max(), test_y.max())) + 1
    model = SmallCNN(train_x.shape[1], classes).to(device)
    # Enough updates for small sets, a few epochs for large ones.
    batch = 128
    epochs = max(3, min(40, math.ceil(6000 / len(train_x))))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * math.ceil(len(train_x) / batch))
    g = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(train_x) / batch)
    bar = tqdm(total=steps, desc="training the classifier backbone", unit="step", disable=None if progress else True,
                leave=False)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=g)
        for start in range(0, len(train_x), batch):
            idx = order[start:start + batch]
            x = classifier_input(train_x[idx].to(device))
            # Small shifts (up to 2 px) so the classifier does not key on exact pixel positions.
            dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            _, logits = model(x)
            loss = F.cross_entropy(logits, train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test_x), 512):
            _, logits = model(classifier_input(test_x[start:start + 512].to(device)))
            correct += (logits.argmax(1).cpu() == test_y[start:start + 512].cpu()).sum().item()
    return model, correct / len(test_x)


class ClassifierBackbone:
    name = "classifier"

    def __init__(self, labelled, device, cache=None, progress=True):
        """`labelled`: (train_images, train_labels, test_images, test_labels, description) of uint8
        images and integer labels; the trained model is cached by a fingerprint of that data."""
        train_x, train_y, test_x, test_y, description = labelled
        self.device = device
        key = f"v{CLASSIFIER_VERSION}-{data_fingerprint(train_x, train_y)}-{data_fingerprint(test_x, test_y)}"
        path = cache_dir(cache) / "classifiers" / f"{key}.pt"
        classes = int(max(train_y.max(), test_y.max())) + 1
        self.net = SmallCNN(train_x.shape[1], classes)
        state = None
        if path.is_file():
            try:
                state = checkpoint.read_tensors(path, "classifier cache")
                self.net.load_state_dict(state["model"])
                accuracy = float(state["accuracy"])
                log.info("classifier backbone from the cache (%s): test accuracy %.2f%%", path, 100 * accuracy)
            except UserError as e:  # a damaged (or doctored) cache file is retrained, never run
                log.warning("%s; training the classifier again", e)
                state = None
            except (TypeError, KeyError, ValueError, RuntimeError) as e:
                log.warning("the classifier cache %s does not fit (%s); training the classifier again", path,
                            type(e).__name__)
                state = None
        if state is None:
            log.info("training the classifier backbone on %s (%d images; cached after)", description, len(train_x))
            net, accuracy = train_classifier(train_x, train_y, test_x, test_y, device, progress=progress)
            self.net = net.cpu()
            checkpoint.save({"model": self.net.state_dict(), "accuracy": accuracy, "data": description}, path)
            log.info("classifier backbone trained: test accuracy %.2f%% on %d held-out images -> %s",
                     100 * accuracy, len(test_x), path)
        self.net.eval().requires_grad_(False).to(device)
        self.accuracy = accuracy
        self.key = f"classifier-{key}"
        self.protocol = {
            "backbone": "classifier",
            "weights": f"SmallCNN v{CLASSIFIER_VERSION} trained on {description}, test accuracy "
                       f"{100 * accuracy:.2f}% ({path.name})",
            "features": "128-d penultimate layer; IS from the softmax over the data set's classes",
            "resize": "uint8 input, bilinear (antialiased) to 32x32",
        }

    @torch.no_grad()
    def features(self, images: torch.Tensor):
        with ieee_float32(self.device):
            features, logits = self.net(classifier_input(images.to(self.device)))
        return features.double().cpu().numpy(), F.softmax(logits.double(), dim=1).cpu().numpy()


class StackedClassifierBackbone:
    """The backbone of Stacked MNIST: a classifier of single MNIST digits (ClassifierBackbone, trained on the
    digits the stacks are drawn from) reads each of the three channels. Its features are the three channels'
    features side by side (384); its class probabilities, over the 1,000 digit triples, are the products of
    the channels' probabilities (so the most likely triple is the three most likely digits)."""

    name = "classifier"

    def __init__(self, labelled, device, cache=None, progress=True):
        self.digit = ClassifierBackbone(labelled, device, cache, progress)
        self.device, self.accuracy = device, self.digit.accuracy
        self.key = f"stacked-{self.digit.key}"
        self.protocol = {**self.digit.protocol, "backbone": "classifier (per channel)",
                         "features": "each channel read by the digit classifier: 3 x 128 penultimate features; "
                                     "class probabilities over the 1,000 triples, the product of the channels'"}

    @torch.no_grad()
    def features(self, images: torch.Tensor):
        if images.shape[1] != 3:
            raise ValueError(f"Stacked MNIST images have 3 channels, got {images.shape[1]}")
        parts = [self.digit.features(images[:, c:c + 1]) for c in range(3)]
        features = np.concatenate([f for f, _ in parts], axis=1)
        p = [probs for _, probs in parts]
        joint = p[0][:, :, None, None] * p[1][:, None, :, None] * p[2][:, None, None, :]
        return features, joint.reshape(len(images), -1)
