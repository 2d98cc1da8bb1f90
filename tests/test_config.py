"""The real conf/: every option of every group composes and builds; presets and comments."""

import re
from pathlib import Path

import pytest
import torch

from gan_cli import UserError, registry
from gan_cli import build
from tests.conftest import compose_config, write_images

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["dataset", "generator", "discriminator", "loss", "optimizer", "model"]


class TwoNets:
    """What build.optimizers needs of a game: named nets, and which optimizer steps which."""

    def __init__(self, G, D):
        self.nets = {"G": G, "D": D}

    def optimizers(self):
        return {"G": ("G",), "D": ("D",)}


def make_optimizers(node, G, D):
    opts = build.optimizers(node, TwoNets(G, D))
    return opts["G"], opts["D"]


def options_of(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_group_has_options_and_a_registry_table():
    for group in GROUPS:
        assert options_of(group), group
        if group != "model":  # a model is a preset of the others, not a component
            assert set(options_of(group)) == set(registry.TABLES[group]), group


# Data sets that need files this machine does not have: building them must fail with a one-line hint.
NEEDS_FILES = {"mnist", "fashion_mnist", "stacked_mnist", "cifar10", "celeba"}


@pytest.mark.parametrize("name", options_of("dataset"))
def test_every_dataset_option_composes_and_builds(name, tmp_path):
    overrides = [f"dataset={name}"]
    if name == "folder":
        write_images(tmp_path / "imgs", {"a": 3, "b": 3})
        overrides.append(f"dataset.root={tmp_path / 'imgs'}")
    elif name in NEEDS_FILES:
        overrides.append(f"dataset.root={tmp_path / 'empty'}")
    cfg = compose_config(*overrides)
    node = dict(cfg.dataset)
    assert node["name"] == name
    runtime = dict(batch_size=4, device=torch.device("cpu"), seed=0, num_workers=0)
    if name in NEEDS_FILES:
        with pytest.raises(UserError) as err:
            registry.build("dataset", node, **runtime)
        message = str(err.value)
        assert str(tmp_path / "empty") in message and "dataset.root" in message and "\n" not in message
        return
    data = registry.build("dataset", node, **runtime)
    batch = data.next()
    if name in ("paired", "unpaired"):  # (A, B, labels_A, labels_B): their demos, with nothing to download
        assert batch[0].shape == (4, *data.shape_a) and batch[1].shape == (4, *data.shape_b)
        return
    if name == "superres":  # (LR, HR, labels): the photo demo, with nothing to download
        assert batch[0].shape == (4, *data.shape_lr) and batch[1].shape == (4, *data.shape)
        return
    real, _ = batch
    assert real.shape == (4, *data.shape)


# Image-to-image nets (pix2pix, CycleGAN, SRGAN) take images rather than z, the PatchGAN gives a map of scores
# and SRGAN's D needs sides of multiples of 16: tests/test_translation_models.py and tests/test_superres_models.py
# build them from their conf/ nodes.
IMAGE_TO_IMAGE = {"generator": {"unet", "resnet_translation", "srresnet"}, "discriminator": {"patchgan", "srgan"}}


@pytest.mark.parametrize("group", ["generator", "discriminator"])
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (2,)])
def test_every_network_option_builds(group, shape):
    for name in options_of(group):
        if name in IMAGE_TO_IMAGE[group]:
            continue
        node = dict(compose_config(f"{group}={name}")[group])
        if name in ("dcgan", "resnet", "progan", "stylegan2", "r3gan", "biggan") and len(shape) == 1:
            with pytest.raises(UserError, match="works on images"):
                registry.build(group, node, shape=shape)
            continue
        if name == "biggan" and shape[1] == 16:  # 3 chunks of z at 16 pixels; the default 80 makes 4
            with pytest.raises(UserError, match="must split into 3 equal chunks"):
                registry.build(group, node, shape=shape)
            node["z_dim"] = 60
        net = registry.build(group, node, shape=shape)
        x = torch.randn(3, net.z_dim) if group == "generator" else torch.randn(3, *shape)
        out = net(x)
        assert out.shape == ((3, *shape) if group == "generator" else (3,))


def test_every_loss_and_optimizer_option_builds():
    for name in options_of("loss"):
        loss = registry.build("loss", dict(compose_config(f"loss={name}").loss))
        assert torch.isfinite(loss.d_loss(torch.randn(4), torch.randn(4)))
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    for name in options_of("optimizer"):
        node = dict(compose_config(f"optimizer={name}", "optimizer.d_lr=0.123").optimizer)
        opt_G, opt_D = make_optimizers(node, G, D)
        assert opt_G.param_groups[0]["lr"] == node["lr"]
        assert opt_D.param_groups[0]["lr"] == 0.123


def test_specialisations_name_a_preset_and_a_data_set():
    pairs = {f"{m}_{d}" for m in options_of("model") for d in options_of("dataset")}
    for name in options_of("model_dataset"):
        assert name in pairs, name
    # model=gan uses dropout in D on images, none on the 2-D mixtures.
    assert compose_config("model=gan").discriminator.dropout == 0.5
    assert compose_config("model=gan", "dataset=toy2d").discriminator.dropout == 0.0
    assert compose_config("model=gan", "dataset=toy2d").generator.z_dim == 2
    assert compose_config("model=wgan_gp", "dataset=toy2d").generator.z_dim == 2
    assert compose_config("model=gan", "dataset=toy2d", "discriminator.dropout=0.2").discriminator.dropout == 0.2


def test_presets_pick_their_papers_settings():
    gan = compose_config("model=gan")
    assert (gan.generator.name, gan.discriminator.name, gan.loss.name) == ("mlp", "mlp", "minimax")
    assert (gan.optimizer.name, gan.optimizer.lr) == ("adam", 2e-4)
    assert (gan.trainer.n_critic, gan.trainer.batch_size) == (1, 100)
    dcgan = compose_config()  # the default
    assert (dcgan.generator.name, dcgan.discriminator.name, dcgan.loss.name) == ("dcgan", "dcgan", "nonsaturating")
    assert (dcgan.optimizer.name, dcgan.optimizer.lr, list(dcgan.optimizer.betas)) == ("adam", 2e-4, [0.5, 0.999])
    assert dcgan.dataset.name == "digits" and dcgan.dataset.resolution == 32


def test_single_keys_stay_overridable_after_a_preset():
    cfg = compose_config("model=gan", "optimizer.lr=0.01", "trainer.batch_size=7", "loss=nonsaturating")
    assert cfg.optimizer.lr == 0.01 and cfg.trainer.batch_size == 7 and cfg.loss.name == "nonsaturating"
    assert cfg.generator.name == "mlp"
    # Swapping the preset's optimizer works: presets set no keys that only one optimizer has.
    cfg = compose_config("model=gan", "optimizer=sgd")
    make_optimizers(dict(cfg.optimizer), torch.nn.Linear(1, 1), torch.nn.Linear(1, 1))


def test_trainer_has_the_documented_settings():
    cfg = compose_config()
    for key in ("steps", "batch_size", "n_critic", "sample_every", "ckpt_every", "log_every", "device"):
        assert key in cfg.trainer, key
    assert cfg.trainer.device == "auto" and "seed" in cfg and cfg.resume is None


KEY_LINE = re.compile(r"^(\s*)([a-z_]+):\s*(\S.*)?$")


def test_every_option_has_a_comment_beside_its_default():
    """Every key a user may set is documented where it is defined (`name:` is the choice itself)."""
    missing = []
    files = [CONF / "train.yaml"] + sorted(CONF.glob("*/*.yaml"))
    for path in files:
        in_hydra = False
        for line in path.read_text().splitlines():
            if line.startswith("hydra:"):
                in_hydra = True
            if in_hydra or line.lstrip().startswith(("#", "-")):
                continue
            match = KEY_LINE.match(line)
            if not match or match.group(2) in ("name", "defaults"):
                continue
            value = match.group(3)
            is_block = value is None or value.startswith("#")
            if path.parent.name in ("model", "model_dataset") and is_block:
                continue  # a preset's `trainer:` heading
            if "#" not in line and not (is_block and match.group(2) == "trainer"):
                missing.append(f"{path.relative_to(CONF)}: {line.strip()}")
    assert not missing, "options without a comment:\n" + "\n".join(missing)


def test_every_preset_cites_its_paper():
    for path in (CONF / "model").glob("*.yaml"):
        text = path.read_text()
        assert re.search(r"(19|20)\d\d", text) and ("et al." in text or "&" in text), path.name


def test_wgan_gp_on_celeba_builds_a_64_pixel_critic_pair():
    cfg = compose_config("model=wgan_gp", "dataset=celeba")
    assert cfg.dataset.resolution == 64 and cfg.discriminator.norm == "layer"
    assert (cfg.loss.name, cfg.loss.gp_weight, cfg.trainer.n_critic) == ("wgan_gp", 10.0, 5)
    assert (cfg.optimizer.lr, list(cfg.optimizer.betas)) == (1e-4, [0.0, 0.9])
    shape = (3, 64, 64)
    G = registry.build("generator", dict(cfg.generator), shape=shape)
    D = registry.build("discriminator", dict(cfg.discriminator), shape=shape)
    x = G(torch.randn(2, G.z_dim))
    assert x.shape == (2, *shape) and D(x).shape == (2,)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())


def test_family_presets_use_their_papers_settings():
    wgan = compose_config("model=wgan")
    assert (wgan.loss.name, wgan.loss.clip, wgan.optimizer.name, wgan.optimizer.lr) == ("wgan", 0.01, "rmsprop", 5e-5)
    assert wgan.trainer.n_critic == 5
    sngan = compose_config("model=sngan")
    assert (sngan.loss.name, sngan.discriminator.spectral_norm, sngan.discriminator.norm) == ("hinge", True, "none")
    assert (sngan.optimizer.lr, list(sngan.optimizer.betas), sngan.trainer.n_critic) == (2e-4, [0.0, 0.9], 5)
    assert compose_config("model=lsgan").loss.name == "lsgan"
