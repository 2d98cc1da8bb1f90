"""Pix2Pix and CycleGAN: both layouts of paired data, unpaired data, the demos, the history pool, the losses
on hand-made tensors, training steps and exact resume."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gan_cli import UserError, checkpoint
from gan_cli.data.translation import paired, unpaired
from gan_cli.games import Nets
from gan_cli.games.translation import ImagePool
from gan_cli.train import train
from tests.conftest import tiny_config
from tests.test_games import differences, resume

CPU = dict(device=torch.device("cpu"), seed=0, num_workers=0)


def save(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_pairs(root, layout, count=6, side=35, seed=0):
    """Pairs whose B is the negative of A (255 - A), in one of pix2pix's layouts."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for i in range(count if split == "train" else 3):
            a = rng.integers(0, 256, (side, side), dtype=np.uint8)
            b = 255 - a
            if layout == "AB":
                save(np.concatenate([a, b], axis=1), root / split / f"{i}.png")
            elif layout == "split/A":
                save(a, root / split / "A" / f"{i}.png")
                save(b, root / split / "B" / f"{i}.png")
            else:  # A/split
                save(a, root / "A" / split / f"{i}.png")
                save(b, root / "B" / split / f"{i}.png")
    return root


@pytest.mark.parametrize("layout", ["AB", "split/A", "A/split"])
def test_both_paired_layouts_load_aligned_pairs_with_one_crop_and_flip(layout, tmp_path):
    root = write_pairs(tmp_path / "pairs", layout)
    data = paired(root, batch_size=4, **CPU)  # held at 35 (32 x 286 / 256), cropped to 32
    assert data.shape_a == data.shape_b == (1, 32, 32) and len(data) == 6 and data.paired
    for _ in range(3):
        a, b, labels_a, labels_b = data.next()
        assert a.shape == (4, 1, 32, 32) and torch.allclose(b, -a, atol=1e-6)  # the same crop and flip on both sides
        assert labels_a is None and labels_b is None
    test = data.test()
    assert test["A"].shape == (3, 1, 32, 32)
    swapped = paired(root, direction="BtoA", batch_size=4, **CPU)
    a, b, *_ = swapped.next()
    assert torch.allclose(b, -a, atol=1e-6) and torch.equal(swapped.test()["A"], test["B"])


def test_large_paired_sets_stream_from_disk_still_aligned(tmp_path):
    root = write_pairs(tmp_path / "pairs", "split/A")
    data = paired(root, max_memory_mb=0, batch_size=2, direction="BtoA", **CPU)
    assert type(data.sources[0].base).__name__ == "StreamBatches"
    for _ in range(4):  # across an epoch
        a, b, *_ = data.next()
        assert a.shape == (2, 1, 32, 32) and torch.allclose(b, -a, atol=1e-6)


def test_the_jitter_crops_and_flips_and_is_off_when_asked(tmp_path):
    root = write_pairs(tmp_path / "pairs", "AB")
    batches = [paired(root, batch_size=6, **CPU).next()[0] for _ in range(2)]
    assert torch.equal(batches[0], batches[1])  # seeded
    other = paired(root, batch_size=6, device=torch.device("cpu"), seed=1, num_workers=0).next()[0]
    assert not torch.equal(other, batches[0])
    plain = paired(root, batch_size=6, jitter=False, load_size=32, **CPU)
    a, *_ = plain.next()
    files = sorted((root / "train").glob("*.png"))
    lefts = {np.asarray(Image.open(f))[:32 + 2, :36][2:34, 2:34].tobytes() for f in files}
    assert len(lefts) == 6 and a.shape == (6, 1, 32, 32)


def test_paired_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no pairs under .*nowhere; expected one of: <root>/<split>/A/"):
        paired(tmp_path / "nowhere", batch_size=1, **CPU)
    root = write_pairs(tmp_path / "pairs", "split/A")
    (root / "train" / "B" / "0.png").rename(root / "train" / "B" / "zero.png")
    with pytest.raises(UserError, match="has no image named like 0.png"):
        paired(root, batch_size=1, **CPU)
    with pytest.raises(UserError, match="crop_size must be a power of two"):
        paired(root, crop_size=48, batch_size=1, **CPU)


def test_unpaired_sides_are_drawn_independently_with_labels_where_they_have_classes(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("zero", "one"):
        for i in range(4):
            save(rng.integers(0, 256, (40, 40), dtype=np.uint8), tmp_path / "u" / "trainA" / cls / f"{i}.png")
    for i in range(5):
        save(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), tmp_path / "u" / "trainB" / f"{i}.png")
        save(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), tmp_path / "u" / "testB" / f"{i}.png")
    data = unpaired(tmp_path / "u", batch_size=4, **CPU)
    assert data.shape_a == (1, 32, 32) and data.shape_b == (3, 32, 32) and not data.paired
    a, b, labels_a, labels_b = data.next()
    assert a.shape == (4, 1, 32, 32) and b.shape == (4, 3, 32, 32)
    assert set(labels_a.tolist()) <= {0, 1} and labels_b is None
    test = data.test()
    assert test["A"].shape == (8, 1, 32, 32) and test["B"].shape == (5, 3, 32, 32)  # no testA: trainA's images
    with pytest.raises(UserError, match="needs trainA/ and trainB/"):
        unpaired(tmp_path / "nowhere", batch_size=4, **CPU)


def test_the_demos_need_nothing_and_carry_the_digit_labels():
    p = paired(batch_size=8, **CPU)
    a, b, labels, same = p.next()
    assert a.shape == b.shape == (8, 1, 32, 32) and labels is same and p.num_classes == 10
    assert set(a.unique().tolist()) <= {-1.0, 1.0}  # edge maps are binary
    u = unpaired(batch_size=8, **CPU)
    a, b, labels_a, labels_b = u.next()
    assert labels_a is not None and labels_b is not None and u.test()["labels_B"] is not None
    assert len(p.test()["A"]) == len(u.test()["A"]) == 269  # 15 % of the 1,797 digits held out


def test_the_photo_demo_blends_other_digits_into_photo_patches(monkeypatch):
    import types

    import sklearn.datasets

    from gan_cli.data.translation import digit_images, photo_digits

    u = unpaired(batch_size=8, demo="photo", **CPU)
    a, b, labels_a, labels_b = u.next()
    assert a.shape == b.shape == (8, 3, 32, 32) and "digits on photos" in u.name
    assert torch.equal(a[:, 0], a[:, 1])  # the handwritten side is grey, in three channels
    assert (b[:, 0] - b[:, 1]).abs().mean() > 0.05  # the other side is in colour
    # MNIST-M's recipe by hand, on a photo of one colour: |colour - digit| per channel.
    flat = np.empty((50, 60, 3), dtype=np.uint8)
    flat[:] = (10, 100, 200)
    monkeypatch.setattr(sklearn.datasets, "load_sample_images", lambda: types.SimpleNamespace(images=[flat]))
    grey, coloured, labels = photo_digits.__wrapped__(32)
    digits = digit_images(32)[0].to(torch.int16)
    expected = (torch.tensor([10, 100, 200], dtype=torch.int16)[None, :, None, None] - digits).abs()
    assert torch.equal(grey, digit_images(32)[0]) and torch.equal(coloured.to(torch.int16), expected)
    # The two sides hold different digits: 1,797 split in halves, each split 85/15 into train and test.
    assert len(u.sources[0]) + len(u.sources[1]) == 1797 - len(u.test()["A"]) - len(u.test()["B"])
    with pytest.raises(UserError, match="unknown dataset.demo 'maps'"):
        unpaired(batch_size=8, demo="maps", **CPU)


def test_the_pool_passes_new_fakes_until_full_then_swaps_half_of_them():
    pool = ImagePool(3, seed=0)
    first = torch.arange(3.0).view(3, 1)
    assert torch.equal(pool.query(first), first)  # filling up: passed on as they are
    seen = set(range(3))
    for k in range(1, 40):
        batch = (torch.arange(2.0) + 10 * k).view(2, 1)
        out = pool.query(batch)
        seen |= set(batch.flatten().tolist())
        assert set(out.flatten().tolist()) <= seen and len(pool.images) == 3
    stored = {float(x) for x in pool.images}
    assert stored != {0.0, 1.0, 2.0}  # new fakes went in
    # Half of the later fakes came back as older ones: with a seeded generator the share is fixed.
    again, swapped = ImagePool(3, seed=0), 0
    again.query(first)
    for k in range(1, 201):
        batch = torch.tensor([[1000.0 + k]])
        swapped += int(again.query(batch).item() != batch.item())
    assert 80 <= swapped <= 120
    # The state carries on exactly.
    state = pool.state_dict()
    copy = ImagePool(3, seed=5)
    copy.load_state_dict(state, torch.device("cpu"))
    batch = torch.tensor([[7.0], [8.0]])
    assert torch.equal(copy.query(batch.clone()), pool.query(batch.clone()))
    assert torch.equal(ImagePool(0, seed=0).query(batch), batch)


class Shift(nn.Module):
    def __init__(self, by):
        super().__init__()
        self.by = by

    def forward(self, x):
        return x + self.by


class Ones(nn.Module):
    def forward(self, x):
        return torch.ones(len(x), 1, 2, 2)


def test_cycle_and_identity_losses_on_hand_made_tensors():
    from omegaconf import OmegaConf

    from gan_cli import build

    c = OmegaConf.to_container(tiny_config("model=cyclegan"))
    data = build.data(c, torch.device("cpu"), batch_size=2)
    game = build.game(c, data, torch.device("cpu"))
    nets = {"G_AB": Shift(0.5), "G_BA": Shift(-0.25), "D_A": Ones(), "D_B": Ones()}
    a, b = torch.zeros(2, 1, 32, 32), torch.full((2, 1, 32, 32), 0.3)
    player = {p.name: p for p in game.players()}
    loss, stats = game.loss(player["G"], (a, b, None, None), Nets(nets, nets), 1)
    # LSGAN's G term is 0 when D says 1; cycles: |(a + 0.5 - 0.25) - a| = |(b - 0.25 + 0.5) - b| = 0.25;
    # identities: |G_BA(a) - a| = 0.25, |G_AB(b) - b| = 0.5. 10 x (0.25 + 0.25) + 0.5 x 10 x (0.25 + 0.5) = 8.75.
    assert float(stats["G/cycle_A"]) == pytest.approx(0.25) and float(stats["G/identity_B"]) == pytest.approx(0.5)
    assert float(loss) == pytest.approx(8.75)
    d_loss, _ = game.loss(player["D"], (a, b, None, None), Nets(nets, nets), 1)
    # D says 1 to everything: 0.5 x (0 + 0.5 x 1) for each D = 0.25 each.
    assert float(d_loss) == pytest.approx(0.5)


def test_cycle_noise_reaches_the_cycle_and_nothing_else():
    from omegaconf import OmegaConf

    from gan_cli import build

    c = OmegaConf.to_container(tiny_config("model=cyclegan", "game.cycle_noise=0.2"))
    data = build.data(c, torch.device("cpu"), batch_size=2)
    game = build.game(c, data, torch.device("cpu"))
    nets = {"G_AB": Shift(0.0), "G_BA": Shift(0.0), "D_A": Ones(), "D_B": Ones()}
    a, b = torch.zeros(64, 1, 32, 32), torch.full((64, 1, 32, 32), 0.3)
    player = {p.name: p for p in game.players()}
    torch.manual_seed(0)
    _, stats = game.loss(player["G"], (a, b, None, None), Nets(nets, nets), 1)
    # Identity Gs undo nothing but the noise: the cycle's error is E|N(0, 0.2^2)| = 0.2 sqrt(2 / pi) = 0.160.
    assert float(stats["G/cycle_A"]) == pytest.approx(0.2 * np.sqrt(2 / np.pi), rel=0.02)
    assert float(stats["G/cycle_B"]) == pytest.approx(0.2 * np.sqrt(2 / np.pi), rel=0.02)
    assert float(stats["G/identity_A"]) == 0.0 and float(stats["G/identity_B"]) == 0.0
    fake_a, fake_b = game._fakes  # D judges the translations themselves, without the noise
    assert torch.equal(fake_a, b) and torch.equal(fake_b, a)
    with pytest.raises(UserError, match="cycle_noise"):
        build.game(OmegaConf.to_container(tiny_config("model=cyclegan", "game.cycle_noise=-1")), data,
                   torch.device("cpu"))


def test_pix2pix_adds_lambda_l1_to_the_cgan_loss():
    from omegaconf import OmegaConf

    from gan_cli import build

    c = OmegaConf.to_container(tiny_config("model=pix2pix"))
    data = build.data(c, torch.device("cpu"), batch_size=2)
    game = build.game(c, data, torch.device("cpu"))
    seen = []

    class D(nn.Module):
        def forward(self, x):
            seen.append(x.shape[1])
            return torch.zeros(len(x), 1, 2, 2)  # logits 0: probability 1/2

    nets = {"G": Shift(0.5), "D": D()}
    a, b = torch.zeros(2, 1, 32, 32), torch.full((2, 1, 32, 32), 0.1)
    player = {p.name: p for p in game.players()}
    d_loss, _ = game.loss(player["D"], (a, b, None, None), Nets(nets, nets), 1)
    loss, stats = game.loss(player["G"], (a, b, None, None), Nets(nets, nets), 1)
    assert seen == [2, 2, 2]  # D sees the input beside the output
    assert float(d_loss) == pytest.approx(0.5 * 2 * np.log(2))
    assert float(stats["G/l1"]) == pytest.approx(0.4)
    assert float(loss) == pytest.approx(np.log(2) + 100 * 0.4)


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_a_translation_run_split_and_resumed_equals_a_straight_one_pool_included(model, tmp_path):
    base = (f"model={model}", "trainer.batch_size=4", "trainer.steps=4") + (("game.pool_size=3",) if model == "cyclegan"
                                                                          else ())
    train(tiny_config(*base, "trainer.sample_every=2"), tmp_path / "straight")
    # Cut short at step 2 (its checkpoint), as a crash would, and resumed: the rate's decay keeps its horizon.
    train(tiny_config(*base, "trainer.ckpt_every=2"), tmp_path / "split")
    shutil.copy(tmp_path / "split" / "checkpoints" / "step_0000002.pt", tmp_path / "split" / "checkpoints" / "last.pt")
    resume(tmp_path / "split", 4)
    straight, split = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    assert differences(straight, split) == []
    if model == "cyclegan":
        pools = straight["game_state"]["pools"]
        assert pools["A"]["images"].shape[0] == 3
        for side in "AB":
            assert torch.equal(pools[side]["images"], split["game_state"]["pools"][side]["images"])
    assert (tmp_path / "straight" / "samples" / "step_0000002.png").is_file()


@pytest.mark.parametrize("override,message", [
    (("model=pix2pix", "dataset=digits"), "game pix2pix learns from paired images: set dataset=paired"),
    (("model=cyclegan", "dataset=digits"), "game cyclegan learns from unpaired images"),
    (("model=pix2pix", "conditioning=cgan"), "game pix2pix takes no conditioning"),
    (("model=cyclegan", "dataset.root=nowhere"), "needs trainA/ and trainB/"),
])
def test_translation_mistakes_are_one_line(override, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(tiny_config(*override), tmp_path)


# --- sampling and scoring ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    train(tiny_config("model=pix2pix", "trainer.batch_size=4"), root / "pix2pix")
    train(tiny_config("model=cyclegan", "trainer.batch_size=4"), root / "cyclegan")
    return root


def go(*args):
    from gan_cli.options import parse
    from gan_cli.sample import sample

    return sample(parse([*args, "progress=false"], "sample"))


def test_translate_writes_one_output_per_input_under_its_name_or_a_sheet(runs, tmp_path):
    inputs = tmp_path / "inputs"
    rng = np.random.default_rng(0)
    save(rng.integers(0, 256, (40, 40), dtype=np.uint8), inputs / "cat.png")
    save(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), inputs / "sub" / "dog.jpg")
    (folder,) = go(f"ckpt={runs / 'pix2pix'}", "mode=translate", f"input={inputs}", f"out={tmp_path / 'out'}")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png")) == ["cat.png", "sub/dog.png"]
    assert Image.open(folder / "cat.png").size == (32, 32)
    (sheet,) = go(f"ckpt={runs / 'pix2pix'}", "mode=translate", "sheet=true", "nrow=4", f"out={tmp_path / 'sheet.png'}")
    # The 269 test inputs of the demo, 4 input | output pairs a row: 68 rows of 34-pixel tiles.
    assert Image.open(sheet).size == (8 * 34 + 2, 68 * 34 + 2)
    (back,) = go(f"ckpt={runs / 'cyclegan'}", "mode=translate", "direction=BtoA", f"out={tmp_path / 'back'}")
    assert len(list(back.glob("test*.png"))) == 269
    # The same input gives the same output, batch by batch or alone.
    (one,) = go(f"ckpt={runs / 'pix2pix'}", "mode=translate", f"input={inputs / 'cat.png'}", "batch_size=1",
                f"out={tmp_path / 'one'}")
    assert (one / "cat.png").read_bytes() == (folder / "cat.png").read_bytes()


@pytest.mark.parametrize("args,message", [
    (["mode=grid"], "is a pix2pix checkpoint: it translates images; use mode=translate"),
    (["mode=translate", "direction=BtoA"], "a pix2pix G translates one way"),
    (["mode=translate", "input=nowhere"], "input=nowhere: no such image or folder"),
])
def test_translate_mistakes_are_one_line(runs, args, message):
    with pytest.raises(UserError, match=message):
        go(f"ckpt={runs / 'pix2pix'}", *args)


def test_paired_scores_match_scikit_image_and_numpy():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from gan_cli.metrics.translation import paired_scores

    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 256, (3, 3, 24, 24), dtype=np.uint8))
    fake = (target.int() + torch.from_numpy(rng.integers(-30, 31, (3, 3, 24, 24)))).clamp(0, 255).to(torch.uint8)
    got = paired_scores(fake, target)
    x, y = fake.numpy() / 255.0, target.numpy() / 255.0
    assert got["l1"] == pytest.approx(np.abs(x - y).mean())
    assert got["psnr"] == pytest.approx(np.mean([peak_signal_noise_ratio(b, a, data_range=1.0) for a, b in zip(x, y)]))
    ssim = [structural_similarity(a.transpose(1, 2, 0), b.transpose(1, 2, 0), data_range=1.0, channel_axis=2,
                                  gaussian_weights=True, sigma=1.5, use_sample_covariance=False) for a, b in zip(x, y)]
    assert got["ssim"] == pytest.approx(np.mean(ssim)) and 0 < got["ssim"] < 1
    same = paired_scores(target, target)
    assert same["l1"] == 0 and same["ssim"] == pytest.approx(1.0) and same["psnr"] > 100


def test_gan_eval_scores_translations_by_what_applies(runs, shared_cache):
    from gan_cli import build
    from gan_cli.evaluate import evaluate, output_path, parse_args

    def scored(run, *args):
        return evaluate(parse_args([f"ckpt={runs / run}", f"cache_dir={shared_cache}", "progress=false", *args]))

    paired_result = scored("pix2pix")
    m = paired_result["metrics"]
    assert set(m) == {"l1", "psnr", "ssim", "fid", "kid_mean", "kid_std", "label_preservation"}
    assert 0 <= m["l1"] <= 1 and 0 <= m["label_preservation"] <= 1 and m["fid"] > 0
    assert paired_result["protocol"]["num_fake"] == 269 and paired_result["classifier_test_accuracy"] > 0.8
    cycle_result = scored("cyclegan", "metrics=[fid,label_preservation]")
    cycle = cycle_result["metrics"]
    assert set(cycle) == {"fid", "label_preservation"}
    by_class = cycle_result["label_preservation_by_class"]  # the overall share is their mean, weighted by counts
    counts = np.bincount(build.load(runs / "cyclegan", True, torch.device("cpu")).data.test(None)["labels_A"].numpy())
    assert sorted(by_class) == list(range(10))
    assert cycle["label_preservation"] == pytest.approx(sum(counts[c] * v for c, v in by_class.items()) / counts.sum())
    back = scored("cyclegan", "metrics=[fid,label_preservation]", "direction=BtoA")
    assert "G_BA" in back["protocol"]["fake"] and "test B images" in back["protocol"]["fake"]
    assert set(back["metrics"]) == {"fid", "label_preservation"} and back["metrics"] != cycle
    # G_BA's report is written beside G_AB's, not over it.
    where = {way: output_path(parse_args([f"ckpt={runs / 'cyclegan'}", f"direction={way}"]), result)
             for way, result in (("AtoB", cycle_result), ("BtoA", back))}
    assert where["AtoB"].parent == where["BtoA"].parent and where["AtoB"] != where["BtoA"]
    assert where["BtoA"].name.startswith("eval-classifier-BtoA-step_")
    with pytest.raises(UserError, match="direction=BtoA scores CycleGAN's G_BA"):
        scored("pix2pix", "direction=BtoA")
    with pytest.raises(UserError, match="has no pairs"):
        scored("cyclegan", "metrics=[ssim]")
    with pytest.raises(UserError, match="do not apply to image-to-image checkpoints"):
        scored("cyclegan", "metrics=[is]")


def test_the_joint_judge_reads_digits_in_either_style(runs, shared_cache):
    from gan_cli import build
    from gan_cli.evaluate import evaluate, parse_args
    from gan_cli.metrics.protocol import to_uint8
    from gan_cli.metrics.translation import _joint_preservation

    result = evaluate(parse_args([f"ckpt={runs / 'cyclegan'}", f"cache_dir={shared_cache}", "progress=false",
                                  "metrics=[label_preservation,label_preservation_joint]"]))
    assert set(result["metrics"]) == {"label_preservation", "label_preservation_joint"}
    assert 0 <= result["metrics"]["label_preservation_joint"] <= 1 and result["joint_classifier_test_accuracy"] > 0.9
    # A "translation" that leaves each handwritten digit as it is keeps every digit: the joint classifier
    # (which learnt handwritten digits too) reads nearly all of them, the printed digits' classifier few.
    data = build.load(runs / "cyclegan", True, torch.device("cpu")).data
    test = data.test()
    options = {"cache_dir": shared_cache, "progress": False, "batch_size": 64}
    untouched = _joint_preservation(data, "B", test, to_uint8(test["A"]), options, torch.device("cpu"), {})
    assert untouched > 0.9


def test_pix2pix_with_no_adversarial_weight_is_the_l1_baseline_and_leaves_d_alone(tmp_path):
    train(tiny_config("model=pix2pix", "game.adversarial_weight=0", "trainer.batch_size=4"), tmp_path)
    state = checkpoint.load(tmp_path)
    assert "D" not in {k for k, v in state["optimizers"].items() if v["state"]}  # D's optimizer never stepped
    with pytest.raises(UserError, match="both 0: G would learn nothing"):
        train(tiny_config("model=pix2pix", "game.adversarial_weight=0", "game.l1_weight=0"), tmp_path / "none")


def test_the_fonts_demo_prints_each_digit_in_one_of_many_fonts(monkeypatch):
    import matplotlib

    from gan_cli.data import translation

    images, labels = translation.font_digits.__wrapped__(60, 32, 0, True)
    single, _ = translation.font_digits.__wrapped__(60, 32, 0, False)
    assert images.shape == (60, 1, 32, 32) and torch.equal(labels, torch.arange(60) % 10)
    assert not torch.equal(images, single)  # not Pillow's font
    # Each font draws ten different digits (a font without digit glyphs would draw one box ten times).
    assert len(translation.MATPLOTLIB_FONTS) == 21
    from PIL import ImageDraw, ImageFont

    for path in translation.matplotlib_fonts():
        font = ImageFont.truetype(str(path), 40)
        drawn = set()
        for d in "0123456789":
            canvas = Image.new("L", (48, 48), 0)
            ImageDraw.Draw(canvas).text((4, 0), d, fill=255, font=font)
            drawn.add(canvas.tobytes())
        assert len(drawn) == 10, path.name
    u = unpaired(batch_size=4, demo="fonts", **CPU)
    assert "21 fonts" in u.name and u.next()[1].shape == (4, 1, 32, 32)
    monkeypatch.setattr(matplotlib, "get_data_path", lambda: "/nonexistent")
    with pytest.raises(UserError, match="dataset.demo=fonts: matplotlib's fonts folder"):
        translation.font_digits.__wrapped__(10, 32, 0, True)


# --- CyCADA's semantic consistency -------------------------------------------------------------------


class MeanReader(nn.Module):
    """A hand-made classifier: logits (mean, -mean), so class 0 for bright images and 1 for dark ones."""

    def forward(self, x):
        m = x.mean((1, 2, 3))
        return x.flatten(1), torch.stack([m, -m], 1)


def test_the_semantic_loss_asks_each_translation_for_the_class_read_in_its_source():
    from omegaconf import OmegaConf

    from gan_cli import build

    c = OmegaConf.to_container(tiny_config("model=cycada"))
    data = build.data(c, torch.device("cpu"), batch_size=2)
    game = build.game(c, data, torch.device("cpu"))
    assert "1 x semantic consistency (a classifier of A and B)" in game.describe()
    game.classifier = MeanReader()  # as if trained: the loss reads it and never trains another
    nets = {"G_AB": Shift(0.5), "G_BA": Shift(-0.25), "D_A": Ones(), "D_B": Ones()}
    a, b = torch.full((2, 1, 32, 32), 0.2), torch.full((2, 1, 32, 32), -0.3)
    player = {p.name: p for p in game.players()}
    loss, stats = game.loss(player["G"], (a, b, None, None), Nets(nets, nets), 1)
    # a reads as class 0 and G_AB(a) = 0.7 has logits (0.7, -0.7): CE = log(1 + e^-1.4); b reads as class 1 and
    # G_BA(b) = -0.55 has logits (-0.55, 0.55): CE = log(1 + e^-1.1). The rest is 8.75 as without the term.
    ab, ba = np.log1p(np.exp(-1.4)), np.log1p(np.exp(-1.1))
    assert float(stats["G/semantic_AB"]) == pytest.approx(ab) and float(stats["G/semantic_BA"]) == pytest.approx(ba)
    assert float(loss) == pytest.approx(8.75 + ab + ba)
    # A translation that flips the class costs more: G_AB(a) = a - 0.5 is dark, read as 1 against a's 0.
    flipped = {**nets, "G_AB": Shift(-0.5)}
    _, worse = game.loss(player["G"], (a, b, None, None), Nets(flipped, flipped), 1)
    assert float(worse["G/semantic_AB"]) == pytest.approx(np.log1p(np.exp(0.6)))


def labelled_sides(root, channels_b=1, label_a=True, label_b=True, count=8):
    """An unpaired folder of two classes, bright and dark images, class subfolders where asked."""
    rng = np.random.default_rng(0)
    for side, labelled, channels in (("A", label_a, 1), ("B", label_b, channels_b)):
        for split in ("train", "test"):
            for i in range(count if split == "train" else 4):
                cls = i % 2
                shape = (40, 40) if channels == 1 else (40, 40, channels)
                image = rng.integers(150, 256, shape) if cls == 0 else rng.integers(0, 100, shape)
                folder = root / f"{split}{side}" / (("bright", "dark")[cls] if labelled else "")
                save(image.astype(np.uint8), folder / f"{i}.png")
    return root


def test_a_cycada_run_trains_its_classifier_once_and_resumes_from_the_checkpoints_copy(tmp_path, monkeypatch):
    from gan_cli.games import translation

    root = labelled_sides(tmp_path / "u")
    base = ("model=cycada", f"dataset.root={root}", "trainer.batch_size=4", "trainer.steps=4", "game.pool_size=3")
    train(tiny_config(*base), tmp_path / "straight")
    train(tiny_config(*base, "trainer.ckpt_every=2"), tmp_path / "split")
    shutil.copy(tmp_path / "split" / "checkpoints" / "step_0000002.pt", tmp_path / "split" / "checkpoints" / "last.pt")

    def no_second_training(*args, **kwargs):
        raise AssertionError("a resumed run reads the semantic classifier from its checkpoint")

    monkeypatch.setattr(translation, "train_semantic_classifier", no_second_training)
    resume(tmp_path / "split", 4)
    straight, split = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    assert differences(straight, split) == []
    kept = straight["game_state"]["semantic"]
    assert kept["classes"] == 2 and kept["channels"] == 1
    for key, value in kept["model"].items():
        assert torch.equal(value, split["game_state"]["semantic"]["model"][key])


@pytest.mark.parametrize("sides,override,message", [
    (dict(label_a=False, label_b=False), (), "either side of unpaired .* has none"),
    (dict(label_a=False), ("game.semantic_source_only=true",), "side A of unpaired .* has none"),
    (dict(channels_b=3), ("game.identity_weight=0",), "needs as many channels on both"),
    ({}, ("game.semantic_weight=-1",), "game.semantic_weight must be a number >= 0"),
    ({}, ("game.semantic_source_only=1",), "game.semantic_source_only must be true or false"),
])
def test_semantic_consistency_mistakes_are_one_line(sides, override, message, tmp_path):
    from omegaconf import OmegaConf

    from gan_cli import build
    from tests.conftest import one_line

    root = labelled_sides(tmp_path / "u", **sides)
    c = OmegaConf.to_container(tiny_config("model=cycada", f"dataset.root={root}", "trainer.batch_size=4", *override))
    data = build.data(c, torch.device("cpu"), batch_size=4)
    with pytest.raises(UserError, match=message) as err:
        build.game(c, data, torch.device("cpu"))
    one_line(err)


def test_the_semantic_classifier_learns_only_side_a_when_asked(tmp_path):
    from omegaconf import OmegaConf

    from gan_cli import build
    from gan_cli.games.translation import train_semantic_classifier

    root = labelled_sides(tmp_path / "u", label_b=False)
    c = OmegaConf.to_container(tiny_config("model=cycada", f"dataset.root={root}", "trainer.batch_size=4"))
    data = build.data(c, torch.device("cpu"), batch_size=4)
    game = build.game(c, data, torch.device("cpu"))
    assert game.semantic_sides == ("A",)  # B has no labels: the classifier of the source, as CyCADA's
    net = train_semantic_classifier(data, game.semantic_sides, torch.device("cpu"))
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    test = data.test()
    _, logits = net(test["A"])
    assert (logits.argmax(1) == test["labels_A"]).float().mean() == 1.0  # bright against dark is easy
