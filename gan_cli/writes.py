"""Writing files so that a failure says why and loses nothing.

Every file gan-cli writes (checkpoints, sample grids and images, gan-eval's JSON and caches) is written to
a temporary name beside it and renamed over the target when whole, so a full disk or a file-size limit
leaves the old file (or none), never a torn one; the temporary file is removed. A failed write becomes
WriteFailed: one line naming the file and the cause ("no space left on device", "file too large",
"read-only file system", "permission denied").
"""

import errno
import logging
import os
import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from gan_cli import WriteFailed

# The errors of a write that the machine refused (as opposed to a bug): said as one line.
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO}


def reason(error: OSError) -> str:
    return os.strerror(error.errno).lower() if error.errno else str(error)


def is_write_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in WRITE_ERRNOS


def failed(error: OSError, path=None, hint: str = "") -> WriteFailed:
    return WriteFailed(path or describe(error), reason(error), hint)


@contextmanager
def atomic(path):
    """Yields a temporary path beside `path` (same suffix, so writers that go by it still do); renames it
    over `path` when the block ends. Any OSError becomes WriteFailed naming `path`; the temporary file goes."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise failed(e, path) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_bytes(path, data) -> None:
    with atomic(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".webp": "WEBP", ".bmp": "BMP"}


def save_image(image, path, **options) -> None:
    """A PIL image, atomically, in the format of the path's suffix (options: PIL's, e.g. for a GIF)."""
    path = Path(path)
    with atomic(path) as tmp:
        image.save(tmp, format=_FORMATS.get(path.suffix.lower(), "PNG"), **options)



def setup_cli() -> None:
    """For the console scripts: a file-size limit (ulimit -f) makes writes fail with EFBIG instead of
    killing the process with SIGXFSZ, and a log file that cannot be written is skipped quietly (the
    message still reaches the console) instead of printing a traceback per line."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    logging.raiseExceptions = False
    threading.excepthook = _quiet_write_errors


def _quiet_write_errors(args) -> None:
    """A background writer (TensorBoard's) that the machine refused: its error reaches the main thread on
    the next write and is said there in one line, so the thread prints no traceback of its own."""
    if not is_write_error(args.exc_value):
        threading.__excepthook__(args)


def describe(error: OSError) -> str:
    """The file a failed write was for: the error's own file name, else TensorBoard's event file where the
    error came from TensorBoard's writer (whose errors name no file)."""
    if error.filename:
        return str(error.filename)
    if any("tensorboard" in frame.filename for frame in traceback.extract_tb(error.__traceback__)):
        return "the TensorBoard event file (events.out.tfevents.*)"
    return "a file"
