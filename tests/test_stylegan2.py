"""The style-based G and StyleGAN2's game: demodulation, truncation, mixing, lazy regularisation, resume."""

import pytest
import torch
from omegaconf import OmegaConf

from gan_cli import UserError, build, checkpoint, losses
from gan_cli.games import Nets
from gan_cli.models.stylegan2 import ModulatedConv2d, StyleGAN2Discriminator, StyleGAN2Generator
from gan_cli.train import train
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def test_demodulation_gives_unit_variance_for_unit_input():
    torch.manual_seed(0)
    x = torch.randn(8, 64, 16, 16)
    w = torch.randn(8, 32)
    demodulated = ModulatedConv2d(64, 64, 3, 32)
    with torch.no_grad():
        demodulated.affine.weight.normal_(0, 3)  # styles far from 1: demodulation must undo their scale
        out = demodulated(x, w)
        plain = ModulatedConv2d(64, 64, 3, 32, demodulate=False)
        plain.affine.weight.copy_(demodulated.affine.weight)
        plain.weight.copy_(demodulated.weight)
        undone = plain(x, w)
    inner = out[:, :, 1:-1, 1:-1]  # away from the zero padding
    assert inner.var().item() == pytest.approx(1.0, abs=0.05)
    assert inner.flatten(2).var(dim=2).mean(dim=1).sub(1).abs().max() < 0.15  # per item too
    assert abs(undone[:, :, 1:-1, 1:-1].var().item() - 1) > 0.5
    up = ModulatedConv2d(4, 6, 3, 32, upsample=True)
    assert up(torch.randn(2, 4, 5, 5), w[:2]).shape == (2, 6, 10, 10)


def generator(side=32, **kwargs):
    torch.manual_seed(0)
    return StyleGAN2Generator((3, side, side), z_dim=8, w_dim=8, mapping_layers=2, width=4, max_width=8, **kwargs)


def test_truncation_at_zero_gives_the_mean_w_and_cutoff_limits_it():
    G = generator().eval()
    G.w_avg.copy_(torch.arange(8.0))
    z = torch.randn(3, 8)
    ws = G.ws(z, truncation=0.0)
    assert ws.shape == (3, G.num_ws, 8) and torch.equal(ws, G.w_avg.expand_as(ws))
    free = G.ws(z)
    half = G.ws(z, truncation=0.5, cutoff=2)
    assert torch.allclose(half[:, :2], 0.5 * (free[:, :2] + G.w_avg)) and torch.equal(half[:, 2:], free[:, 2:])
    G.train()
    G.ws(torch.randn(4, 8))
    assert not torch.equal(G.w_avg, torch.arange(8.0))  # the running mean moves in training only


def test_style_mixing_switches_at_the_cutoff_layer():
    G = generator().eval()
    a, b = G.ws(torch.randn(2, 8)), G.ws(torch.randn(2, 8))
    mixed = G.mix(a, b, 3)
    assert torch.equal(mixed[:, :3], a[:, :3]) and torch.equal(mixed[:, 3:], b[:, 3:])
    # Layer k of the synthesis reads w k: changing only the w of the last toRGB changes the image, and
    # changing a w past the last layer's index would not exist.
    assert G.num_ws == 2 * 4  # 32x32: convs 1 + 2 + 2 + 2, and the last toRGB
    same_noise = G.synthesis(a, noise="const")
    late = a.clone()
    late[:, -1] += 1
    assert not torch.allclose(G.synthesis(late, noise="const"), same_noise)
    assert torch.equal(G.synthesis(a, noise="const"), same_noise)
    # The mixing probability: on from 64x64 up, off at 32x32 (the reference's choice), or as given.
    assert generator(32).style_mixing == 0 and generator(64).style_mixing == 0.9
    assert generator(32, style_mixing=0.5).style_mixing == 0.5


def test_noise_inputs_and_d_shapes():
    G = generator()
    with torch.no_grad():
        for layer in G.layers:
            layer.noise_strength.fill_(0.5)
    G.eval()
    ws = G.ws(torch.randn(2, 8))
    assert not torch.equal(G.synthesis(ws), G.synthesis(ws))  # fresh noise each call
    assert torch.equal(G.synthesis(ws, noise="const"), G.synthesis(ws, noise="const"))
    assert not torch.equal(G.synthesis(ws, noise="none"), G.synthesis(ws, noise="const"))
    D = StyleGAN2Discriminator((3, 32, 32), width=4, max_width=8)
    assert D(G(torch.randn(4, 8))).shape == (4,)
    with pytest.raises(UserError, match="noise mode"):
        G.synthesis(ws, noise="fixed")


def game_of(*overrides):
    c = OmegaConf.to_container(tiny_config("model=stylegan2", *overrides))
    return build.game(c, build.data(c, CPU, batch_size=c["trainer"]["batch_size"]), CPU), c


def test_lazy_regularisation_runs_on_its_interval_and_scales_by_it():
    game, c = game_of("game.r1_gamma=0.5", "game.pl_weight=2", "game.r1_every=16", "game.pl_every=4")
    names = [p.name for p in game.players()]
    assert names == ["D", "D_r1", "G", "G_pl"]
    r1, pl = game.players()[1], game.players()[3]
    assert [s for s in range(1, 33) if r1.due(s)] == [16, 32] and [s for s in range(1, 9) if pl.due(s)] == [4, 8]
    real = game.data.next()[0]
    nets = Nets(game.nets, game.nets)
    loss, stats = game.loss(r1, (real, None), nets, 16)
    by_hand = 0.5 / 2 * losses.input_gradient_norm(game.nets["D"], real, create_graph=False).square().mean()
    assert torch.allclose(stats["penalty/r1"], by_hand) and torch.allclose(loss, 16 * by_hand)
    loss, stats = game.loss(pl, (real, None), nets, 4)
    assert torch.allclose(loss, 2 * 4 * stats["penalty/path_length"]) and game.pl_mean > 0
    # The defaults by size: R1's gamma = 0.0002 side^2 / batch; no path length at 16x16.
    default, c = game_of()
    assert default.r1_gamma == pytest.approx(0.0002 * 16 ** 2 / 8) and default.pl_weight == 0
    assert [p.name for p in default.players()] == ["D", "D_r1", "G"]


def test_a_run_resumes_exactly_and_g_ema_keeps_the_mean_w(tmp_path):
    keys = ("model=stylegan2", "game.r1_every=2", "game.pl_every=2", "game.pl_weight=2", "generator.style_mixing=0.5")
    train(tiny_config(*keys, "trainer.steps=6"), tmp_path / "straight")
    train(tiny_config(*keys, "trainer.steps=3"), tmp_path / "split")
    train(OmegaConf.create({"resume": str(tmp_path / "split")}), tmp_path / "split", overrides=["trainer.steps=6"])
    a, b = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    for group in ("nets", "ema"):
        for name, tensors in a[group].items():
            assert all(torch.equal(tensors[k], b[group][name][k]) for k in tensors), name
    assert torch.equal(a["game_state"]["pl_mean"], b["game_state"]["pl_mean"]) and a["game_state"]["pl_mean"] > 0
    assert torch.equal(a["ema"]["G_ema"]["w_avg"], a["nets"]["G"]["w_avg"]) and a["nets"]["G"]["w_avg"].abs().sum() > 0


def test_bad_settings_are_one_line_errors():
    for override, message in (("generator=dcgan", "generator=stylegan2"), ("game.r1_every=0", "r1_every"),
                              ("game.pl_weight=-1", "pl_weight"), ("generator.style_mixing=2", "style_mixing")):
        with pytest.raises(UserError, match=message):
            game_of(override)


@pytest.fixture(scope="module")
def style_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("stylegan2") / "run"
    train(tiny_config("model=stylegan2", "trainer.steps=2"), run)
    return run


def sampled(*args):
    from gan_cli.options import parse
    from gan_cli.sample import sample

    return sample(parse(list(args), "sample"))


def test_gan_sample_draws_the_mixing_noise_and_w_figures(style_run, tmp_path):
    from PIL import Image

    (mix,) = sampled(f"ckpt={style_run}", "mode=mix", "pairs=2", "nrow=3", "mix_layer=2", f"out={tmp_path / 'mix'}")
    side = 16 + 2  # tiles of 16 pixels and 2 of padding
    assert Image.open(mix).size == (4 * side + 2, 3 * side + 2)  # (columns + 1) x (rows + 1) tiles
    (noise,) = sampled(f"ckpt={style_run}", "mode=noise", "pairs=2", f"out={tmp_path / 'noise'}")
    assert Image.open(noise).size == (6 * side + 2, 2 * side + 2)  # no noise, four draws, the std map
    png, gif = sampled(f"ckpt={style_run}", "mode=interpolate", "space=w", "steps=3", "pairs=1", "truncation=0.5",
                       "truncation_cutoff=2", f"out={tmp_path / 'w'}")
    assert png.is_file() and gif.is_file()
    (psi0,) = sampled(f"ckpt={style_run}", "truncation=0", "n=4", f"out={tmp_path / 'psi0'}")
    assert psi0.is_file()


def test_the_truncation_figure_ends_at_the_mean_w(style_run, tmp_path):
    import numpy as np
    from PIL import Image

    (figure,) = sampled(f"ckpt={style_run}", "mode=truncation", "nrow=3", "truncations=[1,0]",
                        f"out={tmp_path / 'psi'}")
    image, side, margin = np.asarray(Image.open(figure).convert("L")), 16 + 2, 56
    assert image.shape == (2 * side + 2, margin + 3 * side + 2)
    tiles = [[image[2 + r * side:(r + 1) * side, margin + 2 + c * side:margin + (c + 1) * side] for c in range(3)]
             for r in range(2)]
    assert all(np.array_equal(tiles[1][0], t) for t in tiles[1])  # psi = 0: w_avg for every seed
    assert not np.array_equal(tiles[0][0], tiles[0][1])  # psi = 1: the seeds' own images


def test_style_modes_need_a_style_based_g(tmp_path):
    train(tiny_config("trainer.steps=1"), tmp_path / "dcgan")
    for args, message in ((["mode=mix"], "mode=mix needs a style-based G"),
                          (["mode=interpolate", "space=w"], "space=w needs a style-based G"),
                          (["truncation=0"], "only a style-based G takes psi = 0")):
        with pytest.raises(UserError, match=message):
            sampled(f"ckpt={tmp_path / 'dcgan'}", *args)
