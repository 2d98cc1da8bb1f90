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


class WriteFailed(Exception):
    """A file could not be written (no space left, over a file-size limit, read-only, no permission). The
    entry points print it as one line and exit with status 74 (EX_IOERR of sysexits.h): not the user's
    command but the machine. Nothing half-written is left behind (see gan_cli/writes.py)."""

    def __init__(self, path, reason: str, hint: str = ""):
        self.path, self.reason, self.hint = path, reason, hint
        super().__init__(f"cannot write {path}: {reason}" + (f"; {hint}" if hint else ""))


WRITE_FAILED_EXIT = 74


def load(run, use_ema: bool = True, device: str = "auto"):
    """A trained run (its folder or a checkpoint) for use from Python: `gan_cli.load(run).sample(16, seed=0)`.
    See gan_cli.api."""
    from gan_cli.api import load as load_run

    return load_run(run, use_ema, device)
