"""ResNet G and D (generator=resnet, discriminator=resnet) and the minibatch layers of every D."""

import pytest
import torch
from torch import nn

from gan_cli import UserError, build, registry
from gan_cli.models import ConditionalBatchNorm2d
from gan_cli.models.dcgan import DCGANDiscriminator
from gan_cli.models.minibatch import MinibatchDiscrimination, MinibatchStddev
from gan_cli.models.mlp import MLPDiscriminator
from gan_cli.models.resnet import DBlock, GBlock, ResNetDiscriminator, ResNetGenerator
from gan_cli.models.translation import ResnetGenerator as TranslationResnet
from tests.conftest import compose_config, one_line


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("side", [32, 64, 128])
def test_shapes_and_blocks_at_each_side(side):
    G = ResNetGenerator((3, side, side), z_dim=8, width=4, max_width=16)
    D = ResNetDiscriminator((3, side, side), width=4, max_width=16, blocks=4)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, 3, side, side) and x.abs().max() <= 1
    assert D(x).shape == (2,)
    ups = side.bit_length() - 3  # one up-sampling block per doubling from 4x4
    assert len(G.blocks) == ups and all(isinstance(b, GBlock) for b in G.blocks)
    # Channels: min(width * 2^i, max_width) from the image side; the 4x4 map one step further.
    assert [b.conv2.out_channels for b in G.blocks][::-1] == [min(4 * 2 ** i, 16) for i in range(ups)]
    assert G.start == min(4 * 2 ** ups, 16)
    # D halves the side down to 8x8 and keeps it: the first block is the optimised one.
    blocks = [b for b in D.body if isinstance(b, DBlock)]
    assert [b.down for b in blocks] == [i < side.bit_length() - 4 for i in range(4)]
    assert blocks[0].first and not any(b.first for b in blocks[1:])


def test_the_cifar_nets_match_the_papers_sizes():
    """SN-GAN's CIFAR-10 nets: G of 256 maps (about 4.3 M weights), D of 128 (about 1.0 M), as
    reported for the reference implementations (mimicry: 4.3 M and 1.0 M)."""
    G = ResNetGenerator((3, 32, 32))
    D = ResNetDiscriminator((3, 32, 32))
    assert 4.2e6 < count(G) < 4.4e6 and 0.99e6 < count(D) < 1.1e6
    # The counts by formula: linear 128 -> 16 x 256; per G block two 3x3 convs, a 1x1 shortcut, two BNs.
    c = 256
    g_block = 2 * (9 * c * c + c) + (c * c + c) + 2 * 2 * c
    assert count(G) == (128 * 16 * c + 16 * c) + 3 * g_block + 2 * c + (9 * c * 3 + 3)


def test_residual_branches_and_shortcuts_both_count():
    """Zeroing D's residual branch, or G's shortcut, changes the block's output: both paths are used."""
    torch.manual_seed(0)
    for block, x, zeroed in ((DBlock(4, 8, down=True), torch.randn(2, 4, 8, 8), "conv2"),
                             (GBlock(4, 4, cbn=False), torch.randn(2, 4, 4, 4), "shortcut")):
        full = block(x)
        with torch.no_grad():
            getattr(block, zeroed).weight.zero_()
            getattr(block, zeroed).bias.zero_()
        assert block(x).shape == full.shape and not torch.allclose(full, block(x))


def test_spectral_norm_where_asked():
    D = ResNetDiscriminator((3, 32, 32), width=8, max_width=8, spectral_norm=True, num_classes=10,
                           class_input="projection")
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert layers and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    plain = ResNetDiscriminator((3, 32, 32), width=8, max_width=8)
    assert not any(nn.utils.parametrize.is_parametrized(m) for m in plain.modules())


def test_conditional_variants():
    y = torch.tensor([0, 3])
    G = ResNetGenerator((3, 32, 32), z_dim=8, width=4, max_width=8, num_classes=10, class_input="cbn")
    assert sum(isinstance(m, ConditionalBatchNorm2d) for m in G.modules()) == 2 * len(G.blocks)
    assert G(torch.randn(2, 8), y).shape == (2, 3, 32, 32)
    with torch.no_grad():  # a trained class embedding makes the class matter
        for m in G.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gain.weight.normal_()
    z = torch.randn(1, 8).repeat(2, 1)
    G.eval()
    assert not torch.allclose(*G(z, torch.tensor([0, 1])))
    concat = ResNetGenerator((1, 16, 16), z_dim=8, width=4, max_width=8, num_classes=10)
    assert concat.linear.in_features == 18 and concat(torch.randn(2, 8), y).shape == (2, 1, 16, 16)
    info = ResNetGenerator((1, 16, 16), z_dim=8, width=4, max_width=8, code_dim=3)
    assert info(torch.randn(2, 8), torch.randn(2, 3)).shape == (2, 1, 16, 16)
    x = torch.randn(2, 3, 32, 32)
    for class_input in ("concat", "projection"):
        D = ResNetDiscriminator((3, 32, 32), width=4, max_width=8, num_classes=10, class_input=class_input)
        assert D(x, y).shape == (2,)
        assert not torch.allclose(D(x, y), D(x, torch.tensor([1, 4])))
    acgan = ResNetDiscriminator((3, 32, 32), width=4, max_width=8, head=(10,))
    scores, logits = acgan(x, head=True)
    assert scores.shape == (2,) and logits.shape == (2, 10)


@pytest.mark.parametrize("kwargs,word", [
    (dict(width=0), "width"), (dict(width=16, max_width=8), "max_width"), (dict(blocks=0), "blocks"),
    (dict(minibatch="pack"), "minibatch"),
])
def test_bad_options_are_one_line_errors(kwargs, word):
    with pytest.raises(UserError) as err:
        ResNetDiscriminator((3, 32, 32), **kwargs)
    assert word in one_line(err)
    with pytest.raises(UserError, match="power-of-two"):
        ResNetGenerator((3, 24, 24))
    with pytest.raises(UserError, match="mlp"):
        ResNetGenerator((2,))


def test_conf_nodes_build_and_cyclegan_keeps_its_resnet():
    for group in ("generator", "discriminator"):
        node = dict(compose_config(f"{group}=resnet")[group])
        assert set(node) - {"name"} == set(registry.options(group, "resnet"))
    # A translation run made when CycleGAN's G was called "resnet" still builds it.
    c = dict(compose_config("model=cyclegan", "generator.width=4", "generator.blocks=1",
                            "discriminator.width=4"))
    c = {k: (dict(v) if hasattr(v, "keys") else v) for k, v in c.items()}
    c["generator"]["name"] = "resnet"
    source = build.data(c, torch.device("cpu"))
    game = build.game(c, source, torch.device("cpu"))
    assert isinstance(game.nets["G_AB"], TranslationResnet)


# --- minibatch discrimination and minibatch stddev ---------------------------------------------


def test_minibatch_stddev_tells_a_collapsed_batch_from_a_varied_one():
    torch.manual_seed(0)
    same = torch.randn(1, 3, 4, 4).repeat(8, 1, 1, 1)
    varied = torch.randn(8, 3, 4, 4)
    layer = MinibatchStddev()
    a, b = layer(same), layer(varied)
    assert a.shape == (8, 4, 4, 4) and torch.equal(a[:, :3], same)
    assert a[:, 3].abs().max() < 1e-3 and b[:, 3].min() > 0.5
    # Two groups of 4, items i, i + 2, i + 4, i + 6: items 0 and 4 share a value, items 0 and 1 do not.
    assert torch.equal(b[0, 3], b[4, 3]) and not torch.equal(b[0, 3], b[1, 3])
    # By hand for group {0, 2, 4, 6}: the mean over features of the population standard deviation.
    expected = varied[[0, 2, 4, 6]].std(dim=0, unbiased=False).mean()
    assert torch.allclose(b[0, 3, 0, 0], expected, atol=1e-4)
    assert layer(torch.randn(5, 6)).shape == (5, 7)  # vectors; 5 items: groups of 1 (gcd)


def test_minibatch_discrimination_tells_a_collapsed_batch_from_a_varied_one():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(12, kernels=10, kernel_dim=5)
    same = torch.randn(1, 12).repeat(6, 1)
    varied = torch.randn(6, 12) * 3
    o_same, o_varied = layer.closeness(same), layer.closeness(varied)
    assert o_same.shape == (6, 10)
    assert torch.allclose(o_same, torch.full_like(o_same, 5.0))  # exp(0) for each of the 5 others
    assert o_varied.max() < 4.0
    # By hand for item 0, kernel 0.
    m = layer.T(varied).view(6, 10, 5)
    by_hand = sum(torch.exp(-(m[0, 0] - m[j, 0]).abs().sum()) for j in range(1, 6))
    assert torch.allclose(o_varied[0, 0], by_hand, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda mb: MLPDiscriminator((1, 8, 8), hidden=[16, 16], minibatch=mb),
    lambda mb: DCGANDiscriminator((1, 16, 16), width=4, norm="none", minibatch=mb),
    lambda mb: ResNetDiscriminator((1, 16, 16), width=4, max_width=8, blocks=2, minibatch=mb),
], ids=["mlp", "dcgan", "resnet"])
def test_a_ds_score_sees_the_rest_of_the_batch_only_with_a_minibatch_layer(make):
    """With no batch norm, D scores each item alone; a minibatch layer makes item 0's score depend on
    whether its batch mates are copies of it."""
    x0 = torch.randn(1, *make("none").shape)
    collapsed, varied = x0.repeat(4, 1, 1, 1), torch.cat([x0, torch.randn(3, *x0.shape[1:])])
    for mb in ("none", "features", "stddev"):
        torch.manual_seed(1)
        D = make(mb)
        if mb == "features":  # its score layer starts at zero: give it weights, as training would
            nn.init.normal_(D.batch_features.score.weight)
        a, b = D(collapsed)[0], D(varied)[0]
        assert torch.allclose(a, b, atol=1e-6) == (mb == "none"), mb
        D(varied).sum().backward()  # and it trains
        assert all(p.grad is not None for p in D.parameters())
