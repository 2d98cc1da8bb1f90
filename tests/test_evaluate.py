"""gan-eval on tiny checkpoints and image folders: the numbers, the JSON, the caches and the errors."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch

from gan_cli import UserError
from gan_cli.evaluate import evaluate, parse_args, to_uint8
from gan_cli.metrics import backbones
from gan_cli.train import train
from tests.conftest import BIN, tiny_config, write_images


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the digits classifier is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    train(tiny_config("trainer.steps=3", "trainer.g_ema=0.9"), run_dir)
    return run_dir


def gan_eval(*args, cwd, cache):
    env = {**os.environ, "GAN_CLI_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(BIN / "gan-eval"), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def options(*args, cache):
    return parse_args([*args, f"cache_dir={cache}", "progress=false"])


def test_to_uint8_rounds():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.003, 1.0, 1.5])
    # 127.5 * (x + 1): 0, 0.1275, 127.5, 127.88, 255, 318.75 -> rounded (half to even) and clamped
    assert to_uint8(x).tolist() == [0, 0, 128, 128, 255, 255]


def test_checkpoint_against_its_data_with_the_classifier(digits_run, cache, tmp_path):
    result = gan_eval(f"ckpt={digits_run}", "num_samples=200", "batch_size=64", "kid_subset_size=100",
                      "kid_subsets=10", "progress=false", cwd=tmp_path, cache=cache)
    assert result.returncode == 0, result.stderr
    for label in ("FID", "IS", "KID", "precision", "recall"):
        assert label in result.stdout
    report = json.loads((digits_run / "checkpoints" / "eval-classifier-step_0000003.json").read_text())
    m, p = report["metrics"], report["protocol"]
    assert m["fid"] > 0 and 1 <= m["is_mean"] <= 10 and 0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1
    assert p["num_fake"] == 200 and p["num_real"] == 1797 and p["backbone"] == "classifier"
    assert "G_ema of" in p["fake"] and p["image_shape"] == [1, 16, 16]
    assert report["classifier_test_accuracy"] > 0.9  # digits at 16x16, 10% held out
    assert report["gan_cli_version"]
    # A second run reuses the cached classifier and real features and gives the same numbers.
    again = gan_eval(f"ckpt={digits_run}", "num_samples=200", "batch_size=64", "kid_subset_size=100",
                     "kid_subsets=10", "progress=false", f"out={tmp_path / 'again.json'}", cwd=tmp_path, cache=cache)
    assert "real statistics from the cache" in again.stderr and "from the cache" in again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["metrics"] == m


def test_a_cache_with_another_protocol_is_not_used(digits_run, cache, tmp_path):
    args = (f"ckpt={digits_run}", "num_samples=50", "metrics=[fid]", "num_real=300")
    evaluate(options(*args, cache=cache))
    (path,) = [p for p in (cache / "real_stats").glob("*.pt") if torch.load(p, weights_only=True)["count"] == 300]
    state = torch.load(path, weights_only=True)
    state["protocol"]["backbone"] = "something else"
    torch.save(state, path)
    state["mu"] = torch.zeros_like(state["mu"])
    first = evaluate(options(*args, cache=cache))["metrics"]["fid"]
    assert torch.load(path, weights_only=True)["protocol"]["backbone"] != "something else"  # rebuilt
    assert evaluate(options(*args, cache=cache))["metrics"]["fid"] == pytest.approx(first)


def test_real_against_itself_is_perfect(cache, tmp_path):
    folder = write_images(tmp_path / "real", {"a": 30, "b": 30})
    report = evaluate(options(f"fake={folder}", f"real={folder}", "metrics=[fid,pr,is]", cache=cache))
    m = report["metrics"]
    # 60 images in 128 dimensions: a rank-deficient covariance, so zero up to its rounding.
    assert abs(m["fid"]) < 1e-4 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert report["protocol"]["num_fake"] == report["protocol"]["num_real"] == 60


def test_toy2d_checkpoint_gives_the_mode_metrics(cache, tmp_path):
    train(tiny_config("model=gan", "dataset=toy2d", "dataset.mixture=grid"), tmp_path)
    report = evaluate(options(f"ckpt={tmp_path}", "num_samples=500", cache=cache))
    assert set(report["metrics"]) == {"modes", "hq_percent", "reverse_kl"}
    assert report["protocol"]["modes_total"] == 25 and report["protocol"]["num_fake"] == 500


@pytest.mark.parametrize("args,message", [
    ([], "give either ckpt="),
    (["ckpt=x", "fake=y"], "give either ckpt="),
    (["ckpt=x", "metrics=[fid,ssim]"], "unknown metrics ['ssim']"),
    (["ckpt=x", "backbone=vgg"], "unknown backbone 'vgg'"),
    (["ckpt=x", "num_samples=0"], "num_samples must be a positive integer"),
    (["ckpt=x", "samples=10"], "no option samples"),
    (["ckpt"], "expected key=value"),
])
def test_bad_options_are_one_line(args, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_args(args)


def test_bad_checkpoints_and_unlabelled_data_are_one_line(cache, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    for args, message in [
        ([f"ckpt={tmp_path / 'missing'}"], "no such checkpoint or run folder"),
        ([f"ckpt={tmp_path / 'junk.pt'}"], "truncated or not a checkpoint"),
        ([f"fake={write_images(tmp_path / 'flat', {'': 12})}", f"real={tmp_path / 'flat'}"], "needs labelled data"),
    ]:
        result = gan_eval(*args, cwd=tmp_path, cache=cache)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [result.stderr.strip()] and message in result.stderr
        assert result.stderr.startswith("gan-eval: error: ")


def test_inception_offline_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, progress=True):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match=r"cannot download the FID Inception weights.*weights-inception-2015-12-05"):
        backbones.InceptionBackbone(torch.device("cpu"))
    with pytest.raises(UserError, match="inception_weights=nowhere.pth: no such file"):
        backbones.InceptionBackbone(torch.device("cpu"), "nowhere.pth")


def test_inception_backbone_takes_uint8_gray_or_colour(tmp_path, monkeypatch):
    """With random weights (the real ones cannot be downloaded here) the plumbing still shows:
    2048 features and 1008 class probabilities per image, grey images as three equal channels."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    monkeypatch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
                        lambda *a, **k: {}, raising=False)
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=None)
    monkeypatch.undo()
    weights = tmp_path / "random-inception.pth"
    torch.save(net.state_dict(), weights)
    backbone = backbones.InceptionBackbone(torch.device("cpu"), str(weights))
    gray = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    features, probs = backbone.features(gray)
    assert features.shape == (2, 2048) and probs.shape == (2, 1008)
    assert np.allclose(probs.sum(axis=1), 1)
    colour_features, _ = backbone.features(gray.expand(-1, 3, -1, -1).contiguous())
    assert np.allclose(features, colour_features)
    assert "sha256" in backbone.protocol["weights"]
