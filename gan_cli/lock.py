"""One live run per folder: a lock file that a training run holds while it runs.

`<run>/run.lock` holds the owner's process id, host name and start time. It is made with
O_CREAT | O_EXCL, which is atomic on local file systems and on the shared ones clusters use (NFS v3 and
later, Lustre, GPFS, BeeGFS), unlike flock(), which some NFS and Lustre mounts accept without honouring.
While the run lives, a thread touches the file every HEARTBEAT seconds. A lock is stale, and is taken over
with a one-line notice, when its process is gone (same host: no such process id) or, from another host,
when its heartbeat is older than STALE seconds (a crashed node cannot remove its lock). It is removed when
the run ends, however it ends (errors, SIGTERM and SIGINT pass through the training loop's handlers and
reach the `finally` that releases it). Readers (gan-eval, gan-sample) never take it.
"""

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from gan_cli import UserError

log = logging.getLogger(__name__)

NAME = "run.lock"
HEARTBEAT = 30.0  # seconds between touches of a live lock
STALE = 300.0  # a lock from another host whose heartbeat is older than this is taken as left by a dead node


def _host() -> str:
    return socket.gethostname()


def read(folder) -> dict | None:
    """The lock's content (with its heartbeat age in seconds), or None where the folder holds none."""
    path = Path(folder) / NAME
    try:
        info = json.loads(path.read_text())
        info["age"] = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # half written by a process that died at that moment: no owner to respect
        return {"pid": None, "host": None, "started": "?", "age": float("inf")}
    return info


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def stale_reason(info: dict) -> str | None:
    """Why a lock no longer has a live owner, or None while it may have one."""
    if info.get("pid") is None:
        return "it could not be read"
    if info.get("host") == _host():
        return None if _alive(info["pid"]) else f"process {info['pid']} is gone"
    if info["age"] > STALE:
        return f"its heartbeat stopped {info['age'] / 60:.0f} minutes ago"
    return None


def owner(info: dict) -> str:
    return f"process {info.get('pid')} on {info.get('host')}, started {info.get('started')}"


def in_use(folder, info: dict) -> UserError:
    return UserError(f"{folder} is in use by a running gan-train ({owner(info)}); wait for it to end, stop it, "
                     "or write this run elsewhere (hydra.run.dir=<folder>)")


def check_free(folder) -> None:
    """Refuse, in one line, a folder that a live run holds (before anything is written into it)."""
    info = read(folder)
    if info is not None and stale_reason(info) is None and not (
            info.get("host") == _host() and info.get("pid") == os.getpid()):
        raise in_use(folder, info)


class RunLock:
    """Held for the life of a training run; a context manager."""

    def __init__(self, folder):
        self.path = Path(folder) / NAME
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = None

    def _create(self) -> bool:
        started = datetime.now().isoformat(timespec="seconds")
        content = json.dumps({"pid": os.getpid(), "host": _host(), "started": started, "token": self.token})
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(content + "\n")
        return True

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                break
            info = read(self.path.parent)
            if info is None:  # released between our two looks
                continue
            reason = stale_reason(info)
            if reason is None:
                raise in_use(self.path.parent, info)
            log.warning("taking over the lock of %s: %s (%s)", self.path.parent, reason, owner(info))
            self.path.unlink(missing_ok=True)
        else:
            raise UserError(f"could not lock {self.path.parent}: another process keeps taking it")
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:  # the folder went away or is read-only now: nothing to keep alive
                pass

    def release(self) -> None:
        self._stop.set()
        try:
            if json.loads(self.path.read_text()).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
