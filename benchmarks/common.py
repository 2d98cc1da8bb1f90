"""What the benchmark scripts share: the machine they ran on, composing a gan-train config, tables."""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import gan_cli

RESULTS = Path(__file__).parent / "results"
BIN = Path(sys.executable).parent  # gan-train, gan-eval and gan-sample of this environment


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(device: str = "cpu") -> str:
    """One line naming the hardware and software a number came from."""
    versions = f"torch {torch.__version__}, gan-cli {gan_cli.__version__}"
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, {versions}"
    threads = torch.get_num_threads()
    return f"{cpu_name()} ({os.cpu_count()} cores), {threads} thread{'' if threads == 1 else 's'}, {versions}"


def compose(overrides):
    """gan-train's config for these overrides, as the command line would compose it."""
    from hydra import compose as hydra_compose, initialize_config_module

    from gan_cli.train import register_resolvers

    register_resolvers()
    with initialize_config_module(config_module="gan_cli.conf", version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def table(header, rows) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_command(*args, env):
    """Run a command; its stderr's tail ends the benchmark when it fails."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if result.returncode:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{result.stderr[-2000:]}")
    return result


def train_and_score(name, overrides, work: Path, env) -> dict:
    """`gan-train <overrides>` into work/name, then `gan-eval` of it, as a user would run them: the
    seconds of training, gan-eval's metrics and its classifier's test accuracy (where it has one)."""
    run_dir = work / name
    start = time.perf_counter()
    run_command(BIN / "gan-train", *overrides, f"hydra.run.dir={run_dir}", "trainer.progress=false",
                "trainer.objective=none", env=env)
    seconds = time.perf_counter() - start
    out = run_dir / "eval.json"
    run_command(BIN / "gan-eval", f"ckpt={run_dir}", f"out={out}", "progress=false", env=env)
    report = json.loads(out.read_text())
    return {"name": name, "seconds": seconds, "metrics": report["metrics"], "run": run_dir,
            "classifier_test_accuracy": report.get("classifier_test_accuracy")}
