"""Everyday accidents: two runs in one folder, stale locks, failed writes, broken files, bad values."""

import contextlib
import io
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan_cli import WRITE_FAILED_EXIT, UserError, checkpoint, lock
from gan_cli.train import train
from tests.conftest import BIN, one_line, tiny_config, write_images
from tests.test_cli import TINY, assert_one_line_error, run
from tests.test_resilience import LONG_TOY, start, wait_for

# --- one live run per folder ---------------------------------------------------------------------


def test_a_second_run_and_a_resume_of_a_live_run_are_refused(tmp_path):
    run_dir = tmp_path / "run"
    first = start([*LONG_TOY, "trainer.ckpt_every=100", f"hydra.run.dir={run_dir}"], tmp_path)
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "last.pt").exists(), timeout=600)  # a loaded machine may be slow
        info = json.loads((run_dir / lock.NAME).read_text())
        assert info["pid"] == first.pid and info["host"] == socket.gethostname()
        config = (run_dir / ".hydra" / "config.yaml").read_text()
        second = run(*LONG_TOY, "trainer.steps=5", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert_one_line_error(second, f"{run_dir} is in use by a running gan-train (process {first.pid} on ")
        resumed = run(f"resume={run_dir}", cwd=tmp_path)
        assert_one_line_error(resumed, "is in use by a running gan-train", str(first.pid))
        assert (run_dir / ".hydra" / "config.yaml").read_text() == config  # nothing of the refused runs written
        assert not list((run_dir / ".hydra").glob("resume-*"))
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM, err
    assert not (run_dir / lock.NAME).exists()  # released on SIGTERM
    state = checkpoint.load(run_dir)
    assert state["config"]["trainer"]["steps"] == 200000 and state["step"] > 0


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(folder, pid, host, age=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock.NAME
    path.write_text(json.dumps({"pid": pid, "host": host, "started": "2026-01-01T00:00:00", "token": "x"}))
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))


@pytest.mark.parametrize("pid, host, age", [
    ("dead", "here", 0.0),                          # kill -9 on this machine: the process is gone
    (12345, "a-crashed-node", lock.STALE + 60),     # another machine that stopped its heartbeat
])
def test_a_stale_lock_is_taken_over_with_a_notice(pid, host, age, tmp_path, caplog):
    write_lock(tmp_path, dead_pid() if pid == "dead" else pid, socket.gethostname() if host == "here" else host, age)
    with caplog.at_level("WARNING"):
        train(tiny_config(), tmp_path)
    (notice,) = [r.getMessage() for r in caplog.records if "taking over the lock" in r.getMessage()]
    assert ("is gone" in notice) if host == "here" else ("heartbeat stopped" in notice)
    assert not (tmp_path / lock.NAME).exists() and checkpoint.load(tmp_path)["step"] == 2


def test_a_live_lock_of_another_host_is_respected(tmp_path):
    write_lock(tmp_path, 12345, "another-node", age=5.0)
    with pytest.raises(UserError) as err:
        train(tiny_config(), tmp_path)
    assert "in use by a running gan-train (process 12345 on another-node" in one_line(err)
    assert (tmp_path / lock.NAME).exists() and not (tmp_path / "checkpoints").exists()


def test_the_lock_is_released_after_an_error(tmp_path):
    with pytest.raises(UserError):
        train(tiny_config("dataset=folder", f"dataset.root={tmp_path / 'none'}"), tmp_path / "run")
    assert not (tmp_path / "run" / lock.NAME).exists()


# --- writes that fail say why and lose nothing ---------------------------------------------------

TOY = ["model=gan", "dataset=toy2d", "trainer.steps=2", "trainer.batch_size=8", "generator.hidden=[8]",
       "discriminator.hidden=[8]", "trainer.device=cpu", "trainer.progress=false", "trainer.sample_every=0",
       "trainer.log_every=1", "trainer.num_workers=0", "trainer.grid_size=16"]


def limited(max_bytes):
    """preexec_fn: files this process writes may not grow beyond max_bytes (ulimit -f)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def tool(name, *args, cwd, preexec_fn=None, env=None):
    return subprocess.run([str(BIN / name), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          preexec_fn=preexec_fn, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def assert_write_failure(result, prog, *fragments):
    assert result.returncode == WRITE_FAILED_EXIT, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("[")]  # log lines
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: cannot write "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def no_temporary_files(folder):
    return not [p for p in Path(folder).rglob("*") if ".tmp-" in p.name or ".partial" in p.name]


def test_a_checkpoint_over_the_file_size_limit_keeps_the_last_one_and_says_how_to_resume(tmp_path):
    assert tool("gan-train", *TINY, "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    size = (tmp_path / "run" / "checkpoints" / "last.pt").stat().st_size
    result = tool("gan-train", "resume=run", "trainer.steps=4", cwd=tmp_path, preexec_fn=limited(size // 2))
    assert_write_failure(result, "gan-train", "run/checkpoints/last.pt: file too large",
                         "the last good checkpoint is run/checkpoints/last.pt (step 2)", "gan-train resume=run")
    assert checkpoint.load(tmp_path / "run")["step"] == 2  # nothing lost
    assert no_temporary_files(tmp_path / "run")


def test_tensorboard_events_over_the_limit_are_one_line_too(tmp_path):
    """TensorBoard writes from a thread of its own; its refused write is still one line, no traceback."""
    result = tool("gan-train", *TOY, "trainer.steps=200", "trainer.sample_every=1", "hydra.run.dir=run", cwd=tmp_path,
                  preexec_fn=limited(60_000))
    assert_write_failure(result, "gan-train", "the TensorBoard event file", "file too large")


def test_a_full_disk_is_one_line(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("no permission to mount a small file system here")
    try:
        result = tool("gan-train", *TINY, f"hydra.run.dir={disk / 'run'}", cwd=tmp_path)
        assert_write_failure(result, "gan-train", "no space left on device", "no checkpoint of this run was written")
        assert no_temporary_files(disk)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@contextlib.contextmanager
def read_only(folder):
    """The folder made read-only for this process: by its permissions, or, for root (whom permissions do
    not stop), by a read-only bind mount; skips the test where neither is possible."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if not mounted or subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)],
                                     capture_output=True).returncode != 0:
        if mounted:
            subprocess.run(["umount", str(folder)])
        pytest.skip("root here cannot make a read-only mount")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_folders_are_one_line_for_all_three_commands(tmp_path):
    assert tool("gan-train", *TOY, "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    env = {"GAN_CLI_CACHE": str(tmp_path / "cache")}
    with read_only(tmp_path / "read-only") as folder:
        result = tool("gan-sample", "ckpt=run", f"out={folder / 'grid.png'}", cwd=tmp_path, env=env)
        assert_write_failure(result, "gan-sample", f"{folder / 'grid.png'}: ")
        result = tool("gan-eval", "ckpt=run", "num_samples=200", f"out={folder / 'eval.json'}", cwd=tmp_path, env=env)
        assert_write_failure(result, "gan-eval", f"{folder / 'eval.json'}: ")
        assert list(folder.iterdir()) == []
    for error in (result.stderr,):
        assert "read-only file system" in error or "permission denied" in error
    with read_only(tmp_path / "run" / "checkpoints"):
        result = tool("gan-train", "resume=run", "trainer.steps=3", cwd=tmp_path, env=env)
    assert_write_failure(result, "gan-train", "run/checkpoints/last.pt: ",
                         "the last good checkpoint is run/checkpoints/last.pt (step 2)")
    assert checkpoint.load(tmp_path / "run")["step"] == 2
    assert no_temporary_files(tmp_path)


# --- unreadable data: one behaviour --------------------------------------------------------------


def broken_folder(root):
    """Eight good images in two classes, a truncated JPEG and a text file named .png."""
    write_images(root, {"a": 4, "b": 4}, size=(20, 20))
    jpeg = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(jpeg, format="JPEG")
    (root / "a" / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (root / "b" / "notes.png").write_text("not an image\n")
    return root


STREAMED = ["dataset=folder", "dataset.max_memory_mb=0", "trainer.batch_size=4", "trainer.num_workers=1"]


@pytest.mark.parametrize("where", [["dataset.cache=off"], ["dataset.in_memory=true"]])
def test_an_unreadable_image_is_the_same_one_line_streamed_or_held(where, tmp_path):
    root = broken_folder(tmp_path / "images")
    with pytest.raises(UserError) as err:
        train(tiny_config(*STREAMED, f"dataset.root={root}", *where), tmp_path / "run")
    assert re.match(r"dataset folder: cannot read image .*(truncated\.jpg|notes\.png) \(", one_line(err))


@pytest.mark.parametrize("where", [["dataset.cache=off"], [], ["dataset.in_memory=true"]])  # streamed, cached, held
def test_on_bad_file_skip_leaves_them_out_and_lists_them(where, tmp_path, caplog):
    root = broken_folder(tmp_path / "images")
    run_dir = tmp_path / "run"
    config = tiny_config(*STREAMED, f"dataset.root={root}", "dataset.on_bad_file=skip",
                         f"dataset.cache_dir={tmp_path / 'cache'}", *where)
    with caplog.at_level("INFO"):
        assert train(config, run_dir)["step"] == 2
    listed = sorted(line.split("\t")[0] for line in (run_dir / "skipped_files.txt").read_text().splitlines())
    assert listed == [str(root / "a" / "truncated.jpg"), str(root / "b" / "notes.png")]
    assert any("left out 2 unreadable files" in r.getMessage() for r in caplog.records)
    assert any("skipped_files.txt" in r.getMessage() for r in caplog.records)
    with pytest.raises(UserError, match="dataset.on_bad_file must be error or skip, got 'ignore'"):
        train(tiny_config(*STREAMED, f"dataset.root={root}", "dataset.on_bad_file=ignore"), tmp_path / "other")


# --- the newcomer's path -------------------------------------------------------------------------


def test_refused_commands_leave_no_run_folder(tmp_path):
    assert_one_line_error(run("dataset=mnist", f"dataset.root={tmp_path / 'none'}", *TINY, cwd=tmp_path),
                          "not found in")
    assert not (tmp_path / "outputs").exists()  # the folder Hydra made for the refused run is gone
    assert run(*TINY, "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    before = sorted(str(p) for p in (tmp_path / "run").rglob("*"))
    assert_one_line_error(run("resume=run", "trainer.batch_size=4", cwd=tmp_path), "resume would change")
    assert sorted(str(p) for p in (tmp_path / "run").rglob("*")) == before  # no config copy of the refused resume
    assert_one_line_error(run(*TINY, "hydra.run.dir=run", cwd=tmp_path), "already holds a run")
    assert sorted(str(p) for p in (tmp_path / "run").rglob("*")) == before


@pytest.mark.parametrize("tool_name, args, message", [
    ("gan-train", ["modle=gan"], "no option modle in the config (did you mean model?)"),
    ("gan-train", ["model=stylegan2", "generator.mapping_layer=2"], "(did you mean generator.mapping_layers?)"),
    ("gan-train", ["model=wgan-gp"], "unknown model 'wgan-gp' (did you mean wgan_gp?)"),
    ("gan-eval", ["ckpt=x", "num_sample=10"], "no option num_sample (did you mean num_samples?)"),
    ("gan-sample", ["ckpt=x", "mdoe=grid"], "no option mdoe (did you mean mode?)"),
    ("gan-train", ["-m", "hydra/launcher=rq", "seed=1,2"],
     "needs Hydra's hydra-rq-launcher plugin, which is not installed"),
])
def test_near_misses_are_named_and_missing_plugins_are_one_line(tool_name, args, message, tmp_path):
    result = tool(tool_name, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"{tool_name}: error: ") and message in line, line
    assert not (tmp_path / "outputs").exists()


def test_an_offline_download_is_one_line():
    from gan_cli.data.images import download_failure

    error = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a.example/mnist/, got:\n"
                         "<urlopen error [Errno -2] Name or service not known>\nTried http://b.example/, got:\n"
                         "<urlopen error [Errno -2] Name or service not known>\n")
    assert download_failure(error) == "no connection to the server: [Errno -2] Name or service not known"
    assert "\n" not in download_failure(RuntimeError("File not found or corrupted.\nSee the log."))
