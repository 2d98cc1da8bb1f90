"""Image-to-image nets: pix2pix's U-Net and PatchGAN, CycleGAN's ResNet G: shapes, the papers' layer rules,
the U-Net's skips and dropout, the PatchGAN's receptive field, and one-line errors."""

import pytest
import torch
from torch import nn

from gan_cli import UserError, registry
from gan_cli.models.translation import (PatchDiscriminator, ResidualBlock, ResnetGenerator, UNetGenerator,
                                        receptive_field, score_map_side)
from tests.conftest import compose_config, one_line

W = 8  # narrow nets keep the file fast


def image(c, side, n=2, seed=0):
    return torch.randn(n, c, side, side, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


@pytest.mark.parametrize("side", [32, 64, 256])
@pytest.mark.parametrize("channels", [(1, 3), (3, 1), (3, None)])
def test_unet_shapes(side, channels):
    c_in, c_out = channels
    G = UNetGenerator((c_in, side, side), width=W, out_channels=c_out)
    y = G(image(c_in, side))
    assert y.shape == (2, c_out or c_in, side, side)
    assert y.abs().max() <= 1  # tanh output


@pytest.mark.parametrize("side", [32, 64])
@pytest.mark.parametrize("channels", [(1, 3), (3, 1), (3, None)])
def test_resnet_and_patchgan_shapes(side, channels):
    c_in, c_out = channels
    G = ResnetGenerator((c_in, side, side), width=W, blocks=2, out_channels=c_out)
    y = G(image(c_in, side))
    assert y.shape == (2, c_out or c_in, side, side) and y.abs().max() <= 1
    # pix2pix's D sees the input and the output side by side.
    pair = torch.cat([image(c_in, side), y], dim=1)
    D = PatchDiscriminator((pair.shape[1], side, side), width=W)
    map_side = {32: 2, 64: 6}[side]
    assert score_map_side(side, 3) == map_side
    assert D(pair).shape == (2, 1, map_side, map_side)
    assert PatchDiscriminator((c_in, side, side), width=W)(image(c_in, side)).shape == (2, 1, map_side, map_side)


def test_resnet_takes_non_square_images():
    G = ResnetGenerator((3, 32, 48), width=W, blocks=1)
    assert G(torch.randn(2, 3, 32, 48)).shape == (2, 3, 32, 48)


@pytest.mark.parametrize("side", [32, 64, 256])
def test_unet_has_a_level_per_halving_and_mirror_skips(side):
    G = UNetGenerator((3, side, side), width=W)
    n = side.bit_length() - 1
    assert G.levels == n and len(G.down) == len(G.up) == n
    convs = [next(m for m in block if isinstance(m, nn.Conv2d)) for block in G.down]
    ups = [next(m for m in block if isinstance(m, nn.ConvTranspose2d)) for block in G.up]
    assert [m.out_channels for m in convs] == [W * min(2 ** i, 8) for i in range(n)]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in convs + ups)
    # Decoder layer j ends at the side of encoder level n-2-j with its channels, and every decoder layer
    # after the first takes the previous output beside the mirror encoder level: twice the channels.
    assert ups[0].in_channels == convs[-1].out_channels
    for j in range(1, n):
        assert ups[j].in_channels == 2 * convs[n - 1 - j].out_channels
        assert ups[j - 1].out_channels == convs[n - 1 - j].out_channels
    assert ups[-1].out_channels == 3 and isinstance(G.up[-1][-1], nn.Tanh)
    # No norm on the outermost encoder layer nor on the 1x1 bottleneck; LeakyReLU(0.2) down, ReLU up.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in list(G.down[0]) + list(G.down[-1]))
    assert all(isinstance(G.down[i][1], nn.BatchNorm2d) for i in range(1, n - 1))
    assert all(isinstance(block[-1], nn.LeakyReLU) and block[-1].negative_slope == 0.2 for block in G.down[:-1])
    assert all(isinstance(block[0], nn.ReLU) for block in G.up)


def test_unet_output_depends_on_the_input_through_the_outermost_skip():
    torch.manual_seed(0)
    G = UNetGenerator((3, 32, 32), width=W, norm="none", dropout=0.0).eval()
    x1, x2 = image(3, 32, seed=1), image(3, 32, seed=2)
    # Cut every encoder level below the outermost: the bottleneck and all deeper skips are zero.
    hooks = [block.register_forward_hook(lambda m, i, o: torch.zeros_like(o)) for block in G.down[1:]]
    with torch.no_grad():
        assert not torch.allclose(G(x1), G(x2))  # the input still reaches the output: the outermost skip
        cut = G.down[0].register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        assert torch.equal(G(x1), G(x2))  # ... and only through it
    for h in hooks + [cut]:
        h.remove()


def test_unet_dropout_in_the_three_innermost_decoder_layers_train_mode_only():
    torch.manual_seed(0)
    G = UNetGenerator((1, 32, 32), width=W, dropout=0.5)
    drops = [[isinstance(m, nn.Dropout) for m in block] for block in G.up]
    assert [any(d) for d in drops] == [True, True, True, False, False]
    assert all(m.p == 0.5 for m in G.modules() if isinstance(m, nn.Dropout))
    x = image(1, 32)
    with torch.no_grad():
        assert not torch.allclose(G(x), G(x))  # dropout is the noise
        G.eval()
        assert torch.equal(G(x), G(x))
    still = UNetGenerator((1, 32, 32), width=W, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in still.modules())
    with torch.no_grad():
        assert torch.equal(still(x), still(x))


def test_resnet_layers_follow_the_paper():
    G = ResnetGenerator((3, 64, 64), width=W, blocks=6)
    layers = list(G.net)
    blocks = [m for m in layers if isinstance(m, ResidualBlock)]
    assert G.blocks == len(blocks) == 6
    # Reflection padding: 3 around each 7x7 conv, 1 before each 3x3 conv of each block.
    pads = [m for m in G.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert len(pads) == 2 + 2 * 6
    assert isinstance(layers[0], nn.ReflectionPad2d) and layers[0].padding == (3, 3, 3, 3)
    assert layers[1].kernel_size == (7, 7) and layers[1].out_channels == W
    assert layers[-2].kernel_size == (7, 7) and isinstance(layers[-1], nn.Tanh)
    assert all(isinstance(m, nn.InstanceNorm2d) and not m.affine and not m.track_running_stats
               for m in G.modules() if isinstance(m, nn.modules.batchnorm._NormBase))
    down = [m for m in layers if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    up = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in down] == [2 * W, 4 * W] and [m.out_channels for m in up] == [2 * W, W]
    assert all(m.kernel_size == (3, 3) and m.output_padding == (1, 1) for m in up)
    # A block adds its input back.
    block = blocks[0]
    h = torch.randn(2, 4 * W, 16, 16)
    assert torch.allclose(block(h), h + block.body(h))


def test_patchgan_layers_follow_the_paper():
    D = PatchDiscriminator((6, 256, 256), width=W, n_layers=3)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [W, 2 * W, 4 * W, 8 * W, 1]
    assert [m.stride[0] for m in convs] == [2, 2, 2, 1, 1]
    assert all(m.kernel_size == (4, 4) and m.padding == (1, 1) for m in convs)
    assert isinstance(D.net[1], nn.LeakyReLU) and D.net[1].negative_slope == 0.2  # no norm on the first layer
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 3
    # Channels double per layer but stop at 8x.
    wide = PatchDiscriminator((3, 256, 256), width=W, n_layers=5)
    assert [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)] == [W, 2 * W, 4 * W, 8 * W, 8 * W,
                                                                                   8 * W, 1]


def test_receptive_field_arithmetic():
    assert receptive_field(3) == 70  # the paper's 70x70 PatchGAN
    assert (receptive_field(1), receptive_field(2), receptive_field(4)) == (16, 34, 142)
    assert PatchDiscriminator((3, 64, 64), width=W).receptive_field == 70


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_one_score_sees_exactly_a_receptive_field_square(n_layers):
    torch.manual_seed(0)
    D = PatchDiscriminator((1, 128, 128), width=W, n_layers=n_layers, norm="none").double()
    x = torch.randn(1, 1, 128, 128, dtype=torch.float64, requires_grad=True)
    scores = D(x)
    i = scores.shape[-1] // 2
    scores[0, 0, i, i].backward()
    seen = x.grad[0, 0] != 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    side = D.receptive_field
    assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
    assert seen.sum() == side * side  # the whole square, nothing outside it
    assert 0 < rows.min() and rows.max() < 127  # inside the image, not cut by the border


def test_patchgan_scores_images_smaller_than_its_field():
    D = PatchDiscriminator((3, 32, 32), width=W)  # 70x70 patches, 32x32 images: each score sees it all
    assert D(image(3, 32)).shape == (2, 1, 2, 2)
    assert PatchDiscriminator((3, 24, 24), width=W)(image(3, 24)).shape == (2, 1, 1, 1)
    assert PatchDiscriminator((3, 16, 16), width=W, n_layers=1)(image(3, 16)).shape == (2, 1, 6, 6)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_every_norm_builds_and_runs(norm):
    kinds = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}
    nets = [UNetGenerator((3, 32, 32), width=W, norm=norm), ResnetGenerator((3, 32, 32), width=W, blocks=1, norm=norm),
            PatchDiscriminator((3, 32, 32), width=W, norm=norm)]
    for net in nets:
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        if norm == "none":
            assert not norms
        else:
            assert norms and all(type(m) is kinds[norm] for m in norms)
        if norm == "instance":
            assert not any(m.affine or m.track_running_stats for m in norms)
        # A bias only where no batch norm follows.
        layers = [m for m in net.modules() if not list(m.children())]
        for conv, after in zip(layers, layers[1:] + [None]):
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                assert (conv.bias is None) == isinstance(after, nn.BatchNorm2d), (net, conv)
        out = net(image(3, 32))
        assert torch.isfinite(out).all()


def test_initialisation_is_normal_0_02():
    G = UNetGenerator((3, 64, 64), width=32)
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert weights.mean().abs() < 1e-3 and weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert all((m.bias == 0).all() for m in G.modules() if isinstance(m, nn.Conv2d) and m.bias is not None)
    scales = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01) and scales.std().item() < 0.05


def test_spectral_norm_on_every_patchgan_conv():
    D = PatchDiscriminator((3, 32, 32), width=W, norm="none", spectral_norm=True)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(hasattr(m, "parametrizations") for m in convs)
    assert D(image(3, 32)).shape == (2, 1, 2, 2)
    with pytest.raises(UserError, match="spectral_norm must be true or false"):
        PatchDiscriminator((3, 32, 32), spectral_norm="yes")



@pytest.mark.parametrize("shape", [(3, 48, 48), (3, 16, 16), (3, 32, 64), (1, 100, 100)])
def test_unet_refuses_other_sides(shape):
    with pytest.raises(UserError) as err:
        UNetGenerator(shape, width=W)
    message = one_line(err)
    assert "power-of-two" in message and "dataset.crop_size" in message and "dataset.resolution" in message


@pytest.mark.parametrize("shape", [(3, 30, 32), (3, 34, 34), (3, 28, 28), (3, 64, 50)])
def test_resnet_refuses_other_sides(shape):
    with pytest.raises(UserError) as err:
        ResnetGenerator(shape, width=W)
    message = one_line(err)
    assert "multiples of 4" in message and "dataset.crop_size" in message


def test_patchgan_refuses_an_empty_score_map():
    with pytest.raises(UserError) as err:
        PatchDiscriminator((3, 16, 16), width=W, n_layers=3)
    assert "n_layers" in one_line(err)
    with pytest.raises(UserError):
        PatchDiscriminator((3, 23, 23), width=W)
    # 24 is the smallest side with a map (1x1); the arithmetic matches what the convs give.
    for side in range(24, 40):
        D = PatchDiscriminator((3, side, side), width=W, norm="none")
        assert D(image(3, side)).shape[-1] == score_map_side(side, 3) >= 1


def test_bad_norms_and_options_are_one_line_errors():
    for build in (lambda: UNetGenerator((3, 32, 32), norm="layer"),
                  lambda: ResnetGenerator((3, 32, 32), norm="layer"),
                  lambda: PatchDiscriminator((3, 32, 32), norm="layer")):
        with pytest.raises(UserError) as err:
            build()
        assert "choose one of: batch, instance, none" in one_line(err)
    for build, word in ((lambda: UNetGenerator((3, 32, 32), dropout=1.0), "dropout"),
                        (lambda: ResnetGenerator((3, 32, 32), blocks=0), "blocks"),
                        (lambda: PatchDiscriminator((3, 32, 32), n_layers=0), "n_layers"),
                        (lambda: UNetGenerator((3, 32, 32), width=0), "width"),
                        (lambda: UNetGenerator((2,)), "images"),
                        (lambda: PatchDiscriminator((2,)), "images"),
                        (lambda: ResnetGenerator((3, 32, 32), out_channels=0), "output channel")):
        with pytest.raises(UserError) as err:
            build()
        assert word in one_line(err)


@pytest.mark.parametrize("group,name", [("generator", "unet"), ("generator", "resnet_translation"), ("discriminator", "patchgan")])
def test_conf_nodes_build_through_the_registry(group, name):
    """What tests/test_config.py's z -> x loop leaves to this file: every option in conf/ builds."""
    node = dict(compose_config(f"{group}={name}")[group])
    assert node["name"] == name and set(node) - {"name"} == set(registry.options(group, name))
    assert "out_channels" not in registry.options(group, name)  # a runtime fact the game sets
    node["width"] = W
    if group == "generator":
        net = registry.build(group, node, shape=(3, 32, 32), out_channels=1)
        assert net(image(3, 32)).shape == (2, 1, 32, 32)
    else:
        net = registry.build(group, node, shape=(4, 32, 32))
        assert net(torch.randn(2, 4, 32, 32)).shape == (2, 1, 2, 2)
