"""GAN inversion: the latent code whose image G draws closest to a given real image.

    gan-sample ckpt=<run> mode=invert input=<image or folder>     z (or w for a style-based G) of each image
    gan-sample ckpt=<run> mode=invert input=samples n=16          G's own samples: how well z is recovered
    gan-sample ckpt=<run> mode=interpolate codes=<codes.pt>       morph the inverted images into each other

Each image is matched by optimisation (Adam) from several starting codes: `invert_candidates` random codes
are drawn, the `invert_restarts` that already draw the image best start the descent, and the best result
after `invert_steps` steps is kept. The loss per image is the mean squared pixel error, plus
`invert_feature_weight` times the mean squared error between the features of the two images (the classifier
backbone's, trained on the run's data set and cached as for gan-eval, or D's last layers), plus
`invert_prior` times (|z| - sqrt(dim))^2 / dim, which keeps z on the shell where a Gaussian's samples lie
(in W, where the codes have no fixed norm, the prior pulls towards w_avg by |w - w_avg|^2 / dim).

Written: the reconstructions under the inputs' names, a sheet of input | reconstruction pairs, codes.pt
(the codes, their space, the names and per-image scores; gan-sample codes=codes.pt reads it) and
invert.json: PSNR and SSIM (scikit-image) of every reconstruction, the share the classifier gives the
input's class where the inputs sit in class folders named by the class number, and for input=samples the
relative error |z - z_true| / |z_true| beside a random z's.
"""

import logging
import math
from pathlib import Path

import torch
from tqdm import tqdm

from gan_cli import UserError
from gan_cli.metrics.backbones import at_32

log = logging.getLogger("gan_cli.invert")

SPACES = ("z", "w", "w+")
FEATURES = ("classifier", "d", "none")


class Decoder:
    """code -> image for one space: z through G; w or w+ (one w per layer) through a style-based G's
    synthesis with its noise inputs held fixed (so an image has one code)."""

    def __init__(self, G, space: str):
        style = hasattr(G, "ws") and hasattr(G, "synthesis")
        if space != "z" and not style:
            raise UserError(f"space={space} needs a style-based G (model=stylegan2); this G reads z: use space=z")
        self.G, self.space = G, space
        self.dim = G.w_dim if space != "z" else G.z_dim

    def codes_of(self, z: torch.Tensor) -> torch.Tensor:
        """The code of each z in this space (z itself, its w, or its w repeated per layer)."""
        if self.space == "z":
            return z
        ws = self.G.ws(z)
        return ws[:, 0] if self.space == "w" else ws

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        if self.space == "z":
            return self.G(codes)
        ws = codes.unsqueeze(1).expand(-1, self.G.num_ws, -1) if self.space == "w" else codes
        return self.G.synthesis(ws, noise="const")

    def prior(self, codes: torch.Tensor) -> torch.Tensor:
        """Per code: (|z| - sqrt(dim))^2 / dim for z; |w - w_avg|^2 / dim (mean over layers for w+)."""
        if self.space == "z":
            return (codes.norm(dim=1) - math.sqrt(self.dim)).square() / self.dim
        diff = codes - self.G.w_avg
        return diff.square().sum(-1).mean(-1) / self.dim if self.space == "w+" else diff.square().sum(-1) / self.dim


class FeatureLoss:
    """Mean squared distance between the features of two image batches, per image: the classifier
    backbone's 128-d features or D's pooled layer outputs (gan_cli.metrics.probe)."""

    def __init__(self, kind: str, loaded, cache_dir, device, progress: bool):
        self.kind, self.net = kind, None
        if kind == "classifier":
            from gan_cli.metrics.backbones import ClassifierBackbone
            from gan_cli.metrics.protocol import labelled_split

            if loaded.config["dataset"]["name"] == "stacked_mnist":
                raise UserError("invert_features=classifier compares one classifier's features, and Stacked MNIST's "
                                "digits are read channel by channel: use invert_features=d or none")
            self.backbone = ClassifierBackbone(labelled_split(dict(loaded.config["dataset"])), device, cache_dir,
                                               progress)
            self.net = self.backbone.net
        elif kind == "d":
            from gan_cli.metrics.probe import probe_layers

            if "D" not in loaded.nets:
                raise UserError("invert_features=d needs a D in the checkpoint")
            self.net = loaded.nets["D"]
            probe_layers(self.net)  # a D the probe cannot read is one line here, not mid-descent

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "classifier":
            return self.net(at_32(x))[0]
        from gan_cli.metrics.probe import layer_features

        return layer_features(self.net, x)

    def __call__(self, fake: torch.Tensor, target_features: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "none":
            return torch.zeros(len(fake), device=fake.device)
        return (self.features(fake) - target_features).square().mean(1)


def draw_z(seeds, z_dim: int) -> torch.Tensor:
    from gan_cli.latents import draw

    return draw(list(seeds), z_dim)[0]


def invert(decoder: Decoder, targets: torch.Tensor, feature_loss: FeatureLoss, options: dict, device,
           progress: bool = True) -> dict:
    """Codes for target images in [-1, 1] (N, C, H, W). Returns codes (N, ...), reconstructions and the
    final loss per image."""
    o = options
    targets = targets.to(device)
    n, restarts = len(targets), o["invert_restarts"]
    with torch.no_grad():
        target_f = None if feature_loss.kind == "none" else feature_loss.features(targets)

        def loss_of(codes, index):
            fake = decoder(codes)
            pixel = (fake - targets[index]).square().flatten(1).mean(1)
            feats = feature_loss(fake, None if target_f is None else target_f[index])
            return pixel + o["invert_feature_weight"] * feats + o["invert_prior"] * decoder.prior(codes), fake

        # Starting points: of `invert_candidates` random codes, the `restarts` that draw each image best.
        candidates = decoder.codes_of(draw_z(range(o["seed"], o["seed"] + o["invert_candidates"]),
                                             decoder.G.z_dim).to(device))
        starts = []
        for i in range(n):
            scores = torch.cat([loss_of(candidates[k:k + 256], torch.full((len(candidates[k:k + 256]),), i,
                                                                              device=device))[0]
                                for k in range(0, len(candidates), 256)])
            starts.append(candidates[scores.argsort()[:restarts]])
    codes = torch.cat(starts).clone().requires_grad_(True)  # image i's restarts at rows i * restarts + r
    index = torch.arange(n, device=device).repeat_interleave(restarts)
    opt = torch.optim.Adam([codes], lr=o["invert_lr"])
    for _ in tqdm(range(o["invert_steps"]), desc="inverting", unit="step", disable=None if progress else True,
                  leave=False):
        loss, _ = loss_of(codes, index)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        loss, fake = loss_of(codes, index)
        best = loss.view(n, restarts).argmin(1) + torch.arange(n, device=device) * restarts
    return {"codes": codes.detach()[best].cpu(), "images": fake[best].float().cpu(), "loss": loss[best].cpu()}


def psnr_ssim(fake: torch.Tensor, real: torch.Tensor) -> tuple[list[float], list[float]]:
    """PSNR (dB) and SSIM of each reconstruction against its input, both in [-1, 1] (scored as 8-bit images)."""
    from gan_cli.metrics.protocol import to_uint8
    from gan_cli.metrics.translation import per_image_scores

    _, psnr, ssim = per_image_scores(to_uint8(fake), to_uint8(real))
    return psnr, ssim


@torch.no_grad()
def class_of(net, images: torch.Tensor, device) -> torch.Tensor:
    return net(at_32(images.to(device)))[1].argmax(1).cpu()


def read_codes(path) -> dict:
    """codes.pt of mode=invert: {'space', 'codes', 'names', ...}; anything else is a one-line error."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise UserError(f"codes={path}: no such file (mode=invert writes codes.pt)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise UserError(f"codes={path} is not a codes file of mode=invert ({type(e).__name__})") from None
    if not isinstance(saved, dict) or saved.get("space") not in SPACES or not torch.is_tensor(saved.get("codes")):
        raise UserError(f"codes={path} is not a codes file of mode=invert")
    return saved
