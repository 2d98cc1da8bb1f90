"""gan-sample on a tiny checkpoint: determinism by seed, the files and their sizes, slerp, truncation."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gan_cli import UserError
from gan_cli.options import parse
from gan_cli import build, latents
from gan_cli.latents import truncate
from gan_cli.sample import latent, lerp, parse_seeds, sample, slerp
from gan_cli.train import train
from tests.conftest import BIN, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    train(tiny_config("trainer.steps=2", "trainer.g_ema=0.9"), run_dir)
    return run_dir


def go(*args):
    return sample(parse([*args, "progress=false"], "sample"))


def test_an_out_path_without_an_extension_gets_one(run, tmp_path):
    (grid,) = go(f"ckpt={run}", "n=4", f"out={tmp_path / 'grid'}")
    assert grid == tmp_path / "grid.png" and Image.open(grid).format == "PNG"
    png, gif = go(f"ckpt={run}", "mode=interpolate", "steps=2", "pairs=1", f"out={tmp_path / 'walk.v2'}")
    assert (png.name, gif.name) == ("walk.v2.png", "walk.v2.gif")


def test_the_same_seed_gives_the_same_bytes(run, tmp_path):
    (a,) = go(f"ckpt={run}", "n=16", "nrow=4", f"out={tmp_path / 'a.png'}")
    (b,) = go(f"ckpt={run}", "n=16", "nrow=4", f"out={tmp_path / 'b.png'}")
    assert a.read_bytes() == b.read_bytes()
    (c,) = go(f"ckpt={run}", "seeds=0-15", "nrow=4", f"out={tmp_path / 'c.png'}")  # seed + i is seeds 0-15
    assert c.read_bytes() == a.read_bytes()
    (d,) = go(f"ckpt={run}", "n=16", "nrow=4", "seed=1", f"out={tmp_path / 'd.png'}")
    assert d.read_bytes() != a.read_bytes()
    # One image per seed: seed 5 alone equals image 5 of a batch.
    (folder,) = go(f"ckpt={run}", "mode=images", "n=8", f"out={tmp_path / 'many'}", "batch_size=3")
    (single,) = go(f"ckpt={run}", "mode=images", "seeds=[5]", f"out={tmp_path / 'one'}")
    assert (folder / "seed00005.png").read_bytes() == (single / "seed00005.png").read_bytes()


def test_evaluation_samples_do_not_depend_on_the_batch_size_and_are_gan_samples_images(run, tmp_path):
    loaded = build.load(str(run), True, torch.device("cpu"))
    whole, *_ = loaded.game.generate(loaded.nets, 12, 3, torch.device("cpu"), 12)
    for batch_size in (1, 5):
        parts = torch.cat(list(loaded.game.generate(loaded.nets, 12, 3, torch.device("cpu"), batch_size)))
        assert torch.equal(parts, whole)
    # Sample i of gan-eval's seed 3 is gan-sample's image of seed 3 + i.
    (folder,) = go(f"ckpt={run}", "mode=images", "seeds=3-14", "batch_size=4", f"out={tmp_path / 'fakes'}")
    pixels = ((whole + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    for i in range(12):
        assert np.array_equal(np.asarray(Image.open(folder / f"seed{3 + i:05d}.png")), pixels[i])


def test_infogan_codes_come_from_the_images_own_stream():
    from gan_cli.conditioning import InfoGAN

    cond = InfoGAN(categorical=0, continuous=2)
    seeds = range(2000)
    z, codes = latents.draw(seeds, 8, cond)
    # Image s's codes are independent of image s + 1's z (drawn from seed s + 1 they were 0.87 correlated).
    assert abs(np.corrcoef(codes[:-1, 0].numpy(), z[1:, 0].numpy())[0, 1]) < 0.1
    assert abs(np.corrcoef(codes[:, 0].numpy(), z[:, 0].numpy())[0, 1]) < 0.1
    assert codes.min() >= -1 and codes.max() <= 1 and codes.abs().mean() > 0.4
    # A seed's codes do not depend on the seeds drawn beside it, truncated or not.
    for psi in (None, 0.5):
        z5, c5 = latents.draw([5], 8, cond, psi=psi)
        zs, cs = latents.draw([4, 5, 6], 8, cond, psi=psi)
        assert torch.equal(z5[0], zs[1]) and torch.equal(c5[0], cs[1])


def test_images_mode_writes_one_png_per_sample(run, tmp_path):
    (folder,) = go(f"ckpt={run}", "mode=images", "n=7", "batch_size=2", f"out={tmp_path / 'fakes'}")
    files = sorted(folder.glob("*.png"))
    assert len(files) == 7
    assert {Image.open(f).size for f in files} == {(16, 16)} and Image.open(files[0]).mode == "L"


def test_interpolation_png_and_gif(run, tmp_path):
    png, gif = go(f"ckpt={run}", "mode=interpolate", "steps=5", "pairs=3", f"out={tmp_path / 'walk.png'}")
    assert gif.suffix == ".gif"
    frames = Image.open(gif)
    assert frames.n_frames == 5
    # 3 rows x 5 columns of 16-pixel tiles with 2-pixel padding.
    assert Image.open(png).size == (5 * 18 + 2, 3 * 18 + 2)
    go(f"ckpt={run}", "mode=interpolate", "method=lerp", "steps=2", "seeds=[4,9]", f"out={tmp_path / 'lerp.png'}")
    assert Image.open(tmp_path / "lerp.gif").n_frames == 2


def test_slerp_keeps_the_norm_and_hits_both_ends():
    z0 = torch.randn(64, generator=torch.Generator().manual_seed(0))
    z1 = torch.randn(64, generator=torch.Generator().manual_seed(1))
    z1 = z1 * (z0.norm() / z1.norm())  # equal norms
    t = torch.linspace(0, 1, 9)
    path = slerp(z0, z1, t)
    assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), z0.norm().expand(9), rtol=1e-5)
    straight = lerp(z0, z1, t)
    assert straight.norm(dim=1)[4] < 0.9 * z0.norm()  # the straight line cuts through the inside


def test_truncation():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10000, generator=g) * 2
    resampled = truncate(z, 0.5, "resample", g)
    assert resampled.abs().max() <= 0.5
    kept = z.abs() <= 0.5
    assert torch.equal(resampled[kept], z[kept])  # entries inside the threshold stay
    assert torch.equal(truncate(z, 0.7, "shrink", g), z * 0.7)
    assert torch.equal(latent(3, 8), latent(3, 8)) and not torch.equal(latent(3, 8), latent(4, 8))


def test_arithmetic_figure(run, tmp_path):
    (figure,) = go(f"ckpt={run}", "mode=arithmetic", "a=[1,2,3]", "b=[4,5]", "c=[6]", f"out={tmp_path / 'ar.png'}")
    # Rows a, b, c and the result; each row holds up to three seeds and then the group's mean.
    assert Image.open(figure).size == (44 + 4 * 18 + 2, 4 * 18 + 2)  # a margin for the row labels


def test_truncation_figure_in_z(run, tmp_path):
    (figure,) = go(f"ckpt={run}", "mode=truncation", "truncations=[2,0.5,0.1]", "nrow=4",
                   f"out={tmp_path / 'psi.png'}")
    assert Image.open(figure).size == (56 + 4 * 18 + 2, 3 * 18 + 2)  # a row per psi, labelled
    with pytest.raises(UserError, match="psi = 0 needs a style-based G"):
        go(f"ckpt={run}", "mode=truncation", "truncations=[1,0]")
    with pytest.raises(UserError, match="truncations must be a list of numbers"):
        go(f"ckpt={run}", "mode=truncation", "truncations=[1,-1]")


def test_toy2d_checkpoint_gives_a_scatter_and_the_points(tmp_path):
    train(tiny_config("model=gan", "dataset=toy2d"), tmp_path / "run")
    png, npy = go(f"ckpt={tmp_path / 'run'}", "n=300", f"out={tmp_path / 'points.png'}")
    assert np.load(npy).shape == (300, 2) and Image.open(png).size == (480, 480)
    with pytest.raises(UserError, match="a toy2d checkpoint gives mode=grid"):
        go(f"ckpt={tmp_path / 'run'}", "mode=interpolate")


def test_seeds_syntax():
    assert parse_seeds("0-3,8") == [0, 1, 2, 3, 8]
    assert parse_seeds([3, 7]) == [3, 7] and parse_seeds(5) == [5]
    with pytest.raises(UserError, match="runs backwards"):
        parse_seeds("5-2")
    with pytest.raises(UserError, match="cannot read"):
        parse_seeds("a-b")


def test_bad_input_is_one_line(run, tmp_path, monkeypatch, capsys):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    cases = [([], "ckpt=<checkpoint or run folder> is required"),
             ([f"ckpt={tmp_path / 'junk.pt'}"], "truncated or not a checkpoint"),
             ([f"ckpt={run}", "mode=movie"], "unknown mode 'movie'"),
             ([f"ckpt={run}", "steps=1", "mode=interpolate"], "steps must be an integer >= 2"),
             ([f"ckpt={run}", "mode=arithmetic"], "needs seed groups"),
             ([f"ckpt={run}", "truncation=-1"], "truncation must be a number > 0"),
             ([f"ckpt={run}", "count=3"], "no option count")]
    # The installed command once (exit status 2, one line on stderr), the rest through its main().
    args, message = cases[0]
    result = subprocess.run([str(BIN / "gan-sample"), *args], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gan-sample: error: ") and message in lines[0]
    from gan_cli.sample import main

    monkeypatch.chdir(tmp_path)
    for args, message in cases[1:]:
        monkeypatch.setattr(sys, "argv", ["gan-sample", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gan-sample: error: ") and message in lines[0]
