"""The data cache: a large folder decoded once into a uint8 file, mapped by later runs, rebuilt when its key
changes; batches held on the device or gathered from the map in StreamBatches' order, resumed exactly."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from gan_cli import UserError
from gan_cli.data import cache as data_cache
from gan_cli.data import folder as folder_module
from gan_cli.data.folder import folder
from tests.conftest import write_images

CPU = dict(device=torch.device("cpu"), seed=0, num_workers=0)


def jpegs(root, count=24, side=40):
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{i:03d}.jpg", quality=90)
    return root


def large(root, cache_dir, **kwargs):
    """The folder as a large one (above max_memory_mb), cached under cache_dir."""
    return folder(root, resolution=16, max_memory_mb=0, cache_dir=cache_dir, batch_size=4, **CPU, **kwargs)


def draws(source, n):
    return [source.next() for _ in range(n)]


def test_a_large_folder_is_decoded_once_and_mapped_after(tmp_path, monkeypatch, caplog):
    root, cache = jpegs(tmp_path / "images"), tmp_path / "cache"
    caplog.set_level("INFO", logger="gan_cli.data")
    first = large(root, cache)
    assert type(first).__name__ == "TensorBatches"  # it fits the free memory: held, as small sets are
    assert "decoding folder" in caplog.text and len(list(cache.glob("*.npy"))) == 2  # images and labels
    # The cached pixels are the decoded ones, in the files' order.
    files, _, _ = folder_module.scan(root)
    expected = torch.stack([folder_module.load_image(f, 16, 3) for f in files])
    assert torch.equal(first.images, expected)

    # A second run decodes nothing.
    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_module, "load_image", no_decoding)
    caplog.clear()
    second = large(root, cache)
    assert "decoding" not in caplog.text and torch.equal(second.images, expected)
    monkeypatch.undo()

    # Another resolution, or a changed file, is another key: decoded anew, never the stale file.
    assert large(root, cache).images.shape[-1] == 16
    folder(root, resolution=8, max_memory_mb=0, cache_dir=cache, batch_size=4, **CPU)
    assert len(list(cache.glob("*.json"))) == 2
    changed = files[0]
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(changed, quality=90)
    os.utime(changed, ns=(1, 1))
    third = large(root, cache)
    assert len(list(cache.glob("*.json"))) == 3 and third.images[0].max() < 10


def test_gathered_batches_follow_the_stream_order_and_resume_exactly(tmp_path):
    root, cache = jpegs(tmp_path / "images", count=22), tmp_path / "cache"
    mapped = large(root, cache, in_memory=False)
    assert type(mapped).__name__ == "MemmapBatches"
    streamed = folder(root, resolution=16, max_memory_mb=0, cache="off", batch_size=4, **CPU)
    # 22 images, batches of 4: 5 a epoch; 12 draws cross two epoch boundaries.
    for (a, la), (b, lb) in zip(draws(mapped, 12), draws(streamed, 12)):
        assert torch.equal(a, b) and torch.equal(la, lb)
    state = mapped.state_dict()
    ahead = draws(mapped, 4)
    resumed = large(root, cache, in_memory=False)
    resumed.load_state_dict(state)
    for (a, la), (b, lb) in zip(ahead, draws(resumed, 4)):
        assert torch.equal(a, b) and torch.equal(la, lb)
    # Two processes: each its own share, as the stream's.
    shares = [large(root, cache, in_memory=False).shard(r, 2) for r in range(2)]
    streams = [folder(root, resolution=16, max_memory_mb=0, cache="off", batch_size=4, **CPU).shard(r, 2)
               for r in range(2)]
    for mine, theirs in zip(shares, streams):
        assert all(torch.equal(a[0], b[0]) for a, b in zip(draws(mine, 3), draws(theirs, 3)))


def test_cache_errors_are_one_line(tmp_path):
    root = write_images(tmp_path / "images", {"": 6})
    with pytest.raises(UserError, match="dataset.cache must be auto or off"):
        large(root, tmp_path / "c", cache="yes")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"cannot write the data cache .*dataset.cache_dir=<folder> or dataset.cache=off"):
        large(root, blocker / "cache")
    (root / "broken.png").write_bytes(b"not a png")  # an unreadable image while caching: the usual line
    with pytest.raises(UserError, match="cannot read image .*broken.png"):
        large(root, tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.npy"))  # nothing half-written is left
    # Read by worker processes, while caching or streaming: still the message alone, one line.
    for options in ({"cache_dir": tmp_path / "c"}, {"cache": "off"}):
        with pytest.raises(UserError, match=r"^dataset folder: cannot read image .*broken.png") as e:
            folder(root, resolution=16, max_memory_mb=0, batch_size=7, device=torch.device("cpu"), seed=0,
                   num_workers=1, **options).next()
        assert "\n" not in str(e.value)


def test_held_or_gathered_by_the_free_memory(tmp_path, monkeypatch):
    root, cache = jpegs(tmp_path / "images", count=8), tmp_path / "cache"
    large(root, cache)
    monkeypatch.setattr(data_cache, "free_bytes", lambda device: 1000)  # 8 x 3 x 16 x 16 bytes do not fit
    assert type(large(root, cache)).__name__ == "MemmapBatches"


def test_the_stream_keeps_its_workers_from_one_epoch_to_the_next(tmp_path):
    root = write_images(tmp_path / "images", {"": 8})
    data = folder(root, resolution=16, max_memory_mb=0, cache="off", batch_size=4, device=torch.device("cpu"),
                  seed=0, num_workers=1)
    data.next()
    workers = [w.pid for w in data._loader._iterator._workers]
    for _ in range(5):  # two batches an epoch: across two epoch boundaries
        data.next()
    assert data.epoch == 2 and [w.pid for w in data._loader._iterator._workers] == workers


def test_streamed_and_cached_runs_resume_exactly_and_building_the_cache_changes_nothing(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from gan_cli import checkpoint
    from gan_cli.train import train
    from tests.conftest import tiny_config

    monkeypatch.setenv("GAN_CLI_CACHE", str(tmp_path / "cache"))
    root = jpegs(tmp_path / "images", count=40)

    def weights(run_dir):
        return checkpoint.load(run_dir)["nets"]

    def run(run_dir, steps, *extra):
        cfg = tiny_config("dataset=folder", f"dataset.root={root}", "dataset.max_memory_mb=0", f"trainer.steps={steps}",
                          "trainer.num_workers=1", *extra)
        return train(cfg, run_dir)

    for i, mode in enumerate(("dataset.cache=off", "dataset.in_memory=false", "dataset.in_memory=auto")):
        straight, resumed = tmp_path / f"straight{i}", tmp_path / f"resumed{i}"
        run(straight, 6, mode)  # the first cached run also builds the cache
        run(resumed, 3, mode)
        train(OmegaConf.create({"resume": str(resumed)}), resumed, overrides=["trainer.steps=6"])
        a, b = weights(straight), weights(resumed)
        assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n]), mode
