"""Sweeps that answer: every job's score in metrics.json, the sweep's summary table, ranking and plot."""

import csv
import json
import os
import statistics
import subprocess

import pytest

from tests.conftest import BIN

TOY = ["model=gan", "dataset=toy2d", "trainer.steps=30", "trainer.batch_size=16", "generator.hidden=[8]",
       "discriminator.hidden=[8]", "trainer.device=cpu", "trainer.progress=false", "trainer.sample_every=0",
       "trainer.log_every=10", "trainer.eval_samples=400"]


def gan(tool, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": ""}
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_a_sweep_ends_with_its_jobs_scores_ranked_over_seeds(tmp_path):
    result = gan("gan-train", "-m", *TOY, "optimizer.lr=1e-3,3e-3", "loss=minimax,nonsaturating", "seed=0,1",
                 "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sweep = tmp_path / "sweep"
    jobs = {}
    for job in sorted(sweep.glob("[0-9]*")):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "finished" and metrics["step"] == 30
        assert metrics["objective"]["metric"] == "balanced_hq" and metrics["objective"]["direction"] == "maximize"
        jobs[job.name] = metrics["objective"]["value"]
    assert len(jobs) == 8
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert {r["job"]: float(r["balanced_hq"]) for r in rows} == jobs  # the table is the jobs' own numbers
    assert set(rows[0]) == {"job", "status", "balanced_hq", "loss", "optimizer.lr", "seed"}
    # The settings, ranked by their mean over the two seeds.
    means = {}
    for r in rows:
        means.setdefault((r["loss"], r["optimizer.lr"]), []).append(float(r["balanced_hq"]))
    ranking = (sweep / "summary.md").read_text().split("## Settings")[1].splitlines()[4:8]
    shown = []
    for rank, line in enumerate(ranking, 1):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == str(rank) and cells[-1] == "2"  # two seeds each
        mean = statistics.fmean(means[(cells[1], cells[2])])
        assert cells[3].startswith(f"{mean:.4g} ± ")
        shown.append(mean)
    assert shown == sorted(shown, reverse=True) and len(shown) == 4  # best (highest balanced_hq) first
    assert (sweep / "summary.png").stat().st_size > 1000


def test_a_diverging_job_is_recorded_with_the_worst_score_and_the_sweep_goes_on(tmp_path):
    result = gan("gan-train", "-m", *TOY, "optimizer.lr=1e30,1e-3", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "job 0 failed: loss/" in result.stderr and "recorded as balanced_hq = 0.0" in result.stderr
    failed = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["reason"].startswith("loss/") and " at step " in failed["reason"]
    assert failed["objective"] == {"metric": "balanced_hq", "value": 0.0, "direction": "maximize"}
    assert json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())["status"] == "finished"
    # gan-eval sweep= rebuilds the summary, of an unfinished sweep too.
    for name in ("summary.md", "summary.csv", "summary.png"):
        (tmp_path / "sweep" / name).unlink()
    (tmp_path / "sweep" / "1" / "metrics.json").unlink()
    rebuilt = gan("gan-eval", "sweep=sweep", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "1 of 2 jobs finished" in rebuilt.stdout
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "| 0 | failed (" in summary and "| 1 | not finished |" in summary
    assert "Not finished (left out): jobs 1" in summary
    assert gan("gan-eval", "sweep=nowhere", cwd=tmp_path).stderr.startswith("gan-eval: error: sweep=nowhere: no such")


def test_a_run_returns_and_records_its_objective(tmp_path, monkeypatch, shared_cache):
    import pytest

    from gan_cli import UserError
    from gan_cli.train import train
    from tests.conftest import tiny_config

    monkeypatch.setenv("GAN_CLI_CACHE", str(shared_cache))
    result = train(tiny_config("trainer.objective=auto", "trainer.eval_samples=200"), tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert recorded["objective"] == result["objective"] and result["objective"]["metric"] == "fid"
    assert result["objective"]["direction"] == "minimize" and result["objective"]["value"] > 0
    assert recorded["status"] == "finished" and recorded["step"] == 2 and "loss/G" in recorded["losses"]
    with pytest.raises(UserError, match="unknown trainer.objective 'fidd'"):
        train(tiny_config("trainer.objective=fidd"), tmp_path / "other")
    with pytest.raises(UserError, match="trainer.objective=hq_percent does not apply to digits"):
        train(tiny_config("trainer.objective=hq_percent"), tmp_path / "third")
    assert not (tmp_path / "third" / "checkpoints").exists()  # said before training


SEARCH = ["-m", "hparams_search=toy2d_gan", "hydra.sweeper.n_trials=3", "trainer.steps=400", "trainer.batch_size=16",
          "generator.hidden=[8]", "discriminator.hidden=[8]", "trainer.progress=false", "trainer.eval_samples=200",
          "trainer.grid_size=8", "hydra.sweep.dir=search"]


def test_an_optuna_search_killed_half_way_continues_its_study(tmp_path):
    import signal

    import optuna

    from tests.test_resilience import start, wait_for

    search = tmp_path / "search"
    first = start(SEARCH, tmp_path)
    wait_for(lambda: (search / "1" / "run.lock").exists(), timeout=600)  # trial 0 finished, trial 1 running
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    again = gan("gan-train", *SEARCH, cwd=tmp_path)  # the same command
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="toy2d_gan", storage=f"sqlite:///{search / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]  # the interrupted trial 1 tried anew
    for trial in study.trials:
        if trial.state.name == "COMPLETE":  # each value is its job's objective, in the folder of its number
            recorded = json.loads((search / str(trial.number) / "metrics.json").read_text())
            assert recorded["objective"]["value"] == trial.value
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 4  # no suggestion drawn twice
    assert "sweep summary: search/summary.md (3 of 4 jobs finished)" in again.stdout + again.stderr


@pytest.mark.parametrize("args, message", [
    (["hydra.sweeper.direction=minimize"],
     "hydra.sweeper.direction=minimize contradicts trainer.objective=balanced_hq, which is better higher"),
    (["optimizer=sgd"], "hydra.sweeper.params: the config has no key optimizer.betas.0"),
    (["trainer.objective=none"], "an Optuna search optimises the runs' objective, and trainer.objective is none"),
])
def test_a_search_that_cannot_work_is_one_line_before_any_trial(args, message, tmp_path, monkeypatch):
    from gan_cli import UserError
    from gan_cli.search import prepare
    from tests.conftest import one_line

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        prepare(["hparams_search=toy2d_gan", *args])
    assert message in one_line(err)
    assert not (tmp_path / "outputs").exists()  # checked before anything is made


def test_cfg_hydra_shows_a_search_presets_space(tmp_path):
    from gan_cli.train import overrides_in

    assert overrides_in(["-m", "hparams_search=toy2d_gan", "--cfg", "hydra", "-p", "trainer", "seed=1"]) == [
        "hparams_search=toy2d_gan", "seed=1"]
    assert overrides_in(["--info", "defaults", "seed=1", "-i", "loss=hinge"]) == ["seed=1", "loss=hinge"]
    # the final-length preset keeps toy2d_gan's space, with its own length, batch and study
    shown = gan("gan-train", "hparams_search=toy2d_gan_final", "--cfg", "hydra", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "optimizer.d_lr: tag(log, interval(1e-4, 1e-2))" in shown.stdout
    assert "trainer.batch_size: choice(100)" in shown.stdout and "study_name: toy2d_gan_final" in shown.stdout
    job = gan("gan-train", "hparams_search=toy2d_gan_final", "--cfg", "job", "--package", "trainer", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    assert "steps: 20000" in job.stdout and "objective: balanced_hq" in job.stdout


def test_the_key_check_reads_a_sweep_at_its_first_values():
    from gan_cli.train import composable

    args = ["-m", "seed=0,1,2", "model=gan,wgan_gp", "trainer.steps=range(5,50,5)", "optimizer.lr=interval(1e-4,1e-3)",
            "+extra=interval(0,1)", "hydra.sweep.dir=a", "--cfg", "job", "loss=hinge"]
    assert composable(args) == (["seed=0", "model=gan", "trainer.steps=5", "loss=hinge"], ["optimizer.lr"], True)
    # not a sweep: the values go to compose as written, where a list is a list
    assert composable(["seed=1", "generator.hidden=[8,8]"]) == (["seed=1", "generator.hidden=[8,8]"], [], False)


@pytest.mark.parametrize("args, message", [
    (["-m", "dataset=toy2d", "trainer.stepz=10,20"],
     "no option trainer.stepz in the config (did you mean trainer.steps?)"),
    (["-m", "optimizer.lrr=interval(1e-4,1e-3)"], "no option optimizer.lrr in the config (did you mean optimizer.lr?)"),
    (["--help", "trainer.stepz=3"], "no option trainer.stepz in the config (did you mean trainer.steps?)"),
    (["--cfg", "job", "trainer.stepz=3"], "no option trainer.stepz in the config"),
    (["-m", "seed=0,1", "--cfg", "job"], "--cfg and -m cannot go together"),
])
def test_flags_do_not_hide_a_misspelt_key(args, message, tmp_path):
    result = gan("gan-train", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gan-train: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.iterdir())


def test_trials_killed_in_earlier_stops_do_not_count_towards_n_trials(tmp_path):
    import optuna
    from omegaconf import OmegaConf

    from gan_cli.search import _continue

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.tell(study.ask(), 1.0)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # killed in a first stop
    study.ask()  # running when a second stop came
    sweeper = OmegaConf.create({"study_name": "s", "n_trials": 5, "sampler": {"seed": 0}})
    assert _continue(sweeper, storage) == ["hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=3"]
    stored = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert [t.state.name for t in stored] == ["COMPLETE", "FAIL", "FAIL"]
