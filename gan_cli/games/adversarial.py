"""The z -> x game: G maps noise (and a condition) to data, D scores real against fake.

Every objective of gan_cli/losses.py, its penalties and every conditioning of gan_cli/conditioning.py
play this game: the original GAN, DCGAN, WGAN(-GP), LSGAN, hinge/SN-GAN, cGAN, ACGAN, projection and
InfoGAN. Players:

    D   n_critic updates, each on a fresh real batch and fresh fakes
    G   one update through D (frozen). With n_critic = 1 it reuses the fakes of D's update (as the DCGAN
        reference code does, saving a G forward pass); with n_critic > 1 it draws fresh z (as the WGAN,
        WGAN-GP and SN-GAN reference code do), rather than the batch D has just fitted n_critic times.
"""

import torch

from gan_cli import UserError, latents, losses, plots, registry
from gan_cli.games.base import Game, Player, standing_statistics
from gan_cli.metrics import toy2d as toy2d_metrics

STANDING_BATCHES = 16  # forward passes of 64 that give G_ema its own batch-norm statistics


class Adversarial(Game):
    name = "adversarial"

    def __init__(self, *, generator: dict, discriminator: dict, loss: dict, conditioning: dict, data, device,
                 batch_size: int, n_critic: int = 1, num_classes: int | None = None, augment=None,
                 steps: int | None = None):
        super().__init__()
        self.augment = augment  # a gan_cli.augment.DiffAugment for every image D sees, or None
        self.data, self.device, self.batch_size, self.n_critic = data, device, batch_size, n_critic
        self.steps = steps  # the run's length, for a loss whose penalty weights follow a schedule
        self.names = {"generator": generator["name"], "discriminator": discriminator["name"], "loss": loss["name"]}
        # What G and D get besides z and x (a label, InfoGAN's codes, or nothing), and how they take it.
        self.cond = registry.build("conditioning", conditioning)
        self.cond.setup(data.num_classes if num_classes is None else num_classes, data.name)
        G = registry.build("generator", generator, shape=data.shape, **self.cond.g_kwargs()).to(device)
        D = registry.build("discriminator", discriminator, shape=data.shape, **self.cond.d_kwargs()).to(device)
        self.nets = {"G": G, "D": D}
        pack = getattr(D, "pack", 1)
        if pack > 1 and self.cond.name != "none":
            raise UserError(f"discriminator.pack={pack} scores {pack} samples as one, and a {self.cond.name} D "
                            "scores each sample with its own label or code: pack unconditional GANs "
                            "(conditioning=none)")
        if batch_size % pack:
            raise UserError(f"discriminator.pack={pack} needs trainer.batch_size to be a multiple of {pack}, "
                            f"got {batch_size}")
        self.objective = registry.build("loss", loss)
        self.reuse_fakes = n_critic == 1
        self._fakes = None  # (fake, condition) of the last D update, for G's update when reused

    def describe(self):
        extras = "" if self.cond.name == "none" else f", {self.cond.name} conditioning"
        if self.augment is not None:
            extras += f", DiffAugment {'+'.join(self.augment.names)}" + (", adaptive" if self.augment.adaptive else "")
        return f"{self.names['generator']} G + {self.names['discriminator']} D ({self.names['loss']} loss{extras})"

    @property
    def z_dim(self) -> int:
        return self.nets["G"].z_dim

    def optimizers(self):
        return {"G": ("G",), "D": ("D",)}

    def players(self):
        return [
            Player("D", trains=("D",), optimizer="D", repeat=self.n_critic,
                   keeps_graph=("G",) if self.reuse_fakes else ()),
            Player("G", trains=("G",), optimizer="G", fresh_batch=False),
        ]

    def ema(self):
        return {"G_ema": "G"}

    def differentiated_twice(self):
        return {"D"} if self.objective.has_penalty else set()

    # --- updates ----------------------------------------------------------------------------------

    def _generate(self, G, labels, grad: bool):
        bs = self.batch_size
        z = torch.randn(bs, self.z_dim, device=self.device)
        c = self.cond.sample(bs, labels, self.device)  # the fakes' labels or codes (None if unconditional)
        with torch.set_grad_enabled(grad):
            fake = G(z) if c is None else G(z, c)
        return fake, c

    def _seen(self, x):
        """What D sees of a batch: the images themselves, or their augmented copies (trainer.augment)."""
        return x if self.augment is None else self.augment(x)

    def loss(self, player, batch, nets, step):
        real, labels = batch
        cond, objective = self.cond, self.objective
        if player.name == "D":
            if hasattr(objective, "at_step"):
                objective.at_step(step, self.steps)
            # Only a fake that G's update reuses keeps its graph through G.
            fake, c = self._generate(nets["G"], labels, grad=self.reuse_fakes)
            self._fakes = (fake, c) if self.reuse_fakes else None
            # Under augmentation D sees (and its penalty is taken on) augmented images only.
            real, fake_seen = self._seen(real), self._seen(fake.detach())
            real_scores, real_head = cond.run_d(nets["D"], real, labels)
            fake_scores, fake_head = cond.run_d(nets["D"], fake_seen, c)
            loss = objective.d_loss(real_scores, fake_scores)
            extra = cond.d_loss(real_head, labels, fake_head, c)  # ACGAN's classes, InfoGAN's codes
            if extra is not None:
                loss = loss + extra
            # In float32 whatever the precision, through the bare D (double backward); the fakes share the
            # real batch's labels, so the interpolates have them too.
            with torch.autocast(self.device.type, enabled=False):
                penalty = objective.penalty(cond.d_for_penalty(nets.plain("D"), labels), real, fake_seen)
            if penalty is not None:
                loss = loss + penalty
            stats = {"loss/D": loss.detach(), "D/real_score": real_scores.detach().float().mean(),
                     "D/fake_score": fake_scores.detach().float().mean()}
            if objective.critic:  # the critic's estimate of the Wasserstein distance
                stats["critic/wasserstein"] = stats["D/real_score"] - stats["D/fake_score"]
            if self.augment is not None:
                self.augment.observe(real_scores)
                stats.update(self.augment.stats())
            return loss, stats
        # G: through D, whose weights this update leaves alone.
        fake, c = self._fakes if self._fakes is not None else self._generate(nets["G"], labels, grad=True)
        self._fakes = None
        scores, head = cond.run_d(nets["D"], self._seen(fake), c)
        if objective.needs_real_scores:  # relativistic: the fakes' scores against the real batch's
            with torch.no_grad():
                real_scores, _ = cond.run_d(nets["D"], self._seen(real), labels)
            loss = objective.g_loss(scores, real_scores)
        else:
            loss = objective.g_loss(scores)
        extra = cond.g_loss(head, c)
        if extra is not None:
            loss = loss + extra
        stats = {}
        regularization = getattr(nets.plain("G"), "regularization", None)  # BigGAN's orthogonal penalty
        penalty = regularization() if regularization is not None else None
        if penalty is not None:
            loss = loss + penalty
            stats["loss/G_ortho"] = penalty.detach()
        return loss, {"loss/G": loss.detach(), **stats}

    def after_update(self, player, nets):
        if player.name == "D":
            self.objective.after_d_step(nets.plain("D"))

    def state_dict(self):
        state = {"augment": self.augment.state_dict()} if self.augment is not None else {}
        if hasattr(self.objective, "at_step"):  # a resumed run keeps the penalty schedule it started with
            state["horizon"] = self.steps
        return state

    def load_state_dict(self, state):
        if self.augment is not None and "augment" in state:
            self.augment.load_state_dict(state["augment"])
        self.steps = state.get("horizon", self.steps)

    def diagnostics(self, nets, batch):
        real, labels = batch
        D = nets.plain("D")
        return {
            # The size of D's input gradient at real data: large values mean a sharp, overconfident D.
            "D/grad_norm": losses.input_gradient_norm(self.cond.d_for_penalty(D, labels), real,
                                                      create_graph=False).mean(),
            **self.objective.diagnostics(D),
            **self.cond.diagnostics(),
        }

    # --- pictures and samples ---------------------------------------------------------------------

    @property
    def grid_rows(self) -> int:
        """Rows of the preview grid, one per class (or categorical code value); 0 = a plain grid."""
        return self.cond.rows if len(self.data.shape) == 3 else 0

    def fixed_inputs(self, seed, count, device):
        """count z for an image grid; 40 x count points for a toy2d scatter plot. A conditional grid has
        one row per class, `count // rows` columns."""
        rows = self.grid_rows
        columns = max(1, count // rows) if rows else None
        n = rows * columns if rows else count * (40 if len(self.data.shape) == 1 else 1)
        z = torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        c = self.cond.grid_condition(columns, device) if rows else \
            self.cond.sample(n, None, device, torch.Generator().manual_seed(seed))
        return {"z": z, "c": c, "columns": columns}

    def sampling_net(self, nets: dict, use_ema: bool = True) -> str:
        """The name of the net samples come from: G_ema where present and wanted, else G."""
        return "G_ema" if use_ema and nets.get("G_ema") is not None else "G"

    @torch.no_grad()
    def preview(self, nets, fixed):
        G = nets[self.sampling_net(nets)]
        was_training = G.training
        G.eval()
        fake = G(fixed["z"]) if fixed["c"] is None else G(fixed["z"], fixed["c"])
        G.train(was_training)
        if len(self.data.shape) == 1:
            metrics = toy2d_metrics.mode_metrics(fake, self.data.centres, self.data.sigma)
            title = f"{self.data.name}: {toy2d_metrics.summary(metrics, len(self.data.centres))}"
            return plots.scatter(fake, self.data.centres, title=title), metrics
        return plots.image_grid(fake, nrow=fixed["columns"]), {}

    def sample_labels(self, n: int) -> torch.Tensor | None:
        """The classes of n evaluation samples of a class-conditional G: 0, 1, ..., K-1, 0, 1, ...
        (as many of each as can be); None for other G."""
        return torch.arange(n) % self.cond.num_classes if self.cond.num_classes else None

    def truncation_rule(self, nets, use_ema=True) -> str:
        G = nets[self.sampling_net(nets, use_ema)]
        if latents.style_based(G):
            return "in W: w_avg + psi (w - w_avg) in every layer, z untruncated"
        return "in z: entries beyond +-psi redrawn from the image's stream until none is left (BigGAN)"

    def generate(self, nets, n, seed, device, batch_size, use_ema=True, truncation=None):
        """G's samples of the seeds seed, seed + 1, ..., seed + n - 1: sample i draws its z (and InfoGAN's
        continuous codes) from the stream of its own seed (gan_cli.latents), so it is the same image at any
        batch size, and the one gan-sample draws for that seed. A class-conditional G draws the classes of
        sample_labels; InfoGAN's categorical code runs through its values the same way. truncation=psi draws
        as gan-sample truncation=psi does (truncation_rule)."""
        G = nets[self.sampling_net(nets, use_ema)]
        style = truncation is not None and latents.style_based(G)
        if style:
            G = latents.InW(G, float(truncation), None)
        categories = getattr(self.cond, "categorical", 0)
        labels = self.sample_labels(n) if self.cond.num_classes else \
            (torch.arange(n) % categories if categories else None)
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            z, c = latents.draw(range(seed + start, seed + start + count), self.z_dim, self.cond,
                                None if labels is None else labels[start:start + count],
                                None if style else truncation)
            with torch.no_grad():
                yield G(z.to(device)) if c is None else G(z.to(device), c.to(device))

    def refresh_statistics(self, name, net, device):
        """G_ema's batch-norm statistics, recomputed over 16 batches of 64 z (and conditions) drawn from a
        fixed seed of their own: statistics of G_ema's weights, not copies of G's."""
        g = torch.Generator().manual_seed(0)

        def inputs():
            z = torch.randn(64, self.z_dim, generator=g).to(device)
            c = self.cond.sample(64, None, device, g)
            return (z,) if c is None else (z, c)

        standing_statistics(net, inputs, STANDING_BATCHES)
