"""Image-to-image games: Pix2Pix (paired) and CycleGAN (unpaired).

Pix2Pix (Isola et al. 2017): G maps an input image A to the target B; D judges (A, B) pairs, the input
and the output side by side along the channels, so it asks "is this a plausible translation of this
input", patch by patch (PatchGAN). G's loss adds lambda * L1(G(A), B) (lambda = 100) to the adversarial
one. Players:
    D   one update on a fresh pair batch: 1/2 [loss(D(A, B), real) + loss(D(A, G(A)), fake)]
    G   one update through D (frozen), reusing D's G(A)

CycleGAN (Zhu et al. 2017): G_AB: A -> B and G_BA: B -> A, judged by D_B and D_A; without pairs, the
cycle-consistency loss lambda (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|) (lambda = 10) ties the two
together, and the identity loss 0.5 lambda (|G_BA(a) - a| + |G_AB(b) - b|) keeps colours where nothing
needs to change. The Ds judge fakes drawn from a history of 50 earlier fakes (Shrivastava et al. 2017),
which the checkpoint keeps. With game.semantic_weight > 0 the Gs also meet CyCADA's semantic consistency
loss (Hoffman et al. 2018): a classifier trained once on the labelled training images and then frozen,
f, should give each translation the class it gives the source, CE(f(G_AB(a)), argmax f(a)) +
CE(f(G_BA(b)), argmax f(b)). Players:
    G   one update of both generators (one optimizer) on fresh A and B batches
    D   one update of both Ds (one optimizer) on the same batches, fakes through the pools

A batch is (A, B, labels_A, labels_B) from gan_cli/data/translation.py.
"""

import logging

import torch
import torch.nn.functional as F

from gan_cli import UserError, plots, registry
from gan_cli.games.base import Game, Player, evaluating

log = logging.getLogger("gan_cli.games")

# The semantic classifier's seed: not the metric backbones' seed 0, so that even where it learns the same
# images as one of gan-eval's judges it is another network.
SEMANTIC_SEED = 1


def _translation_data(data, game: str, paired: bool):
    from gan_cli.data.translation import TranslationBatches

    wanted = "paired" if paired else "unpaired"
    if not isinstance(data, TranslationBatches) or (paired and not data.paired):
        raise UserError(f"game {game} learns from {wanted} images: set dataset={wanted} (dataset.root=<folder>, "
                        f"or no root for the offline demo); {data.name} is not")
    return data


def _no_conditioning(conditioning: dict, game: str):
    if conditioning.get("name", "none") != "none":
        raise UserError(f"game {game} takes no conditioning (the input image is its condition); "
                        f"drop conditioning={conditioning['name']}")


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class ImagePool:
    """A history of generated images (Shrivastava et al. 2017, as CycleGAN uses it): until `size` images
    are stored each new fake is stored and passed on; after that each new fake, with probability 1/2,
    replaces a random stored one, which is passed on instead, and otherwise is passed on itself. size 0
    passes every fake on. Draws come from a generator of its own; the images and the generator's state
    are in the game's checkpoint state."""

    def __init__(self, size: int, seed: int):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise UserError(f"game.pool_size must be a non-negative integer, got {size!r}")
        self.size, self.images = size, []
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes
        out = []
        for image in fakes.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=self.generator)) < 0.5:
                i = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict:
        images = torch.stack(self.images).cpu() if self.images else None
        return {"images": images, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict, device) -> None:
        self.images = [] if state["images"] is None else [x.to(device) for x in state["images"]]
        self.generator.set_state(state["generator"])


class Translation(Game):
    """What the two games share: the test images of the previews and of evaluation."""

    def fixed_inputs(self, seed, count, device):
        """The first test images (at most 8 columns): the same in a resumed run."""
        return self.data.test(max(1, min(count, 8)), device)

    def sampling_net(self, nets: dict, use_ema: bool = True) -> str:
        return self.forward_net

    @torch.no_grad()
    def translate(self, nets, x: torch.Tensor, name: str | None = None) -> torch.Tensor:
        """A net's translation of x in eval mode (the net's mode is restored)."""
        with evaluating(nets[name or self.forward_net]) as G:
            return G(x)

    def generate(self, nets, n, seed, device, batch_size, use_ema=True):
        """Translations of the first n test inputs (all of them when there are fewer), in order."""
        inputs = self.data.test(None, device)["A"][:n]
        for start in range(0, len(inputs), batch_size):
            yield self.translate(nets, inputs[start:start + batch_size])

    def diagnostics(self, nets, batch):
        return {}


class Pix2Pix(Translation):
    name = "pix2pix"
    forward_net = "G"

    def __init__(self, *, generator: dict, discriminator: dict, loss: dict, conditioning: dict, data, device,
                 batch_size: int, n_critic: int = 1, num_classes: int | None = None, l1_weight: float = 100.0,
                 adversarial_weight: float = 1.0):
        super().__init__()
        self.data = _translation_data(data, self.name, paired=True)
        _no_conditioning(conditioning, self.name)
        if n_critic != 1:
            raise UserError(f"game pix2pix updates D once per step (trainer.n_critic=1), got {n_critic}")
        for key, value in (("l1_weight", l1_weight), ("adversarial_weight", adversarial_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise UserError(f"game.{key} must be a number >= 0, got {value!r}")
        if not l1_weight and not adversarial_weight:
            raise UserError("game.l1_weight and game.adversarial_weight are both 0: G would learn nothing")
        self.device, self.l1_weight, self.adversarial_weight = device, float(l1_weight), float(adversarial_weight)
        self.names = {"generator": generator["name"], "discriminator": discriminator["name"], "loss": loss["name"]}
        ca, cb = data.channels_a, data.channels_b
        G = registry.build("generator", generator, shape=data.shape_a, out_channels=cb).to(device)
        D = registry.build("discriminator", discriminator, shape=(ca + cb, *data.shape_b[1:])).to(device)
        self.nets = {"G": G, "D": D}
        self.objective = registry.build("loss", loss)
        self._fake = None

    def describe(self):
        if not self.adversarial_weight:
            return f"pix2pix without D: {self.names['generator']} G trained on {self.l1_weight:g} x L1 alone"
        weight = "" if self.adversarial_weight == 1 else f"{self.adversarial_weight:g} x "
        return (f"pix2pix: {self.names['generator']} G + {self.names['discriminator']} D on (input, output) pairs "
                f"({weight}{self.names['loss']} loss + {self.l1_weight:g} x L1)")

    def optimizers(self):
        return {"G": ("G",), "D": ("D",)}

    def players(self):
        """D, then G through D on D's G(A); with adversarial_weight=0 (L1 alone, the paper's baseline) only G."""
        g = Player("G", trains=("G",), optimizer="G", fresh_batch=not self.adversarial_weight)
        if not self.adversarial_weight:
            return [g]
        return [Player("D", trains=("D",), optimizer="D", keeps_graph=("G",)), g]

    def differentiated_twice(self):
        return {"D"} if self.objective.has_penalty else set()

    def loss(self, player, batch, nets, step):
        a, b = batch[0], batch[1]
        if player.name == "D":
            self._fake = fake = nets["G"](a)  # its graph is kept for G's update
            real_pair, fake_pair = torch.cat([a, b], 1), torch.cat([a, fake.detach()], 1)
            real_scores, fake_scores = nets["D"](real_pair), nets["D"](fake_pair)
            loss = 0.5 * self.objective.d_loss(real_scores, fake_scores)  # the paper halves D's objective
            with torch.autocast(self.device.type, enabled=False):
                penalty = self.objective.penalty(nets.plain("D"), real_pair, fake_pair)
            if penalty is not None:
                loss = loss + penalty
            return loss, {"loss/D": loss.detach(), "D/real_score": real_scores.detach().float().mean(),
                          "D/fake_score": fake_scores.detach().float().mean()}
        if not self.adversarial_weight:  # the L1 baseline: no D at all
            fake = nets["G"](a)
            l1 = (fake - b).abs().mean()
            return self.l1_weight * l1, {"loss/G": (self.l1_weight * l1).detach(), "G/l1": l1.detach()}
        fake, self._fake = self._fake, None
        adversarial = self.objective.g_loss(nets["D"](torch.cat([a, fake], 1)))
        l1 = (fake - b).abs().mean()
        loss = self.adversarial_weight * adversarial + self.l1_weight * l1
        return loss, {"loss/G": loss.detach(), "G/adversarial": adversarial.detach(), "G/l1": l1.detach()}

    def after_update(self, player, nets):
        if player.name == "D":
            self.objective.after_d_step(nets.plain("D"))

    def preview(self, nets, fixed):
        a, b = fixed["A"], fixed["B"]
        fake = self.translate(nets, a)
        grid = plots.image_grid(torch.cat([_rgb(a), _rgb(fake), _rgb(b)]), nrow=len(a))
        return plots.label_rows(grid, ["input", "output", "target"], margin=56), {}


class CycleGAN(Translation):
    name = "cyclegan"
    forward_net = "G_AB"

    def __init__(self, *, generator: dict, discriminator: dict, loss: dict, conditioning: dict, data, device,
                 batch_size: int, n_critic: int = 1, num_classes: int | None = None, cycle_weight: float = 10.0,
                 identity_weight: float = 0.5, pool_size: int = 50, cycle_noise: float = 0.0,
                 semantic_weight: float = 0.0, semantic_source_only: bool = False):
        super().__init__()
        self.data = _translation_data(data, self.name, paired=False)
        _no_conditioning(conditioning, self.name)
        if n_critic != 1:
            raise UserError(f"game cyclegan updates the Ds once per step (trainer.n_critic=1), got {n_critic}")
        for key, value in (("cycle_weight", cycle_weight), ("identity_weight", identity_weight),
                           ("cycle_noise", cycle_noise), ("semantic_weight", semantic_weight)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise UserError(f"game.{key} must be a number >= 0, got {value!r}")
        ca, cb = data.channels_a, data.channels_b
        if identity_weight and ca != cb:
            raise UserError(f"the identity loss feeds A images to G_BA and B to G_AB, which needs as many channels "
                            f"on both sides (A has {ca}, B {cb}); set game.identity_weight=0")
        self.device, self.cycle_weight, self.identity_weight = device, float(cycle_weight), float(identity_weight)
        self.cycle_noise = float(cycle_noise)
        self.semantic_weight = float(semantic_weight)
        self.semantic_sides = _semantic_sides(data, semantic_source_only) if semantic_weight else ()
        self.classifier = None  # trained at the first G update (or restored from the checkpoint)
        self.names = {"generator": generator["name"], "discriminator": discriminator["name"], "loss": loss["name"]}
        G_AB = registry.build("generator", generator, shape=data.shape_a, out_channels=cb).to(device)
        G_BA = registry.build("generator", generator, shape=data.shape_b, out_channels=ca).to(device)
        D_A = registry.build("discriminator", discriminator, shape=data.shape_a).to(device)
        D_B = registry.build("discriminator", discriminator, shape=data.shape_b).to(device)
        self.nets = {"G_AB": G_AB, "G_BA": G_BA, "D_A": D_A, "D_B": D_B}
        self.objective = registry.build("loss", loss)
        if self.objective.has_penalty:
            raise UserError("game cyclegan does not take gradient penalties; use loss=lsgan (the paper's) or another "
                            "loss without one")
        # Each pool draws from a stream of its own, derived from nothing but its name.
        self.pools = {"A": ImagePool(pool_size, 1), "B": ImagePool(pool_size, 2)}
        self._fakes = None

    def describe(self):
        identity = f" + {self.identity_weight * self.cycle_weight:g} x identity" if self.identity_weight else ""
        if self.cycle_noise:
            identity += f", noise {self.cycle_noise:g} on the cycle"
        if self.semantic_weight:
            identity += (f" + {self.semantic_weight:g} x semantic consistency (a classifier of "
                         f"{' and '.join(self.semantic_sides)})")
        return (f"cyclegan: {self.names['generator']} G_AB, G_BA + {self.names['discriminator']} D_A, D_B "
                f"({self.names['loss']} loss + {self.cycle_weight:g} x cycle{identity}, pools of "
                f"{self.pools['A'].size})")

    def optimizers(self):
        return {"G": ("G_AB", "G_BA"), "D": ("D_A", "D_B")}

    def players(self):
        return [Player("G", trains=("G_AB", "G_BA"), optimizer="G"),
                Player("D", trains=("D_A", "D_B"), optimizer="D", fresh_batch=False)]

    def loss(self, player, batch, nets, step):
        a, b = batch[0], batch[1]
        objective = self.objective
        if player.name == "G":
            fake_b, fake_a = nets["G_AB"](a), nets["G_BA"](b)
            adversarial_ab = objective.g_loss(nets["D_B"](fake_b))
            adversarial_ba = objective.g_loss(nets["D_A"](fake_a))
            cycle_a = (nets["G_BA"](self.noisy(fake_b)) - a).abs().mean()
            cycle_b = (nets["G_AB"](self.noisy(fake_a)) - b).abs().mean()
            loss = adversarial_ab + adversarial_ba + self.cycle_weight * (cycle_a + cycle_b)
            stats = {"G/adversarial_AB": adversarial_ab.detach(), "G/adversarial_BA": adversarial_ba.detach(),
                     "G/cycle_A": cycle_a.detach(), "G/cycle_B": cycle_b.detach()}
            if self.identity_weight:
                identity_a = (nets["G_BA"](a) - a).abs().mean()
                identity_b = (nets["G_AB"](b) - b).abs().mean()
                loss = loss + self.identity_weight * self.cycle_weight * (identity_a + identity_b)
                stats.update({"G/identity_A": identity_a.detach(), "G/identity_B": identity_b.detach()})
            if self.semantic_weight:
                semantic_ab, semantic_ba = self.semantic_loss(a, fake_b), self.semantic_loss(b, fake_a)
                loss = loss + self.semantic_weight * (semantic_ab + semantic_ba)
                stats.update({"G/semantic_AB": semantic_ab.detach(), "G/semantic_BA": semantic_ba.detach()})
            self._fakes = (fake_a.detach(), fake_b.detach())
            return loss, {"loss/G": loss.detach(), **stats}
        fake_a, fake_b = self._fakes
        self._fakes = None
        pooled_a, pooled_b = self.pools["A"].query(fake_a), self.pools["B"].query(fake_b)
        real_a, judged_a = nets["D_A"](a), nets["D_A"](pooled_a)
        real_b, judged_b = nets["D_B"](b), nets["D_B"](pooled_b)
        d_a = 0.5 * objective.d_loss(real_a, judged_a)  # the paper halves each D's objective
        d_b = 0.5 * objective.d_loss(real_b, judged_b)
        loss = d_a + d_b
        return loss, {"loss/D": loss.detach(), "D/A": d_a.detach(), "D/B": d_b.detach(),
                      "D_A/real_score": real_a.detach().float().mean(), "D_A/fake_score": judged_a.detach().float().mean(),
                      "D_B/real_score": real_b.detach().float().mean(), "D_B/fake_score": judged_b.detach().float().mean()}

    def noisy(self, fake):
        """A translation as the cycle's way back sees it: with game.cycle_noise, plus Gaussian noise of that
        standard deviation (drawn from the run's stream on the device), so the reverse G cannot rebuild the
        source from faint detail hidden in the translation (Bashkirova et al. 2019)."""
        return fake + self.cycle_noise * torch.randn_like(fake) if self.cycle_noise else fake

    def semantic_loss(self, source: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        """CyCADA's semantic consistency: the frozen classifier's cross-entropy on the translation against the
        class it reads in the source (its own argmax, so no labels are needed at this point)."""
        from gan_cli.metrics.backbones import at_32

        if self.classifier is None:
            with torch.autocast(self.device.type, enabled=False):
                self.classifier = train_semantic_classifier(self.data, self.semantic_sides, self.device)
        with torch.no_grad():
            target = self.classifier(at_32(source.float()))[1].argmax(1)
        logits = self.classifier(at_32(translation.float()))[1]
        return F.cross_entropy(logits.float(), target)

    def after_update(self, player, nets):
        if player.name == "D":
            self.objective.after_d_step(nets.plain("D_A"))
            self.objective.after_d_step(nets.plain("D_B"))

    def preview(self, nets, fixed):
        a, b = fixed["A"], fixed["B"]
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        fake_b = self.translate(nets, a, "G_AB")
        fake_a = self.translate(nets, b, "G_BA")
        rows = [a, fake_b, self.translate(nets, fake_b, "G_BA"), b, fake_a, self.translate(nets, fake_a, "G_AB")]
        grid = plots.image_grid(torch.cat([_rgb(x) for x in rows]), nrow=n)
        labels = ["A", "G_AB(A)", "G_BA(..)", "B", "G_BA(B)", "G_AB(..)"]
        return plots.label_rows(grid, labels, margin=64), {}

    def state_dict(self):
        state = {"pools": {side: pool.state_dict() for side, pool in self.pools.items()}}
        if self.classifier is not None:
            net = self.classifier.head[-1]
            state["semantic"] = {"model": {k: v.cpu() for k, v in self.classifier.state_dict().items()},
                                 "channels": self.classifier.body[0].in_channels, "classes": net.out_features}
        return state

    def load_state_dict(self, state):
        for side, pool in self.pools.items():
            pool.load_state_dict(state["pools"][side], self.device)
        if self.semantic_weight and state.get("semantic") is not None:
            from gan_cli.metrics.backbones import SmallCNN

            saved = state["semantic"]
            net = SmallCNN(saved["channels"], saved["classes"])
            net.load_state_dict(saved["model"])
            self.classifier = net.eval().requires_grad_(False).to(self.device)


def _semantic_sides(data, source_only) -> tuple:
    """The sides whose labelled training images teach the semantic classifier: A alone (CyCADA's classifier of
    the source domain) or every labelled side; one-line errors where that cannot be done."""
    if not isinstance(source_only, bool):
        raise UserError(f"game.semantic_source_only must be true or false, got {source_only!r}")
    if data.channels_a != data.channels_b:
        raise UserError(f"the semantic consistency loss reads both sides' images with one classifier, which needs as "
                        f"many channels on both (A has {data.channels_a}, B {data.channels_b}); "
                        "set game.semantic_weight=0")
    sources = {"A": data.sources[0], "B": data.sources[-1]}
    labelled = tuple(side for side in (("A",) if source_only else ("A", "B"))
                     if getattr(sources[side], "num_classes", 0) > 0)
    if not labelled:
        where = "side A" if source_only else "either side"
        raise UserError(f"the semantic consistency loss trains a classifier on labelled images, and {where} of "
                        f"{data.name} has none (class subfolders inside trainA/ give labels); set "
                        "game.semantic_weight=0")
    if len(labelled) == 2 and sources["A"].num_classes != sources["B"].num_classes:
        raise UserError(f"the semantic classifier learns both sides, whose classes differ ({sources['A'].num_classes} "
                        f"in A, {sources['B'].num_classes} in B); set game.semantic_source_only=true")
    for side in labelled:
        if not hasattr(sources[side], "images"):
            raise UserError(f"the semantic classifier learns the training images of side {side}, which "
                            f"{data.name} streams from disk; raise dataset.max_memory_mb to hold them in memory")
    return labelled


def train_semantic_classifier(data, sides, device):
    """The frozen classifier of the semantic consistency loss: the metric backbones' SmallCNN trained (seeded,
    on forked random streams, so the run's own draws are untouched) on the training images of `sides` at the
    crop size, tested on their labelled test images."""
    from gan_cli.metrics.backbones import train_classifier
    from gan_cli.metrics.translation import _target_images

    images, labels = zip(*(_target_images(data, side) for side in sides))
    train_x, train_y = torch.cat(images), torch.cat(labels)
    tested = [s for s in sides if data.test_split.get(f"labels_{s}") is not None]
    if tested:
        test_x = torch.cat([data.test_split[s] for s in tested])
        test_y = torch.cat([data.test_split[f"labels_{s}"] for s in tested])
    else:  # no labelled test images: the accuracy is the training images'
        test_x, test_y = train_x, train_y
    log.info("training the semantic classifier on the %d labelled training images of side %s", len(train_x),
             " and ".join(sides))
    net, accuracy = train_classifier(train_x, train_y, test_x, test_y, device, seed=SEMANTIC_SEED)
    log.info("semantic classifier: %.2f%% on the %d %s images of side %s", 100 * accuracy, len(test_x),
             "test" if tested else "training", " and ".join(tested or sides))
    return net.eval().requires_grad_(False)
