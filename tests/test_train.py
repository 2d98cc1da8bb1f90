"""The training loop on tiny CPU runs: every preset, the files a run writes, and resume."""

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_cli import UserError, checkpoint
from gan_cli.train import ema_decay, train, update_ema
from tests.conftest import options_of_models, tiny_config


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.parametrize("model", options_of_models())
def test_two_steps_of_every_preset(model, tmp_path):
    result = train(tiny_config(f"model={model}"), tmp_path)
    assert result["step"] == 2
    assert all(math.isfinite(v) for v in result["logged"].values())
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "samples" / "step_0000002.png").is_file()
    tag = "loss/G" if model == "srresnet" else "loss/D"  # SRResNet has no D
    assert [step for step, _ in scalars(tmp_path, tag)] == [1, 2]
    state = checkpoint.load(tmp_path)
    assert state["step"] == 2 and state["names"]["generator"] == state["config"]["generator"]["name"]


def test_toy2d_run_draws_a_scatter_plot(tmp_path):
    from PIL import Image

    train(tiny_config("model=gan", "dataset=toy2d", "dataset.mixture=grid"), tmp_path)
    picture = Image.open(tmp_path / "samples" / "last.png")
    assert picture.size == (480, 480)
    # The centres are drawn as red crosses.
    pixels = torch.from_numpy(np.array(picture.convert("RGB"))).view(-1, 3)
    assert ((pixels[:, 0] > 200) & (pixels[:, 1] < 60)).sum() > 25 * 10


@pytest.mark.parametrize("model", options_of_models())
def test_every_preset_runs_on_points_with_the_mlp_nets(model, tmp_path):
    if model.startswith("sngan_projection") or model in ("r3gan_cifar10", "sagan", "biggan", "biggan_64"):
        # cbn needs the dcgan or resnet G
        with pytest.raises(UserError, match="which the dcgan and resnet generators have"):
            train(tiny_config(f"model={model}", "dataset=toy2d", "trainer.steps=2"), tmp_path)
        return
    if model in ("pix2pix", "cyclegan", "cycada"):  # image-to-image games: points are no images
        game = "cyclegan" if model == "cycada" else model
        with pytest.raises(UserError, match=f"game {game} learns from (un)?paired images"):
            train(tiny_config(f"model={model}", "dataset=toy2d", "trainer.steps=2"), tmp_path)
        return
    if model in ("progan", "stylegan2"):
        with pytest.raises(UserError, match=f"game={model} (grows|draws) images"):
            train(tiny_config(f"model={model}", "dataset=toy2d", "trainer.steps=2"), tmp_path)
        return
    if model in ("srresnet", "srgan"):
        with pytest.raises(UserError, match="game superres learns from low- and high-resolution pairs"):
            train(tiny_config(f"model={model}", "dataset=toy2d", "trainer.steps=2"), tmp_path)
        return
    result = train(tiny_config(f"model={model}", "dataset=toy2d", "trainer.steps=2"), tmp_path)
    config = checkpoint.load(tmp_path)["config"]
    assert config["generator"]["name"] == config["discriminator"]["name"] == "mlp"
    assert set(result["modes"]) == {"modes", "hq_percent", "reverse_kl", "balanced_hq"}


def test_critic_diagnostics_reach_tensorboard(tmp_path):
    train(tiny_config("model=wgan_gp", "trainer.n_critic=2"), tmp_path)
    tags = set(EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"])
    assert {"critic/wasserstein", "penalty/gradient", "D/grad_norm"} <= tags
    train(tiny_config("model=wgan"), tmp_path / "wgan")
    (_, share), *_ = scalars(tmp_path / "wgan", "critic/clipped_share")
    assert 0 < share <= 1


def test_toy2d_metrics_are_logged_and_drawn(tmp_path):
    train(tiny_config("model=gan", "dataset=toy2d", "trainer.sample_every=1"), tmp_path)
    assert [s for s, _ in scalars(tmp_path, "modes/modes")] == [1, 2]


def test_ema_update_by_hand():
    G, G_ema = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    torch.nn.init.constant_(G.weight, 3.0)
    torch.nn.init.constant_(G_ema.weight, 1.0)
    G.running_mean.fill_(7.0)
    update_ema(G_ema, G, decay=0.75)
    assert torch.equal(G_ema.weight, torch.full((2,), 0.75 * 1.0 + 0.25 * 3.0))
    # Buffers are not averaged (nor copied): the game recomputes the copy's own statistics.
    assert torch.equal(G_ema.running_mean, torch.zeros(2))


def test_g_ema_is_kept_and_resumed(tmp_path):
    train(tiny_config("trainer.g_ema=0.9", "trainer.steps=3"), tmp_path / "straight")
    train(tiny_config("trainer.g_ema=0.9", "trainer.steps=2"), tmp_path / "split")
    train(OmegaConf.create({"resume": str(tmp_path / "split")}), tmp_path / "split", overrides=["trainer.steps=3"])
    a, b = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    ema_a, ema_b, G = a["ema"]["G_ema"], b["ema"]["G_ema"], a["nets"]["G"]
    assert any(not torch.equal(ema_a[k], G[k]) for k in G)
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    train(tiny_config(), tmp_path / "off")
    assert checkpoint.load(tmp_path / "off")["ema"] == {}


def test_ema_ramp_up_caps_the_half_life_at_a_share_of_the_steps(tmp_path):
    assert ema_decay(0.999, 0.0, 5) == 0.999  # off
    for step in (1, 10, 100):  # the half-life, in steps, is 5 % of the steps so far
        assert ema_decay(0.999, 0.05, step) ** (0.05 * step) == pytest.approx(0.5)
    assert ema_decay(0.999, 0.05, 100_000) == 0.999  # until it reaches the set decay
    # A short run's G_ema is close to G rather than to G's first weights.
    for name, rampup in (("plain", 0.0), ("ramped", 0.05)):
        train(tiny_config("trainer.g_ema=0.999", f"trainer.g_ema_rampup={rampup}", "trainer.steps=4"), tmp_path / name)
    distance = {}
    for name in ("plain", "ramped"):
        state = checkpoint.load(tmp_path / name)
        G, ema = state["nets"]["G"], state["ema"]["G_ema"]
        weights = [k for k in G if "running" not in k and "num_batches" not in k]  # not BN's statistics
        distance[name] = sum((ema[k] - G[k]).norm() for k in weights)
    assert distance["ramped"] < 0.05 * distance["plain"]


@pytest.mark.parametrize("override,message", [
    ("trainer.g_ema=1.5", "trainer.g_ema must be in"),
    ("trainer.g_ema_rampup=-1", "trainer.g_ema_rampup must be a number >= 0"),
    ("trainer.batch_size=0", "trainer.batch_size must be a positive integer"),
    ("trainer.n_critic=0", "trainer.n_critic must be a positive integer"),
    ("trainer.device=tpu", "unknown trainer.device 'tpu'"),
    ("optimizer.lr=-1", "learning rate"),
])
def test_bad_values_are_one_line_errors(override, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(tiny_config(override), tmp_path)


def test_without_a_terminal_progress_is_plain_lines(tmp_path, caplog, capsys):
    # Under pytest stderr is no terminal, as under SLURM or nohup: no redrawn bar, a line per logging step
    # with progress_seconds=0.
    caplog.set_level("INFO", logger="gan_cli.train")
    train(tiny_config("trainer.steps=3", "trainer.progress=true", "trainer.progress_seconds=0"), tmp_path / "a")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split(" (")[0] for line in lines] == ["step 1/3", "step 2/3", "step 3/3"]
    assert "steps/s" in lines[-1] and ", D " in lines[-1] and ", G " in lines[-1]
    assert "\r" not in capsys.readouterr().err
    # A long interval: the last step's line only.
    caplog.clear()
    train(tiny_config("trainer.steps=3", "trainer.progress=true", "trainer.progress_seconds=3600"), tmp_path / "b")
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.getMessage().startswith("step ")] == ["step 3/3"]
    with pytest.raises(UserError, match="trainer.progress_seconds must be a number of seconds >= 0"):
        train(tiny_config("trainer.progress_seconds=-1"), tmp_path / "c")
