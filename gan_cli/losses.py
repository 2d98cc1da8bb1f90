"""The GAN objectives, as pure functions of D's raw scores (logits).

A loss never runs G or D (except inside a penalty) and never calls backward: the training
loop does. The sigmoid is folded into the loss in its numerically stable softplus form:
    -log sigmoid(s)     = softplus(-s)
    -log(1 - sigmoid(s)) = softplus(s)
Every loss takes `r1_gamma`: the R1 penalty (gamma / 2) E||grad D(real)||^2 of Mescheder et al.
2018, off at 0.
"""

import functools
import math

import torch
import torch.nn.functional as F

from gan_cli import UserError


def input_gradient_norm(D, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """||dD(x)/dx||_2 per input of D, in float32 whatever precision the caller runs in: per item, or per
    group of m items for a D that packs m samples (discriminator.pack).

    Autocast is switched off around D, its backward pass and the norm: a penalty taken through half-precision
    activations loses the small gradients it is meant to measure.
    """
    x = x.detach().float().requires_grad_(True)
    # The backward pass and the norm inside the block too: autocast reaches the ops autograd runs.
    with torch.autocast(device_type=x.device.type, enabled=False):
        scores = D(x)
        (grad,) = torch.autograd.grad(scores.float().sum(), x, create_graph=create_graph)
        return grad.reshape(len(scores), -1).norm(dim=1)


def _in_float32(method):
    """Half-precision scores (float16, bfloat16) in float32; float32 and float64 ones as they are."""
    @functools.wraps(method)
    def wrapped(self, *scores):
        return method(self, *(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in scores))
    return wrapped


class GANLoss:
    """Base of every objective: `d_loss` and `g_loss` are minimised by D and G."""

    critic = False  # True where D's scores estimate a distance (WGAN): the loop then logs the estimate
    needs_real_scores = False  # True where g_loss(fake_scores, real_scores) compares with D's real scores

    def __init_subclass__(cls, **kwargs):
        """Every objective takes its scores in float32: under bf16 / fp16 autocast D's scores come out in half
        precision, and a mean of softplus or squares in 8 bits of mantissa would round the loss."""
        super().__init_subclass__(**kwargs)
        for name in ("d_loss", "g_loss"):
            if name in cls.__dict__:
                setattr(cls, name, _in_float32(cls.__dict__[name]))

    def __init__(self, r1_gamma: float = 0.0):
        if r1_gamma < 0:
            raise UserError(f"loss r1_gamma must be >= 0, got {r1_gamma}")
        self.r1_gamma = float(r1_gamma)
        self.last = {}  # penalty values of the last D step, for logging

    @property
    def has_penalty(self) -> bool:
        """True where D's loss differentiates D with respect to its input (a gradient penalty)."""
        return self.r1_gamma > 0

    def d_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        """Extra terms of D's loss that need D itself (here R1); None where there are none."""
        if not self.r1_gamma:
            return None
        r1 = self.r1_gamma / 2 * input_gradient_norm(D, real, create_graph=True).square().mean()
        self.last["penalty/r1"] = r1.detach()
        return r1

    def after_d_step(self, D) -> None:
        """Called after every D update (e.g. WGAN's weight clipping)."""

    def diagnostics(self, D) -> dict:
        """Extra scalars for TensorBoard, as tensors (read only on logging steps)."""
        return dict(self.last)


class Minimax(GANLoss):
    """Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z)))."""

    def d_loss(self, real_scores, fake_scores):
        return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()

    def g_loss(self, fake_scores):
        # log(1 - sigmoid(s)) = -softplus(s)
        return -F.softplus(fake_scores).mean()


class NonSaturating(Minimax):
    """Goodfellow et al. 2014, section 3: same D, but G maximises log D(G(z))."""

    def g_loss(self, fake_scores):
        return F.softplus(-fake_scores).mean()


class LeastSquares(GANLoss):
    """LSGAN (Mao et al. 2017) with the 0-1 coding a = 0 (fake), b = 1 (real), c = 1 (G's target):
    D minimises 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]; G minimises 1/2 E[(D(G(z)) - 1)^2]."""

    def d_loss(self, real_scores, fake_scores):
        return 0.5 * (real_scores - 1).square().mean() + 0.5 * fake_scores.square().mean()

    def g_loss(self, fake_scores):
        return 0.5 * (fake_scores - 1).square().mean()


class Hinge(GANLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): D minimises E[max(0, 1 - D(x))] +
    E[max(0, 1 + D(G(z)))]; G minimises -E[D(G(z))]."""

    def d_loss(self, real_scores, fake_scores):
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()


class Wasserstein(GANLoss):
    """WGAN (Arjovsky et al. 2017): the critic minimises E[D(G(z))] - E[D(x)], G minimises -E[D(G(z))],
    and every critic weight is clipped to [-clip, clip] after each critic step (clip 0 = no clipping)."""

    critic = True

    def __init__(self, clip: float = 0.01, r1_gamma: float = 0.0):
        super().__init__(r1_gamma)
        if clip < 0:
            raise UserError(f"loss clip must be >= 0 (0 = no clipping), got {clip}")
        self.clip = float(clip)

    def d_loss(self, real_scores, fake_scores):
        return fake_scores.mean() - real_scores.mean()

    def g_loss(self, fake_scores):
        return -fake_scores.mean()

    @torch.no_grad()
    def after_d_step(self, D):
        if self.clip:
            params = list(D.parameters())
            torch._foreach_clamp_min_(params, -self.clip)
            torch._foreach_clamp_max_(params, self.clip)

    @torch.no_grad()
    def diagnostics(self, D):
        stats = super().diagnostics(D)
        if self.clip:
            weights = torch.cat([p.flatten() for p in D.parameters()])
            stats["critic/clipped_share"] = (weights.abs() >= self.clip * (1 - 1e-6)).float().mean()
        return stats


class WassersteinGP(Wasserstein):
    """WGAN-GP (Gulrajani et al. 2017): the WGAN objective without clipping, plus
    gp_weight * E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates x_hat = eps x + (1 - eps) G(z),
    eps ~ U[0, 1] per item. drift > 0 adds drift * E[D(x)^2] on real data to D's loss (ProGAN's 0.001),
    which keeps the critic's scores from drifting far from 0."""

    def __init__(self, gp_weight: float = 10.0, r1_gamma: float = 0.0, drift: float = 0.0):
        super().__init__(clip=0.0, r1_gamma=r1_gamma)
        if gp_weight < 0:
            raise UserError(f"loss gp_weight must be >= 0, got {gp_weight}")
        if not isinstance(drift, (int, float)) or drift < 0:
            raise UserError(f"loss drift must be >= 0, got {drift!r}")
        self.gp_weight, self.drift = float(gp_weight), float(drift)

    def d_loss(self, real, fake):
        loss = super().d_loss(real, fake)
        return loss + self.drift * real.float().square().mean() if self.drift else loss

    @property
    def has_penalty(self):
        return self.gp_weight > 0 or self.r1_gamma > 0

    def penalty(self, D, real, fake):
        r1 = super().penalty(D, real, fake)
        # One eps per input of D (per item, or per packed group of items), broadcast over every other
        # dimension: works for images and points alike.
        pack = getattr(D, "pack", 1)
        eps = torch.rand(real.shape[0] // pack, *([1] * (real.dim() - 1)), device=real.device, dtype=torch.float32)
        eps = eps.repeat_interleave(pack, dim=0) if pack > 1 else eps
        x_hat = torch.lerp(fake.detach().float(), real.detach().float(), eps)
        gp = self.gp_weight * (input_gradient_norm(D, x_hat, create_graph=True) - 1).square().mean()
        self.last["penalty/gradient"] = gp.detach()
        return gp if r1 is None else gp + r1


class Relativistic(GANLoss):
    """The relativistic pairing GAN (RSGAN, Jolicoeur-Martineau 2019; RpGAN in Huang et al. 2024): D judges
    how much more real a real sample looks than a fake one, item i of the real batch against item i of the
    fakes: D minimises E[softplus(-(D(x) - D(G(z))))], G minimises E[softplus(-(D(G(z)) - D(x)))].

    Zero-centred gradient penalties on both sides, as R3GAN trains: R1 = r1_gamma / 2 E||grad D(x)||^2 on real
    data and R2 = r2_gamma / 2 E||grad D(G(z))||^2 on the fakes. With gamma_end_factor < 1 both weights fall
    from their start values on a half cosine to gamma_end_factor times them at the run's last step.
    """

    needs_real_scores = True  # G's loss compares its fakes' scores with the real ones'

    def __init__(self, r1_gamma: float = 0.0, r2_gamma: float = 0.0, gamma_end_factor: float = 1.0):
        super().__init__(r1_gamma)
        if not isinstance(r2_gamma, (int, float)) or isinstance(r2_gamma, bool) or r2_gamma < 0:
            raise UserError(f"loss r2_gamma must be >= 0, got {r2_gamma!r}")
        if not isinstance(gamma_end_factor, (int, float)) or isinstance(gamma_end_factor, bool) or \
                not 0 <= gamma_end_factor <= 1:
            raise UserError(f"loss gamma_end_factor must be in [0, 1] (1 = constant weights), got {gamma_end_factor!r}")
        self.r2_gamma, self.gamma_end_factor = float(r2_gamma), float(gamma_end_factor)
        self.scale = 1.0  # the schedule's factor at the current step

    @property
    def has_penalty(self):
        return self.r1_gamma > 0 or self.r2_gamma > 0

    def at_step(self, step: int, total: int | None) -> None:
        """Set the penalties' weights for a 1-based step of a run of `total` steps (the cosine schedule)."""
        if self.gamma_end_factor == 1 or not total:
            self.scale = 1.0
            return
        progress = min(max(step - 1, 0) / max(total - 1, 1), 1.0)
        self.scale = self.gamma_end_factor + (1 - self.gamma_end_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    def d_loss(self, real_scores, fake_scores):
        return F.softplus(fake_scores - real_scores).mean()

    def g_loss(self, fake_scores, real_scores):
        return F.softplus(real_scores - fake_scores).mean()

    def penalty(self, D, real, fake):
        terms = []
        for name, gamma, x in (("r1", self.r1_gamma, real), ("r2", self.r2_gamma, fake)):
            if gamma:
                value = self.scale * gamma / 2 * input_gradient_norm(D, x, create_graph=True).square().mean()
                self.last[f"penalty/{name}"] = value.detach()
                terms.append(value)
        if self.gamma_end_factor != 1:
            self.last["penalty/gamma_scale"] = torch.tensor(self.scale)
        return sum(terms) if terms else None


class RelativisticAverage(Relativistic):
    """The relativistic average GAN (RaGAN, Jolicoeur-Martineau 2019): each sample is judged against the mean
    score of the other side's batch. D minimises E[softplus(-(D(x) - mean D(G(z))))] +
    E[softplus(D(G(z)) - mean D(x))]; G the same with the roles of real and fake swapped. Penalties as
    Relativistic's."""

    def d_loss(self, real_scores, fake_scores):
        return F.softplus(fake_scores.mean() - real_scores).mean() + F.softplus(fake_scores - real_scores.mean()).mean()

    def g_loss(self, fake_scores, real_scores):
        return F.softplus(real_scores.mean() - fake_scores).mean() + F.softplus(real_scores - fake_scores.mean()).mean()
