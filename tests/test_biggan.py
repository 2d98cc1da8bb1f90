"""Class-conditional GANs at scale: SAGAN's self-attention, BigGAN's G (hierarchical z, shared embedding,
orthogonal regularisation), G_ema's start step and the truncation trick in gan-eval."""

import json

import pytest
import torch

from gan_cli import UserError, build, checkpoint, registry
from gan_cli.latents import draw
from gan_cli.models.attention import SelfAttention
from gan_cli.models.biggan import BigGANGenerator, orthogonal_penalty
from gan_cli.train import ema_decay, train
from tests.conftest import one_line, tiny_config
from tests.test_modes import crashed_and_resumed

CPU = torch.device("cpu")


def test_a_fresh_attention_block_is_the_identity_and_a_trained_one_mixes_positions():
    torch.manual_seed(0)
    block = SelfAttention(16)
    x = torch.randn(3, 16, 8, 8)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    # Attention reaches across the map: changing one corner changes the output at the opposite corner.
    x2 = x.clone()
    x2[:, :, 0, 0] += 5.0
    assert not torch.allclose(block(x2)[:, :, 7, 7], y[:, :, 7, 7])
    with pytest.raises(UserError, match="at least 8 channels"):
        SelfAttention(4)


def test_attention_goes_where_attention_at_says_and_refuses_other_sides():
    G = registry.build("generator", {"name": "resnet", "width": 8, "max_width": 16, "attention_at": ["1/2"]},
                       shape=(1, 32, 32))
    assert list(G.attention) == ["1"]  # the block making 16x16 maps (8 -> 16)
    D = registry.build("discriminator", {"name": "resnet", "width": 8, "max_width": 8, "attention_at": [8],
                                         "spectral_norm": True}, shape=(1, 32, 32))
    kinds = [type(m).__name__ for m in D.body]
    assert kinds == ["DBlock", "DBlock", "SelfAttention", "DBlock", "DBlock"]  # after the first block making 8x8
    # Spectral norm of the whole D leaves the attention convs with their own single normalisation.
    assert len(D.body[2].query.parametrizations.weight) == 1
    with pytest.raises(UserError) as err:
        registry.build("generator", {"name": "resnet", "attention_at": [12]}, shape=(1, 32, 32))
    assert "generator.attention_at: 12 is no side" in one_line(err) and "choose from 8, 16, 32" in one_line(err)
    with pytest.raises(UserError, match="fractions of the image side"):
        registry.build("discriminator", {"name": "resnet", "attention_at": ["half"]}, shape=(1, 32, 32))


def block_outputs(G, z, c):
    outputs = []
    hooks = [block.register_forward_hook(lambda m, i, o: outputs.append(o.clone())) for block in G.blocks]
    with torch.no_grad():
        G(z, c)
    for hook in hooks:
        hook.remove()
    return outputs


def test_each_chunk_of_z_reaches_its_block_and_those_after_it_only():
    torch.manual_seed(0)
    G = BigGANGenerator((1, 32, 32), z_dim=16, width=2, num_classes=3, class_input="cbn").eval()
    assert G.chunk == 4 and len(G.blocks) == 3
    z, c = torch.randn(2, 16), torch.tensor([0, 2])
    base = block_outputs(G, z, c)
    for k in range(4):  # chunk 0 feeds the first linear layer, chunk k >= 1 block k - 1
        z2 = z.clone()
        z2[:, 4 * k:4 * k + 4] += 1.0
        changed = [not torch.allclose(a, b) for a, b in zip(base, block_outputs(G, z2, c))]
        first = max(k - 1, 0)
        assert changed == [i >= first for i in range(3)], (k, changed)
    # The class reaches every block through the shared embedding.
    assert all(not torch.allclose(a, b) for a, b in zip(base, block_outputs(G, z, torch.tensor([1, 1]))))
    with pytest.raises(UserError, match="must split into 4 equal chunks"):
        BigGANGenerator((1, 32, 32), z_dim=10)


def test_the_orthogonal_penalty_is_zero_for_orthogonal_filters_and_sums_squared_overlaps():
    net = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    # W W^T = [[2, 1], [1, 1]]: off the diagonal 1 and 1.
    assert orthogonal_penalty(net).item() == pytest.approx(2.0)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, -2.0]]))  # orthogonal rows, any norms
    assert orthogonal_penalty(net).item() == 0.0
    conv = torch.nn.Conv2d(2, 4, 3)
    torch.nn.init.orthogonal_(conv.weight)
    assert orthogonal_penalty(conv).item() == pytest.approx(0.0, abs=1e-10)
    # A BigGAN G's penalty reads the weights before spectral normalisation and leaves the embedding out.
    G = BigGANGenerator((1, 16, 16), z_dim=12, width=2, num_classes=3, class_input="cbn", ortho_reg=0.5)
    with torch.no_grad():
        G.shared.weight.mul_(100.0)
    expected = 0.0
    for module in G.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            w = module.parametrizations.weight.original.flatten(1)
            gram = w @ w.T
            expected += (gram.pow(2).sum() - gram.diagonal().pow(2).sum()).item()
    assert G.regularization().item() == pytest.approx(0.5 * expected, rel=1e-5)


def test_g_ema_copies_g_until_its_start_step():
    assert [ema_decay(0.9999, 0.0, step, 3) for step in (1, 2, 3, 4)] == [0.0, 0.0, 0.0, 0.9999]
    assert ema_decay(0.999, 0.0, 1) == 0.999


def test_resampled_truncation_keeps_every_value_within_the_threshold_and_is_reproducible():
    z, _ = draw(range(50), 64, psi=0.5)
    assert z.abs().max() <= 0.5 and z.abs().max() > 0.45
    assert torch.equal(z, draw(range(50), 64, psi=0.5)[0])
    assert torch.equal(z[10:20], draw(range(10, 20), 64, psi=0.5)[0])  # each image from its own stream
    free, _ = draw(range(50), 64)
    inside = free.abs() <= 0.5
    assert inside.any() and torch.equal(z[:, :1][inside[:, :1]], free[:, :1][inside[:, :1]])  # kept where inside


@pytest.fixture(scope="module")
def biggan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("biggan")
    train(tiny_config("model=biggan", "trainer.steps=3", "trainer.g_ema_start=1", "trainer.n_critic=1"), run)
    return run


def test_a_biggan_run_logs_its_orthogonal_penalty_and_samples_with_standing_statistics(biggan_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(biggan_run)).Reload().Tags()["scalars"]
    assert "loss/G_ortho" in tags
    state = checkpoint.load(biggan_run)
    G_bn = {k: v for k, v in state["nets"]["G"].items() if k.endswith("running_mean")}
    ema_bn = {k: v for k, v in state["ema"]["G_ema"].items() if k.endswith("running_mean")}
    assert G_bn.keys() == ema_bn.keys() and G_bn
    assert any(not torch.allclose(G_bn[k], ema_bn[k]) for k in G_bn)  # G_ema's own statistics, not G's
    loaded = build.load(biggan_run, use_ema=True, device=CPU)
    assert loaded.which == "G_ema"


def test_gan_eval_scores_at_a_truncation_and_draws_the_curve(biggan_run, shared_cache, tmp_path):
    from gan_cli.evaluate import evaluate, parse_args, truncation_curve

    common = [f"ckpt={biggan_run}", "metrics=[accuracy,pr]", "num_samples=60", f"cache_dir={shared_cache}",
              "progress=false"]
    loaded = build.load(biggan_run, use_ema=True, device=CPU)
    # The images scored are G's images of truncated z.
    z, c = draw(range(4), loaded.game.z_dim, loaded.game.cond, [0, 1, 2, 3], psi=0.3)
    with torch.no_grad():
        expected = loaded.nets["G_ema"](z, c)
    got = next(loaded.game.generate(loaded.nets, 4, 0, CPU, 4, truncation=0.3))
    assert torch.equal(got, expected)
    result = evaluate(parse_args([*common, "truncation=0.3"]))
    assert result["protocol"]["truncation"] == 0.3 and "redrawn" in result["protocol"]["truncation_rule"]
    truncation_curve(parse_args([*common, "truncation=[2.0,0.5]", f"out={tmp_path / 'eval.json'}"]))
    rows = json.loads((tmp_path / "eval-truncation.json").read_text())
    assert [r["truncation"] for r in rows] == [2.0, 0.5] and all("precision" in r["metrics"] for r in rows)
    assert (tmp_path / "eval-truncation.png").stat().st_size > 1000
    for bad, message in (("truncation=0", "a threshold > 0"), ("truncation=[1,true]", "a threshold > 0")):
        with pytest.raises(UserError, match=message):
            parse_args([*common, bad])
    with pytest.raises(UserError, match="give ckpt="):
        parse_args(["fake=somewhere", "real=digits", "truncation=1.0"])


def test_a_sagan_and_a_biggan_run_resume_exactly(tmp_path):
    assert crashed_and_resumed(tmp_path / "sagan", ("model=sagan", "trainer.log_every=1"), 4) == []
    assert crashed_and_resumed(tmp_path / "biggan", ("model=biggan", "trainer.log_every=1", "trainer.n_critic=2",
                                                     "trainer.g_ema_start=2"), 4) == []
