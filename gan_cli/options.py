"""key=value command lines over a YAML file of commented defaults (gan-eval, gan-sample)."""

import importlib.resources
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


def parse(args, name: str) -> dict:
    """The defaults of conf/<name>.yaml updated by key=value arguments; anything else is one line."""
    options = defaults(name)
    for arg in args:
        key, sep, _ = arg.partition("=")
        if not sep:
            raise UserError(f"expected key=value, got '{arg}'; the options are: {', '.join(options)}")
        if key not in options:
            raise UserError(f"no option {key}; the options are: {', '.join(options)}")
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(list(args)))
    except OmegaConfBaseException as e:
        raise UserError(str(e).splitlines()[0]) from None
    options.update(given)
    return options


def positive_int(options: dict, *keys) -> None:
    for key in keys:
        if not isinstance(options[key], int) or isinstance(options[key], bool) or options[key] < 1:
            raise UserError(f"{key} must be a positive integer, got {options[key]!r}")
