"""The game layer and the loop that plays it: exact resume of every tensor, diagnostics and evaluation
that change nothing, checkpoints by name (and the v1 layout), learning-rate schedules, and the
z -> x game's rules (fresh z with n_critic > 1, G_ema's own batch-norm statistics)."""

import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_cli import UserError, build, checkpoint, schedules
from gan_cli.data import StreamBatches, TensorBatches, epoch_order
from gan_cli.evaluate import evaluate, parse_args
from gan_cli.games.base import standing_statistics
from gan_cli.train import train
from tests.conftest import tiny_config

V1_CHECKPOINT = Path(__file__).parent / "data" / "v1_acgan_step2.pt"


def tensors(state: dict, keys=("nets", "ema", "optimizers", "scalers", "schedules", "data", "rng")) -> dict:
    """Every tensor a checkpoint holds that a run learns: nets (buffers included), EMA copies, optimizer
    moments, scaler and schedule states, data order and random streams, keyed by a path."""
    out = {}

    def walk(prefix, node):
        if torch.is_tensor(node):
            out[prefix] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(f"{prefix}/{i}", v)
        else:
            out[prefix] = node

    for key in keys:
        walk(key, state[key])
    return out


def differences(a: dict, b: dict, schedules=True) -> list[str]:
    """What differs; schedules=False leaves out the schedules' horizon (a run resumed with more steps
    keeps the one it started with, which matters only where the rate decays)."""
    keys = ("nets", "ema", "optimizers", "scalers", "data", "rng") + (("schedules",) if schedules else ())
    ta, tb = tensors(a, keys), tensors(b, keys)
    assert set(ta) == set(tb)
    return [k for k in ta if not (torch.equal(ta[k], tb[k]) if torch.is_tensor(ta[k]) else ta[k] == tb[k])]


def resume(run_dir, steps):
    return train(OmegaConf.create({"resume": str(run_dir)}), run_dir, overrides=[f"trainer.steps={steps}"])


# --- exact resume, and diagnostics that leave no trace ---------------------------------------------


@pytest.mark.parametrize("model", ["dcgan", "gan", "sngan", "wgan_gp", "infogan"])
def test_a_run_split_at_a_logging_step_equals_a_straight_run_in_every_tensor(model, tmp_path):
    # gan: dropout in D; sngan: spectral norm's power iteration; dcgan: batch-norm statistics.
    base = (f"model={model}", "trainer.log_every=1", "trainer.g_ema=0.5", "trainer.n_critic=2")
    train(tiny_config(*base, "trainer.steps=4"), tmp_path / "straight")
    train(tiny_config(*base, "trainer.steps=2"), tmp_path / "split")
    resume(tmp_path / "split", 4)
    assert differences(checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split"), False) == []


@pytest.mark.parametrize("model", ["dcgan", "gan", "sngan"])
def test_how_often_a_run_logs_changes_nothing_it_learns(model, tmp_path):
    train(tiny_config(f"model={model}", "trainer.steps=4", "trainer.log_every=1"), tmp_path / "often")
    train(tiny_config(f"model={model}", "trainer.steps=4", "trainer.log_every=100"), tmp_path / "rarely")
    assert differences(checkpoint.load(tmp_path / "often"), checkpoint.load(tmp_path / "rarely")) == []


def test_evaluation_during_training_changes_nothing_with_a_cold_or_a_warm_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_CLI_CACHE", str(tmp_path / "cache"))
    watched = ("trainer.steps=3", "trainer.eval_every=1", "trainer.eval_samples=64")
    train(tiny_config("trainer.steps=3"), tmp_path / "plain")
    train(tiny_config(*watched), tmp_path / "cold")  # trains the classifier backbone first
    train(tiny_config(*watched), tmp_path / "warm")  # loads it
    plain = checkpoint.load(tmp_path / "plain")
    assert differences(plain, checkpoint.load(tmp_path / "cold")) == []
    assert differences(plain, checkpoint.load(tmp_path / "warm")) == []
    assert (tmp_path / "cold" / "checkpoints" / "best.pt").is_file()


# --- the z -> x game's rules -----------------------------------------------------------------------


@pytest.mark.parametrize("n_critic,forwards", [(1, 1), (3, 4)])
def test_g_draws_fresh_z_when_d_takes_several_steps(n_critic, forwards, tmp_path, monkeypatch):
    """n_critic = 1: G's update reuses the fakes of D's (one G forward a step); n_critic = 3: three for D,
    and one more for G's update on fresh z."""
    from gan_cli.games import adversarial

    counts = []
    original = adversarial.Adversarial.__init__

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.nets["G"].register_forward_hook(lambda *_: counts.append(1) if self.nets["G"].training else None)

    monkeypatch.setattr(adversarial.Adversarial, "__init__", counting)
    train(tiny_config(f"trainer.n_critic={n_critic}", "trainer.steps=2", "trainer.log_every=100"), tmp_path)
    assert len(counts) == 2 * forwards


def test_g_ema_has_batch_norm_statistics_of_its_own(tmp_path):
    train(tiny_config("trainer.g_ema=0.9", "trainer.steps=3"), tmp_path)
    state = checkpoint.load(tmp_path)
    G, G_ema = state["nets"]["G"], state["ema"]["G_ema"]
    stats = [k for k in G if k.endswith("running_mean")]
    assert stats and all(not torch.equal(G[k], G_ema[k]) for k in stats)
    # They are the standing statistics of G_ema's weights: recomputing them gives the same values.
    loaded = build.load(tmp_path, use_ema=True, device=torch.device("cpu"))
    net = loaded.net
    for k in stats:
        assert torch.equal(net.state_dict()[k], G_ema[k])
    loaded.game.refresh_statistics("G_ema", net, torch.device("cpu"))
    assert all(torch.allclose(net.state_dict()[k], G_ema[k]) for k in stats)


def test_standing_statistics_are_the_mean_over_the_batches():
    bn = torch.nn.BatchNorm1d(3)
    batches = [torch.randn(16, 3) * 2 + 1 for _ in range(4)]
    feed = iter(batches)
    standing_statistics(bn, lambda: (next(feed),), 4)
    assert torch.allclose(bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-6)
    assert not bn.training and bn.momentum == 0.1


def test_infogan_with_continuous_codes_only_trains(tmp_path):
    result = train(tiny_config("model=infogan", "conditioning.categorical=0"), tmp_path)
    assert result["step"] == 2 and "info/continuous" in result["logged"]


def test_gan_eval_of_a_conditional_toy2d_checkpoint(tmp_path):
    train(tiny_config("model=cgan", "dataset=toy2d"), tmp_path)
    result = evaluate(parse_args([f"ckpt={tmp_path}", "num_samples=200", "progress=false"]))
    assert set(result["metrics"]) == {"modes", "hq_percent", "reverse_kl", "balanced_hq"}


# --- checkpoints by name ---------------------------------------------------------------------------


def test_a_checkpoint_of_the_first_layout_still_resumes_samples_and_evaluates(tmp_path, shared_cache):
    original = torch.load(V1_CHECKPOINT, weights_only=True)
    assert original["format"] == "gan-cli checkpoint v1"
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(V1_CHECKPOINT, run_dir / "checkpoints" / "last.pt")
    loaded = build.load(run_dir, use_ema=False, device=torch.device("cpu"))
    assert all(torch.equal(loaded.net.state_dict()[k], v) for k, v in original["G"].items())
    ema = build.load(run_dir, use_ema=True, device=torch.device("cpu"))
    weights = [name for name, _ in ema.net.named_parameters()]
    assert ema.which == "G_ema" and all(torch.equal(ema.net.state_dict()[k], original["G_ema"][k]) for k in weights)
    result = evaluate(parse_args([f"ckpt={run_dir}", "num_samples=100", "metrics=[fid,accuracy]", "progress=false",
                                  f"cache_dir={shared_cache}"]))
    assert result["step"] == 2 and result["metrics"]["fid"] > 0
    resume(run_dir, 3)
    state = checkpoint.load(run_dir)
    assert state["format"] == checkpoint.FORMAT and state["step"] == 3 and set(state["nets"]) == {"G", "D"}
    assert set(state["optimizers"]) == {"G", "D"} and set(state["ema"]) == {"G_ema"}


# --- learning-rate schedules -----------------------------------------------------------------------


def test_schedule_factors_by_hand():
    assert [schedules.factor(s, "constant", 4) for s in (1, 4)] == [1.0, 1.0]
    # Kept until step 2, then down by a quarter each step: the update after the last would have rate 0.
    assert [schedules.factor(s, "linear_decay", 6, decay_start=2) for s in range(1, 7)] == [1, 1, 1, 0.75, 0.5, 0.25]
    assert [schedules.factor(s, "cosine", 3) for s in (1, 2, 3)] == pytest.approx([1.0, 0.75, 0.25])
    assert [schedules.factor(s, "constant", 10, warmup=4) for s in (1, 2, 4, 5)] == [0.25, 0.5, 1.0, 1.0]


def test_a_schedule_is_logged_and_resumed_exactly(tmp_path):
    base = ("optimizer.schedule=linear_decay", "optimizer.decay_start=2", "optimizer.warmup=1", "trainer.log_every=1")
    train(tiny_config(*base, "trainer.steps=6"), tmp_path / "straight")
    train(tiny_config(*base, "trainer.steps=6", "trainer.ckpt_every=3"), tmp_path / "split")
    # Cut the run short at step 3 (the checkpoint there), as a crash would, and resume it.
    shutil.copy(tmp_path / "split" / "checkpoints" / "step_0000003.pt", tmp_path / "split" / "checkpoints" / "last.pt")
    resume(tmp_path / "split", 6)
    assert differences(checkpoint.load(tmp_path / "straight"), checkpoint.load(tmp_path / "split")) == []
    events = EventAccumulator(str(tmp_path / "straight")).Reload()
    lrs = [e.value / 2e-4 for e in events.Scalars("lr/G")]
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.5, 0.25])


def test_a_resumed_schedule_keeps_its_horizon(tmp_path):
    train(tiny_config("optimizer.schedule=linear_decay", "trainer.steps=2"), tmp_path)
    resume(tmp_path, 4)
    assert checkpoint.load(tmp_path)["schedules"]["G"]["total"] == 2


@pytest.mark.parametrize("override,message", [
    ("optimizer.schedule=step", "unknown optimizer.schedule 'step'; choose one of: constant, linear_decay, cosine"),
    ("optimizer.warmup=-1", "optimizer.warmup must be a non-negative integer"),
])
def test_bad_schedules_are_one_line_errors(override, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(tiny_config(override), tmp_path)


# --- data split between processes --------------------------------------------------------------


def test_processes_take_disjoint_shares_of_each_epoch():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1)
    seen = []
    for rank in (0, 1):
        source = TensorBatches(images, None, 5, torch.device("cpu"), seed=7, name="n").shard(rank, 2)
        seen.append(sorted(int(v) for _ in range(2) for v in ((source.next()[0] + 1) * 127.5).round().flatten()))
    assert set(seen[0]).isdisjoint(seen[1]) and len(seen[0]) == len(seen[1]) == 10
    # Streamed data: the same, and epochs differ (the order depends on the epoch, not on rank + epoch).
    shares = [epoch_order(20, 7, 0, rank, 2) for rank in (0, 1)]
    assert set(shares[0]).isdisjoint(shares[1]) and sorted(shares[0] + shares[1]) == list(range(20))
    assert epoch_order(20, 7, 1, 0, 2) != shares[1]


def test_streamed_data_resumes_inside_an_epoch():
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1)
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(12, dtype=torch.long))

    def source():
        return StreamBatches(dataset, (1, 1, 1), 0, 3, torch.device("cpu"), 5, 0, "s").shard(0, 1)

    a = source()
    a.next()
    state = a.state_dict()
    after = [a.next()[0] for _ in range(5)]  # into the next epoch too
    b = source()
    b.load_state_dict(state)
    assert all(torch.equal(x, b.next()[0]) for x in after)


# --- layers ----------------------------------------------------------------------------------------


def imports_of_each_module() -> dict:
    """{module: the gan_cli modules it imports, at the top or inside a function}."""
    import ast

    root = Path(__file__).resolve().parents[1] / "gan_cli"
    graph = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gan_cli"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("gan_cli"))
        graph[name] = found
    return {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}


def test_entry_points_import_only_lower_layers_and_nothing_imports_in_a_circle():
    graph = imports_of_each_module()
    entry_points = {"gan_cli.train", "gan_cli.evaluate", "gan_cli.sample"}
    for module, deps in graph.items():
        assert not deps & entry_points, f"{module} imports {deps & entry_points}"

    # Depth-first search for a cycle. The package gan_cli imports nothing at its top, only inside gan_cli.load()
    # (the Python API, imported when called), so its edges to its submodules make no cycle and are left out.
    import ast

    package = Path(__file__).resolve().parents[1] / "gan_cli" / "__init__.py"
    top = [n for n in ast.parse(package.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not top, "gan_cli/__init__.py imports at its top"
    graph["gan_cli"] = set()
    state = {}

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", " -> ".join(path + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
