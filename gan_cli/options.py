"""key=value command lines over a YAML file of commented defaults (gan-eval, gan-sample)."""

import difflib
import importlib.resources
import math
import os
import sys

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli import UserError


def defaults(*parts: str) -> dict:
    """conf/<parts>.yaml (installed as gan_cli.conf) as plain data, e.g. defaults("dataset", "mnist")."""
    *folders, name = parts
    text = importlib.resources.files("gan_cli.conf").joinpath(*folders, f"{name}.yaml").read_text()
    return OmegaConf.to_container(OmegaConf.create(text))


HELP_FLAGS = ("--help", "-h", "help")


def show_help(args, name: str, tool: str) -> bool:
    """For `<tool> --help` (or -h): print every option of conf/<name>.yaml with its default and comment, and
    return True; False for any other command line."""
    if not any(arg in HELP_FLAGS for arg in args):
        return False
    text = importlib.resources.files("gan_cli.conf").joinpath(f"{name}.yaml").read_text()
    try:
        print(f"{tool} key=value ...   (every option below, its default and what it does)\n")
        print(text.rstrip(), flush=True)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True


def suggest(word: str, known) -> str:
    """ " (did you mean X?)" for the closest of the known words, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def parse(args, name: str) -> dict:
    """The defaults of conf/<name>.yaml updated by key=value arguments; anything else is one line."""
    options = defaults(name)
    for arg in args:
        key, sep, _ = arg.partition("=")
        if not sep:
            raise UserError(f"expected key=value, got '{arg}'; the options are: {', '.join(options)}")
        if key not in options:
            raise UserError(f"no option {key}{suggest(key, options)}; the options are: {', '.join(options)}")
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(list(args)))
    except OmegaConfBaseException as e:
        raise UserError(str(e).splitlines()[0]) from None
    for key, value in given.items():
        given[key] = checked_type(key, value, options[key], key in PATH_KEYS.get(name, ()))
    options.update(given)
    return options


# Options that name a file or folder (null by default): a number given is a name (out=1 is the file "1").
PATH_KEYS = {"eval": ("ckpt", "fake", "sweep", "real", "real_root", "out", "inception_weights", "cache_dir", "probe_test"),
             "sample": ("ckpt", "out", "cache_dir", "input", "codes")}


def checked_type(key: str, value, default, path: bool):
    """`value` where it has the kind of its default (a whole number, a number, true/false, text; a path),
    else one line. Null defaults other than paths are checked where they are used."""
    if path:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key} must be a path, got {value!r}")
    kinds = ((bool, "true or false"), (int, "a whole number"), (float, "a number"), (str, "text"))
    for kind, words in kinds:
        if isinstance(default, kind):
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if kind is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok:
                raise UserError(f"{key} must be {words}, got {value!r}")
            break
    return value


def positive_int(options: dict, *keys) -> None:
    for key in keys:
        if not isinstance(options[key], int) or isinstance(options[key], bool) or options[key] < 1:
            raise UserError(f"{key} must be a positive integer, got {options[key]!r}")
