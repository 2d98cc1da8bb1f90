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
def cache(shared_cache):
    """The session's cache: the digits classifier is trained once."""
    return shared_cache


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
    assert set(report["metrics"]) == {"modes", "hq_percent", "reverse_kl", "balanced_hq"}
    assert report["protocol"]["modes_total"] == 25 and report["protocol"]["num_fake"] == 500


@pytest.mark.parametrize("args,message", [
    ([], "give either ckpt="),
    (["ckpt=x", "fake=y"], "give either ckpt="),
    (["ckpt=x", "metrics=[fid,lpips]"], "unknown metrics ['lpips']"),
    (["ckpt=x", "backbone=vgg"], "unknown backbone 'vgg'"),
    (["ckpt=x", "num_samples=0"], "num_samples must be a positive integer"),
    (["ckpt=x", "samples=10"], "no option samples"),
    (["ckpt"], "expected key=value"),
])
def test_bad_options_are_one_line(args, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_args(args)


def test_bad_checkpoints_and_unlabelled_data_are_one_line(cache, tmp_path):
    from tests.test_resilience import RunsACommand

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"format": "gan-cli checkpoint v1", "G": RunsACommand(tmp_path / "pwned")}, tmp_path / "evil.pt")
    for args, message in [
        ([f"ckpt={tmp_path / 'evil.pt'}"], "refusing to load"),
        ([f"ckpt={tmp_path / 'missing'}"], "no such checkpoint or run folder"),
        ([f"ckpt={tmp_path / 'junk.pt'}"], "truncated or not a checkpoint"),
        ([f"fake={write_images(tmp_path / 'flat', {'': 12})}", f"real={tmp_path / 'flat'}", "metrics=[fid]"],
         "needs labelled data"),
    ]:
        result = gan_eval(*args, cwd=tmp_path, cache=cache)
        assert result.returncode == 2
        # Log lines ("[hh:mm:ss] ...", e.g. what a folder holds) may come first; the error is one line.
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("[")]
        assert len(lines) == 1 and message in lines[0] and lines[0].startswith("gan-eval: error: "), result.stderr
    assert not (tmp_path / "pwned").exists()


def test_inception_offline_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, progress=True):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match=r"cannot download the FID Inception weights.*weights-inception-2015-12-05"):
        backbones.InceptionBackbone(torch.device("cpu"))
    with pytest.raises(UserError, match="inception_weights=nowhere.pth: no such file"):
        backbones.InceptionBackbone(torch.device("cpu"), "nowhere.pth")


def test_inception_backbone_takes_uint8_gray_or_colour(random_inception):
    """2048 features and 1008 class probabilities per image, grey images as three equal channels."""
    backbone = backbones.InceptionBackbone(torch.device("cpu"), str(random_inception))
    gray = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    features, probs = backbone.features(gray)
    assert features.shape == (2, 2048) and probs.shape == (2, 1008)
    assert np.allclose(probs.sum(axis=1), 1)
    colour_features, _ = backbone.features(gray.expand(-1, 3, -1, -1).contiguous())
    assert np.allclose(features, colour_features)
    assert "sha256" in backbone.protocol["weights"]


# --- parity with torch-fidelity ------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """Inception-v3 with random weights saved to a file: the published ones cannot be downloaded here."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    mp = pytest.MonkeyPatch()
    mp.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    mp.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {},
               raising=False)
    torch.manual_seed(0)
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=None)
    mp.undo()
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_features_equal_torch_fidelitys_for_the_same_images_and_weights(random_inception):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    images = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(random_inception)).eval()
    with torch.no_grad():
        pool, logits = reference(images)
    ours, probs = backbones.InceptionBackbone(torch.device("cpu"), str(random_inception)).features(images)
    assert np.array_equal(ours, pool.double().numpy())
    assert np.allclose(probs, torch.softmax(logits.double(), 1).numpy(), rtol=1e-12)


def test_fid_kid_and_is_equal_torch_fidelitys_on_the_same_features():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    from gan_cli.metrics import scores

    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.standard_normal((600, 64)) * 2 + 0.5)
    fake = torch.from_numpy(rng.standard_normal((500, 64)) @ rng.standard_normal((64, 64)) * 0.3)
    theirs = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake), False)
    ours = scores.frechet_distance(*scores.gaussian(real.numpy()), *scores.gaussian(fake.numpy()))
    assert ours == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)

    theirs = kid_features_to_metric(real, fake, kid_subsets=20, kid_subset_size=200, kid_degree=3, kid_gamma=None,
                                    kid_coef0=1, kid_kernel="poly", rng_seed=7, verbose=False)
    mean, std = scores.kernel_inception_distance(real.numpy(), fake.numpy(), subsets=20, subset_size=200, seed=7)
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6)

    logits = torch.from_numpy(rng.standard_normal((1003, 1008)) * 3)  # not a multiple of the splits
    theirs = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=7)
    mean, std = scores.inception_score(torch.softmax(logits, 1).numpy(), splits=10, seed=7)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-3)
    assert std == pytest.approx(theirs["inception_score_std"], rel=1e-3)


def test_analytic_fid_cases():
    from gan_cli.metrics import scores

    rng = np.random.default_rng(3)
    sigma = np.cov(rng.standard_normal((500, 16)), rowvar=False)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    # Equal covariances: the squared distance of the means.
    assert scores.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-9)
    features = rng.standard_normal((400, 16))
    assert abs(scores.frechet_distance(*scores.gaussian(features), *scores.gaussian(features))) < 1e-10


# --- during training -----------------------------------------------------------------------------


def test_eval_every_logs_the_metric_and_keeps_the_best_checkpoint(cache, tmp_path, monkeypatch):
    from gan_cli import checkpoint
    from tests.test_train import scalars

    monkeypatch.setenv("GAN_CLI_CACHE", str(cache))
    train(tiny_config("trainer.steps=4", "trainer.eval_every=1", "trainer.eval_samples=64"), tmp_path)
    values = scalars(tmp_path, "eval/fid")
    assert [s for s, _ in values] == [1, 2, 3, 4]
    best_step, best_value = min(values, key=lambda sv: sv[1])
    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["best"]["value"] == pytest.approx(best_value, rel=1e-6)
    assert checkpoint.load(tmp_path)["best"]["step"] == best_step  # last.pt knows the best so far

    train(tiny_config("model=gan", "dataset=toy2d", "trainer.steps=2", "trainer.eval_every=1",
                      "trainer.eval_metric=hq_percent", "trainer.eval_samples=100"), tmp_path / "toy")
    assert len(scalars(tmp_path / "toy", "eval/hq_percent")) == 2
    with pytest.raises(UserError, match="trainer.eval_metric=modes does not apply to digits"):
        train(tiny_config("trainer.eval_every=1", "trainer.eval_metric=modes"), tmp_path / "bad")


def test_a_fake_folder_is_a_seeded_random_subset_not_its_first_classes(cache, tmp_path, monkeypatch):
    import gan_cli.evaluate as ev

    real = write_images(tmp_path / "real", {str(c): 6 for c in range(10)})
    read, plain = [], ev.folder_batches

    def recording(files, *args):
        read.append(list(files))
        return plain(files, *args)

    monkeypatch.setattr(ev, "folder_batches", recording)
    for seed in (0, 0, 1):
        evaluate(options(f"fake={real}", f"real={real}", "metrics=[fid]", "num_samples=20", f"seed={seed}", cache=cache))
    classes = {f.parent.name for f in read[0]}
    assert len(read[0]) == 20 and len(classes) >= 7, classes  # in sorted order: classes 0-3 only
    assert read[0] == read[1] and read[0] != read[2]  # the subset is the seed's


def test_fake_images_are_scored_at_their_own_size_or_at_resolution(cache, tmp_path):
    fake = write_images(tmp_path / "fake", {"": 12}, size=(24, 24))
    real = write_images(tmp_path / "real", {"a": 12, "b": 12}, size=(40, 40), seed=1)
    report = evaluate(options(f"fake={fake}", f"real={real}", "metrics=[fid]", cache=cache))
    assert report["protocol"]["image_shape"] == [1, 24, 24]  # not the folder default, 32
    assert "24x24, the fake images' own size" == report["protocol"]["resolution"]
    report = evaluate(options(f"fake={fake}", f"real={real}", "metrics=[fid]", "resolution=16", cache=cache))
    assert report["protocol"]["image_shape"] == [1, 16, 16]
    write_images(tmp_path / "fake" / "more", {"": 2}, size=(30, 30))
    with pytest.raises(UserError, match=r"come in 2 sizes \(24x24, 30x30\); set resolution="):
        evaluate(options(f"fake={fake}", f"real={real}", "metrics=[fid]", cache=cache))


@pytest.mark.parametrize("args,message", [
    (["metrics=[is]", "num_samples=5"], r"metrics=\[is\] needs at least 20 images \(two per split, is_splits=10\)"),
    (["metrics=[pr]", "num_samples=3"], r"metrics=\[pr\] needs at least 4 images"),
    (["metrics=[fid]", "num_samples=1"], r"metrics=\[fid\] needs at least 2 images; num_samples is 1"),
    (["metrics=[kid]", "num_samples=1"], r"metrics=\[kid\] needs at least 2 images"),
    (["metrics=[is]", "num_samples=6", "is_splits=3"], None),
])
def test_too_few_samples_for_a_metric_is_one_line(digits_run, cache, args, message):
    if message is None:
        assert evaluate(options(f"ckpt={digits_run}", *args, cache=cache))["metrics"]["is_mean"] >= 1
        return
    with pytest.raises(UserError, match=message):
        evaluate(options(f"ckpt={digits_run}", *args, cache=cache))


def test_too_few_fake_or_real_images_is_one_line(cache, tmp_path):
    few = write_images(tmp_path / "few", {"a": 2, "b": 1})
    many = write_images(tmp_path / "many", {"a": 10, "b": 10})
    with pytest.raises(UserError, match=r"metrics=\[pr\] needs at least 4 images .*the number of images in .*few is 3"):
        evaluate(options(f"fake={few}", f"real={many}", "metrics=[pr]", cache=cache))
    with pytest.raises(UserError, match=r"metrics=\[pr\] needs at least 4 images .*; the number of real images .* is 3"):
        evaluate(options(f"fake={many}", f"real={many}", "metrics=[pr]", "num_real=3", cache=cache))


def test_trainer_eval_samples_must_fit_the_metric():
    from gan_cli.train import check_trainer

    trainer = dict(tiny_config()["trainer"], eval_every=10)
    for metric, fewest in (("is", 20), ("precision", 4), ("fid", 2)):
        with pytest.raises(UserError, match=f"trainer.eval_metric={metric} needs trainer.eval_samples >= {fewest}"):
            check_trainer(dict(trainer, eval_metric=metric, eval_samples=fewest - 1))
        check_trainer(dict(trainer, eval_metric=metric, eval_samples=fewest))


def test_real_statistics_follow_the_folder_not_its_path(cache, tmp_path):
    """With a backbone whose key does not depend on the data (Inception's), only the folder's content can
    tell its cached statistics are stale."""
    import shutil

    from gan_cli.metrics.protocol import real_features

    class Pixels:
        key = "pixels"

        def features(self, images):
            x = images.double().flatten(1)[:, :6].numpy()
            return x, np.full((len(x), 2), 0.5)

    real = write_images(tmp_path / "real", {"a": 10, "b": 10})
    node = {"name": "folder", "root": str(real), "resolution": 16, "channels": None}
    opts = {"num_real": None, "seed": 0, "batch_size": 8, "progress": False, "cache_dir": str(cache)}
    first = real_features(Pixels(), node, opts, (1, 16, 16))
    again = real_features(Pixels(), node, opts, (1, 16, 16))
    assert np.array_equal(again["mu"], first["mu"]) and again["count"] == 20
    shutil.rmtree(real)
    write_images(real, {"a": 15, "b": 15}, seed=7)
    replaced = real_features(Pixels(), node, opts, (1, 16, 16))
    assert replaced["count"] == 30 and not np.allclose(replaced["mu"], first["mu"])


def test_a_one_class_data_set_cannot_train_the_classifier_backbone(cache, tmp_path):
    one = write_images(tmp_path / "one", {"only": 20})
    with pytest.raises(UserError, match="it has 1; give labelled data of two classes or more, or use backbone=inception"):
        evaluate(options(f"fake={one}", f"real={one}", "metrics=[is]", cache=cache))


def test_a_damaged_test_split_is_an_error_and_only_a_missing_one_falls_back(tmp_path, caplog):
    from gan_cli.metrics.protocol import labelled_split
    from tests.test_data import write_idx

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(40) % 4)
    node = {"name": "mnist", "root": str(tmp_path), "split": "train", "resolution": 16}
    with caplog.at_level("INFO", logger="gan_cli.metrics"):
        *_, description = labelled_split(node)
    assert "10% held out" in description and "has no test split on disk" in caplog.text
    write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.* not found beside t10k-images"):
        labelled_split(node)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(10) % 4)
    assert "test split held out" in labelled_split(node)[-1]
    data = (raw / "t10k-images-idx3-ubyte.gz").read_bytes()
    import gzip

    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(gzip.decompress(data)[:-100]))
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz is truncated"):
        labelled_split(node)


# --- files that would run code -------------------------------------------------------------------


def test_an_inception_weights_file_that_would_run_code_is_refused(tmp_path, monkeypatch, random_inception):
    from tests.test_resilience import RunsACommand

    marker = tmp_path / "pwned"
    state = torch.load(random_inception, weights_only=True)
    state["fc.bias"] = RunsACommand(marker)  # the right names, and one value that runs a command
    evil = tmp_path / "evil-inception.pth"
    torch.save(state, evil)
    with pytest.raises(UserError, match="refusing to load .*evil-inception.pth: it holds more than tensors"):
        backbones.InceptionBackbone(torch.device("cpu"), str(evil))
    assert not marker.exists()
    # The same file where torch hub keeps the downloaded weights.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_copy = tmp_path / "torch" / "hub" / "checkpoints" / backbones.INCEPTION_FILE
    hub_copy.parent.mkdir(parents=True)
    hub_copy.write_bytes(evil.read_bytes())
    with pytest.raises(UserError, match="refusing to load"):
        backbones.InceptionBackbone(torch.device("cpu"))
    assert not marker.exists()
    # Tensors of other names are a one-line error too.
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="cannot load Inception weights from .*other.pth"):
        backbones.InceptionBackbone(torch.device("cpu"), str(tmp_path / "other.pth"))


def test_cache_files_that_would_run_code_are_rebuilt_not_run(cache, tmp_path, caplog):
    from tests.test_resilience import RunsACommand

    own = tmp_path / "cache"
    real = write_images(tmp_path / "real", {"a": 12, "b": 12})
    args = (f"fake={real}", f"real={real}", "metrics=[fid]")
    first = evaluate(options(*args, cache=own))
    files = sorted((own / "classifiers").glob("*.pt")) + sorted((own / "real_stats").glob("*.pt"))
    assert len(files) == 2
    marker = tmp_path / "pwned"
    for path in files:
        torch.save({"model": RunsACommand(marker), "protocol": RunsACommand(marker)}, path)
    with caplog.at_level("WARNING"):
        again = evaluate(options(*args, cache=own))
    assert not marker.exists()
    assert "refusing to load" in caplog.text and "training the classifier again" in caplog.text
    assert "computing the real statistics again" in caplog.text
    assert again["metrics"] == first["metrics"]
