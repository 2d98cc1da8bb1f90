"""Mode coverage: Stacked MNIST, the mode metric, PacGAN packing and the relativistic losses."""

import gzip
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from gan_cli import UserError, build, checkpoint, losses, registry
from gan_cli.data.images import digit_images
from gan_cli.data.stacked import epoch_triples, stack_label
from gan_cli.metrics.backbones import StackedClassifierBackbone
from gan_cli.metrics.protocol import digit_split, mode_coverage, stacked_channels
from gan_cli.models.pack import Packed
from gan_cli.train import train
from tests.conftest import SHARED_DATA, one_line, tiny_config
from tests.test_games import differences, resume

CPU = torch.device("cpu")


def write_idx(path, array: np.ndarray):
    """An IDX file of uint8 values, gzipped, as MNIST's are published."""
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    """scikit-learn's bundled digits at 28x28 as an MNIST test split: <root>/MNIST/raw/t10k-*."""
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = digit_images(28)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", images[:, 0].numpy())
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels.numpy())
    return root


def stacked(root, stacks=64, batch_size=8, seed=0, resolution=28):
    node = {"name": "stacked_mnist", "root": str(root), "split": "test", "resolution": resolution, "stacks": stacks}
    return registry.build("dataset", node, batch_size=batch_size, device=CPU, seed=seed)


# --- Stacked MNIST --------------------------------------------------------------------------------


def test_each_channel_is_a_digit_drawn_on_its_own_and_the_label_reads_the_triple(digits_root):
    data = stacked(digits_root, stacks=4000, batch_size=4000)
    images, labels = data.next()
    assert images.shape == (4000, 3, 28, 28) and data.shape == (3, 28, 28) and data.num_classes == 1000
    triples = epoch_triples(len(data.digits), 4000, 0, 0)
    for k in range(3):  # channel k is digit triples[:, k], scaled to [-1, 1]
        assert torch.equal(images[:, k:k + 1], data.digits[triples[:, k]].float() / 127.5 - 1)
    assert torch.equal(labels, stack_label(data.labels[triples]))
    # Independent draws: no channel follows another (the digits' correlation and the share of equal digits
    # are those of independent uniform draws, 0 and 1/10, within a few standard errors).
    digits = data.labels[triples].double()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(torch.corrcoef(digits[:, [a, b]].T)[0, 1]) < 0.05
        assert abs((digits[:, a] == digits[:, b]).double().mean() - 0.1) < 0.02
    assert len(torch.unique(labels)) > 950  # 4,000 draws over 1,000 triples leave about 18 unseen


def test_draws_are_reproducible_per_seed_and_new_each_epoch(digits_root):
    first, again, other = (stacked(digits_root, stacks=16, seed=s) for s in (0, 0, 1))
    a = [first.next()[1] for _ in range(4)]  # two epochs of two batches
    assert all(torch.equal(x, again.next()[1]) for x in a)
    assert not torch.equal(a[0], other.next()[1])
    assert not torch.equal(torch.cat(a[:2]), torch.cat(a[2:]))  # epoch 1 draws new stacks


def test_a_restored_source_draws_what_the_original_would_have(digits_root):
    source = stacked(digits_root, stacks=24)
    for _ in range(2):
        source.next()
    state = source.state_dict()
    expected = [source.next()[0] for _ in range(4)]  # crosses into the next epoch
    resumed = stacked(digits_root, stacks=24)
    resumed.load_state_dict(state)
    assert all(torch.equal(x, resumed.next()[0]) for x in expected)


def test_shards_of_processes_split_each_epoch(digits_root):
    shards = [stacked(digits_root, stacks=32).shard(rank, 2) for rank in range(2)]
    whole = stacked(digits_root, stacks=32, batch_size=32).next()[1]
    parts = [torch.cat([s.next()[1] for _ in range(2)]) for s in shards]
    assert sorted(torch.cat(parts).tolist()) == sorted(whole.tolist())


def test_missing_files_and_bad_stacks_are_one_line(tmp_path, digits_root):
    with pytest.raises(UserError) as err:
        stacked(tmp_path)
    assert "stacked_mnist" in one_line(err) and "MNIST/raw" in one_line(err)
    with pytest.raises(UserError) as err:
        stacked(digits_root, stacks=0)
    assert "dataset.stacks" in one_line(err)


# --- the mode metric ------------------------------------------------------------------------------


def test_mode_coverage_on_hand_made_histograms():
    uniform = mode_coverage(np.arange(26_000) % 1000, 1000)
    assert uniform["modes"] == 1000 and uniform["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    one = mode_coverage(np.full(500, 7), 1000)
    assert one["modes"] == 1 and one["reverse_kl"] == pytest.approx(math.log(1000))
    half = mode_coverage(np.arange(1000) % 500, 1000)  # 500 modes, evenly: KL = log 2
    assert half["modes"] == 500 and half["reverse_kl"] == pytest.approx(math.log(2))


def test_stacked_kl_splits_into_channels_and_what_joins_them():
    every = np.arange(26_000) % 1000  # every triple alike: nothing to split
    split = stacked_channels(every)
    assert split["channel_kl"] == pytest.approx([0, 0, 0], abs=1e-12)
    assert split["between_channels_kl"] == pytest.approx(0, abs=1e-12)
    assert split["digit_shares"] == [[0.1] * 10] * 3
    red_seven = 700 + np.arange(1000) % 100  # red always 7, green and blue even and independent
    split = stacked_channels(red_seven)
    assert split["channel_kl"] == pytest.approx([math.log(10), 0, 0])
    assert split["between_channels_kl"] == pytest.approx(0, abs=1e-12)
    assert split["digit_shares"][0][7] == 1.0
    same = np.repeat(np.arange(10) * 111, 50)  # 000, 111, ..., 999: each channel even, all three equal
    split = stacked_channels(same)
    assert split["channel_kl"] == pytest.approx([0, 0, 0], abs=1e-12)
    assert split["between_channels_kl"] == pytest.approx(math.log(100)) == mode_coverage(same, 1000)["reverse_kl"]
    rng = np.random.default_rng(0)  # any histogram: the parts add up to the whole
    drawn = rng.choice(1000, 5000, p=rng.dirichlet(np.ones(1000)))
    split = stacked_channels(drawn)
    assert sum(split["channel_kl"]) + split["between_channels_kl"] == \
        pytest.approx(mode_coverage(drawn, 1000)["reverse_kl"])
    with pytest.raises(ValueError):
        stacked_channels(np.array([1000]))


class _FixedDigits:
    """A digit backbone whose answer is the image's mean brightness bucket, for checking the joint reading."""

    def features(self, images):
        digit = (images.float().mean((1, 2, 3)) / 25.6).long().clamp(0, 9)
        probs = F.one_hot(digit, 10).double() * 0.9 + 0.01
        return digit.double()[:, None].numpy(), probs.numpy()


def test_the_stacked_backbone_reads_each_channel_and_multiplies_their_probabilities():
    backbone = StackedClassifierBackbone.__new__(StackedClassifierBackbone)
    backbone.digit = _FixedDigits()
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    images[0, 0], images[0, 1], images[0, 2] = 30, 60, 250  # digits 1, 2, 9
    images[1, 0], images[1, 2] = 200, 100  # digits 7, 0, 3
    features, probs = backbone.features(images)
    assert features.shape == (2, 3) and probs.shape == (2, 1000)
    assert probs.argmax(1).tolist() == [129, 703]
    assert probs.sum(1) == pytest.approx([1.0, 1.0])


# --- PacGAN packing -------------------------------------------------------------------------------


def test_a_packed_d_scores_consecutive_samples_stacked_along_channels():
    D = registry.build("discriminator", {"name": "mlp", "hidden": [8], "pack": 3}, shape=(2,))
    assert isinstance(D, Packed) and D.net.shape == (6,)  # the wrapped D sees 3 points at once
    x = torch.randn(6, 2)
    assert torch.equal(D(x), D.net(x.reshape(2, 6)))
    images = torch.randn(4, 1, 16, 16)
    conv = registry.build("discriminator", {"name": "dcgan", "width": 4, "pack": 2}, shape=(1, 16, 16))
    assert conv(images).shape[0] == 2
    assert torch.equal(conv(images), conv.net(torch.cat([images[0::2], images[1::2]], 1)))
    with pytest.raises(UserError):
        conv(images[:3])
    unpacked = registry.build("discriminator", {"name": "dcgan", "width": 4, "pack": 1}, shape=(1, 16, 16))
    assert not isinstance(unpacked, Packed)  # pack=1 leaves D (and its checkpoints) as they were


def test_packed_real_and_fake_batches_reach_the_loss_alike():
    cfg = tiny_config("model=wgan_gp", "dataset=digits", "discriminator.pack=2")
    c = OmegaConf.to_container(cfg, resolve=True)
    data = build.data(c, CPU, batch_size=8)
    game = build.game(c, data, CPU)
    seen = {}
    original = game.objective.d_loss
    game.objective.d_loss = lambda real, fake: seen.update(real=real.shape, fake=fake.shape) or original(real, fake)
    nets = type("Nets", (dict,), {"plain": lambda self, name: self[name]})(game.nets)
    game.loss(game.players()[0], data.next(), nets, step=1)
    assert seen["real"] == seen["fake"] and seen["real"][0] == 4  # 8 samples, 4 packed scores a side
    # The gradient penalty is taken per packed input of D: 4 norms, not 8.
    norms = losses.input_gradient_norm(game.nets["D"], data.next()[0], create_graph=False)
    assert norms.shape == (4,)


@pytest.mark.parametrize("overrides, message", [
    (("model=cgan", "dataset=digits", "discriminator.pack=2"), "conditioning=none"),
    (("model=dcgan", "dataset=digits", "discriminator.pack=3"), "multiple of 3"),
    (("model=pix2pix", "discriminator.pack=2"), "leave pack=1"),
    (("model=dcgan", "dataset=digits", "discriminator.pack=0"), "positive integer"),
])
def test_packing_that_cannot_work_is_refused_in_one_line(overrides, message, tmp_path):
    with pytest.raises(UserError) as err:
        train(tiny_config(*overrides), tmp_path)
    assert message in one_line(err)


# --- relativistic losses --------------------------------------------------------------------------


def softplus(v):
    return math.log1p(math.exp(v))


def test_the_relativistic_losses_against_hand_computed_values():
    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 3.0])
    rs = losses.Relativistic()
    assert float(rs.d_loss(real, fake)) == pytest.approx((softplus(-1) + softplus(1)) / 2)
    assert float(rs.g_loss(fake, real)) == pytest.approx((softplus(1) + softplus(-1)) / 2)
    ra = losses.RelativisticAverage()  # mean real 1.5, mean fake 1.5
    d = (softplus(0.5) + softplus(-0.5)) / 2 + (softplus(-1.5) + softplus(1.5)) / 2
    assert float(ra.d_loss(real, fake)) == pytest.approx(d)
    g = (softplus(1.5) + softplus(-1.5)) / 2 + (softplus(-0.5) + softplus(0.5)) / 2
    assert float(ra.g_loss(fake, real)) == pytest.approx(g)
    # The fakes' scores count for G only through D(fake) - D(real): raising them lowers G's loss.
    assert float(rs.g_loss(fake + 1, real)) < float(rs.g_loss(fake, real))


def test_r2_is_the_zero_centred_penalty_on_the_fakes_and_the_weights_follow_a_cosine():
    def D(x):  # ||grad|| = 2 ||x||
        return x.square().sum(1)

    real, fake = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    loss = losses.Relativistic(r1_gamma=2.0, r2_gamma=4.0)
    total = loss.penalty(D, real, fake)
    assert float(loss.last["penalty/r1"]) == pytest.approx(2.0 / 2 * 4.0)  # gamma / 2 * ||2 x_real||^2
    assert float(loss.last["penalty/r2"]) == pytest.approx(4.0 / 2 * 36.0)  # the same on the fake
    assert float(total.detach()) == pytest.approx(4.0 + 72.0)
    assert losses.Relativistic(r2_gamma=0.0).penalty(D, real, fake) is None
    decaying = losses.Relativistic(r1_gamma=1.0, gamma_end_factor=0.1)
    for step, scale in ((1, 1.0), (51, 0.55), (101, 0.1)):
        decaying.at_step(step, 101)
        assert decaying.scale == pytest.approx(scale)


def test_relativistic_losses_refuse_games_without_real_scores_for_g(tmp_path):
    with pytest.raises(UserError) as err:
        train(tiny_config("model=cyclegan", "loss=relativistic"), tmp_path)
    assert "z -> x games" in one_line(err)


# --- training and scoring -------------------------------------------------------------------------


def crashed_and_resumed(tmp_path, keys, steps) -> list[str]:
    """What differs between a straight run of `steps` steps and one cut short at step 2 (its checkpoint),
    as a crash would, then resumed to the end."""
    train(tiny_config(*keys, f"trainer.steps={steps}"), tmp_path / "straight")
    split = tmp_path / "split"
    train(tiny_config(*keys, f"trainer.steps={steps}", "trainer.ckpt_every=2"), split)
    shutil.copy(split / "checkpoints" / "step_0000002.pt", split / "checkpoints" / "last.pt")
    resume(split, steps)
    return differences(checkpoint.load(tmp_path / "straight"), checkpoint.load(split))


def test_a_packed_relativistic_run_on_stacked_mnist_resumes_exactly(tmp_path, digits_root):
    keys = ("model=dcgan", "dataset=stacked_mnist", f"dataset.root={digits_root}", "dataset.split=test",
            "dataset.stacks=24", "discriminator.pack=2", "loss=relativistic", "loss.r1_gamma=0.1",
            "loss.r2_gamma=0.1", "loss.gamma_end_factor=0.1")
    assert crashed_and_resumed(tmp_path, keys, 5) == []  # the next epoch starts at step 4


def test_gan_eval_counts_the_modes_of_a_stacked_mnist_checkpoint(tmp_path, digits_root, shared_cache):
    from gan_cli.evaluate import evaluate, parse_args

    run = tmp_path / "run"
    train(tiny_config("model=dcgan", "dataset=stacked_mnist", f"dataset.root={digits_root}", "dataset.split=test",
                      "dataset.stacks=64"), run)
    options = parse_args([f"ckpt={run}", "metrics=[modes]", "num_samples=300", f"cache_dir={shared_cache}",
                          "progress=false"])
    result = evaluate(options)
    m = result["metrics"]
    assert result["classifier_test_accuracy"] > 0.8 and m["modes_total"] == 1000
    # The same count from the digit classifier's own reading of each channel of the same samples.
    loaded = build.load(run, use_ema=True, device=CPU)
    backbone = StackedClassifierBackbone(digit_split(loaded.config["dataset"]), CPU, shared_cache, progress=False)
    images = torch.cat([((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
                        for x in loaded.game.generate(loaded.nets, 300, 0, CPU, 250)])
    digits = [backbone.digit.features(images[:, k:k + 1])[1].argmax(1) for k in range(3)]
    triples = digits[0] * 100 + digits[1] * 10 + digits[2]
    assert m == {**mode_coverage(triples, 1000), **stacked_channels(triples), "modes_total": 1000}
    assert sum(m["channel_kl"]) + m["between_channels_kl"] == pytest.approx(m["reverse_kl"])
    with pytest.raises(UserError) as err:
        evaluate(parse_args([f"ckpt={run}", "metrics=[modes]", "backbone=inception", "progress=false"]))
    assert "backbone=classifier" in one_line(err)


def test_modes_are_refused_where_there_are_none_to_count(tmp_path, shared_cache):
    from gan_cli.evaluate import evaluate, parse_args

    train(tiny_config("model=dcgan", "dataset=digits"), tmp_path)
    with pytest.raises(UserError) as err:
        evaluate(parse_args([f"ckpt={tmp_path}", "metrics=[modes]", f"cache_dir={shared_cache}", "progress=false"]))
    assert "Stacked MNIST" in one_line(err)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist-t10k").is_dir(), reason="needs the MNIST test files")
def test_the_digit_classifier_reads_real_mnist_at_98_percent_or_better(tmp_path):
    node = {"name": "stacked_mnist", "root": str(SHARED_DATA / "mnist-t10k"), "split": "test", "resolution": 32}
    backbone = StackedClassifierBackbone(digit_split(node), CPU, tmp_path, progress=False)
    assert backbone.accuracy >= 0.98


# --- R3GAN ----------------------------------------------------------------------------------------


def test_a_fresh_r3gan_block_is_the_identity_and_keeps_its_shape():
    from gan_cli.models.r3gan import Block

    block = Block(16, expansion=2, groups=4, total_blocks=6)
    x = torch.randn(3, 16, 8, 8)
    assert torch.equal(block(x), x)
    assert block.spatial.groups == 4 and block.expand.out_channels == 32 and block.shrink.in_channels == 32
    # The widening layers are drawn with the leaky ReLU's gain scaled by L^(-1/4) (L = 6 blocks in the net).
    fan_in = block.spatial.weight[0].numel()
    expected = math.sqrt(2 / 1.04) * 6 ** -0.25 / math.sqrt(fan_in)
    assert float(block.spatial.weight.detach().std()) == pytest.approx(expected, rel=0.1)
    with torch.no_grad():
        block.shrink.weight.normal_()
    assert block(x).shape == x.shape and not torch.equal(block(x), x)


def test_r3gan_resampling_is_filtered_and_keeps_a_flat_image_flat():
    from gan_cli.models.r3gan import Downsample, Upsample

    flat = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(Upsample(2)(flat)[..., 1:-1, 1:-1], torch.full((1, 2, 14, 14), 3.0))
    assert Upsample(2)(flat).shape == (1, 2, 16, 16)
    assert torch.allclose(Downsample(2)(flat), torch.full((1, 2, 4, 4), 3.0))
    # A one-pixel checkerboard (the highest frequency) is filtered out before down-sampling.
    board = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1
    assert Downsample(1)(board.view(1, 1, 8, 8))[..., 1:, 1:].abs().max() < 1e-6


@pytest.mark.parametrize("side", [16, 32])
def test_r3gan_nets_at_each_size_with_and_without_labels(side):
    G = registry.build("generator", {"name": "r3gan", "width": 8, "groups": 4}, shape=(3, side, side))
    D = registry.build("discriminator", {"name": "r3gan", "width": 8, "groups": 4}, shape=(3, side, side))
    assert len(G.stages) == len(D.stages) == int(math.log2(side // 4)) + 1
    x = G(torch.randn(5, 64))
    assert x.shape == (5, 3, side, side) and D(x).shape == (5,)
    Gc = registry.build("generator", {"name": "r3gan", "width": 8, "groups": 4}, shape=(1, side, side),
                        num_classes=10, class_input="cbn")
    Dc = registry.build("discriminator", {"name": "r3gan", "width": 8, "groups": 4}, shape=(1, side, side),
                        num_classes=10, class_input="projection")
    labels = torch.arange(5)
    assert Dc(Gc(torch.randn(5, 64), labels), labels).shape == (5,)
    with pytest.raises(UserError) as err:
        registry.build("discriminator", {"name": "r3gan", "width": 8, "groups": 3}, shape=(1, side, side))
    assert "must divide" in one_line(err)


def test_r3gan_widths_per_stage_from_4x4_up():
    widths = [16, 8, 8, 4]  # 4x4, 8x8, 16x16, 32x32
    G = registry.build("generator", {"name": "r3gan", "width": widths, "groups": 4}, shape=(3, 32, 32))
    D = registry.build("discriminator", {"name": "r3gan", "width": widths, "groups": 4}, shape=(3, 32, 32))
    assert [stage[0].expand.in_channels for stage in G.stages] == widths
    assert [stage[0].expand.in_channels for stage in D.stages] == widths[::-1]  # D walks from the image down
    assert G.basis.shape == (16, 4, 4) and G.to_image.in_channels == 4
    assert D.from_image.out_channels == 4 and D.basis.in_channels == 16 and D.to_score.in_features == 16
    # Only where the width changes is there a 1x1 conv (16 -> 8, 8 -> 4 in G; 4 -> 8, 8 -> 16 in D).
    assert [len(up) for up in G.ups] == [2, 1, 2] and [len(down) for down in D.downs] == [2, 1, 2]
    x = G(torch.randn(5, 64))
    assert x.shape == (5, 3, 32, 32) and D(x).shape == (5,)
    # One number and the same number per stage build the same net, draw for draw.
    torch.manual_seed(0)
    one = registry.build("discriminator", {"name": "r3gan", "width": 8, "groups": 4}, shape=(3, 16, 16))
    torch.manual_seed(0)
    listed = registry.build("discriminator", {"name": "r3gan", "width": [8, 8, 8], "groups": 4}, shape=(3, 16, 16))
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), listed.state_dict().values()))
    for width, words in (([8, 8], "lists 2 widths, but 32x32 images have 4 stages (4, 8, 16, 32)"),
                         ([8, 0, 8, 8], "must be a positive integer or a list of them"),
                         ([8, 6, 8, 8], "must divide the blocks' inner width, width x expansion = 12")):
        with pytest.raises(UserError) as err:
            registry.build("generator", {"name": "r3gan", "width": width, "groups": 8}, shape=(3, 32, 32))
        assert words in one_line(err)


def test_decay_to_and_beta2_end_follow_the_rate_curve():
    from gan_cli.schedules import LRSchedule

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4, betas=(0.0, 0.9))
    schedule = LRSchedule(opt, "cosine", total=11, decay_to=0.25, beta2_end=0.99)
    seen = []
    for step in (1, 6, 11):
        schedule.step(step)
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
    for (lr, betas), step in zip(seen, (1, 6, 11)):
        decay = 0.5 * (1 + math.cos(math.pi * (step - 1) / 11))  # the cosine's factor, 1 at the first update
        assert lr == pytest.approx(2e-4 * (0.25 + 0.75 * decay))
        assert betas == (0.0, pytest.approx(0.9 + 0.09 * (1 - decay)))
    assert seen[0][0] == pytest.approx(2e-4) and 5e-5 < seen[2][0] < 5.5e-5 and seen[2][1][1] > 0.988
    with pytest.raises(UserError):
        LRSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), "cosine", 10, beta2_end=0.99)


def test_an_r3gan_run_resumes_exactly_through_its_schedules(tmp_path):
    keys = ("model=r3gan", "dataset=digits", "trainer.log_every=1")
    assert crashed_and_resumed(tmp_path, keys, 4) == []
