"""The GAN objectives, as pure functions of D's raw scores (logits).

A loss never runs G or D (except inside a penalty) and never calls backward: the training
loop does. The sigmoid is folded into the loss in its numerically stable softplus form:
    -log sigmoid(s)     = softplus(-s)
    -log(1 - sigmoid(s)) = softplus(s)
"""

import torch
import torch.nn.functional as F


class GANLoss:
    """Base of every objective: `d_loss` and `g_loss` are minimised by D and G."""

    def d_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        """An extra term of D's loss that needs D itself (e.g. a gradient penalty); None if none."""
        return None

    def after_d_step(self, D) -> None:
        """Called after every D update (e.g. WGAN's weight clipping)."""


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
