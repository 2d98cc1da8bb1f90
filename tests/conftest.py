"""Shared helpers: compose the real conf/ and shrink it to tiny CPU runs."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

from gan_cli.train import register_resolvers

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def resolvers():
    register_resolvers()


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One gan-eval cache (classifier backbones, real statistics) for the whole test session: each data
    set's classifier is trained once, by the first test that needs it, whichever file it is in."""
    return tmp_path_factory.mktemp("shared-cache")


def one_line(err) -> str:
    """The message of a raised UserError (pytest's ExceptionInfo), checked to be one line."""
    message = str(err.value)
    assert "\n" not in message
    return message


def compose_config(*overrides):
    """The config `gan-train <overrides>` would run with."""
    with initialize_config_module(config_module="gan_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides))


TINY_TRAINER = [
    "trainer.steps=2",
    "trainer.batch_size=8",
    "trainer.grid_size=4",
    "trainer.log_every=1",
    "trainer.sample_every=0",
    "trainer.ckpt_every=0",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.num_workers=0",
    "trainer.objective=none",
]


def tiny_config(*overrides):
    """The composed config, shrunk: tiny nets, 16x16 images, two steps of eight on the CPU.

    Explicit overrides win over the shrinking.
    """
    keys = {o.split("=", 1)[0] for o in overrides}
    defaults = [o for o in TINY_TRAINER if o.split("=", 1)[0] not in keys]
    cfg = compose_config(*defaults, *overrides)
    for part in ("generator", "discriminator"):
        if cfg[part].name in ("dcgan", "unet", "resnet", "resnet_translation", "patchgan") and f"{part}.width" not in keys:
            cfg[part].width = 4
        if cfg[part].name in ("resnet_translation", "srresnet") and f"{part}.blocks" not in keys:
            cfg[part].blocks = 1
        if cfg[part].name in ("progan", "stylegan2"):
            for key, value in (("width", 4), ("max_width", 8), ("z_dim", 8), ("w_dim", 8), ("mapping_layers", 2)):
                if key in cfg[part] and f"{part}.{key}" not in keys:
                    cfg[part][key] = value
        if cfg[part].name == "resnet":
            if f"{part}.max_width" not in keys:
                cfg[part].max_width = 8
            if part == "discriminator" and f"{part}.blocks" not in keys:
                cfg[part].blocks = 2
        if cfg[part].name in ("srresnet", "srgan") and f"{part}.width" not in keys:
            cfg[part].width = 4
        if cfg[part].name == "r3gan":
            for key, value in (("width", 8), ("groups", 4), ("blocks", 1)):
                if f"{part}.{key}" not in keys:
                    cfg[part][key] = value
        if cfg[part].name == "srgan" and f"{part}.dense" not in keys:
            cfg[part].dense = 8
        elif cfg[part].name == "mlp" and f"{part}.hidden" not in keys:
            cfg[part].hidden = [16]
    if "resolution" in cfg.dataset and "dataset.resolution" not in keys and cfg.dataset.name != "superres":
        cfg.dataset.resolution = 16
    for part in ("generator", "discriminator"):
        if cfg[part].name == "resnet" and cfg[part].get("attention_at") and f"{part}.width" not in keys:
            cfg[part].width = 8  # an attention block needs 8 channels
    if cfg.generator.name == "biggan":
        if "generator.width" not in keys:
            cfg.generator.width = 2  # 8 channels a block
        if "generator.z_dim" not in keys:  # four numbers a chunk: one chunk a block, one for the first layer
            cfg.generator.z_dim = 4 * (int(math.log2(cfg.dataset.get("resolution", 16) // 4)) + 1)
    return cfg


def write_images(root: Path, per_class: dict[str, int], size=(20, 20), mode="L", seed=0):
    """Make small random PNGs: per_class maps a subfolder ('' = root itself) to a count."""
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    for sub, count in per_class.items():
        folder = root / sub if sub else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
            Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(folder / f"{i:03d}.png")
    return root


def options_of_models():
    return sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "model").glob("*.yaml"))
