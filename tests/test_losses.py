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


def test_base_loss_has_no_penalty_and_no_after_step_effect():  # noqa: D103
    loss = NonSaturating()
    assert loss.penalty(None, torch.zeros(1), torch.zeros(1)) is None
    assert loss.after_d_step(None) is None


# --- the GAN family ---------------------------------------------------------------------------

from gan_cli.losses import Hinge, LeastSquares, Wasserstein, WassersteinGP  # noqa: E402


def test_least_squares_by_hand():
    # D: 1/2 mean((r - 1)^2) + 1/2 mean(f^2); G: 1/2 mean((f - 1)^2).
    d = 0.5 * ((0 - 1) ** 2 + (2 - 1) ** 2) / 2 + 0.5 * ((-1) ** 2 + 3**2) / 2
    g = 0.5 * ((-1 - 1) ** 2 + (3 - 1) ** 2) / 2
    assert LeastSquares().d_loss(t(REAL), t(FAKE)).item() == pytest.approx(d)
    assert LeastSquares().g_loss(t(FAKE)).item() == pytest.approx(g)
    assert (d, g) == (3.0, 2.0)


def test_hinge_by_hand():
    # D: mean(max(0, 1 - r)) + mean(max(0, 1 + f)); G: -mean(f).
    d = (max(0, 1 - 0) + max(0, 1 - 2)) / 2 + (max(0, 1 - 1) + max(0, 1 + 3)) / 2
    assert Hinge().d_loss(t(REAL), t(FAKE)).item() == pytest.approx(d) == 2.5
    assert Hinge().g_loss(t(FAKE)).item() == pytest.approx(-1.0)


def test_wasserstein_by_hand():
    loss = Wasserstein()
    assert loss.d_loss(t(REAL), t(FAKE)).item() == pytest.approx((-1 + 3) / 2 - (0 + 2) / 2) == 0.0
    assert loss.d_loss(t([5.0]), t([1.0])).item() == -4.0  # the critic's loss is minus its distance estimate
    assert loss.g_loss(t(FAKE)).item() == pytest.approx(-1.0)
    assert loss.critic and not Hinge().critic


def test_weight_clipping_after_a_critic_step():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.LeakyReLU(0.2), torch.nn.Linear(8, 1))
    loss = Wasserstein(clip=0.01)
    opt = torch.optim.RMSprop(D.parameters(), lr=5e-5)
    loss_d = loss.d_loss(D(torch.randn(16, 2)).squeeze(1), D(torch.randn(16, 2) + 3).squeeze(1))
    loss_d.backward()
    opt.step()
    assert max(p.abs().max().item() for p in D.parameters()) > 0.01  # the default init lies outside
    loss.after_d_step(D)
    weights = torch.cat([p.flatten() for p in D.parameters()])
    assert weights.abs().max().item() <= 0.01
    assert 0.5 < loss.diagnostics(D)["critic/clipped_share"].item() <= 1.0


class Linear(torch.nn.Module):
    """D(x) = w . x over every non-batch dimension: its input gradient is w, for every x."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1)


@pytest.mark.parametrize("shape", [(2,), (1, 2, 2), (3, 4, 4)])
def test_gradient_penalty_of_a_linear_critic(shape):
    torch.manual_seed(1)
    w = torch.randn(*shape)
    D = Linear(w)
    real, fake = torch.randn(8, *shape), torch.randn(8, *shape)
    expected = 10 * (w.norm().item() - 1) ** 2  # ||grad D(x_hat)|| = ||w|| at every interpolate
    gp = WassersteinGP(gp_weight=10).penalty(D, real, fake)
    assert gp.item() == pytest.approx(expected, rel=1e-5)
    gp.backward()  # the penalty is differentiable in D's weights: d/dw = 20 (||w|| - 1) w / ||w||
    assert torch.allclose(D.w.grad, 20 * (w.norm() - 1) * w / w.norm(), rtol=1e-4)


def test_gradient_penalty_is_exact_under_bf16_autocast():
    torch.manual_seed(2)
    w = torch.randn(3, 8, 8) * 0.1 + 0.01  # a norm far from 1 with small entries: bf16 would round them
    D = Linear(w)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = WassersteinGP().penalty(D, real, fake)
    assert gp.dtype == torch.float32
    assert gp.item() == pytest.approx(10 * (w.norm().item() - 1) ** 2, rel=1e-5)


def test_r1_penalty_with_any_loss():
    w = torch.tensor([3.0, 4.0])
    for loss in (NonSaturating(r1_gamma=2.0), Hinge(r1_gamma=2.0), WassersteinGP(gp_weight=0.0, r1_gamma=2.0)):
        r1 = loss.penalty(Linear(w), torch.randn(5, 2), torch.randn(5, 2))
        assert r1.item() == pytest.approx(2.0 / 2 * 25.0)  # gamma/2 * ||w||^2
    assert NonSaturating().penalty(Linear(w), torch.randn(5, 2), torch.randn(5, 2)) is None
