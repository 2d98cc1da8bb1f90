"""gan-cli: config-driven GAN training, evaluation and sampling."""

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake the user can fix (a bad option, missing data, an unreadable file).

    The entry points print its message as one line, with no traceback, and exit with status 2.
    The message names what is wrong and how to fix it.
    """
