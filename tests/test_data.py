"""Data sets and batch sources, on data the project makes, scikit-learn ships, or ../shared/data holds."""

import gzip
import struct

import numpy as np
import pytest
import torch

from gan_cli import UserError
from gan_cli.data import TensorBatches
from gan_cli.data.folder import folder
from gan_cli.data.images import cifar10, celeba, digits, mnist, read_idx
from gan_cli.data.toy2d import toy2d
from tests.conftest import SHARED_DATA, write_images

CPU = dict(device=torch.device("cpu"), seed=0, num_workers=0)


def test_digits_are_the_bundled_1797_images_resized():
    data = digits(resolution=32, batch_size=64, **CPU)
    assert len(data) == 1797 and data.shape == (1, 32, 32) and data.num_classes == 10
    real, labels = data.next()
    assert real.shape == (64, 1, 32, 32) and labels.shape == (64,)
    assert real.min() >= -1 and real.max() <= 1 and real.max() > 0.9  # strokes reach full white
    assert digits(resolution=16, batch_size=8, **CPU).shape == (1, 16, 16)


def test_tensor_batches_visit_every_item_once_per_epoch_and_resume_in_order():
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1)
    data = TensorBatches(images, None, batch_size=4, device=torch.device("cpu"), seed=3, name="t")
    seen = torch.cat([data.next()[0].flatten() for _ in range(3)])
    assert sorted(((seen + 1) * 127.5).round().long().tolist()) == list(range(12))
    state = data.state_dict()
    expected = [data.next()[0] for _ in range(4)]
    data.load_state_dict(state)
    assert all(torch.equal(a, data.next()[0]) for a in expected)


def test_batch_larger_than_the_data_is_refused():
    with pytest.raises(UserError, match="batch_size=2000"):
        digits(batch_size=2000, **CPU)


@pytest.mark.parametrize("mixture,modes,radius", [("ring", 8, 1.0), ("grid", 25, None)])
def test_toy2d_mixtures(mixture, modes, radius):
    data = toy2d(mixture, batch_size=4000, **CPU)
    assert data.shape == (2,) and len(data.centres) == modes
    if radius:
        assert torch.allclose(data.centres.norm(dim=1), torch.full((modes,), radius))
    else:
        assert sorted(set(data.centres[:, 0].tolist())) == [-4, -2, 0, 2, 4]
    points, labels = data.next()
    distance = (points - data.centres[labels]).norm(dim=1)
    assert distance.max() < 6 * data.sigma  # every point sits at its own mode
    assert len(labels.unique()) == modes


def test_toy2d_unknown_mixture():
    with pytest.raises(UserError, match="choose one of: ring, grid"):
        toy2d("spiral", batch_size=4, **CPU)


def test_folder_with_class_subfolders_has_labels(tmp_path):
    write_images(tmp_path, {"cat": 3, "dog": 5})
    data = folder(tmp_path, resolution=16, batch_size=8, **CPU)
    assert len(data) == 8 and data.shape == (1, 16, 16) and data.num_classes == 2
    real, labels = data.next()
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 1, 1]


def test_flat_folder_is_unlabelled_and_rgb_is_detected(tmp_path):
    write_images(tmp_path, {"": 6}, mode="RGB", size=(30, 20))
    data = folder(tmp_path, resolution=16, batch_size=3, **CPU)
    assert data.shape == (3, 16, 16) and data.num_classes == 0
    real, labels = data.next()
    assert real.shape == (3, 3, 16, 16) and labels is None
    assert folder(tmp_path, resolution=16, channels=1, batch_size=3, **CPU).shape == (1, 16, 16)


def test_sixteen_bit_and_float_images_are_scaled_to_eight_bits_not_clipped(tmp_path):
    from PIL import Image

    from gan_cli.data.folder import load_image

    levels = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(levels).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    Image.fromarray((levels / 65535.0).astype(np.float32), "F").save(tmp_path / "unit.tif")
    for name in ("deep.png", "unit.tif"):
        for channels in (1, 3):
            image = load_image(tmp_path / name, 4, channels)
            assert image.shape == (channels, 4, 4)
            assert image[0, 0].tolist() == [0, 64, 128, 255], name  # convert("L") gave 0, 255, 255, 255


def test_a_folder_is_colour_when_any_image_is_whatever_sorts_first(tmp_path, caplog):
    from PIL import Image

    write_images(tmp_path / "mixed", {"": 6}, mode="RGB")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "mixed" / "000-gray-first.png")
    with caplog.at_level("INFO", logger="gan_cli.data"):
        data = folder(tmp_path / "mixed", resolution=16, batch_size=4, **CPU)
    assert data.shape == (3, 16, 16)
    assert "7 images (6 colour, 1 grayscale: read as colour)" in caplog.text
    # Palette images: a palette of grays is grayscale, a palette with a colour is colour.
    gray = Image.fromarray(np.arange(400, dtype=np.uint8).reshape(20, 20) % 8, "P")
    gray.putpalette([v for i in range(8) for v in (i * 30,) * 3])
    write_images(tmp_path / "palette", {"": 3})
    gray.save(tmp_path / "palette" / "p.png")
    assert folder(tmp_path / "palette", resolution=16, batch_size=4, **CPU).shape == (1, 16, 16)
    gray.putpalette([v for i in range(8) for v in (i * 30, 0, 255 - i * 30)])
    gray.save(tmp_path / "palette" / "p.png")
    assert folder(tmp_path / "palette", resolution=16, batch_size=4, **CPU).shape == (3, 16, 16)


def test_folder_streams_from_disk_when_asked(tmp_path):
    write_images(tmp_path, {"a": 4, "b": 4})
    data = folder(tmp_path, resolution=16, in_memory=False, cache="off", batch_size=4, **CPU)
    assert type(data).__name__ == "StreamBatches"
    for _ in range(5):  # crosses an epoch boundary
        real, labels = data.next()
        assert real.shape == (4, 1, 16, 16) and labels.shape == (4,)
        assert -1 <= real.min() and real.max() <= 1


def test_folder_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        folder(tmp_path / "nope", batch_size=1, **CPU)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        folder(tmp_path / "empty", batch_size=1, **CPU)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read image .*broken.png"):
        folder(tmp_path / "bad", channels=1, batch_size=1, **CPU)


def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_mnist_reads_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28))
    write_idx(raw / "t10k-images-idx3-ubyte.gz", images)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    assert np.array_equal(read_idx(raw / "t10k-images-idx3-ubyte.gz"), images)
    data = mnist(root=tmp_path, split="test", resolution=28, batch_size=10, **CPU)
    assert len(data) == 10 and data.shape == (1, 28, 28) and data.num_classes == 10
    real, labels = data.next()
    assert torch.equal(((real[labels.argsort()] + 1) * 127.5).round().to(torch.uint8).squeeze(1),
                       torch.from_numpy(images.astype(np.uint8)))


def test_missing_data_names_the_path_and_the_fix(tmp_path):
    for build in (mnist, cifar10, celeba):
        with pytest.raises(UserError) as err:
            build(root=tmp_path / "nowhere", batch_size=4, **CPU)
        message = str(err.value)
        assert str(tmp_path / "nowhere") in message and "dataset.root" in message, message
        assert "dataset.download=true" in message and "\n" not in message, message


@pytest.mark.skipif(not (SHARED_DATA / "mnist-t10k").is_dir(), reason="../shared/data is not present")
def test_real_mnist_test_split_from_the_published_idx_files():
    data = mnist(root=SHARED_DATA / "mnist-t10k", split="test", resolution=32, batch_size=100, **CPU)
    assert len(data) == 10000 and data.num_classes == 10 and data.shape == (1, 32, 32)
    real, _ = data.next()
    assert (real > 0.5).float().mean() > 0.05  # real strokes, not blank images


@pytest.mark.skipif(not (SHARED_DATA / "mnist-t10k-png").is_dir(), reason="../shared/data is not present")
def test_real_mnist_pngs_as_an_image_folder():
    data = folder(SHARED_DATA / "mnist-t10k-png", resolution=32, batch_size=64, **CPU)
    assert len(data) == 10000 and data.num_classes == 10 and data.shape == (1, 32, 32)
