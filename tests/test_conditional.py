"""Conditional GANs: labels through G and D, the projection term, ACGAN's and InfoGAN's losses by hand,
training, per-class grids, gan-sample class=, InfoGAN traversals and gan-eval's per-class metrics."""

import math
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gan_cli import UserError, checkpoint
from gan_cli.conditioning import ACGAN, CGAN, InfoGAN, Projection, info_loss
from gan_cli.evaluate import evaluate, parse_args
from gan_cli.models import ConditionalBatchNorm2d
from gan_cli.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_cli.models.mlp import MLPDiscriminator, MLPGenerator
from gan_cli.options import parse
from gan_cli.sample import sample
from gan_cli.train import train
from tests.conftest import BIN, tiny_config, write_images

SHAPE = (1, 16, 16)
CONDITIONAL = ["cgan", "acgan", "sngan_projection", "infogan"]


# --- the nets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("G", [
    DCGANGenerator(SHAPE, z_dim=8, width=4, num_classes=3, class_input="concat"),
    DCGANGenerator(SHAPE, z_dim=8, width=4, num_classes=3, class_input="cbn"),
    MLPGenerator(SHAPE, z_dim=8, hidden=[16], num_classes=3),
], ids=["dcgan-concat", "dcgan-cbn", "mlp-concat"])
def test_the_label_reaches_the_generator(G):
    for m in G.modules():  # conditional batch norm starts as plain batch norm: give each class its own
        if isinstance(m, ConditionalBatchNorm2d):
            torch.nn.init.normal_(m.gain.weight, 0.0, 0.5)
    G.eval()
    z = torch.randn(4, 8)
    a, b = G(z, torch.tensor([0, 0, 0, 0])), G(z, torch.tensor([2, 2, 2, 2]))
    assert a.shape == b.shape == (4, *SHAPE)
    assert not torch.allclose(a, b)  # same z, another class: another image
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)


def test_infogan_codes_reach_the_generator():
    G = DCGANGenerator(SHAPE, z_dim=8, width=4, code_dim=5).eval()
    z = torch.randn(2, 8)
    codes = torch.zeros(2, 5)
    shifted = codes.clone()
    shifted[:, 4] = 1.0
    assert not torch.allclose(G(z, codes), G(z, shifted))
    assert G.net[0].in_channels == 8 + 5


@pytest.mark.parametrize("make", [
    lambda: DCGANDiscriminator(SHAPE, width=4, num_classes=3, class_input="concat"),
    lambda: DCGANDiscriminator(SHAPE, width=4, num_classes=3, class_input="projection"),
    lambda: MLPDiscriminator(SHAPE, hidden=[16], num_classes=3, class_input="concat"),
    lambda: MLPDiscriminator(SHAPE, hidden=[16], num_classes=3, class_input="projection"),
], ids=["dcgan-concat", "dcgan-projection", "mlp-concat", "mlp-projection"])
def test_the_label_reaches_the_discriminator(make):
    torch.manual_seed(0)
    D = make().eval()
    x = torch.randn(4, *SHAPE)
    a, b = D(x, torch.tensor([0, 0, 0, 0])), D(x, torch.tensor([1, 1, 1, 1]))
    assert a.shape == b.shape == (4,)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="class-conditional"):
        D(x)


def test_projection_term_by_hand():
    torch.manual_seed(0)
    D = DCGANDiscriminator(SHAPE, width=4, norm="none", num_classes=3, class_input="projection").eval()
    x, y = torch.randn(2, *SHAPE), torch.tensor([2, 0])
    h = D.net[:-1](x)  # the last feature maps, 16 x 4 x 4
    phi = h.sum(dim=(2, 3))  # pooled over space
    unconditional = D.net[-1](h).flatten()
    expected = torch.stack([unconditional[i] + torch.dot(D.embed.weight[y[i]], phi[i]) for i in range(2)])
    assert torch.allclose(D(x, y), expected, atol=1e-6)
    # With a zero embedding the projection D is the unconditional one.
    torch.nn.init.zeros_(D.embed.weight)
    assert torch.allclose(D(x, y), unconditional, atol=1e-6)


def test_heads_share_the_body():
    torch.manual_seed(0)
    D = DCGANDiscriminator(SHAPE, width=4, head=(3,))
    scores, logits = D(torch.randn(5, *SHAPE), head=True)
    assert scores.shape == (5,) and logits.shape == (5, 3)
    Q = DCGANDiscriminator(SHAPE, width=4, head=(10, 2))
    _, q = Q(torch.randn(5, *SHAPE), head=True)
    assert q.shape == (5, 12)
    body = {n for n, _ in Q.named_parameters() if n.startswith("net.")}
    assert body == {n for n, _ in DCGANDiscriminator(SHAPE, width=4).named_parameters()}  # Q adds a head only


def test_conditional_batch_norm_starts_as_batch_norm():
    G = DCGANGenerator(SHAPE, z_dim=8, width=4, num_classes=3, class_input="cbn")
    cbn = G.net[1]
    x = torch.randn(6, cbn.bn.num_features, 4, 4)
    expected = F.batch_norm(x, None, None, training=True)
    assert torch.allclose(cbn(x, G.class_embed(torch.tensor([0, 1, 2, 0, 1, 2]))), expected, atol=1e-5)


def test_conditional_batch_norm_by_hand():
    """Scale 1 + W_g e and shift W_b e, e the class embedding shared by every such layer of G."""
    torch.manual_seed(0)
    G = DCGANGenerator(SHAPE, z_dim=8, width=4, num_classes=3, class_input="cbn")
    cbns = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(cbns) == 2 and [n for n, _ in G.named_parameters() if "embed" in n] == ["class_embed.weight"]
    cbn = cbns[0]
    torch.nn.init.normal_(cbn.gain.weight)
    torch.nn.init.normal_(cbn.shift.weight)
    x, y = torch.randn(4, cbn.bn.num_features, 2, 2), torch.tensor([2, 0, 1, 2])
    x[3] = x[0]
    e = G.class_embed.weight[y]
    normed = F.batch_norm(x, None, None, training=True)
    expected = (1 + e @ cbn.gain.weight.T)[:, :, None, None] * normed + (e @ cbn.shift.weight.T)[:, :, None, None]
    assert torch.allclose(cbn(x, G.class_embed(y)), expected, atol=1e-5)
    assert torch.allclose(expected[0], expected[3])  # same class, same input: same output


# --- the losses by hand ---------------------------------------------------------------------------


def test_acgan_auxiliary_loss_on_hand_made_logits():
    cond = ACGAN(weight=0.5)
    cond.setup(3, "test")
    real_logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    fake_logits = torch.tensor([[0.0, math.log(3.0), 0.0]])
    labels, fake_labels = torch.tensor([0, 1]), torch.tensor([1])
    # Cross-entropies: -log(e^2 / (e^2 + 2)) and -log(1/3) for the real pair (mean), -log(3/5) for the fake.
    real_ce = (-math.log(math.e ** 2 / (math.e ** 2 + 2)) + math.log(3.0)) / 2
    fake_ce = -math.log(3.0 / 5.0)
    d = cond.d_loss(real_logits, labels, fake_logits, fake_labels)
    assert d.item() == pytest.approx(0.5 * (real_ce + fake_ce), rel=1e-6)
    assert cond.g_loss(fake_logits, fake_labels).item() == pytest.approx(0.5 * fake_ce, rel=1e-6)
    assert cond.last["acgan/accuracy_real"].item() == pytest.approx(0.5)  # [0, 0, 0] picks class 0, not 1
    assert cond.last["acgan/accuracy_fake"].item() == pytest.approx(1.0)


def test_infogan_continuous_code_loss_by_hand():
    # One categorical code of 2 values and 2 continuous codes: c = (one-hot 0, 0.5, -0.5).
    codes = torch.tensor([[1.0, 0.0, 0.5, -0.5]])
    categorical, continuous = info_loss(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]]), codes, 2, 0.1)
    assert categorical.item() == pytest.approx(math.log(2.0))  # uniform logits over 2 values
    assert continuous.item() == pytest.approx(0.1 * 0.5 * (0.0 ** 2 + 1.0 ** 2))  # 1/2 (c - mu)^2, summed
    cond = InfoGAN(categorical=2, continuous=2, weight=2.0, continuous_weight=0.1)
    head = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    assert cond.g_loss(head, codes).item() == pytest.approx(2.0 * (math.log(2.0) + 0.05))


def test_infogan_codes_follow_their_prior():
    cond = InfoGAN(categorical=10, continuous=2)
    codes = cond.sample(4000, None, torch.device("cpu"), torch.Generator().manual_seed(0))
    one_hot, continuous = codes[:, :10], codes[:, 10:]
    assert torch.equal(one_hot.sum(1), torch.ones(4000))
    assert (one_hot.sum(0) > 300).all()  # every value drawn, about 400 times each
    assert continuous.min() >= -1 and continuous.max() <= 1 and continuous.mean().abs() < 0.05


def test_class_conditional_fakes_take_the_real_batch_labels():
    cond = CGAN()
    cond.setup(10, "digits")
    labels = torch.tensor([3, 1, 4])
    assert torch.equal(cond.sample(3, labels, torch.device("cpu")), labels)
    assert torch.equal(cond.grid_condition(2, torch.device("cpu"))[:6], torch.tensor([0, 0, 1, 1, 2, 2]))


def test_unlabelled_data_is_one_line():
    with pytest.raises(UserError, match="needs labelled data, and toy2d has no labels"):
        Projection().setup(0, "toy2d")


# --- training -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", CONDITIONAL)
def test_two_steps_of_every_conditional_preset(model, tmp_path):
    result = train(tiny_config(f"model={model}", "trainer.sample_every=1"), tmp_path)
    assert result["step"] == 2 and all(math.isfinite(v) for v in result["logged"].values())
    state = checkpoint.load(tmp_path)
    assert state["num_classes"] == 10 and state["names"]["conditioning"] == state["config"]["conditioning"]["name"]
    # The fixed grid: one row per class (or categorical value), 16x16 tiles with 2-pixel padding.
    grid = Image.open(tmp_path / "samples" / "last.png")
    assert grid.size[1] == 10 * 18 + 2


def test_acgan_accuracy_and_infogan_terms_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config("model=acgan"), tmp_path / "acgan")
    tags = set(EventAccumulator(str(tmp_path / "acgan")).Reload().Tags()["scalars"])
    assert {"acgan/accuracy_real", "acgan/accuracy_fake", "acgan/loss_real"} <= tags
    train(tiny_config("model=infogan"), tmp_path / "infogan")
    tags = set(EventAccumulator(str(tmp_path / "infogan")).Reload().Tags()["scalars"])
    assert {"info/categorical", "info/continuous", "info/accuracy"} <= tags


def test_conditioning_on_other_presets_and_with_the_gradient_penalty(tmp_path):
    # conditioning= combines with any preset; the penalty differentiates D(., labels).
    result = train(tiny_config("model=wgan_gp", "conditioning=cgan", "trainer.n_critic=2"), tmp_path)
    assert math.isfinite(result["logged"]["penalty/gradient"])


def test_acgan_learns_the_classes_of_real_digits(tmp_path):
    # D's auxiliary head learns the real labels within a few dozen steps (a loss that could not reach
    # it, e.g. labels not flowing with the batch, stays at chance: 10 %).
    result = train(tiny_config("model=acgan", "trainer.steps=60", "trainer.batch_size=32", "trainer.log_every=20",
                               "discriminator.width=8", "generator.width=8"), tmp_path)
    assert result["logged"]["acgan/accuracy_real"] > 0.5


def test_unlabelled_data_with_a_conditional_model_is_one_line(tmp_path):
    write_images(tmp_path / "flat", {"": 12})
    out = subprocess.run(
        [str(BIN / "gan-train"), "model=cgan", "dataset=folder", f"dataset.root={tmp_path / 'flat'}",
         "dataset.resolution=16", "trainer.steps=1", "trainer.batch_size=8", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("gan-train: error: conditioning=cgan needs labelled data, and folder ")
    assert line.endswith("has no labels; use a labelled data set (digits, mnist, cifar10, a folder with one "
                         "subfolder per class) or conditioning=none")


def test_projection_needs_the_dcgan_generator(tmp_path):
    with pytest.raises(UserError, match="batch norm in G, which the dcgan and resnet generators have"):
        train(tiny_config("model=sngan_projection", "generator=mlp"), tmp_path)


# --- sampling and evaluation ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cgan")
    train(tiny_config("model=acgan", "trainer.steps=2"), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def infogan_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("infogan")
    train(tiny_config("model=infogan", "trainer.steps=2"), run_dir)
    return run_dir


def go(*args):
    return sample(parse([*args, "progress=false"], "sample"))


def test_sample_one_class_and_rows_of_classes(cgan_run, tmp_path):
    (one,) = go(f"ckpt={cgan_run}", "class=3", "n=4", "nrow=4", f"out={tmp_path / 'three.png'}")
    assert Image.open(one).size == (4 * 18 + 2, 18 + 2)
    (again,) = go(f"ckpt={cgan_run}", "classes=[3]", "n=4", "nrow=4", f"out={tmp_path / 'again.png'}")
    assert again.read_bytes() == one.read_bytes()
    (other,) = go(f"ckpt={cgan_run}", "class=5", "n=4", "nrow=4", f"out={tmp_path / 'five.png'}")
    assert other.read_bytes() != one.read_bytes()
    (rows,) = go(f"ckpt={cgan_run}", "classes=[0,1,2]", "nrow=5", f"out={tmp_path / 'rows.png'}")
    width, height = Image.open(rows).size
    assert height == 3 * 18 + 2 and width == 44 + 5 * 18 + 2  # a label margin, then 5 columns
    # Each row is the class asked for: row 1 of the rows grid equals class=1 with the same seeds.
    tiles = np.asarray(Image.open(rows).convert("L"))[:, 44:]
    (single,) = go(f"ckpt={cgan_run}", "class=1", "n=5", "nrow=5", f"out={tmp_path / 'one.png'}")
    assert np.array_equal(tiles[18:38], np.asarray(Image.open(single).convert("L"))[:20])
    (folder,) = go(f"ckpt={cgan_run}", "mode=images", "class=7", "n=3", f"out={tmp_path / 'sevens'}")
    assert len(list(folder.glob("*.png"))) == 3


def test_sample_class_errors_are_one_line(cgan_run, tmp_path):
    with pytest.raises(UserError, match="class 10 does not exist: this G knows classes 0-9"):
        go(f"ckpt={cgan_run}", "class=10")
    with pytest.raises(UserError, match="give class= .* or classes= .*, not both"):
        go(f"ckpt={cgan_run}", "class=1", "classes=[2]")
    plain = tmp_path / "plain"
    train(tiny_config(), plain)
    with pytest.raises(UserError, match="need a class-conditional checkpoint; this one is none"):
        go(f"ckpt={plain}", "class=1")
    with pytest.raises(UserError, match="mode=traverse varies InfoGAN's continuous codes"):
        go(f"ckpt={cgan_run}", "mode=traverse")


def test_infogan_traversal_varies_one_code(infogan_run, tmp_path):
    (picture,) = go(f"ckpt={infogan_run}", "mode=traverse", "code=1", "steps=5", "classes=[0,4]",
                    f"out={tmp_path / 't.png'}")
    tiles = np.asarray(Image.open(picture).convert("L"))[:, 44:]
    assert tiles.shape == (2 * 18 + 2, 5 * 18 + 2)
    first_row = [tiles[2:18, 2 + 18 * k:18 + 18 * k] for k in range(5)]
    assert any(not np.array_equal(first_row[0], tile) for tile in first_row[1:])  # the code changes the image
    with pytest.raises(UserError, match="code=2: this G has continuous codes 0-1"):
        go(f"ckpt={infogan_run}", "mode=traverse", "code=2")


def test_per_class_accuracy_and_intra_fid(cgan_run, tmp_path, shared_cache):
    options = parse_args([f"ckpt={cgan_run}", "metrics=[accuracy,intra_fid]", "num_samples=100", "progress=false",
                          f"cache_dir={shared_cache}", f"out={tmp_path / 'e.json'}"])
    m = evaluate(options)["metrics"]
    assert 0 <= m["accuracy"] <= 1 and set(m["accuracy_per_class"]) == {str(c) for c in range(10)}
    # 100 samples drawn class by class: 10 of each, so the overall accuracy is the mean of the classes'.
    assert m["accuracy"] == pytest.approx(np.mean(list(m["accuracy_per_class"].values())))
    assert m["intra_fid"] > 0 and len(m["intra_fid_per_class"]) == 10


def test_per_class_metrics_need_a_class_conditional_checkpoint(infogan_run, tmp_path):
    with pytest.raises(UserError, match="need a class-conditional checkpoint .* this one is infogan"):
        evaluate(parse_args([f"ckpt={infogan_run}", "metrics=[accuracy]", "progress=false"]))
