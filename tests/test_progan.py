"""Progressive growing (model=progan): equalised learning rate, fade-in, the growth schedule, resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from gan_cli import UserError, build, checkpoint
from gan_cli.models.equalized import EqualizedConv2d, EqualizedLinear, PixelNorm
from gan_cli.models.progan import ProGANDiscriminator, ProGANGenerator
from gan_cli.train import train
from tests.conftest import tiny_config
from tests.test_train import scalars

CPU = torch.device("cpu")


def test_equalised_lr_scales_the_stored_weights_at_run_time():
    layer = EqualizedLinear(4, 2, gain=math.sqrt(2))
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(0.5)
    x = torch.ones(1, 4, requires_grad=True)
    out = layer(x)
    # He's constant sqrt(2 / fan_in) = sqrt(2) / 2 applied in the forward pass: 4 x 0.7071 + 0.5.
    assert torch.allclose(out, torch.full((1, 2), 4 * math.sqrt(2) / 2 + 0.5))
    out.sum().backward()
    assert torch.allclose(layer.weight.grad, torch.full((2, 4), math.sqrt(2) / 2))  # the same scale in the gradient
    slow = EqualizedLinear(100, 100, lr_multiplier=0.01)
    assert 50 < slow.weight.std() < 150  # stored as N(0, 1) / 0.01; used as N(0, 1) * gain / sqrt(fan_in)
    conv = EqualizedConv2d(3, 5, 3)
    assert conv.scale == pytest.approx(math.sqrt(2) / math.sqrt(27)) and 0.8 < conv.weight.std() < 1.2
    y = PixelNorm()(torch.randn(2, 7, 3, 3) * 5)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def nets(side=32):
    torch.manual_seed(0)
    return (ProGANGenerator((1, side, side), z_dim=8, width=4, max_width=16),
            ProGANDiscriminator((1, side, side), width=4, max_width=16))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_fade_in_starts_at_the_old_path_and_ends_at_the_new(level):
    G, D = nets()
    z = torch.randn(5, 8)
    G.grow(level - 1, 1.0)
    old = F.interpolate(G(z, native=True), scale_factor=2, mode="nearest")
    G.grow(level, 0.0)
    at_0 = G(z, native=True)
    G.grow(level, 1.0)
    at_1 = G(z, native=True)
    G.grow(level, 0.25)
    assert at_0.shape[-1] == 4 * 2 ** level and torch.equal(at_0, old)
    assert torch.allclose(G(z, native=True), 0.75 * at_0 + 0.25 * at_1, atol=1e-6)
    assert not torch.allclose(at_0, at_1)
    x = torch.randn(5, 1, 4 * 2 ** level, 4 * 2 ** level)
    D.grow(level - 1, 1.0)
    old_score = D(F.avg_pool2d(x, 2))
    D.grow(level, 0.0)
    assert torch.allclose(D(x), old_score, atol=1e-6)
    D.grow(level, 1.0)
    assert not torch.allclose(D(x), old_score)


def test_g_draws_at_its_level_upscaled_and_d_pools_larger_inputs():
    G, D = nets(16)
    G.grow(1, 1.0)
    D.grow(1, 1.0)
    image = G(torch.randn(2, 8))
    assert image.shape == (2, 1, 16, 16)
    assert torch.equal(image, F.interpolate(F.avg_pool2d(image, 2), scale_factor=2, mode="nearest"))  # 2x2 blocks
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(D(x), D(F.avg_pool2d(x, 2)))


def game_of(*overrides):
    c = OmegaConf.to_container(tiny_config("model=progan", *overrides))
    return build.game(c, build.data(c, CPU, batch_size=c["trainer"]["batch_size"]), CPU)


def test_the_schedule_fades_each_level_in_over_its_first_half():
    game = game_of("trainer.steps=30")  # 16x16: levels 4, 8, 16, ten steps each
    assert game.plan() == [10, 10, 10]
    assert game.level_at(1) == (0, 1.0) and game.level_at(10) == (0, 1.0)
    assert game.level_at(11) == (1, 0.0) and game.level_at(13) == (1, 0.4) and game.level_at(16) == (1, 1.0)
    assert game.level_at(21) == (2, 0.0) and game.level_at(30) == (2, 1.0) and game.level_at(99) == (2, 1.0)
    sized = game_of("trainer.steps=30", "trainer.batch_size=8", "game.level_images=40", "game.batch_sizes=[8,4,2]")
    assert sized.plan() == [5, 10, 20]
    changed = sized.schedule(6)
    assert changed["level"] == 1 and changed["side"] == 8 and sized.nets["G"].level == 1
    # Real images at the level's side; during the fade-in blended with their 2x coarser version.
    real = torch.randn(8, 1, 16, 16)
    sized.schedule(8)  # level 1, alpha 2 / 5
    at_8 = F.avg_pool2d(real, 2)
    coarse = F.interpolate(F.avg_pool2d(at_8, 2), scale_factor=2, mode="nearest")
    assert torch.allclose(sized.real_at_level(real), 0.6 * coarse + 0.4 * at_8, atol=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (("game.batch_sizes=[8,8]",), "needs 3 batch sizes"),
    (("game.batch_sizes=[8,8,99]",), "each from 1 to trainer.batch_size"),
    (("game.level_images=0",), "level_images"),
    (("generator=dcgan",), "use generator=progan discriminator=progan"),
    (("conditioning=cgan",), "unconditional"),
])
def test_bad_settings_are_one_line_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        game_of(*overrides)


def test_resume_inside_a_fade_in_and_across_a_level_change_is_exact(tmp_path):
    """16x16, batch 8, 32 images a level: 4 steps each, the first 2 fading in. Split at step 6 (level 1,
    alpha 0.5) and at step 8 (the last step of level 1), then resumed to 12: every tensor as a straight run."""
    keys = ("model=progan", "game.level_images=32", "trainer.log_every=1")
    train(tiny_config(*keys, "trainer.steps=12"), tmp_path / "straight")
    straight = checkpoint.load(tmp_path / "straight")
    for split in (6, 8):
        run = tmp_path / f"split-{split}"
        train(tiny_config(*keys, f"trainer.steps={split}"), run)
        train(OmegaConf.create({"resume": str(run)}), run, overrides=["trainer.steps=12"])
        resumed = checkpoint.load(run)
        for group in ("nets", "ema"):
            for name, tensors in straight[group].items():
                assert all(torch.equal(tensors[k], resumed[group][name][k]) for k in tensors), (split, name)
    assert int(straight["nets"]["D"]["level"]) == 2


def test_a_checkpoint_draws_at_its_level_and_logs_level_and_alpha(tmp_path):
    train(tiny_config("model=progan", "trainer.steps=6", "trainer.log_every=1"), tmp_path)  # 2 steps a level
    state = checkpoint.load(tmp_path)
    assert int(state["nets"]["G"]["level"]) == 2 and int(state["ema"]["G_ema"]["level"]) == 2
    loaded = build.load(tmp_path, use_ema=True, device=CPU)
    assert loaded.which == "G_ema" and int(loaded.net.level) == 2
    levels = [value for _, value in scalars(tmp_path, "progan/level")]
    alphas = [value for _, value in scalars(tmp_path, "progan/alpha")]
    assert levels == [0, 0, 1, 1, 2, 2] and alphas == [1, 1, 0, 1, 0, 1]


def test_the_drift_term_adds_epsilon_times_the_mean_square_real_score():
    from gan_cli.losses import WassersteinGP

    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.5])
    plain, drifting = WassersteinGP(), WassersteinGP(drift=0.001)
    assert drifting.d_loss(real, fake) == pytest.approx(plain.d_loss(real, fake).item() + 0.001 * 2.5)
    with pytest.raises(UserError, match="drift"):
        WassersteinGP(drift=-1)


def test_g_ema_follows_the_level_without_reading_it_at_every_forward_pass():
    import copy

    from gan_cli.train import update_ema

    G, _ = nets()
    G.grow(1, 0.5)
    ema = copy.deepcopy(G)
    G.grow(2, 0.25)
    assert ema.growth() == (1, 0.5)
    update_ema(ema, G, 0.9)  # copies the buffers: the copy reads them once
    assert ema.growth() == (2, 0.25) and ema(torch.randn(2, 8), native=True).shape[-1] == 16
