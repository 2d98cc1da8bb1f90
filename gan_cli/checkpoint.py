"""Checkpoints: atomic save, safe load, and finding the checkpoint of a run folder.

A checkpoint is a dict of tensors and plain data only (state dicts, RNG states, the resolved
config as plain containers and the components' short names), so it loads with
torch.load(weights_only=True) and loading can never import or run arbitrary code.
"""

import io
import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from gan_cli import UserError, writes

FORMAT = "gan-cli checkpoint v2"
V1 = "gan-cli checkpoint v1"  # one G and one D under fixed keys; read through `upgrade`


def upgrade(state: dict) -> dict:
    """A v1 checkpoint (keys G, G_ema, D, opt_G, opt_D, scaler_G, scaler_D) in today's layout, where
    nets, their averaged copies, optimizers, scalers and schedules are keyed by the names the game gives."""
    if state.get("format") != V1:
        return state
    new = {k: v for k, v in state.items() if k not in ("G", "G_ema", "D", "opt_G", "opt_D", "scaler_G", "scaler_D")}
    new.update({
        "format": FORMAT,
        "upgraded_from": V1,
        "game": "adversarial",
        "nets": {"G": state["G"], "D": state["D"]},
        "ema": {} if state.get("G_ema") is None else {"G_ema": state["G_ema"]},
        "optimizers": {"G": state["opt_G"], "D": state["opt_D"]},
        "scalers": {"G": state.get("scaler_G"), "D": state.get("scaler_D")},
        "schedules": {},
        "game_state": {},
    })
    return new


def find(path) -> Path:
    """A checkpoint file, or a run folder (-> its checkpoints/last.pt)."""
    path = Path(str(path)).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise UserError(f"no checkpoint in {path}: expected {path / 'checkpoints' / 'last.pt'}")
    if not path.is_file():
        raise UserError(f"no such checkpoint or run folder: {path}")
    return path


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint file belongs to."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def save(state: dict, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, flushed and fsynced, then renamed over path.

    A crash at any moment leaves either the old file or the new one, never a partial one.
    The bytes are made in memory first: torch's own file writer would turn a full disk into an
    "unexpected pos" error, where Python's says "no space left on device" (WriteFailed, one line).
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    writes.write_bytes(path, buffer.getbuffer())
    _fsync_dir(Path(path).parent)


def link_or_copy(src: Path, dst: Path) -> None:
    """Make dst hold the same bytes as src, atomically (a hard link where possible)."""
    with writes.atomic(dst) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    _fsync_dir(dst.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_tensors(path, what: str = "checkpoint"):
    """torch.load(path, weights_only=True) onto the CPU: tensors and plain data only, so reading can never
    import or run code. One-line errors: "refusing to load" for a file that names code to run (or objects
    to build), "cannot read" for a damaged one."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch says "unsupported GLOBAL <name>" when the pickle names a function or class to import:
        # that is a file built to run code (or to hold objects), refused. Anything else is damage.
        found = re.search(r"(?i)(unsupported global[^.]*|[^.]*global [\w.]+[^.]*)", str(e))
        if found:
            raise UserError(
                f"refusing to load {path}: it holds more than tensors and plain data ({' '.join(found.group(1).split())})"
            ) from None
        raise UserError(f"cannot read {what} {path}: the file is truncated or not a {what}") from None
    except Exception as e:  # a damaged file fails in many ways (EOFError, BadZipFile, KeyError, ...)
        raise UserError(f"cannot read {what} {path}: the file is truncated or not a {what} ({type(e).__name__})") from None


def load(path) -> dict:
    """Load a checkpoint safely (tensors and plain data only) onto the CPU; one-line errors for bad files."""
    path = find(path)
    state = read_tensors(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, V1):
        raise UserError(f"{path} is not a gan-cli checkpoint")
    return upgrade(state)


def _first_names(names) -> str:
    """The first three of a set of layer names, and how many more."""
    names = sorted(names)
    if not names:
        return "none"
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def load_weights(net: torch.nn.Module, weights: dict, who: str, path) -> None:
    """net.load_state_dict(weights), or one line saying which layers differ: a checkpoint written by a
    version of gan-cli whose nets were built differently (or a file edited by hand)."""
    ours, theirs = set(net.state_dict()), set(weights)
    if ours != theirs:
        raise UserError(
            f"the {who} in {path} does not fit the {who} its config builds (missing: {_first_names(ours - theirs)}; "
            f"not expected: {_first_names(theirs - ours)}): it was written by a gan-cli whose nets differ; use that "
            "version or train again"
        )
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:  # same names, other shapes
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e).splitlines()[0])
        raise UserError(f"the {who} in {path} does not fit the {who} its config builds: {first}") from None


# --- random number generator states, as tensors and plain data -------------------------------


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
