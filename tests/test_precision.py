"""The precision policy: TF32, cuDNN autotuning, layouts and deterministic mode set as trainer.* asks and kept in
the checkpoint; losses in float32 under half-precision autocast; metrics' features in IEEE float32."""

import pytest
import torch

from gan_cli import checkpoint, losses, registry, runtime
from gan_cli.train import train
from tests.conftest import tiny_config


@pytest.mark.parametrize("name", ["minimax", "nonsaturating", "lsgan", "hinge", "wasserstein"])
def test_losses_take_half_precision_scores_in_float32(name):
    objective = {"minimax": losses.Minimax, "nonsaturating": losses.NonSaturating, "lsgan": losses.LeastSquares,
                 "hinge": losses.Hinge, "wasserstein": losses.Wasserstein}[name]()
    real, fake = torch.randn(64).mul(3).bfloat16(), torch.randn(64).mul(3).bfloat16()
    d, g = objective.d_loss(real, fake), objective.g_loss(fake)
    assert d.dtype == g.dtype == torch.float32
    assert torch.equal(d, objective.d_loss(real.float(), fake.float()))  # the same numbers, taken in float32
    assert torch.equal(g, objective.g_loss(fake.float()))


def test_the_policy_is_set_recorded_and_undone(tmp_path):
    saved = runtime.tf32_state()
    try:
        cfg = tiny_config("trainer.tf32=true", "trainer.deterministic=true", "trainer.channels_last=true")
        train(cfg, tmp_path / "a")
        policy = checkpoint.load(tmp_path / "a")["precision_policy"]
        assert policy["tf32"] and policy["deterministic"] and policy["channels_last"] and policy["device"] == "cpu"
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        on = runtime.tf32_state()
        with runtime.ieee_float32(torch.device("cpu")):  # how metrics' features are computed
            off = runtime.tf32_state()
        assert runtime.tf32_state() == on != off
        train(tiny_config(), tmp_path / "b")  # the defaults: every switch off again
        policy = checkpoint.load(tmp_path / "b")["precision_policy"]
        assert not any(policy[k] for k in ("tf32", "cudnn_benchmark", "channels_last", "deterministic"))
        assert not torch.are_deterministic_algorithms_enabled() and runtime.tf32_state() == off
    finally:
        runtime.set_tf32(False)
        if saved != runtime.tf32_state():
            runtime._restore_tf32(saved)
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_channels_last_keeps_the_numbers_on_the_cpu(tmp_path):
    # NHWC weights change the layout, not the function: the same run within float32 rounding.
    train(tiny_config("trainer.steps=3"), tmp_path / "a")
    train(tiny_config("trainer.steps=3", "trainer.channels_last=true"), tmp_path / "b")
    a, b = (checkpoint.load(tmp_path / x)["nets"]["G"] for x in "ab")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)


def test_adam_is_fused_on_cuda_only():
    cpu = registry.adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    assert not cpu.defaults.get("fused")
    if torch.cuda.is_available():
        cuda = registry.adam([torch.nn.Parameter(torch.zeros(3, device="cuda"))], lr=1e-3)
        assert cuda.defaults["fused"]
