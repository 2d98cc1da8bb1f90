"""Each objective against values computed by hand from sigmoid probabilities."""

import math

import pytest
import torch

from gan_cli.losses import Minimax, NonSaturating


def sigmoid(s):
    return 1 / (1 + math.exp(-s))


REAL = [0.0, 2.0]
FAKE = [-1.0, 3.0]


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_discriminator_loss_is_binary_cross_entropy():
    # D maximises log D(x) + log(1 - D(G(z))): its loss is the negation, averaged per batch.
    expected = -sum(math.log(sigmoid(s)) for s in REAL) / 2 - sum(math.log(1 - sigmoid(s)) for s in FAKE) / 2
    for loss in (Minimax(), NonSaturating()):
        assert loss.d_loss(t(REAL), t(FAKE)).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2.090962, abs=1e-6)


def test_minimax_generator_minimises_log_one_minus_d():
    expected = sum(math.log(1 - sigmoid(s)) for s in FAKE) / 2
    assert Minimax().g_loss(t(FAKE)).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(-1.680924, abs=1e-6)


def test_nonsaturating_generator_maximises_log_d():
    expected = -sum(math.log(sigmoid(s)) for s in FAKE) / 2
    assert NonSaturating().g_loss(t(FAKE)).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.680924, abs=1e-6)


def test_losses_stay_finite_and_exact_for_confident_scores():
    # A naive log(sigmoid(s)) gives -inf at s = -100 in float32; the softplus form does not.
    real, fake = torch.tensor([100.0]), torch.tensor([-100.0])
    assert Minimax().d_loss(real, fake).item() == pytest.approx(0.0, abs=1e-30)
    assert NonSaturating().g_loss(fake).item() == pytest.approx(100.0, rel=1e-6)
    assert Minimax().g_loss(fake).item() == pytest.approx(0.0, abs=1e-30)
    assert torch.isfinite(NonSaturating().d_loss(fake, real))


def test_minimax_saturates_where_nonsaturating_does_not():
    # Early in training D rejects fakes confidently: the minimax G gradient vanishes (Goodfellow et al., sec. 3).
    grads = {}
    for loss in (Minimax(), NonSaturating()):
        fake = torch.tensor([-10.0], requires_grad=True)
        loss.g_loss(fake).backward()
        grads[type(loss).__name__] = fake.grad.abs().item()
    assert grads["Minimax"] < 1e-4
    assert grads["NonSaturating"] > 0.99


def test_base_loss_has_no_penalty_and_no_after_step_effect():
    loss = NonSaturating()
    assert loss.penalty(None, torch.zeros(1), torch.zeros(1)) is None
    assert loss.after_d_step(None) is None
