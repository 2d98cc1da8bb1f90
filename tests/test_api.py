"""A trained model outside the CLI: gan_cli.load(...).sample(...), and gan-sample mode=export, a file that
plain PyTorch runs without gan-cli."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import gan_cli
from gan_cli import UserError
from gan_cli.options import parse
from gan_cli.sample import sample
from gan_cli.train import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for model in ("dcgan", "acgan", "stylegan2"):
        out[model] = tmp_path_factory.mktemp(model)
        train(tiny_config(f"model={model}", "trainer.steps=2", "trainer.g_ema=0.9"), out[model])
    return out


def go(*args):
    return sample(parse([*args, "progress=false"], "sample"))


def test_load_and_sample_give_what_gan_sample_writes(runs, tmp_path):
    model = gan_cli.load(runs["dcgan"], device="cpu")
    assert model.which == "G_ema" and model.step == 2 and model.shape == (1, 16, 16)
    images = model.sample(4, seed=3)
    assert images.shape == (4, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert torch.allclose(images[1:], model.sample(3, seed=4), atol=1e-6)  # an image depends on its seed alone
    (grid,) = go(f"ckpt={runs['dcgan']}", "seed=3", "n=4", "nrow=4", "mode=images", f"out={tmp_path / 'png'}")
    written = np.array(Image.open(grid / "seed00003.png"))
    assert np.array_equal(np.array(model.to_pil(images[:1])[0]), written)
    assert gan_cli.load(runs["dcgan"], use_ema=False, device="cpu").which == "G"


def test_labels_and_truncation(runs):
    model = gan_cli.load(runs["acgan"], device="cpu")
    assert model.num_classes == 10
    threes = model.sample(2, seed=0, label=3)
    assert torch.equal(threes, model.sample(2, seed=0, label=[3, 3]))
    assert not torch.equal(threes, model.sample(2, seed=0, label=[4, 4]))
    with pytest.raises(UserError, match=r"label must be a class in 0-9 or a list of 2 of them"):
        model.sample(2, label=10)
    with pytest.raises(UserError, match="needs a class-conditional run"):
        gan_cli.load(runs["dcgan"], device="cpu").sample(2, label=1)
    style = gan_cli.load(runs["stylegan2"], device="cpu")
    torch.manual_seed(0)  # the noise inputs
    at_mean = style.sample(3, truncation=0)
    assert (at_mean - at_mean[:1]).abs().max() < 0.5  # psi = 0: every image from w_avg; only the noise differs


def exported_program_runs(path, z_dim, with_labels=False):
    """Load and run the file in a process where gan_cli cannot be imported."""
    code = (f"import sys; sys.modules['gan_cli'] = None\nimport torch\n"
            f"files = {{'gan_cli.json': ''}}\nG = torch.export.load({str(path)!r}, extra_files=files).module()\n"
            f"z = torch.randn(5, {z_dim}, generator=torch.Generator().manual_seed(0))\n"
            + ("out = G(z, torch.tensor([0, 1, 2, 3, 4]))\n" if with_labels else "out = G(z)\n")
            + "torch.save(out, sys.argv[1]); print(files['gan_cli.json'])\n")
    target = path.with_suffix(".out")
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(target), json.loads(result.stdout)


def test_export_runs_without_gan_cli_and_draws_what_g_draws(runs, tmp_path):
    (path,) = go(f"ckpt={runs['dcgan']}", "mode=export")
    assert path == runs["dcgan"] / "generated" / "G.pt2"
    images, info = exported_program_runs(path, 100)
    assert images.shape == (5, 1, 16, 16) and info["z_dim"] == 100 and info["net"] == "G_ema"
    model = gan_cli.load(runs["dcgan"], device="cpu")
    z = torch.randn(5, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(images, model.G(z), atol=1e-5)

    (path,) = go(f"ckpt={runs['acgan']}", "mode=export", f"out={tmp_path / 'acgan.pt2'}")
    images, info = exported_program_runs(path, 100, with_labels=True)
    assert images.shape == (5, 1, 16, 16) and info["inputs"].startswith("z, c: class labels")
    (path,) = go(f"ckpt={runs['stylegan2']}", "mode=export", f"out={tmp_path / 'style.pt2'}", "truncation=0.5")
    images, info = exported_program_runs(path, 8)
    assert images.shape == (5, 1, 16, 16) and info["truncation"] == 0.5
