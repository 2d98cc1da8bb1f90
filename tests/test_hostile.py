"""Every key of the three commands, with hostile values: each answer is a clean run or one line.

The values go through the checks the commands make (in-process, tests/hostile.py); a sample runs as real
processes. The full walk over every preset's keys is marked slow (`python -m tests.hostile` runs it too).
"""

import json
import os
import subprocess

import pytest

from gan_cli.evaluate import evaluate, output_path, parse_args
from gan_cli.options import defaults, parse
from gan_cli.sample import sample
from gan_cli.train import train
from gan_cli.writes import write_text
from tests.conftest import BIN, tiny_config
from tests.hostile import compositions, options_walk, train_walk


def report(tried, bad):
    return f"{len(bad)} of {tried} values ended in a traceback:\n" + "\n".join(f"{c}: {p}" for c, p in bad[:30])


def test_every_key_of_every_group_option_with_hostile_values(tmp_path, monkeypatch):
    """The default config's keys, and each option of each group with its own keys (model presets: slow)."""
    monkeypatch.chdir(tmp_path)  # relative folders a value names (dataset.root=data) land here
    choices = [choice for choice, _ in compositions() if not (choice and choice[0].startswith("model="))]
    tried, bad = train_walk(choices)
    assert tried > 1500 and not bad, report(tried, bad)


@pytest.mark.slow
def test_every_key_of_every_preset_with_hostile_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tried, bad = train_walk([choice for choice, _ in compositions() if choice and choice[0].startswith("model=")])
    assert tried > 5000 and not bad, report(tried, bad)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("hostile-run")
    train(tiny_config("trainer.steps=2", "trainer.g_ema=0.9"), run_dir)
    return run_dir


@pytest.fixture
def in_scratch(tmp_path, monkeypatch, shared_cache):
    """Moves each command into a fresh working folder, for values that name files (out=abc writes ./abc);
    there the folders that a hostile value names as gan-eval's cache lead to the session's cache, so no
    classifier is trained again."""
    monkeypatch.setenv("GAN_CLI_CACHE", str(shared_cache))
    made = iter(range(10**6))

    def fresh():
        folder = tmp_path / str(next(made))
        folder.mkdir()
        for name in ("-1", "0", "abc", "inf"):  # the folder names of -1, 0, abc and 1e309
            (folder / name).symlink_to(shared_cache)
        monkeypatch.chdir(folder)

    return fresh


def test_every_gan_eval_key_with_hostile_values(small_run, in_scratch):
    def run_eval(args):
        in_scratch()
        options = parse_args([f"ckpt={small_run}", "num_samples=64", "metrics=[fid]", "progress=false", *args])
        result = evaluate(options)
        write_text(output_path(options, result), json.dumps(result))

    tried, bad = options_walk("eval", run_eval)
    assert tried == 7 * len(defaults("eval")) and not bad, report(tried, bad)


def test_every_gan_sample_key_with_hostile_values(small_run, in_scratch):
    def run_sample(args):
        in_scratch()
        sample(parse([f"ckpt={small_run}", "n=4", "progress=false", *args], "sample"))

    tried, bad = options_walk("sample", run_sample)
    assert tried > 7 * 35 and not bad, report(tried, bad)


@pytest.mark.parametrize("tool, args", [
    ("gan-train", ["seed=1e309", "generator.z_dim=1e309"]),
    ("gan-train", ["trainer.device=[1,2]"]),
    ("gan-eval", ["ckpt=x", "num_samples=''"]),
    ("gan-sample", ["ckpt=x", "mode=null"]),
])
def test_a_sample_of_hostile_commands_as_real_processes(tool, args, tmp_path):
    result = subprocess.run([str(BIN / tool), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HYDRA_FULL_ERROR": ""})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(f"{tool}: error: ")
    assert not (tmp_path / "outputs").exists()
