"""The registry: short names to constructors, one-line errors naming the valid choices."""

import pytest
import torch

from gan_cli import UserError, registry


def test_build_passes_options_and_runtime_facts():
    G = registry.build("generator", {"name": "dcgan", "z_dim": 12, "width": 4}, shape=(3, 16, 16))
    assert G.z_dim == 12 and G(torch.randn(2, 12)).shape == (2, 3, 16, 16)


def test_unknown_name_lists_the_choices():
    with pytest.raises(UserError) as err:
        registry.build("loss", {"name": "hinj"})
    choices = "minimax, nonsaturating, lsgan, hinge, wgan, wgan_gp, relativistic, relativistic_average"
    assert str(err.value) == f"unknown loss 'hinj'; choose one of: {choices}"


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(UserError) as err:
        registry.build("generator", {"name": "dcgan", "widht": 4}, shape=(1, 16, 16))
    assert "widht" in str(err.value) and "z_dim, width" in str(err.value)


def test_bad_value_is_a_user_error():
    with pytest.raises(UserError, match="learning rate"):
        registry.build("optimizer", {"name": "adam", "lr": -1.0}, params=torch.nn.Linear(1, 1).parameters())


def test_options_are_the_config_keys():
    assert registry.options("optimizer", "adam") == ["lr", "betas", "weight_decay"]
    assert registry.options("dataset", "toy2d") == ["mixture"]
