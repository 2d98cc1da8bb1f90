"""What G and D are told besides z and x: a class label, or InfoGAN's latent codes.

One object per config choice (`conditioning=none | cgan | projection | acgan | infogan`), built through
the registry. It says how G and D are built (the keyword arguments it adds to theirs), draws the
condition of each fake batch, runs D with the condition, and adds its own terms to the two losses:

    none        the unconditional GAN
    cgan        Mirza & Osindero 2014: the label goes into G (one-hot, beside z) and into D (one-hot
                feature maps beside the image channels, or beside the flattened input of the mlp D)
    projection  Miyato & Koyama 2018: class-conditional batch norm in G; D's score gains the inner
                product of a class embedding with D's pooled features
    acgan       Odena et al. 2017: the label goes into G; D does not see it but predicts it with an
                auxiliary head, and both players add `weight` x the head's cross-entropy to their losses
    infogan     Chen et al. 2016: G gets a categorical code and continuous codes beside z; a Q head on
                D's body predicts them back, and both add `weight` x the mutual-information bound

Like the losses, these never call backward and never step an optimizer.
"""

import torch
import torch.nn.functional as F

from gan_cli import UserError


class Unconditional:
    """G(z) and D(x): nothing besides."""

    name = "none"
    uses_labels = False  # needs the data set's labels

    def __init__(self):
        self.num_classes = 0
        self.last = {}

    def setup(self, num_classes: int, data_name: str) -> None:
        """Learn the data set's number of classes; a model that needs labels refuses data without them."""
        if self.uses_labels and not num_classes:
            raise UserError(
                f"conditioning={self.name} needs labelled data, and {data_name} has no labels; use a labelled data "
                "set (digits, mnist, cifar10, a folder with one subfolder per class) or conditioning=none"
            )
        self.num_classes = num_classes if self.uses_labels else 0

    # How the nets are built.
    def g_kwargs(self) -> dict:
        return {}

    def d_kwargs(self) -> dict:
        return {}

    @property
    def rows(self) -> int:
        """Rows of the sample grid, one per class (or categorical code value); 0 = a plain grid."""
        return 0

    # What a fake batch is conditioned on.
    def sample(self, n: int, labels, device, generator=None):
        """The condition of n fakes: None, labels (N,) or codes (N, dims). `labels`: the real batch's."""
        return None

    def grid_condition(self, columns: int, device):
        """The condition of the fixed sample grid: row r shows class (or code value) r."""
        return None

    def run_d(self, D, x, condition):
        """D's scores and, where D has a head, its output."""
        return D(x), None

    def d_for_penalty(self, D, condition):
        """D as a function of x alone (a gradient penalty differentiates it with respect to x)."""
        return D

    def d_loss(self, real_head, labels, fake_head, condition):
        """Terms added to D's loss; None where there are none."""
        return None

    def g_loss(self, fake_head, condition):
        """Terms added to G's loss; None where there are none."""
        return None

    def diagnostics(self) -> dict:
        return dict(self.last)


class ClassConditional(Unconditional):
    """Shared by the label-conditioned models: the fakes take the labels of the real batch beside them
    (so both sides see the data set's class frequencies); sampling draws whatever class is asked."""

    uses_labels = True
    g_input = "concat"  # how G takes the label: concat (one-hot beside z) | cbn (conditional batch norm)
    d_input = "none"  # how D takes it: none | concat | projection

    def g_kwargs(self):
        return {"num_classes": self.num_classes, "class_input": self.g_input}

    def d_kwargs(self):
        return {"num_classes": self.num_classes, "class_input": self.d_input}

    @property
    def rows(self):
        return self.num_classes

    def sample(self, n, labels, device, generator=None):
        if labels is not None and len(labels) == n:
            return labels
        return torch.randint(self.num_classes, (n,), generator=generator).to(device)

    def grid_condition(self, columns, device):
        return torch.arange(self.num_classes, device=device).repeat_interleave(columns)

    def run_d(self, D, x, condition):
        if self.d_input == "none":
            return D(x), None
        return D(x, condition), None

    def d_for_penalty(self, D, condition):
        if self.d_input == "none":
            return D
        return lambda x: D(x, condition)


class CGAN(ClassConditional):
    name = "cgan"
    d_input = "concat"


class Projection(ClassConditional):
    name = "projection"
    g_input = "cbn"
    d_input = "projection"


class ACGAN(ClassConditional):
    """D's head predicts the class of real and fake images; `weight` scales the cross-entropy in both losses."""

    name = "acgan"

    def __init__(self, weight: float = 1.0):
        super().__init__()
        if weight < 0:
            raise UserError(f"conditioning weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def d_kwargs(self):
        return {**super().d_kwargs(), "head": (self.num_classes,)}

    def run_d(self, D, x, condition):
        return D(x, head=True)

    def d_loss(self, real_head, labels, fake_head, condition):
        real_ce = F.cross_entropy(real_head.float(), labels)
        fake_ce = F.cross_entropy(fake_head.float(), condition)
        self.last["acgan/loss_real"] = real_ce.detach()
        self.last["acgan/loss_fake"] = fake_ce.detach()
        self.last["acgan/accuracy_real"] = (real_head.detach().argmax(1) == labels).float().mean()
        self.last["acgan/accuracy_fake"] = (fake_head.detach().argmax(1) == condition).float().mean()
        return self.weight * (real_ce + fake_ce)

    def g_loss(self, fake_head, condition):
        return self.weight * F.cross_entropy(fake_head.float(), condition)


def info_loss(categorical_logits, continuous_mean, codes, categories: int, continuous_weight: float):
    """InfoGAN's bound on -I(c; G(z, c)) up to constants: the cross-entropy of the categorical code
    plus continuous_weight x the Gaussian negative log-likelihood of each continuous code under Q
    (unit variance: 1/2 (c - mu)^2, summed over the codes), both averaged over the batch."""
    if categories:
        categorical = F.cross_entropy(categorical_logits.float(), codes[:, :categories].argmax(1))
    else:  # continuous codes only
        categorical = codes.new_zeros(())
    continuous = 0.5 * (codes[:, categories:] - continuous_mean.float()).square().sum(1).mean() \
        if codes.shape[1] > categories else codes.new_zeros(())
    return categorical, continuous_weight * continuous


class InfoGAN(Unconditional):
    """Codes c = (one-hot of a uniform categorical, continuous codes ~ U(-1, 1)) go into G beside z;
    Q (a head on D's body) predicts them; `weight` x the mutual-information bound joins both losses."""

    name = "infogan"

    def __init__(self, categorical: int = 10, continuous: int = 2, weight: float = 1.0,
                 continuous_weight: float = 0.1):
        super().__init__()
        if categorical < 0 or continuous < 0 or categorical + continuous == 0:
            raise UserError(f"infogan needs codes: categorical={categorical}, continuous={continuous}")
        if categorical == 1:
            raise UserError("conditioning categorical must be 0 (none) or at least 2 categories")
        if weight < 0 or continuous_weight < 0:
            raise UserError(f"conditioning weights must be >= 0, got {weight} and {continuous_weight}")
        self.categorical, self.continuous = int(categorical), int(continuous)
        self.weight, self.continuous_weight = float(weight), float(continuous_weight)

    @property
    def code_dim(self):
        return self.categorical + self.continuous

    def g_kwargs(self):
        return {"code_dim": self.code_dim}

    def d_kwargs(self):
        return {"head": (self.categorical, self.continuous)}

    @property
    def rows(self):
        return self.categorical

    def codes(self, categories: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        """The code vector of given category indices (N,) and continuous values (N, continuous)."""
        parts = [F.one_hot(categories, self.categorical).float()] if self.categorical else []
        return torch.cat(parts + [continuous.float()], dim=1)

    def sample(self, n, labels, device, generator=None):
        # Drawn on the device in the training loop; from a CPU generator (same codes on any device) elsewhere.
        where = "cpu" if generator is not None else device
        categories = torch.randint(max(self.categorical, 1), (n,), generator=generator, device=where)
        continuous = torch.rand(n, self.continuous, generator=generator, device=where) * 2 - 1
        return self.codes(categories, continuous).to(device)

    def grid_condition(self, columns, device):
        if not self.categorical:
            return None
        rows = torch.arange(self.categorical).repeat_interleave(columns)
        return self.codes(rows, torch.zeros(len(rows), self.continuous)).to(device)

    def run_d(self, D, x, condition):
        return D(x, head=True)

    def _loss(self, head, codes, log: bool):
        categorical_logits, continuous_mean = head[:, :self.categorical], head[:, self.categorical:]
        categorical, continuous = info_loss(categorical_logits, continuous_mean, codes, self.categorical,
                                            self.continuous_weight)
        if log:  # the D step's values go to TensorBoard
            self.last["info/categorical"] = categorical.detach()
            self.last["info/continuous"] = continuous.detach()
            if self.categorical:
                hits = categorical_logits.detach().argmax(1) == codes[:, :self.categorical].argmax(1)
                self.last["info/accuracy"] = hits.float().mean()
        return self.weight * (categorical + continuous)

    def d_loss(self, real_head, labels, fake_head, condition):
        return self._loss(fake_head, condition, log=True)

    def g_loss(self, fake_head, condition):
        return self._loss(fake_head, condition, log=False)

