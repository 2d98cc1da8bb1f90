"""Super-resolution: the data (digits, the photo demo, folders), the game's presets, init_from, exact
resume, and the upscale and eval paths."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gan_cli import UserError, build, checkpoint
from gan_cli.data.superres import low_resolution, quantise, superres
from gan_cli.evaluate import evaluate, parse_args
from gan_cli.metrics.superres import downscale, psnr_y, upscale_bicubic
from gan_cli.sample import sample
from gan_cli.options import parse as parse_options
from gan_cli.train import train
from tests.conftest import tiny_config
from tests.test_games import differences, resume

CPU = dict(device=torch.device("cpu"), seed=0, num_workers=0)
DIGITS = ("dataset.source=digits", "trainer.batch_size=4")


def photo(seed, size):
    """A smooth random colour image (w x h): upscaling has something to get right."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size[0] + 8, size[1] + 8), Image.BICUBIC).crop((0, 0, *size))


def test_digit_batches_are_hr_crops_and_their_8bit_bicubic_downscales():
    data = superres("digits", batch_size=4, **CPU)
    assert data.shape == (1, 32, 32) and data.shape_lr == (1, 8, 8) and data.num_classes == 10
    lr, hr, labels = data.next()
    assert lr.shape == (4, 1, 8, 8) and hr.shape == (4, 1, 32, 32) and labels.shape == (4,)
    assert torch.equal(lr, quantise(downscale(hr, 4)))
    levels = (lr + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # 8-bit levels, as a stored image
    test = data.test()
    assert len(test["hr"]) == 269 and test["hr"][0].shape == (1, 1, 32, 32) and test["lr"][0].shape == (1, 1, 8, 8)
    assert len(data.sources[0]) + 269 == 1797  # the held-out digits are not trained on
    assert superres("digits", scale=2, batch_size=4, **CPU).next()[0].shape == (4, 1, 16, 16)


def test_the_photo_demo_crops_five_photos_and_holds_two_out_whole():
    data = superres(batch_size=6, **CPU)  # more crops than photos: each epoch goes round them twice
    lr, hr, labels = data.next()
    assert hr.shape == (6, 3, 96, 96) and lr.shape == (6, 3, 24, 24) and labels is None
    sizes = [tuple(x.shape[-2:]) for x in data.test()["hr"]]
    assert sizes == [(300, 448), (424, 640)]  # chelsea 300x451 and flower 427x640, trimmed to multiples of 4
    again = superres(batch_size=6, **CPU).next()[1]
    assert torch.equal(hr, again)  # seeded


def test_a_folder_splits_train_and_test_or_holds_a_tenth_out(tmp_path):
    root = tmp_path / "photos"
    for i in range(10):
        (root / "train").mkdir(parents=True, exist_ok=True)
        photo(i, (40 + i, 36)).save(root / "train" / f"{i}.png")
    (root / "test").mkdir()
    photo(99, (50, 45)).save(root / "test" / "x.jpg")
    data = superres("folder", root, crop_size=32, batch_size=3, **CPU)
    assert len(data.sources[0]) == 10 and [tuple(x.shape) for x in data.test_images] == [(3, 44, 48)]
    assert data.next()[1].shape == (3, 3, 32, 32)
    flat = tmp_path / "flat"
    for i in range(10):
        flat.mkdir(exist_ok=True)
        Image.fromarray(np.full((40, 40), 20 * i, np.uint8)).save(flat / f"{i}.png")
    held = superres("folder", flat, crop_size=32, test_crop=32, batch_size=2, **CPU)
    assert len(held.sources[0]) == 9 and len(held.test_images) == 1 and held.channels == 1
    assert held.test_images[0].shape == (1, 32, 32)


@pytest.mark.parametrize("kwargs,message", [
    (dict(source="folder"), "source=folder needs dataset.root"),
    (dict(source="folder", root="nowhere"), "nowhere is not a folder"),
    (dict(source="imagenet"), "unknown dataset.source 'imagenet'"),
    (dict(source="digits", scale=3), "dataset.scale must be 2, 4 or 8"),
    (dict(source="digits", crop_size=24), "crop_size must be a multiple of 16"),
    (dict(source="digits", crop_size=32, resolution=16), "resolution must be at least crop_size=32"),
    (dict(crop_size=512), "smaller than dataset.crop_size=512"),
])
def test_bad_data_options_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        superres(**kwargs, batch_size=2, **CPU)


@pytest.mark.parametrize("model", ["srresnet", "srgan"])
def test_an_sr_run_split_and_resumed_equals_a_straight_one(model, tmp_path):
    base = (f"model={model}", *DIGITS, "trainer.steps=4")
    train(tiny_config(*base, "trainer.sample_every=2"), tmp_path / "straight")
    train(tiny_config(*base, "trainer.ckpt_every=2"), tmp_path / "split")
    shutil.copy(tmp_path / "split" / "checkpoints" / "step_0000002.pt", tmp_path / "split" / "checkpoints" / "last.pt")
    resume(tmp_path / "split", 4)
    straight, split = checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")
    assert differences(straight, split) == []
    assert set(straight["nets"]) == ({"G"} if model == "srresnet" else {"G", "D"})
    assert (tmp_path / "straight" / "samples" / "step_0000002.png").is_file()


def test_srgan_starts_from_an_srresnet_run_with_init_from(tmp_path):
    train(tiny_config("model=srresnet", *DIGITS), tmp_path / "pre")
    pre = checkpoint.load(tmp_path / "pre")["nets"]["G"]
    # lr 0: the step changes no weight, so the run's G is the checkpoint's.
    train(tiny_config("model=srgan", *DIGITS, f"init_from={tmp_path / 'pre'}", "optimizer.lr=0", "trainer.steps=1"),
          tmp_path / "gan")
    state = checkpoint.load(tmp_path / "gan")
    assert state["step"] == 1 and set(pre) == set(state["nets"]["G"])
    assert all(torch.equal(pre[k], state["nets"]["G"][k]) for k in pre if "running" not in k and "num_batches" not in k)
    with pytest.raises(UserError, match="init_from: the generator in .* does not fit the generator"):
        train(tiny_config("model=gan", f"init_from={tmp_path / 'pre'}", "trainer.steps=1"), tmp_path / "wrong")


@pytest.fixture(scope="module")
def cache(shared_cache):
    """The session's cache: the digits classifier is trained once (content=classifier and gan-eval share it)."""
    return shared_cache


def test_content_losses_offline_and_the_vgg_one_without_weights(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("GAN_CLI_CACHE", str(cache))
    for content in ("classifier", "discriminator"):
        summary = train(tiny_config("model=srgan", *DIGITS, f"game.content={content}", "trainer.steps=1"),
                        tmp_path / content)
        assert summary["step"] == 1
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError, match=r"download.pytorch.org/models/vgg19-dcbb9e9d.pth and put it at .*hub"):
        train(tiny_config("model=srgan", *DIGITS, "game.content=vgg"), tmp_path / "vgg")
    fake = tmp_path / "vgg19.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, fake)
    with pytest.raises(UserError, match="is not VGG19's weights"):
        train(tiny_config("model=srgan", *DIGITS, "game.content=vgg", f"game.perceptual.weights={fake}"),
              tmp_path / "vgg2")


@pytest.mark.parametrize("override,message", [
    (("model=srgan", "dataset=digits"), "game superres learns from low- and high-resolution pairs"),
    (("model=srresnet", *DIGITS, "game.content=discriminator"), "there is no D"),
    (("model=srgan", *DIGITS, "game.content=pixels"), "unknown game.content 'pixels'"),
    (("model=srgan", *DIGITS, "trainer.eval_every=1"), "score a superres run's checkpoints with gan-eval"),
])
def test_bad_game_options_are_one_line_errors(override, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(tiny_config(*override), tmp_path / "run")


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("sr") / "run"
    train(tiny_config("model=srresnet", *DIGITS, "trainer.steps=3"), run)
    return run


def test_eval_scores_g_beside_bicubic_on_y_with_the_border_shaved(digit_run, monkeypatch, cache):
    monkeypatch.setenv("GAN_CLI_CACHE", str(cache))
    result = evaluate(parse_args([f"ckpt={digit_run}", "progress=false"]))
    m = result["metrics"]
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "accuracy", "bicubic_accuracy", "original_accuracy",
            "fid", "bicubic_fid"} <= set(m)
    # The bicubic numbers by hand: upscale each held-out digit's input and compare on Y, 4 pixels shaved.
    data = superres("digits", batch_size=4, **CPU)
    test = data.test()
    by_hand = torch.cat([psnr_y(upscale_bicubic(lr, 4).clamp(-1, 1), hr, 4) for lr, hr in zip(test["lr"], test["hr"])])
    assert m["bicubic_psnr"] == pytest.approx(float(by_hand.mean()))
    assert m["original_accuracy"] > 0.9 and m["bicubic_accuracy"] < m["original_accuracy"]
    with pytest.raises(UserError, match="do not apply to super-resolution"):
        evaluate(parse_args([f"ckpt={digit_run}", "metrics=[is]", "progress=false"]))


def test_upscale_writes_each_input_at_scale_and_sheets_with_the_original(digit_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.arange(30 * 26, dtype=np.uint8).reshape(26, 30)).save(inputs / "a.png")
    options = parse_options([f"ckpt={digit_run}", "mode=upscale", f"input={inputs}", f"out={tmp_path / 'up'}",
                             "progress=false"], "sample")
    sample(options)
    assert Image.open(tmp_path / "up" / "a.png").size == (120, 104)  # 4 x the input
    sample({**options, "downscale": True, "out": str(tmp_path / "down")})
    assert Image.open(tmp_path / "down" / "a.png").size == (28, 24)  # the original, trimmed to multiples of 4
    sample({**options, "input": None, "sheet": True, "out": str(tmp_path / "sheets")})
    sheets = sorted((tmp_path / "sheets").glob("*.png"))
    assert len(sheets) == 269 and Image.open(sheets[0]).size == (2 + 3 * 34, 36)  # bicubic | SR | original
    with pytest.raises(UserError, match="use mode=upscale"):
        sample({**options, "mode": "grid"})


def test_low_resolution_is_the_inverse_size_of_g(digit_run):
    loaded = build.load(digit_run, True, torch.device("cpu"))
    hr = loaded.data.test(2)["hr"][0]
    assert loaded.game.upscale(loaded.nets, low_resolution(hr, 4)).shape == hr.shape


@pytest.mark.slow
def test_the_vgg_content_loss_reads_a_vgg19_file_and_trains(tmp_path):
    # VGG19's layout with random weights (the real file is ImageNet's, 548 MB, as large as this one).
    import torchvision

    weights = tmp_path / "vgg19.pth"
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), weights)
    summary = train(tiny_config("model=srgan", *DIGITS, "game.content=vgg", f"game.perceptual.weights={weights}",
                                "trainer.steps=1"), tmp_path / "run")
    assert summary["step"] == 1 and np.isfinite(summary["logged"]["G/content"])


def test_large_inputs_are_upscaled_in_overlapping_tiles_that_match_a_whole_pass(digit_run):
    loaded = build.load(digit_run, True, torch.device("cpu"))
    lr = torch.rand(1, 1, 45, 70, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = loaded.game.upscale(loaded.nets, lr, tile=1000)
    tiled = loaded.game.upscale(loaded.nets, lr, tile=40)  # cores of 8 pixels: 6 x 9 tiles
    assert tiled.shape == whole.shape == (1, 1, 180, 280)
    # The tiny G sees fewer than 16 pixels around a pixel, so each tile's core is what a whole pass gives.
    assert torch.allclose(tiled, whole, atol=1e-5)
