"""A trained model from Python, outside the command line:

    import gan_cli
    model = gan_cli.load("outputs/2026-12-06/09-30-00")       # a run folder or a checkpoint file
    images = model.sample(16, seed=0)                          # 16 x C x H x W in [-1, 1], on the CPU

`sample(n, seed=s)` draws the images of seeds s, s+1, ..., the ones `gan-sample ckpt=<run> seed=s n=n`
writes (every image's z comes from its seed alone, see gan_cli.latents). A class-conditional G takes
`label=3` (every image of class 3) or `label=[0, 1, ...]` (one class per image; default: the classes in
turn); InfoGAN reads the label as its categorical code. `truncation=psi` is the truncation trick (in W for
a style-based G). `model.to_pil(images)` gives PIL images; `model.G` is the net itself (G_ema where the run
kept one), `model.nets` every net of the run (D too).
"""

import io
from pathlib import Path

import torch

from gan_cli import UserError, build, runtime, writes
from gan_cli.latents import InW, draw, generate, style_based


class Model:
    def __init__(self, loaded, device: torch.device):
        self.device = device
        self.G, self.nets, self.which = loaded.net, loaded.nets, loaded.which
        self.game, self.config, self.path = loaded.game, loaded.config, Path(loaded.path)
        self.step = loaded.state["step"]
        self.shape = tuple(loaded.data.shape)
        self.cond = getattr(self.game, "cond", None)
        self.num_classes = 0 if self.cond is None else (self.cond.num_classes or getattr(self.cond, "categorical", 0))
        self.z_dim = getattr(self.G, "z_dim", None)

    def __repr__(self) -> str:
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        return (f"<gan_cli model: game {self.game.name}, {self.which} at step {self.step}, samples of shape "
                f"{self.shape}{classes}, from {self.path}>")

    @torch.no_grad()
    def sample(self, n: int = 16, seed: int = 0, *, label=None, truncation: float | None = None,
               batch_size: int = 250) -> torch.Tensor:
        """n samples (images in [-1, 1], or points for toy2d) of seeds seed .. seed + n - 1, on the CPU."""
        if hasattr(self.game, "translate") or hasattr(self.game, "upscale"):
            raise UserError(f"a {self.game.name} run maps images to images: call model.G on a batch of images in "
                            "[-1, 1], or use gan-sample mode=translate / mode=upscale")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UserError(f"n must be a positive number of samples, got {n!r}")
        labels = self._labels(n, label)
        style = style_based(self.G)
        if truncation is not None and (isinstance(truncation, bool) or not isinstance(truncation, (int, float))
                                       or truncation < 0 or (truncation == 0 and not style)):
            raise UserError(f"truncation must be a number > 0 (>= 0 for a style-based G), got {truncation!r}")
        # As gan-sample draws: z from each seed's stream; a style-based G truncated in W, any other in z.
        z, c = draw(range(seed, seed + n), self.z_dim, self.cond, labels, None if style else truncation)
        G = InW(self.G, 1.0 if truncation is None else float(truncation), None) if style else self.G
        return generate(G, z, batch_size, self.device, c)

    def _labels(self, n: int, label):
        if not self.num_classes:
            if label is not None:
                raise UserError(f"label= needs a class-conditional run; this one ({self.game.name}) takes none")
            return None
        if label is None:
            return [i % self.num_classes for i in range(n)]
        labels = [label] * n if isinstance(label, int) and not isinstance(label, bool) else label
        if not isinstance(labels, (list, tuple)) or len(labels) != n or not all(
                isinstance(k, int) and not isinstance(k, bool) and 0 <= k < self.num_classes for k in labels):
            raise UserError(f"label must be a class in 0-{self.num_classes - 1} or a list of {n} of them, got "
                            f"{label!r}")
        return list(labels)

    @staticmethod
    def to_pil(images: torch.Tensor) -> list:
        """Images in [-1, 1] (N x C x H x W) -> PIL images."""
        from PIL import Image

        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]


def load(run, use_ema: bool = True, device: str = "auto") -> Model:
    """The model of a run folder or checkpoint file, its nets in eval mode on `device` (auto: cuda, mps, cpu)."""
    device = runtime.pick_device(device)
    return Model(build.load(run, use_ema, device), device)


class _Sampler(torch.nn.Module):
    """G as a plain function of z (and c): a style-based G through w (truncated by psi), a growing G at its
    current level and fade-in, fixed at export."""

    def __init__(self, G, psi: float | None):
        super().__init__()
        self.G = G
        self.in_w = InW(G, 1.0 if psi is None else psi, None) if style_based(G) else None
        self.growth = G.growth() if hasattr(G, "growth") else None

    def draw(self, z, c=None):
        if self.in_w is not None:
            return self.in_w(z)
        if self.growth is not None:
            return self.G(z, growth=self.growth)
        return self.G(z) if c is None else self.G(z, c)


class _Unconditional(_Sampler):
    def forward(self, z):
        return self.draw(z)


class _Conditional(_Sampler):
    def forward(self, z, c):
        return self.draw(z, c)


def export(model: Model, path, truncation: float | None = None) -> dict:
    """Write `model`'s G as a torch.export program (any batch size) that plain PyTorch loads and runs:

        program = torch.export.load(path).module()
        images = program(torch.randn(16, z_dim))            # (z, c) for a conditional G

    Returns what the file's "gan_cli.json" entry holds: z_dim, the condition G takes, the sample shape."""
    import json

    if hasattr(model.game, "translate") or hasattr(model.game, "upscale"):
        raise UserError(f"mode=export writes z -> image generators; a {model.game.name} run maps images to images")
    _, c = draw([0, 1], model.z_dim, model.cond, [0, 1] if model.num_classes else None)
    z = torch.randn(2, model.z_dim, device=model.device)
    G = model.G.eval()
    wrapper = (_Unconditional if c is None else _Conditional)(G, truncation).eval()
    batch = torch.export.Dim("batch", min=1)
    args = (z,) if c is None else (z, c.to(model.device))
    shapes = {"z": {0: batch}} if c is None else {"z": {0: batch}, "c": {0: batch}}
    with torch.no_grad():
        program = torch.export.export(wrapper, args, dynamic_shapes=shapes)
    if c is None:
        takes = "z"
    elif c.dtype == torch.long:
        takes = f"z, c: class labels (int64) in 0-{model.num_classes - 1}"
    else:
        takes = f"z, c: InfoGAN codes ({c.shape[1]} numbers: one-hot category, then continuous codes in [-1, 1])"
    info = {"z_dim": model.z_dim, "inputs": takes, "output_shape": list(model.shape), "range": [-1, 1],
            "net": model.which, "step": model.step, "game": model.game.name,
            "truncation": truncation, "device": str(model.device)}
    buffer = io.BytesIO()  # made in memory, then written whole: a refused write is one line (gan_cli/writes.py)
    torch.export.save(program, buffer, extra_files={"gan_cli.json": json.dumps(info)})
    writes.write_bytes(path, buffer.getbuffer())
    return info
