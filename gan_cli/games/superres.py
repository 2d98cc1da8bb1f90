"""Super-resolution: SRResNet and SRGAN (Ledig et al. 2017).

G maps a low-resolution image (the bicubic downscale of an HR crop, gan_cli/data/superres.py) to an image
`scale` times larger. Its loss is a content loss against the HR crop plus, for SRGAN, 1e-3 times the
adversarial loss of D, which judges HR images (real) against G's outputs. Content losses:

    mse            the pixel MSE (SRResNet, the pre-training stage; the paper's SRGAN-MSE with D)
    vgg            MSE of VGG19's relu5_4 features (the paper's VGG54), each feature divided by 12.75 as the
                   paper does; ImageNet weights from game.perceptual.weights or torch hub's cache
    classifier     MSE of the deepest conv features (128 maps) of gan-eval's small classifier of the data
                   set's labels (trained once, cached): offline, for labelled sources such as digits
    discriminator  MSE of D's features of the last conv block (feature matching, Salimans et al. 2016):
                   offline, for any source; needs D (adversarial_weight > 0)

Players: SRResNet (adversarial_weight 0) has G alone. SRGAN: D on a fresh batch, then G through the frozen
D on D's G(LR), as in pix2pix's game. A batch is (LR, HR, labels).
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from gan_cli import UserError, checkpoint, plots, registry
from gan_cli.games.base import Game, Player, evaluating

CONTENTS = ("mse", "vgg", "classifier", "discriminator")
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG_RELU5_4 = 36           # vgg19.features[:36] ends with the ReLU after conv5_4
VGG_RESCALE = 1 / 12.75    # the paper's rescaling of the VGG feature maps
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Upscaling a large image: G runs on tiles of TILE x TILE input pixels, each with TILE_OVERLAP pixels of its
# neighbours around it whose outputs are dropped, so the seams see (nearly) the context a whole pass would.
TILE, TILE_OVERLAP = 256, 16


def _superres_data(data, game: str):
    from gan_cli.data.superres import SuperResBatches

    if not isinstance(data, SuperResBatches):
        raise UserError(f"game {game} learns from low- and high-resolution pairs: set dataset=superres "
                        f"(dataset.source=photos|digits|folder|...); {data.name} is not")
    return data


def vgg_weights_path(weights) -> Path:
    """The VGG19 file to read: game.perceptual.weights, else torch hub's cached copy; a one-line error
    naming the URL and where to put the file when neither is there."""
    if weights:
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise UserError(f"game.perceptual.weights={weights}: no such file (VGG19's ImageNet weights, {VGG19_URL})")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name
    if not path.is_file():
        raise UserError(f"game.content=vgg needs VGG19's ImageNet weights, which gan-cli does not download: fetch "
                        f"{VGG19_URL} and put it at {path} or set game.perceptual.weights=<file>; offline content "
                        "losses: game.content=classifier (labelled data) or game.content=discriminator")
    return path


class VGGFeatures(torch.nn.Module):
    """VGG19's convolutional layers up to relu5_4, frozen, on images in [-1, 1] (grayscale repeated to RGB),
    normalised as ImageNet's training images were."""

    def __init__(self, weights=None):
        super().__init__()
        import torchvision

        path = vgg_weights_path(weights)
        state = checkpoint.read_tensors(path, "VGG19 weights file")
        net = torchvision.models.vgg19(weights=None)
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError) as e:
            raise UserError(f"{path} is not VGG19's weights ({str(e).splitlines()[0]})") from None
        self.body = net.features[:VGG_RELU5_4].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.source = str(path)

    def forward(self, x):
        x = (x.expand(-1, 3, -1, -1) + 1) / 2
        return self.body((x - self.mean) / self.std) * VGG_RESCALE


class ClassifierFeatures(torch.nn.Module):
    """The deepest conv features (after the third block's ReLU) of gan-eval's classifier of the data's labels."""

    def __init__(self, data, device):
        super().__init__()
        from gan_cli.metrics.backbones import ClassifierBackbone

        base = data.sources[0]
        if not data.num_classes or not hasattr(base, "images") or data.test_labels is None:
            raise UserError(f"game.content=classifier needs a labelled data set held in memory (digits, mnist, "
                            f"fashion_mnist, cifar10); {data.name} is not: use game.content=discriminator or mse")
        test = torch.stack([x for x in data.test_images])
        backbone = ClassifierBackbone((base.images.cpu(), base.labels.cpu(), test, data.test_labels,
                                       f"the training images of {data.name}"), torch.device("cpu"), None,
                                      progress=False)
        self.body = backbone.net.body[:17].to(device).eval().requires_grad_(False)
        self.side, self.source = 32, backbone.protocol["weights"]

    def forward(self, x):
        if x.shape[-1] != self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False, antialias=True)
        return self.body(x)


class SuperResolution(Game):
    name = "superres"
    forward_net = "G"

    def __init__(self, *, generator: dict, discriminator: dict, loss: dict, conditioning: dict, data, device,
                 batch_size: int, n_critic: int = 1, num_classes: int | None = None, content: str = "mse",
                 content_weight: float = 1.0, adversarial_weight: float = 1e-3, perceptual: dict | None = None):
        super().__init__()
        self.data = _superres_data(data, self.name)
        if conditioning.get("name", "none") != "none":
            raise UserError(f"game {self.name} takes no conditioning (the low-resolution image is its condition); "
                            f"drop conditioning={conditioning['name']}")
        if n_critic != 1:
            raise UserError(f"game {self.name} updates D once per step (trainer.n_critic=1), got {n_critic}")
        if content not in CONTENTS:
            raise UserError(f"unknown game.content '{content}'; choose one of: {', '.join(CONTENTS)}")
        for key, value in (("content_weight", content_weight), ("adversarial_weight", adversarial_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise UserError(f"game.{key} must be a number >= 0, got {value!r}")
        if not content_weight and not adversarial_weight:
            raise UserError("game.content_weight and game.adversarial_weight are both 0: G would learn nothing")
        if content == "discriminator" and not adversarial_weight:
            raise UserError("game.content=discriminator matches D's features, and without the adversarial term "
                            "(game.adversarial_weight=0) there is no D; choose content=mse or set the weight")
        self.device, self.content = device, content
        self.content_weight, self.adversarial_weight = float(content_weight), float(adversarial_weight)
        self.names = {"generator": generator["name"], "discriminator": discriminator["name"], "loss": loss["name"]}
        self.nets = {"G": registry.build("generator", generator, shape=data.shape, scale=data.scale).to(device)}
        if self.adversarial_weight:
            self.nets["D"] = registry.build("discriminator", discriminator, shape=data.shape).to(device)
        self.objective = registry.build("loss", loss)
        perceptual = dict(perceptual or {})
        self.features = None
        if content == "vgg":
            self.features = VGGFeatures(perceptual.get("weights")).to(device)
        elif content == "classifier":
            self.features = ClassifierFeatures(data, device)
        self._fake = None

    def describe(self):
        content = {"mse": "pixel MSE", "vgg": "VGG19 relu5_4 MSE", "classifier": "classifier-feature MSE",
                   "discriminator": "D-feature MSE"}[self.content]
        kind = "srgan" if self.adversarial_weight else "srresnet"
        head = f"{kind} x{self.data.scale}: {self.names['generator']} G"
        if not self.adversarial_weight:
            return f"{head} trained on {content}"
        return (f"{head} + {self.names['discriminator']} D ({self.content_weight:g} x {content} + "
                f"{self.adversarial_weight:g} x {self.names['loss']} loss)")

    def optimizers(self):
        return {"G": ("G",), "D": ("D",)} if self.adversarial_weight else {"G": ("G",)}

    def players(self):
        if not self.adversarial_weight:
            return [Player("G", trains=("G",), optimizer="G")]
        return [Player("D", trains=("D",), optimizer="D", keeps_graph=("G",)),
                Player("G", trains=("G",), optimizer="G", fresh_batch=False)]

    def differentiated_twice(self):
        return {"D"} if self.adversarial_weight and self.objective.has_penalty else set()

    def content_loss(self, fake, hr, nets):
        if self.content == "mse":
            return (fake - hr).square().mean()
        if self.content == "discriminator":
            D = nets["D"]
            with torch.no_grad():
                target = D.features(hr)[-1]
            return (D.features(fake)[-1] - target).square().mean()
        with torch.no_grad():
            target = self.features(hr)
        return (self.features(fake) - target).square().mean()

    def loss(self, player, batch, nets, step):
        lr, hr = batch[0], batch[1]
        if player.name == "D":
            self._fake = fake = nets["G"](lr)  # its graph is kept for G's update
            real_scores, fake_scores = nets["D"](hr), nets["D"](fake.detach())
            loss = self.objective.d_loss(real_scores, fake_scores)
            with torch.autocast(self.device.type, enabled=False):
                penalty = self.objective.penalty(nets.plain("D"), hr, fake.detach())
            if penalty is not None:
                loss = loss + penalty
            return loss, {"loss/D": loss.detach(), "D/real_score": real_scores.detach().float().mean(),
                          "D/fake_score": fake_scores.detach().float().mean()}
        if not self.adversarial_weight:
            fake = nets["G"](lr)
            content = self.content_loss(fake, hr, nets)
            loss = self.content_weight * content
            return loss, {"loss/G": loss.detach(), "G/content": content.detach(),
                          "G/mse": (fake.detach() - hr).square().mean()}
        fake, self._fake = self._fake, None
        adversarial = self.objective.g_loss(nets["D"](fake))
        content = self.content_loss(fake, hr, nets)
        loss = self.content_weight * content + self.adversarial_weight * adversarial
        return loss, {"loss/G": loss.detach(), "G/content": content.detach(), "G/adversarial": adversarial.detach(),
                      "G/mse": (fake.detach() - hr).square().mean()}

    def after_update(self, player, nets):
        if player.name == "D":
            self.objective.after_d_step(nets.plain("D"))

    # --- pictures and samples ---------------------------------------------------------------------

    @torch.no_grad()
    def upscale(self, nets, lr: torch.Tensor, name: str | None = None, tile: int = TILE) -> torch.Tensor:
        """G's upscaling of low-resolution images in [-1, 1], in eval mode, clipped to [-1, 1]. Inputs of
        more than tile x tile pixels go through G in overlapping tiles (see TILE), so that a large photo
        needs no more memory than a tile."""
        with evaluating(nets[name or self.forward_net]) as G:
            h, w = lr.shape[-2:]
            if h * w <= tile * tile:
                return G(lr).clamp(-1, 1)
            s, core = self.data.scale, tile - 2 * TILE_OVERLAP
            out = None
            for top in range(0, h, core):
                for left in range(0, w, core):
                    bottom, right = min(top + core, h), min(left + core, w)
                    t0, l0 = max(0, top - TILE_OVERLAP), max(0, left - TILE_OVERLAP)
                    y = G(lr[..., t0:min(h, bottom + TILE_OVERLAP), l0:min(w, right + TILE_OVERLAP)])
                    if out is None:
                        out = y.new_empty(*y.shape[:2], h * s, w * s)
                    out[..., top * s:bottom * s, left * s:right * s] = \
                        y[..., (top - t0) * s:(bottom - t0) * s, (left - l0) * s:(right - l0) * s]
            return out.clamp(-1, 1)


    def sampling_net(self, nets: dict, use_ema: bool = True) -> str:
        return self.forward_net

    def fixed_inputs(self, seed, count, device):
        """Centre crops (the training crop's size) of the first test images (at most 8): the same when resumed."""
        side = self.data.shape[-1]
        crops = []
        for hr in self.data.test(max(1, min(count, 8)), device)["hr"]:
            h, w = hr.shape[-2:]
            s = min(side, h - h % self.data.scale, w - w % self.data.scale)
            top, left = (h - s) // 2, (w - s) // 2
            crops.append(hr[..., top:top + s, left:left + s])
        s = min(c.shape[-1] for c in crops)
        hr = torch.cat([c[..., :s, :s] for c in crops])
        from gan_cli.data.superres import low_resolution

        return {"hr": hr, "lr": low_resolution(hr, self.data.scale)}

    def preview(self, nets, fixed):
        from gan_cli.metrics.superres import upscale_bicubic

        lr, hr = fixed["lr"], fixed["hr"]
        sr = self.upscale(nets, lr)
        bicubic = upscale_bicubic(lr, self.data.scale).clamp(-1, 1)
        rgb = [x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x for x in (bicubic, sr, hr)]
        grid = plots.image_grid(torch.cat(rgb), nrow=len(hr))
        return plots.label_rows(grid, ["bicubic", "SR", "original"], margin=64), {}

    def generate(self, nets, n, seed, device, batch_size, use_ema=True):
        """Upscalings of the first n test images (all of them when there are fewer), one at a time."""
        for lr in self.data.test(n, device)["lr"]:
            yield self.upscale(nets, lr)
