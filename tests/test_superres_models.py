"""SRGAN's nets: SRResNet's shapes at every scale and any input size, its upsampling stages and its two kinds
of skip, the paper's parameter count; the discriminator's layers, scores, features and spectral norm; and
one-line errors."""

import pytest
import torch
from torch import nn

from gan_cli import UserError, registry
from gan_cli.models.superres import SRDiscriminator, SRResidualBlock, SRResNet
from tests.conftest import one_line

W = 8  # narrow nets keep the file fast


def image(c, h, w=None, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, h if w is None else w, generator=g).clamp(-1, 1)



@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("c", [1, 3])
def test_srresnet_upscales_by_scale(scale, c):
    G = SRResNet((c, 32, 32), width=W, blocks=1, scale=scale)
    assert G.scale == scale and G.shape == (c, 32, 32)
    assert G(image(c, 32 // scale)).shape == (2, c, 32, 32)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srresnet_takes_any_input_size(scale):
    """Fully convolutional: whole photos of other sizes than the training crops, non-square too."""
    G = SRResNet((3, 32, 32), width=W, blocks=1, scale=scale).eval()
    with torch.no_grad():
        assert G(image(3, 5, 7)).shape == (2, 3, 5 * scale, 7 * scale)
        assert G(image(1 + 2, 9, 4, n=1)).shape == (1, 3, 9 * scale, 4 * scale)


def test_srresnet_output_is_the_raw_conv():
    G = SRResNet((3, 32, 32), width=W, blocks=1, scale=4)
    assert G.tail.kernel_size == (9, 9) and G.tail.out_channels == 3
    assert not any(isinstance(m, (nn.Tanh, nn.Sigmoid, nn.Hardtanh)) for m in G.modules())
    with torch.no_grad():
        G.tail.bias.fill_(5.0)  # nothing squashes the output back into [-1, 1]
        assert G(image(3, 8)).min() > 1


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_one_pixel_shuffle_stage_per_doubling(scale):
    G = SRResNet((3, 64, 64), width=W, blocks=2, scale=scale)
    shuffles = [m for m in G.modules() if isinstance(m, nn.PixelShuffle)]
    assert len(shuffles) == G.stages == len(G.upsample) == {2: 1, 4: 2, 8: 3}[scale]
    for stage in G.upsample:
        conv, shuffle, prelu = stage
        assert conv.kernel_size == (3, 3) and conv.out_channels == 4 * W  # 4w maps -> w maps at twice the side
        assert shuffle.upscale_factor == 2 and isinstance(prelu, nn.PReLU) and prelu.num_parameters == W


def test_srresnet_layers_follow_the_paper():
    G = SRResNet((3, 32, 32), width=W, blocks=3, scale=4)
    assert G.head[0].kernel_size == (9, 9) and G.head[0].out_channels == W and isinstance(G.head[1], nn.PReLU)
    blocks = list(G.body)
    assert G.blocks == len(blocks) == 3 and all(isinstance(b, SRResidualBlock) for b in blocks)
    kinds = [type(m) for m in blocks[0].body]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.PReLU, nn.Conv2d, nn.BatchNorm2d]
    assert all(m.kernel_size == (3, 3) and m.bias is None for m in blocks[0].body if isinstance(m, nn.Conv2d))
    assert [type(m) for m in G.fuse] == [nn.Conv2d, nn.BatchNorm2d]


def test_residual_blocks_add_their_input_back():
    """With the last batch norm of every block zeroed, each block adds nothing: the blocks are identities.
    Without the block skip, they would output zeros."""
    torch.manual_seed(0)
    G = SRResNet((3, 32, 32), width=W, blocks=3, scale=2).eval()
    h = torch.randn(2, W, 6, 5)
    with torch.no_grad():
        for block in G.body:
            assert torch.allclose(block(h), h + block.body(h))
            block.body[-1].weight.zero_()
            block.body[-1].bias.zero_()
        assert torch.equal(G.body(h), h)


def test_the_global_skip_carries_the_first_layer_past_the_blocks():
    """Zero the batch norm after the blocks: the trunk then adds nothing, and only the global skip carries
    the input on. Without that skip G's output would be the same for every input."""
    torch.manual_seed(0)
    G = SRResNet((3, 32, 32), width=W, blocks=2, scale=2).eval()
    x1, x2 = image(3, 8, seed=1), image(3, 8, seed=2)
    with torch.no_grad():
        G.fuse[1].weight.zero_()
        G.fuse[1].bias.zero_()
        y1 = G(x1)
        assert torch.allclose(y1, G.tail(G.upsample(G.head(x1))))
        assert not torch.allclose(y1, G(x2))


def test_srresnet_has_the_papers_parameter_count():
    """SRResNet with 16 blocks of 64 maps at scale 4 on RGB: about 1.5 M parameters. By layer, with a
    bias only on convs no batch norm follows and channel-wise PReLU slopes (C = 3, w = 64, B = 16):
      head   9x9 conv C -> w with bias, PReLU(w):             C*w*81 + w + w          =    15,680
      block  2 x 3x3 conv w -> w, 2 x BN (scale, shift), PReLU: 2*9*w*w + 4*w + w     =    74,048, x 16
      fuse   3x3 conv w -> w, BN:                              9*w*w + 2*w             =    36,992
      stage  3x3 conv w -> 4w with bias, PReLU(w):            9*w*4w + 4w + w         =   147,776, x 2
      tail   9x9 conv w -> C with bias:                       81*w*C + C              =    15,555
    total 1,548,547."""
    C, w, B, stages = 3, 64, 16, 2
    head = C * w * 81 + w + w
    block = 2 * 9 * w * w + 2 * 2 * w + w
    fuse = 9 * w * w + 2 * w
    stage = 9 * w * 4 * w + 4 * w + w
    tail = 81 * w * C + C
    expected = head + B * block + fuse + stages * stage + tail
    assert expected == 1_548_547
    G = SRResNet((3, 96, 96), width=64, blocks=16, scale=4)
    assert sum(p.numel() for p in G.parameters()) == expected


def test_srdiscriminator_layers_follow_the_paper():
    D = SRDiscriminator((3, 96, 96))
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [m.stride[0] for m in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert all(m.kernel_size == (3, 3) for m in convs)
    assert [type(m) for m in D.body[0]] == [nn.Conv2d, nn.LeakyReLU]  # no batch norm on the first layer
    assert all([type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU] for block in D.body[1:])
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    dense = [m for m in D.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(512 * 6 * 6, 1024), (1024, 1)]


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 16, 48), (3, 48, 32)])
def test_srdiscriminator_returns_one_raw_score_per_image(shape):
    D = SRDiscriminator(shape, width=W, dense=16)
    scores = D(image(shape[0], shape[1], shape[2], n=3))
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match="shape"):
        D(image(shape[0], shape[1] + 16, shape[2]))


def test_features_per_conv_block():
    torch.manual_seed(0)
    D = SRDiscriminator((3, 32, 48), width=W, dense=16).eval()
    x = image(3, 32, 48)
    with torch.no_grad():
        feats = D.features(x)
        assert len(feats) == 8
        sides = [(32, 48), (16, 24), (16, 24), (8, 12), (8, 12), (4, 6), (4, 6)]
        maps = [W, W, 2 * W, 2 * W, 4 * W, 4 * W, 8 * W]
        assert [tuple(f.shape) for f in feats[:-1]] == [(2, m, *s) for m, s in zip(maps, sides)]
        assert feats[-1].shape == (2, 8 * W * 2 * 3) == (2, D.flat_features)
        assert torch.allclose(D.head(feats[-1]).flatten(), D(x))  # the last entry is what the dense layers see
        assert all((f >= 0).any() and (f < 0).any() for f in feats)  # after the LeakyReLU, not before it


def test_spectral_norm_on_every_conv_and_dense_weight():
    D = SRDiscriminator((3, 32, 32), width=W, dense=16, spectral_norm=True)
    weighted = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 10 and all(hasattr(m, "parametrizations") for m in weighted)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 7  # batch norms kept
    assert D(image(3, 32)).shape == (2,)
    plain = SRDiscriminator((3, 32, 32), width=W, dense=16)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())
    with pytest.raises(UserError, match="spectral_norm must be true or false"):
        SRDiscriminator((3, 32, 32), spectral_norm="yes")


@pytest.mark.parametrize("shape,side", [((3, 30, 32), "30"), ((3, 32, 40), "40"), ((1, 8, 8), "8"), ((3, 96, 100), "100")])
def test_srdiscriminator_refuses_sides_not_multiples_of_16(shape, side):
    with pytest.raises(UserError) as err:
        SRDiscriminator(shape, width=W)
    message = one_line(err)
    assert "multiples of 16" in message and f"is {side} " in message and "dataset.crop_size" in message


@pytest.mark.parametrize("scale", [1, 3, 16, 0, -4, 4.0, "4", True, None])
def test_bad_scales_are_one_line_errors(scale):
    with pytest.raises(UserError) as err:
        SRResNet((3, 32, 32), width=W, blocks=1, scale=scale)
    assert one_line(err) == f"scale must be 2, 4 or 8, got {scale!r}"


def test_scale_is_keyword_only_and_required():
    with pytest.raises(TypeError):
        SRResNet((3, 32, 32), W, 1, 4)
    with pytest.raises(TypeError):
        SRResNet((3, 32, 32), width=W)


def test_bad_options_are_one_line_errors():
    for build, word in ((lambda: SRResNet((3, 32, 32), width=0, scale=4), "generator.width"),
                        (lambda: SRResNet((3, 32, 32), width=8.5, scale=4), "generator.width"),
                        (lambda: SRResNet((3, 32, 32), blocks=0, scale=4), "generator.blocks"),
                        (lambda: SRDiscriminator((3, 32, 32), width=-1), "discriminator.width"),
                        (lambda: SRDiscriminator((3, 32, 32), dense=0), "discriminator.dense"),
                        (lambda: SRResNet((2,), scale=2), "images"),
                        (lambda: SRDiscriminator((2,)), "images"),
                        (lambda: SRResNet((3, 30, 32), scale=4), "multiples of 4"),
                        (lambda: SRResNet((3, 36, 36), scale=8), "multiples of 8")):
        with pytest.raises(UserError) as err:
            build()
        assert word in one_line(err)


def test_the_config_nodes_build_the_papers_nets():
    from tests.conftest import compose_config

    G = registry.build("generator", dict(compose_config("generator=srresnet").generator), shape=(3, 96, 96), scale=4)
    D = registry.build("discriminator", dict(compose_config("discriminator=srgan").discriminator), shape=(3, 96, 96))
    assert sum(p.numel() for p in G.parameters()) == 1_548_547  # width 64, 16 blocks (counted above)
    assert D(torch.zeros(2, 3, 96, 96)).shape == (2,)
