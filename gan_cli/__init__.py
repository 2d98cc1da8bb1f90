"""gan-cli: config-driven GAN training, evaluation and sampling."""

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake the user can fix (a bad option, missing data, an unreadable file).

    The entry points print its message as one line, with no traceback, and exit with status 2.
    The message names what is wrong and how to fix it.
    """


class DataMissing(UserError):
    """The files of a data set, or of one of its splits, are not on disk at all (as opposed to present but
    damaged, which is a plain UserError): the one case where a fallback, such as holding out part of the
    train split when there is no test split, is the right answer."""


def load(run, use_ema: bool = True, device: str = "auto"):
    """A trained run (its folder or a checkpoint) for use from Python: `gan_cli.load(run).sample(16, seed=0)`.
    See gan_cli.api."""
    from gan_cli.api import load as load_run

    return load_run(run, use_ema, device)
