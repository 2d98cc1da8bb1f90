"""The DCGAN linear probe: D's pooled layer features, the SVM, the baselines and gan-eval metrics=[probe]."""

import copy

import numpy as np
import pytest
import torch

from gan_cli import UserError
from gan_cli.evaluate import evaluate, parse_args
from gan_cli.metrics.probe import LinearSVM, d_features, few_labels, pool, probe_accuracy, probe_layers
from gan_cli.models.dcgan import DCGANDiscriminator
from gan_cli.models.mlp import MLPDiscriminator
from gan_cli.models.resnet import ResNetDiscriminator
from gan_cli.train import train
from tests.conftest import tiny_config


def test_each_layer_is_max_pooled_to_4x4_and_concatenated():
    x = torch.randn(3, 1, 32, 32)
    # dcgan at 32x32, width 8: 8 maps of 16x16, 16 of 8x8, 32 of 4x4 -> 16 positions each.
    assert d_features(DCGANDiscriminator((1, 32, 32), width=8), x, "cpu").shape == (3, (8 + 16 + 32) * 16)
    # resnet, blocks 3: 8 maps at 16x16, 8 at 8x8, 8 at 8x8 (no pooling below 8x8).
    resnet = ResNetDiscriminator((1, 32, 32), width=8, max_width=8, blocks=3)
    assert d_features(resnet, x, "cpu").shape == (3, 3 * 8 * 16)
    # mlp: its hidden layers as they are.
    assert d_features(MLPDiscriminator((1, 32, 32), hidden=(20, 10)), x, "cpu").shape == (3, 30)
    # pooling by hand: the maximum of each 2x2 block of an 8x8 map.
    maps = torch.arange(64.0).view(1, 1, 8, 8)
    assert torch.equal(pool(maps), maps.view(1, 1, 4, 2, 4, 2).amax(dim=(3, 5)).flatten(1))
    assert torch.equal(pool(torch.ones(2, 3, 2, 2)), torch.ones(2, 12))  # smaller maps as they are


def test_d_runs_in_eval_mode_and_is_left_untouched():
    D = DCGANDiscriminator((1, 16, 16), width=4).train()
    before = copy.deepcopy(D.state_dict())
    a = d_features(D, torch.randn(8, 1, 16, 16), "cpu")
    b = d_features(D, torch.randn(8, 1, 16, 16)[:1].repeat(8, 1, 1, 1), "cpu")
    assert D.training and all(torch.equal(before[k], v) for k, v in D.state_dict().items())
    assert np.allclose(b, b[:1])  # eval mode: an image's features do not depend on its batch mates
    assert a.shape == b.shape


def test_the_svm_separates_separable_features_and_not_random_labels():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    centres = rng.normal(size=(3, 20)) * 5
    x = centres[y] + rng.normal(size=(120, 20))
    test_y = np.repeat(np.arange(3), 20)
    test_x = centres[test_y] + rng.normal(size=(60, 20))
    assert probe_accuracy(x, y, test_x, test_y)["mean"] == 1.0
    few = probe_accuracy(x, y, test_x, test_y, per_class=2, draws=3)
    assert few["train_images"] == 6 and len(few["accuracies"]) == 3 and few["mean"] > 0.9
    noise = probe_accuracy(rng.normal(size=(120, 20)), y, rng.normal(size=(60, 20)), test_y)
    assert noise["mean"] < 0.6  # chance is 1/3


@pytest.mark.parametrize("rows,features", [(150, 12), (40, 100)])  # more rows than features, and fewer
def test_the_svm_is_scikit_learns_linear_svc(rows, features):
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, rows)
    x = rng.normal(size=(rows, features)) + y[:, None] * rng.normal(size=features) + 3.0
    standard = StandardScaler().fit_transform(x)
    for c in (0.01, 1.0):
        ours = LinearSVM(c).fit(x, y)
        theirs = LinearSVC(C=c, loss="squared_hinge", tol=1e-10, max_iter=100_000).fit(standard, y)
        signs = np.where(y[:, None] == np.arange(3)[None], 1.0, -1.0)

        def objective(w, b):  # LinearSVC's, the intercept regularised with the weights
            slack = np.maximum(0, 1 - signs * (standard @ w + b))
            return 0.5 * (np.square(w).sum() + np.square(b).sum()) + c * np.square(slack).sum()

        mine = objective(ours.weights[:-1].numpy(), ours.weights[-1].numpy())
        assert mine == pytest.approx(objective(theirs.coef_.T, theirs.intercept_), rel=1e-6)
        assert np.allclose(ours.weights[:-1].numpy().T, theirs.coef_, atol=2e-3)
        assert np.allclose(ours.weights[-1].numpy(), theirs.intercept_, atol=2e-3)
        assert np.array_equal(ours.predict(x), theirs.predict(standard))


def test_few_labels_draws_n_of_each_class():
    y = np.array([0] * 10 + [1] * 10 + [2] * 3)
    chosen = few_labels(y, 4, seed=1)
    assert np.bincount(y[chosen]).tolist() == [4, 4, 3]
    assert not np.array_equal(chosen, few_labels(y, 4, seed=2))


def test_probe_layers_refuse_other_critics():
    with pytest.raises(UserError, match="dcgan, resnet and mlp critics"):
        probe_layers(torch.nn.Linear(2, 1))


def test_gan_eval_probe_scores_d_beside_a_random_d_and_pixels(tmp_path):
    train(tiny_config("trainer.steps=2"), tmp_path / "run")
    result = evaluate(parse_args([f"ckpt={tmp_path / 'run'}", "metrics=[probe]", "probe_labels=3", "probe_draws=2",
                                  f"out={tmp_path / 'probe.json'}", "progress=false"]))
    assert set(result["probe"]) == {"D (trained)", "D (random init)", "pixels"}
    for row in result["probe"].values():
        assert len(row["accuracies"]) == 2 and 0 <= row["mean"] <= 1 and row["train_images"] == 30
    m = result["metrics"]
    assert m["probe_3_accuracy"] == result["probe"]["D (trained)"]["mean"] and "probe_3_pixels_accuracy_std" in m
    assert result["probe"]["pixels"]["features"] == 16 * 16


def test_probe_test_scores_on_another_folder_of_the_same_classes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in ("a", "b", "other"):
        for c in ("0", "1") if part != "other" else ("0", "7"):
            (tmp_path / part / c).mkdir(parents=True)
            for i in range(12):
                pixels = rng.integers(0, 60, (16, 16)) + (180 if c == "1" else 0)  # class 1 is bright
                Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / part / c / f"{i}.png")
    train(tiny_config("dataset=folder", f"dataset.root={tmp_path / 'a'}", "dataset.resolution=16",
                      "trainer.steps=1", "trainer.batch_size=8"), tmp_path / "run")
    result = evaluate(parse_args([f"ckpt={tmp_path / 'run'}", "metrics=[probe]", f"probe_test={tmp_path / 'b'}",
                                  f"out={tmp_path / 'probe.json'}", "progress=false"]))
    assert result["protocol"]["probe_test_images"] == 24 and result["probe"]["pixels"]["train_images"] == 24
    assert result["probe"]["pixels"]["mean"] == 1.0  # brightness tells the classes apart
    fewer = evaluate(parse_args([f"ckpt={tmp_path / 'run'}", "metrics=[probe]", f"probe_test={tmp_path / 'b'}",
                                 "num_real=10", f"out={tmp_path / 'probe10.json'}", "progress=false"]))
    assert fewer["probe"]["D (trained)"]["train_images"] == 10  # num_real: a seeded subset to learn from
    with pytest.raises(UserError, match="other class folders"):
        evaluate(parse_args([f"ckpt={tmp_path / 'run'}", "metrics=[probe]", f"probe_test={tmp_path / 'other'}"]))


@pytest.mark.parametrize("args,message", [
    (["metrics=[probe,fid]"], "metrics=\\[probe\\] runs on its own"),
    (["probe_labels=0", "metrics=[probe]"], "probe_labels must be a positive integer"),
])
def test_probe_mistakes_are_one_line(args, message, tmp_path):
    with pytest.raises(UserError, match=message):
        parse_args([f"ckpt={tmp_path}", *args])


def test_a_d_that_reads_the_label_is_refused(tmp_path):
    D = DCGANDiscriminator((1, 16, 16), width=4, num_classes=10, class_input="concat")
    with pytest.raises(UserError, match="takes the label as an input"):
        d_features(D, torch.randn(2, 1, 16, 16), "cpu")
