"""DCGAN and MLP nets: shapes, the paper's layer rules, initialisation, and clear errors."""

import pytest
import torch
from torch import nn

from gan_cli import UserError
from gan_cli.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_cli.models.mlp import MLPDiscriminator, MLPGenerator


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_at_every_power_of_two(resolution, channels):
    shape = (channels, resolution, resolution)
    G, D = DCGANGenerator(shape, z_dim=7, width=4), DCGANDiscriminator(shape, width=4)
    x = G(torch.randn(5, 7))
    assert x.shape == (5, *shape)
    assert x.abs().max() <= 1  # tanh output
    assert D(x).shape == (5,)


def test_dcgan_layers_follow_the_paper():
    G, D = DCGANGenerator((3, 64, 64), width=8), DCGANDiscriminator((3, 64, 64), width=8)
    g_layers, d_layers = list(G.net), list(D.net)
    # G: 4 fractionally-strided stages after the 4x4 projection; BN + ReLU everywhere but the tanh output.
    assert [type(m) for m in g_layers[-2:]] == [nn.ConvTranspose2d, nn.Tanh]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g_layers) == 4
    assert all(isinstance(m, (nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU, nn.Tanh)) for m in g_layers)
    # Feature maps halve towards the image: 8*8 at 4x4 for a 64x64 output with width 8 (the paper's 1024 for 128).
    assert g_layers[0].out_channels == 64
    # D: no BN on the input layer, LeakyReLU(0.2), strided convs only, one score from the last 4x4 conv.
    assert isinstance(d_layers[1], nn.LeakyReLU) and d_layers[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d_layers) == 3
    assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.Sigmoid)) for m in d_layers)
    assert d_layers[-1].out_channels == 1 and d_layers[-1].kernel_size == (4, 4)


def test_dcgan_initialisation_is_normal_0_02():
    G = DCGANGenerator((1, 64, 64), width=32)
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert weights.mean().abs() < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    bn_scales = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn_scales.mean().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("shape", [(1, 24, 24), (1, 8, 8), (1, 32, 16)])
def test_dcgan_refuses_other_resolutions(shape):
    with pytest.raises(UserError, match="power-of-two"):
        DCGANGenerator(shape)
    with pytest.raises(UserError, match="power-of-two"):
        DCGANDiscriminator(shape)


def test_dcgan_refuses_vector_data_and_points_to_mlp():
    with pytest.raises(UserError, match="generator=mlp"):
        DCGANGenerator((2,))


def test_mlp_for_points_and_images():
    G = MLPGenerator((2,), z_dim=3, hidden=[8, 8])
    points = G(torch.randn(4, 3))
    assert points.shape == (4, 2)
    assert not isinstance(G.net[-1], nn.Tanh)  # points are unbounded
    G = MLPGenerator((1, 8, 8), z_dim=3, hidden=[8])
    assert G(torch.randn(4, 3)).shape == (4, 1, 8, 8)
    assert isinstance(G.net[-1], nn.Tanh)
    D = MLPDiscriminator((1, 8, 8), hidden=[8], dropout=0.5)
    assert D(torch.randn(4, 1, 8, 8)).shape == (4,)
    assert any(isinstance(m, nn.Dropout) for m in D.modules())


def test_mlp_bad_options():
    with pytest.raises(UserError, match="hidden"):
        MLPGenerator((2,), hidden=[])
    with pytest.raises(UserError, match="dropout"):
        MLPDiscriminator((2,), dropout=1.5)


def test_spectral_norm_bounds_every_layer():
    torch.manual_seed(0)
    D = DCGANDiscriminator((1, 16, 16), width=4, norm="none", spectral_norm=True)
    for _ in range(30):  # the power iteration converges over forward passes
        D(torch.randn(2, 1, 16, 16))
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    mlp = MLPDiscriminator((2,), hidden=[8], spectral_norm=True)
    assert all(hasattr(m, "parametrizations") for m in mlp.modules() if isinstance(m, nn.Linear))


def test_layer_norm_critic_has_no_batch_statistics():
    D = DCGANDiscriminator((3, 32, 32), width=4, norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    assert sum(isinstance(m, nn.GroupNorm) and m.num_groups == 1 for m in D.modules()) == 2
    # Per-item normalisation: an item's score does not depend on the rest of the batch.
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(D(x)[:1], D(x[:1]), atol=1e-6)
    with pytest.raises(UserError, match="batch, layer, none"):
        DCGANDiscriminator((3, 32, 32), norm="instance")
    with pytest.raises(UserError, match="spectral_norm must be true or false"):
        MLPDiscriminator((2,), spectral_norm="yes")
