"""DiffAugment (trainer.augment) and its adaptive probability."""

import pytest
import torch
from omegaconf import OmegaConf

from gan_cli import UserError, augment, build, checkpoint
from gan_cli.games import Nets
from gan_cli.train import train
from tests.conftest import compose_config, tiny_config
from tests.test_train import scalars

CPU = torch.device("cpu")


def images(n=6, side=16, channels=3, seed=0):
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", augment.POLICIES)
def test_each_transform_is_random_per_image_and_differentiable(name):
    x = images().requires_grad_()
    torch.manual_seed(0)
    y = augment.TRANSFORMS[name](x)
    assert y.shape == x.shape and not torch.equal(y, x)
    torch.manual_seed(0)
    assert torch.equal(augment.TRANSFORMS[name](x), y)  # the global stream decides
    same = x[:1].detach().repeat(6, 1, 1, 1)
    out = augment.TRANSFORMS[name](same)
    assert len({out[i].sum().item() for i in range(6)}) > 1  # each image draws its own
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_shifts_by_at_most_an_eighth_and_fills_with_zero():
    x = images(n=20, side=32) * 0.5 + 0.75  # in [0.25, 1.25]: no pixel is 0
    torch.manual_seed(1)
    y = augment.translation(x)
    padded = torch.nn.functional.pad(x, [4, 4, 4, 4])
    shifts = []
    for i in range(20):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if torch.equal(y[i], padded[i, :, 4 + dy:36 + dy, 4 + dx:36 + dx])]
        assert len(found) == 1
        shifts.append(found[0])
    assert len(set(shifts)) > 5


def test_cutout_blanks_one_square_of_half_the_side():
    x = torch.ones(50, 1, 16, 16)
    torch.manual_seed(2)
    y = augment.cutout(x)
    blanked = y == 0
    for i in range(50):
        rows, cols = blanked[i, 0].any(1).nonzero().flatten(), blanked[i, 0].any(0).nonzero().flatten()
        # A rectangle (the square, cut by the border), at most 8 x 8.
        assert blanked[i, 0].sum() == len(rows) * len(cols) and len(rows) <= 8 and len(cols) <= 8
    assert (blanked.flatten(1).sum(1) == 64).float().mean() > 0.3  # often whole


def test_color_and_probability():
    x = images(n=64)
    torch.manual_seed(3)
    y = augment.color(x)
    assert (y.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() > 0.2  # brightness moves
    off = augment.DiffAugment(["color", "translation", "cutout"], p=0.0)
    assert torch.equal(off(x), x)
    half = augment.DiffAugment(["cutout"], p=0.5)
    changed = (half(x) != x).flatten(1).any(1).float().mean()
    assert 0.25 < changed < 0.75


def test_off_by_default_and_bad_values(tmp_path):
    c = compose_config()
    assert list(c.trainer.augment) == [] and c.trainer.augment_target is None
    game = build.game(OmegaConf.to_container(c), build.data(OmegaConf.to_container(c), CPU), CPU)
    assert game.augment is None
    for override, message in (("trainer.augment=[colour]", "unknown trainer.augment 'colour'"),
                              ("trainer.augment_p=2", "augment_p"),
                              ("trainer.augment_target=1.5", "augment_target")):
        with pytest.raises(UserError, match=message):
            train(tiny_config(override), tmp_path)
    with pytest.raises(UserError, match="vectors"):
        train(tiny_config("dataset=toy2d", "model=gan", "trainer.augment=[color]"), tmp_path)


def test_d_sees_augmented_real_and_fake_in_both_updates_and_g_gets_gradient():
    c = OmegaConf.to_container(tiny_config("trainer.augment=[translation,cutout]"))
    source = build.data(c, CPU, batch_size=8)
    game = build.game(c, source, CPU)
    seen = []

    def recording(x):
        seen.append(x)
        return augment.cutout(augment.translation(x))

    game.augment.policy = [recording]
    nets = Nets(game.nets, game.nets)
    batch = source.next()
    d_player, g_player = game.players()
    game.loss(d_player, batch, nets, 0)
    assert len(seen) == 2 and torch.equal(seen[0], batch[0]) and seen[1].shape == batch[0].shape
    loss, _ = game.loss(g_player, batch, nets, 0)
    assert len(seen) == 3 and seen[2].requires_grad  # G's fakes, through the transforms
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in game.nets["G"].parameters() if p.dim() > 1)


def test_adaptive_p_rises_is_logged_and_resumes_exactly(tmp_path):
    keys = ("trainer.augment=[color,translation,cutout]", "trainer.augment_target=-0.9", "trainer.augment_speed=64",
            "trainer.log_every=1")
    train(tiny_config(*keys, "trainer.steps=4"), tmp_path / "straight")
    train(tiny_config(*keys, "trainer.steps=2"), tmp_path / "split")
    train(OmegaConf.create({"resume": str(tmp_path / "split")}), tmp_path / "split", overrides=["trainer.steps=4"])
    a, b = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    for net in a["nets"]:
        assert all(torch.equal(a["nets"][net][k], b["nets"][net][k]) for k in a["nets"][net]), net
    assert torch.equal(a["game_state"]["augment"]["p"], b["game_state"]["augment"]["p"])
    # Logged each step (log_every=1); it moves by 4 updates x 8 images / 64 = 0.5 per adjustment.
    p = [value for _, value in scalars(tmp_path / "straight", "augment/p")]
    assert len(p) == 4 and all(0 <= v <= 1 for v in p)
    rt = [value for _, value in scalars(tmp_path / "straight", "augment/rt")]
    assert len(rt) == 4


def test_adjustment_by_hand():
    aug = augment.DiffAugment(["color"], target=0.6, speed=100)
    assert aug.p.item() == 0.0
    for _ in range(3):
        aug.observe(torch.ones(5))  # D sure of every real image: r_t = 1 > 0.6
    assert aug.p.item() == 0.0       # adjusted every 4 updates
    aug.observe(torch.ones(5))
    assert aug.p.item() == pytest.approx(20 / 100) and aug.last_rt.item() == 1.0
    for _ in range(4):
        aug.observe(-torch.ones(5))  # r_t = -1 < 0.6: p falls back
    assert aug.p.item() == pytest.approx(0.0)
    for _ in range(40):
        aug.observe(torch.ones(5))
    assert aug.p.item() == 1.0       # clamped
