"""Optuna searches (`gan-train -m hparams_search=<preset>`): checked before any trial, continued after a stop.

The search itself is Hydra's Optuna sweeper (hydra-optuna-sweeper): it asks the study for a trial,
launches the job with the suggested values and tells the study the job's return value, which is the
run's objective (gan_cli/train.py). What this module adds, before Hydra starts:

- One line, before any trial, for a search space key that the composed config does not have, a
  direction that contradicts trainer.objective, a run without an objective, or a study storage that
  cannot be written.
- Continuing: the study is kept in SQLite in the sweep folder (the presets' `storage`), and the presets'
  sweep folder has no time in its name, so the same command finds the study again. Then the trials that
  finished (completed, or failed and recorded) count towards `n_trials` and only the rest are run; a
  trial that was running when the search was killed is marked failed and tried anew with a fresh
  suggestion; TPE's seed moves on by the number of trials the study holds, so no earlier suggestion is
  drawn again; the new jobs' folders are numbered on from the old ones (GAN_CLI_JOB_OFFSET, read by the
  `gan_job_dir` resolver of conf/train.yaml), so none is overwritten.
"""

import logging
import os
import re
from pathlib import Path

from omegaconf import OmegaConf

from gan_cli import UserError, runtime

log = logging.getLogger("gan_cli.search")

JOB_OFFSET = "GAN_CLI_JOB_OFFSET"
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def job_dir(num) -> str:
    """hydra.sweep.subdir: the job's number, plus the trials an earlier run of the same study made."""
    return str(int(num) + int(os.environ.get(JOB_OFFSET, "0")))


def _has_key(plain: dict, key: str) -> bool:
    node = plain
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


# trainer.objective=auto where it is not the classifier FID: the data sets whose modes are counted
AUTO_OBJECTIVES = {"toy2d": "balanced_hq", "stacked_mnist": "reverse_kl"}


def auto_objective(cfg) -> str:
    """trainer.objective=auto for this config's data set (what train.objective_metric picks for z -> x runs)."""
    return AUTO_OBJECTIVES.get(OmegaConf.select(cfg, "dataset.name"), "fid")


def objective_of(cfg) -> str | None:
    """The metric a run of this config is scored by (trainer.objective, auto resolved by the data set)."""
    name = OmegaConf.select(cfg, "trainer.objective", default="none")
    if name == "auto":
        return auto_objective(cfg)
    return None if name in (None, "none") else name


def sqlite_path(storage) -> Path | None:
    match = re.fullmatch(r"sqlite:///(.+)", str(storage or ""))
    return Path(match.group(1)) if match else None


def prepare(overrides: list[str]) -> list[str]:
    """Check an Optuna search before Hydra starts it; returns the overrides that continue its study
    (empty for a new study, or for a command that is no Optuna search)."""
    from hydra import compose, initialize_config_module

    from gan_cli.metrics.protocol import direction

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # Values swept by the search or the command (a,b, choice(...), ...) are set per job: not composed here.
    fixed = [o for o in overrides if not re.search(r"=.*(,|\b(choice|range|interval|glob|tag)\()", o)]
    try:
        with initialize_config_module(config_module="gan_cli.conf", version_base="1.3"):
            cfg = compose("train", overrides=fixed, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(runtime.one_line(str(e))) from None
    sweeper = cfg.hydra.sweeper
    if sweeper.get("_target_") != OPTUNA:
        return []
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    for key in (sweeper.get("params") or {}):
        if not _has_key(plain, str(key)):
            raise UserError(f"hydra.sweeper.params: the config has no key {key}; search keys the run has "
                            "(`gan-train --cfg job` lists them)")
    metric = objective_of(cfg)
    if metric is None:
        raise UserError("an Optuna search optimises the runs' objective, and trainer.objective is none; set "
                        "trainer.objective=fid (or another metric the run can measure)")
    given, wanted = str(sweeper.direction), direction(metric)
    if given != wanted:
        raise UserError(f"hydra.sweeper.direction={given} contradicts trainer.objective={metric}, which is "
                        f"better {'lower' if wanted == 'minimize' else 'higher'}: use hydra.sweeper.direction={wanted}")
    path = sqlite_path(sweeper.storage)
    if path is None:
        return []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot keep the study in {path}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot keep the study in {path}: no write permission (set hydra.sweep.dir=<folder>)")
    if not path.exists():
        return []
    return _continue(sweeper, str(sweeper.storage))


def _continue(sweeper, storage: str) -> list[str]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=str(sweeper.study_name), storage=storage)
    except KeyError:  # the database holds other studies only
        return []
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    stale = [t for t in trials if t.state in (states.RUNNING, states.WAITING)]
    for trial in stale:  # left by a search that was killed: tried anew
        study._storage.set_trial_state(trial._trial_id, states.FAIL)
    done = sum(t.state == states.COMPLETE for t in trials)  # trials killed in any earlier stop do not count
    remaining = int(sweeper.n_trials) - done
    log.info("continuing the study %s in %s: %d trials done%s, %d to go", sweeper.study_name, storage, done,
             f" ({len(stale)} interrupted, tried anew)" if stale else "", max(remaining, 0))
    if remaining <= 0:
        raise UserError(f"the study {sweeper.study_name} already has its {done} trials (hydra.sweeper.n_trials="
                        f"{sweeper.n_trials}); raise hydra.sweeper.n_trials to search further")
    os.environ[JOB_OFFSET] = str(len(trials))
    seed = sweeper.sampler.get("seed")
    extra = [f"hydra.sweeper.n_trials={remaining}"]
    if seed is not None:
        extra.append(f"hydra.sweeper.sampler.seed={int(seed) + len(trials)}")
    return extra
