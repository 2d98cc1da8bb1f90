"""GAN inversion: z (or w) recovered by optimisation, the codes file, and editing real images with it."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan_cli import UserError
from gan_cli.invert import Decoder, FeatureLoss, draw_z, invert, read_codes
from gan_cli.options import parse
from gan_cli.sample import sample
from gan_cli.train import train
from tests.conftest import tiny_config

FAST = {"invert_steps": 150, "invert_restarts": 2, "invert_candidates": 32, "invert_lr": 0.05,
        "invert_feature_weight": 1.0, "invert_prior": 0.0, "seed": 0}


def go(*args):
    return sample(parse([*args, "progress=false"], "sample"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("invert") / "run"
    train(tiny_config("trainer.steps=2", "generator.z_dim=6"), run_dir)
    return run_dir


class _Tiny(torch.nn.Module):
    """A small smooth G: z (4) -> 1 x 8 x 8, fixed random weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.z_dim = 4
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 64), torch.nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, 1, 8, 8)


def test_inversion_recovers_the_z_of_a_g_sample():
    G = _Tiny().eval().requires_grad_(False)
    decoder = Decoder(G, "z")
    true_z = draw_z(range(500, 504), 4)
    targets = G(true_z)
    result = invert(decoder, targets, FeatureLoss("none", None, None, "cpu", False), FAST, "cpu", progress=False)
    error = ((result["codes"] - true_z).norm(dim=1) / true_z.norm(dim=1))
    random_error = ((draw_z(range(900, 904), 4) - true_z).norm(dim=1) / true_z.norm(dim=1))
    assert error.max() < 0.1 < random_error.min()
    assert torch.allclose(result["images"], targets, atol=0.02)
    assert result["loss"].max() < 1e-3


def test_the_prior_by_hand():
    decoder = Decoder(_Tiny(), "z")
    z = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # |z| = sqrt(4) = 2: on the shell
    assert torch.allclose(decoder.prior(z), torch.tensor([0.0, 1.0]))  # (0 - 2)^2 / 4
    with pytest.raises(UserError, match="space=w needs a style-based G"):
        Decoder(_Tiny(), "w")


def test_invert_writes_reconstructions_codes_and_scores_and_codes_drive_the_edits(run, tmp_path):
    (tmp_path / "digits" / "3").mkdir(parents=True)
    for i in range(3):
        Image.fromarray((torch.rand(20, 20) * 255).byte().numpy()).save(tmp_path / "digits" / "3" / f"x{i}.png")
    folder, sheet, codes_path, report_path = go(f"ckpt={run}", "mode=invert", f"input={tmp_path / 'digits'}",
                                                "invert_steps=5", "invert_candidates=8", "invert_restarts=2",
                                                "invert_features=none", f"out={tmp_path / 'inv'}")
    assert sorted(p.name for p in (folder / "3").iterdir()) == ["x0.png", "x1.png", "x2.png"]
    assert Image.open(folder / "3" / "x0.png").size == (16, 16) and sheet.is_file()
    codes = read_codes(codes_path)  # the round trip through the file
    assert codes["space"] == "z" and codes["codes"].shape == (3, 6) and codes["names"][0] == "3/x0"
    report = json.loads(report_path.read_text())
    assert report["images"] == 3 and len(report["per_image"]) == 3 and math.isfinite(report["psnr_mean"])
    # The reconstruction is G's image of the saved code: decoding the code again gives the same file.
    png, gif = go(f"ckpt={run}", "mode=interpolate", f"codes={codes_path}", "steps=2", "pairs=1",
                  f"out={tmp_path / 'morph.png'}")
    grid = np.asarray(Image.open(png).convert("L"), dtype=np.int16)
    first = np.asarray(Image.open(folder / "3" / "x0.png").convert("L"), dtype=np.int16)
    assert np.abs(grid[2:18, 2:18] - first).max() <= 1  # the morph starts at the first reconstruction
    assert gif.is_file()
    (figure,) = go(f"ckpt={run}", "mode=arithmetic", f"codes={codes_path}", "a=[0]", "b=[1]", "c=[2]",
                   f"out={tmp_path / 'sum.png'}")
    assert figure.is_file()
    with pytest.raises(UserError, match="indices of codes 0-2"):
        go(f"ckpt={run}", "mode=arithmetic", f"codes={codes_path}", "a=[0]", "b=[1]", "c=[7]")


def test_g_samples_report_how_well_z_is_recovered(run, tmp_path):
    *_, report_path = go(f"ckpt={run}", "mode=invert", "input=samples", "n=2", "invert_steps=5",
                         "invert_candidates=8", "invert_features=none", f"out={tmp_path / 'own'}")
    report = json.loads(report_path.read_text())
    assert {"z_error_mean", "random_z_error_mean"} <= set(report)


@pytest.mark.parametrize("args,message", [
    (["mode=invert"], "mode=invert needs input="),
    (["mode=invert", "input=samples", "space=w"], "space=w needs a style-based G"),
    (["mode=grid", "space=w+"], "space=w\\+ .* is a space of mode=invert"),
    (["mode=grid", "codes=x.pt"], "codes= .* are read by mode=interpolate and mode=arithmetic"),
    (["mode=interpolate", "codes=nowhere.pt"], "codes=nowhere.pt: no such file"),
    (["mode=invert", "input=samples", "invert_features=pixels"], "unknown invert_features 'pixels'"),
    (["mode=invert", "input=samples", "invert_lr=0"], "invert_lr must be a number > 0"),
])
def test_invert_mistakes_are_one_line(run, args, message):
    with pytest.raises(UserError, match=message):
        go(f"ckpt={run}", *args)
