"""The training loop on tiny CPU runs: every preset, the files a run writes, and resume."""

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_cli import UserError, checkpoint
from gan_cli.train import train
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
    assert [step for step, _ in scalars(tmp_path, "loss/D")] == [1, 2]
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


def test_dcgan_on_points_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="generator=mlp"):
        train(tiny_config("dataset=toy2d"), tmp_path)


def test_k_discriminator_steps_per_generator_step(tmp_path):
    cfg = tiny_config("trainer.n_critic=3")
    train(cfg, tmp_path)
    state = checkpoint.load(tmp_path)
    d_steps = state["opt_D"]["state"][0]["step"].item()
    g_steps = state["opt_G"]["state"][0]["step"].item()
    assert (d_steps, g_steps) == (6, 2)


def test_periodic_checkpoints_and_samples(tmp_path):
    cfg = tiny_config("trainer.steps=4", "trainer.ckpt_every=2", "trainer.sample_every=2")
    train(cfg, tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.pt", "step_0000002.pt", "step_0000004.pt"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["last.png", "step_0000002.png", "step_0000004.png"]
    assert checkpoint.load(tmp_path / "checkpoints" / "step_0000002.pt")["step"] == 2


def test_checkpoint_holds_only_tensors_and_plain_data(tmp_path):
    train(tiny_config(), tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert set(state) >= {"G", "D", "opt_G", "opt_D", "step", "rng", "config", "data", "names"}
    assert state["config"]["dataset"]["name"] == "digits"


def test_resume_continues_step_count_curves_and_weights(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_config("trainer.steps=4"), straight)
    train(tiny_config("trainer.steps=2"), split)
    result = train(OmegaConf.create({"resume": str(split)}), split, overrides=["resume=x", "trainer.steps=4"])
    assert result["step"] == 4 and checkpoint.load(split)["step"] == 4
    assert [s for s, _ in scalars(split, "loss/G")] == [1, 2, 3, 4]
    # The same run, bit for bit: weights and logged losses.
    a, b = checkpoint.load(straight), checkpoint.load(split)
    for net in ("G", "D"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)
    assert scalars(straight, "loss/G") == scalars(split, "loss/G")


def test_resume_refuses_to_change_components_and_a_used_folder(tmp_path):
    train(tiny_config(), tmp_path)
    with pytest.raises(UserError, match="resume keeps the run's loss"):
        train(OmegaConf.create({"resume": str(tmp_path)}), tmp_path, overrides=["loss=minimax"])
    with pytest.raises(UserError, match="already holds a run"):
        train(tiny_config(), tmp_path)


def test_resume_of_a_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        train(OmegaConf.create({"resume": str(tmp_path / "gone.pt")}), tmp_path)


@pytest.mark.parametrize("override,message", [
    ("trainer.batch_size=0", "trainer.batch_size must be a positive integer"),
    ("trainer.n_critic=0", "trainer.n_critic must be a positive integer"),
    ("trainer.device=tpu", "unknown trainer.device 'tpu'"),
    ("optimizer.lr=-1", "learning rate"),
])
def test_bad_values_are_one_line_errors(override, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(tiny_config(override), tmp_path)
