"""The answer of a sweep: every job's score in one table, the settings ranked over their seeds, a plot.

A sweep folder (`gan-train -m ...`: outputs/multirun/<date>/<time>/) holds one folder per job, each with
`.hydra/overrides.yaml` (the job's key=value choices) and `metrics.json` (written when the job ends: its
status and objective, see gan_cli/train.py). `summarise(folder)` reads them and writes, beside them:

  summary.csv   one row per job: its number, status, objective and the value of every swept key
  summary.md    the same table, then the settings (every swept key but `seed`) ranked best first by
                the mean objective over their seeds, with the standard deviation and the number of seeds
  summary.png   the objective (mean over seeds, bars: one standard deviation) against each swept key,
                one line per setting of the other keys

Hydra calls it when a sweep ends (the SweepSummary callback in conf/train.yaml); `gan-eval sweep=<folder>`
rebuilds the summary of a sweep that was interrupted or is still running (jobs without metrics.json are
listed as not finished and left out of the ranking).
"""

import csv
import io
import json
import math
import statistics
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

from gan_cli import UserError, writes

SEED = "seed"


def read_jobs(folder: Path) -> list[dict]:
    """Every job folder's overrides and metrics, in job order."""
    jobs = []
    for overrides_file in folder.glob("*/.hydra/overrides.yaml"):
        job = overrides_file.parents[1]
        try:
            overrides = yaml.safe_load(overrides_file.read_text()) or []
        except (OSError, yaml.YAMLError):
            continue
        values = {}
        for override in overrides:
            key, sep, value = str(override).lstrip("+~").partition("=")
            if sep and not key.startswith("hydra"):
                values[key] = value
        try:
            metrics = json.loads((job / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {"status": "not finished"}
        objective = metrics.get("objective") or {}
        jobs.append({"job": job.name, "values": values, "status": metrics.get("status", "?"),
                     "metric": objective.get("metric"), "objective": objective.get("value"),
                     "direction": objective.get("direction"), "reason": metrics.get("reason", "")})
    return sorted(jobs, key=lambda j: (len(j["job"]), j["job"]))


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def swept_keys(jobs: list[dict]) -> list[str]:
    """The keys whose value differs between jobs (a key every job sets alike is the sweep's context)."""
    keys = sorted({k for j in jobs for k in j["values"]})
    return [k for k in keys if len({j["values"].get(k) for j in jobs}) > 1]


def ranked(jobs: list[dict], keys: list[str]) -> list[dict]:
    """The settings (swept keys but seed) with the mean, standard deviation and count of their finished
    jobs' objectives (failed jobs count with their recorded worst value), best first."""
    setting_keys = [k for k in keys if k != SEED]
    groups: dict[tuple, list[float]] = {}
    for job in jobs:
        if job["objective"] is None:
            continue
        groups.setdefault(tuple(job["values"].get(k, "") for k in setting_keys), []).append(float(job["objective"]))
    minimize = next((j["direction"] != "maximize" for j in jobs if j["direction"]), True)
    rows = []
    for setting, values in groups.items():
        finite = [v for v in values if math.isfinite(v)]
        mean = statistics.fmean(values) if len(finite) == len(values) else (math.inf if minimize else -math.inf)
        std = statistics.stdev(values) if len(finite) == len(values) > 1 else 0.0
        rows.append({"setting": dict(zip(setting_keys, setting)), "mean": mean, "std": std, "n": len(values)})
    return sorted(rows, key=lambda r: r["mean"] if minimize else -r["mean"])


def summarise(folder) -> dict:
    """Write summary.csv, summary.md and summary.png into the sweep folder; returns what it found."""
    folder = Path(str(folder)).expanduser()
    if not folder.is_dir():
        raise UserError(f"sweep={folder}: no such folder (a sweep folder is outputs/multirun/<date>/<time>)")
    jobs = read_jobs(folder)
    if not jobs:
        raise UserError(f"sweep={folder}: no jobs in it (each job is a subfolder with .hydra/overrides.yaml)")
    keys = swept_keys(jobs)
    metric = next((j["metric"] for j in jobs if j["metric"]), "objective")
    rows = ranked(jobs, keys)

    table = io.StringIO()
    out = csv.writer(table)
    out.writerow(["job", "status", metric, *keys])
    for job in jobs:
        out.writerow([job["job"], job["status"], "" if job["objective"] is None else job["objective"],
                      *(job["values"].get(k, "") for k in keys)])
    writes.write_text(folder / "summary.csv", table.getvalue())

    direction = next((j["direction"] for j in jobs if j["direction"]), "minimize")
    lines = [f"# Sweep {folder.name}: {metric} ({direction})", "", "## Jobs", "",
             "| job | status | " + metric + " | " + " | ".join(keys) + " |", "|---" * (3 + len(keys)) + "|"]
    for job in jobs:
        value = "" if job["objective"] is None else f"{job['objective']:.4g}"
        status = job["status"] + (f" ({job['reason']})" if job["reason"] else "")
        lines.append(f"| {job['job']} | {status} | {value} | " + " | ".join(job["values"].get(k, "") for k in keys)
                     + " |")
    setting_keys = [k for k in keys if k != SEED]
    lines += ["", "## Settings, best first (mean ± std over seeds)", "",
              "| rank | " + " | ".join(setting_keys or ["setting"]) + f" | {metric} | seeds |",
              "|---" * (3 + max(1, len(setting_keys))) + "|"]
    for rank, row in enumerate(rows, 1):
        cells = [row["setting"].get(k, "") for k in setting_keys] or ["(one)"]
        lines.append(f"| {rank} | " + " | ".join(cells) + f" | {row['mean']:.4g} ± {row['std']:.2g} | {row['n']} |")
    unfinished = [j["job"] for j in jobs if j["objective"] is None]
    if unfinished:
        lines += ["", f"Not finished (left out): jobs {', '.join(unfinished)}."]
    writes.write_text(folder / "summary.md", "\n".join(lines) + "\n")
    plot = _plot(jobs, keys, metric, folder / "summary.png") if setting_keys and rows else None
    return {"folder": folder, "jobs": len(jobs), "finished": len(jobs) - len(unfinished), "metric": metric,
            "best": rows[0] if rows else None, "plot": plot}


def _plot(jobs, keys, metric, path: Path) -> Path:
    """The objective against each swept key (mean over seeds), one line per setting of the other keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setting_keys = [k for k in keys if k != SEED]
    cols = min(4, len(setting_keys))
    rows = math.ceil(len(setting_keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(setting_keys):]:
        ax.axis("off")
    for ax, key in zip(axes.flat, setting_keys):
        others = [k for k in setting_keys if k != key]
        values = sorted({j["values"].get(key, "") for j in jobs},
                        key=lambda v: (_number(v) is None, _number(v) or 0.0, v))
        numeric = all(_number(v) is not None for v in values)
        # The finite scores of each (setting of the other keys, value of this key).
        scores: dict[tuple, dict[str, list[float]]] = {}
        for job in jobs:
            if job["objective"] is not None and math.isfinite(float(job["objective"])):
                other = tuple(job["values"].get(k, "") for k in others)
                scores.setdefault(other, {}).setdefault(job["values"].get(key, ""), []).append(float(job["objective"]))
        x_of = {v: (_number(v) if numeric else i) for i, v in enumerate(values)}
        if len(scores) > 6:  # a search: (nearly) every job its own setting, so one point per job
            points = [(x_of[v], s) for by_value in scores.values() for v, runs in by_value.items() for s in runs]
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=14)
            others = []
        else:
            for other, by_value in sorted(scores.items()):
                present = [v for v in values if v in by_value]
                ax.errorbar([x_of[v] for v in present], [statistics.fmean(by_value[v]) for v in present],
                            yerr=[statistics.stdev(by_value[v]) if len(by_value[v]) > 1 else 0.0 for v in present],
                            marker="o", capsize=3,
                            label=", ".join(f"{k}={v}" for k, v in zip(others, other)) or None)
        if numeric and all((_number(v) or 0) > 0 for v in values) and len(values) > 2 \
                and max(_number(v) for v in values) / min(_number(v) for v in values) >= 100:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(values)), values, rotation=20)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        if others:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    writes.write_bytes(path, buffer.getvalue())
    return path


class SweepSummary(Callback):
    """Hydra callback: when a sweep ends, its summary is written into the sweep folder."""

    def on_multirun_end(self, config, **kwargs) -> None:
        import logging

        try:
            result = summarise(Path(config.hydra.sweep.dir))
        except UserError as e:
            logging.getLogger(__name__).warning("no sweep summary: %s", e)
            return
        logging.getLogger(__name__).info("sweep summary: %s (%d of %d jobs finished)",
                                         result["folder"] / "summary.md", result["finished"], result["jobs"])
