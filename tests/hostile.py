"""Hostile values for every key of gan-train, gan-eval and gan-sample: the walk tests/test_hostile.py runs.

`python -m tests.hostile` prints the count of values tried and every one that ended in an exception other
than gan-cli's one-line errors (a traceback for the user).
"""

import copy
import importlib.resources
import sys
import warnings

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from gan_cli import UserError, WriteFailed
from gan_cli.options import defaults
from gan_cli.train import check_config, check_group_choices, check_values, flatten, register_resolvers

# As typed on the command line: negative, zero, text, infinity, a list, null, an empty string.
HOSTILE = ["-1", "0", "abc", "1e309", "[1,2]", "null", "''"]
GROUPS = ("dataset", "generator", "discriminator", "loss", "optimizer", "conditioning", "game", "model")
CLEAN = (UserError, WriteFailed)  # one line, exit status 2 or 74
# Small enough that a value which is accepted builds its run in a moment (set where the config has the key).
SMALL = {"trainer.batch_size": 8, "trainer.device": "cpu", "trainer.num_workers": 0, "trainer.grid_size": 4,
         "generator.width": 8, "generator.max_width": 8, "discriminator.width": 8, "discriminator.max_width": 8}
_PARSER = OverridesParser.create()


def as_value(text: str):
    """What `key=<text>` gives the key on the command line (Hydra's grammar: 1e309 is inf, '' is empty)."""
    return _PARSER.parse_overrides([f"k={text}"])[0].value()


def group_options(group: str) -> list[str]:
    conf = importlib.resources.files("gan_cli.conf").joinpath(group)
    return sorted(p.name[:-5] for p in conf.iterdir() if p.name.endswith(".yaml"))


def compositions():
    """(choice, the keys to try): the default config with all its keys, then every option of every group
    with the keys of its own group (a preset: every key it composes)."""
    yield (), None
    for group in GROUPS:
        for option in group_options(group):
            yield (f"{group}={option}",), (None if group == "model" else f"{group}.")


def composed(choice):
    with initialize_config_module(config_module="gan_cli.conf", version_base="1.3"):
        return compose("train", overrides=list(choice))


def outcome(check, *args) -> str | None:
    """None for a clean answer (it ran, or a one-line gan-cli error); else what the user would see."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(*args)
    except CLEAN as e:
        if "\n" in str(e):
            return f"a {len(str(e).splitlines())}-line message: {str(e).splitlines()[0]}"
        return None
    except Exception as e:  # noqa: BLE001 - anything else reaches the user as a traceback
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def set_in(plain: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        plain = plain[part]
    plain[last] = value


def try_train_value(plain: dict, key: str, text: str) -> str | None:
    """gan-train <choice> key=<text>, through the checks the command makes before its first step.
    `plain`: the composed config as plain data, interpolations unresolved."""
    plain, keys = copy.deepcopy(plain), flatten(plain)
    for small, v in SMALL.items():
        if small != key and small in keys:
            set_in(plain, small, v)
    set_in(plain, key, as_value(text))
    cfg = OmegaConf.create(plain)
    OmegaConf.set_struct(cfg, True)  # as Hydra composes it

    def check(cfg):
        check_values(cfg)
        check_config(cfg)

    return outcome(check, cfg)


def train_walk(choices=None):
    """(tried, [(command, what went wrong)]) over every composition's keys and every hostile value."""
    register_resolvers()
    tried, bad = 0, []
    for choice, prefix in compositions():
        if choices is not None and choice not in choices:
            continue
        plain = OmegaConf.to_container(composed(choice))
        keys = [k for k in flatten(plain) if prefix is None or k.startswith(prefix)]
        for key in keys:
            for text in HOSTILE:
                tried += 1
                problem = try_train_value(plain, key, text)
                if problem:
                    bad.append((" ".join([*choice, f"{key}={text}"]), problem))
    for group in GROUPS:  # an unknown choice of each group
        tried += 1
        problem = outcome(check_group_choices, [f"{group}=nonesuch"])
        if problem:
            bad.append((f"{group}=nonesuch", problem))
    return tried, bad


def options_walk(name: str, run_check):
    """gan-eval (name="eval") or gan-sample ("sample"): every key with every hostile value, through
    `run_check(args)`, which parses and runs the command on a small checkpoint."""
    tried, bad = 0, []
    for key in defaults(name):
        for text in HOSTILE:
            tried += 1
            problem = outcome(run_check, [f"{key}={text}"])
            if problem:
                bad.append((f"{key}={text}", problem))
    return tried, bad


if __name__ == "__main__":
    tried, bad = train_walk()
    for command, problem in bad:
        print(f"gan-train {command}: {problem}")
    print(f"gan-train: {tried} values tried, {len(bad)} ended in a traceback")
    sys.exit(1 if bad else 0)
