"""The console scripts as a user types them, run from a folder other than the project's."""

import os
import subprocess

import pytest
from PIL import Image

from gan_cli import checkpoint
from tests.conftest import BIN, TINY_TRAINER, write_images

TINY = TINY_TRAINER + ["generator.width=4", "discriminator.width=4", "dataset.resolution=16"]


def run(*args, cwd, tool="gan-train"):
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gan-train: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_the_groups_and_their_options(tmp_path):
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    groups = ("model: acgan, biggan, biggan_64, cgan, cycada, cyclegan, [dcgan], gan, infogan, lsgan, pix2pix, progan, r3gan, "
              "r3gan_cifar10, sagan, sngan, sngan_projection, sngan_projection_resnet, sngan_resnet, srgan, srresnet, stylegan2, wgan, "
              "wgan_gp, wgan_gp_resnet",
              "conditioning: acgan, cgan, [none], infogan, projection".replace("[none], infogan", "infogan, [none]"),
              "loss: hinge, lsgan, minimax, [nonsaturating], relativistic, relativistic_average, wgan, wgan_gp")
    for text in ("gan-train", "dataset: ", *groups, "trainer:", "resume="):
        assert text in result.stdout, text
    # Every key with its default and comment, file by file; the choices of the command decide which files.
    assert "  batch_size: 64               # images per D or G update" in result.stdout
    assert "# ---- loss=nonsaturating (conf/loss/nonsaturating.yaml) ----" in result.stdout
    short = run("-h", "model=wgan_gp", cwd=tmp_path)
    assert short.returncode == 0
    assert "loss: hinge, lsgan, minimax, nonsaturating, relativistic, relativistic_average, wgan, [wgan_gp]" in short.stdout
    assert "# ---- model=wgan_gp (conf/model/wgan_gp.yaml) ----" in short.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("tool, option", [("gan-eval", "num_samples:"), ("gan-sample", "mode: grid")])
def test_eval_and_sample_help_list_their_options_with_comments(tool, option, tmp_path):
    result = run("--help", cwd=tmp_path, tool=tool)
    assert result.returncode == 0 and result.stderr == ""
    line = next(line for line in result.stdout.splitlines() if line.startswith(option))
    assert "#" in line  # the option's comment comes with it
    assert not (tmp_path / "outputs").exists()


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = run("--cfg", "job", "model=gan", "trainer.steps=7", cwd=tmp_path)
    assert result.returncode == 0
    assert "steps: 7" in result.stdout and "name: minimax" in result.stdout


def test_unknown_option_of_a_group(tmp_path):
    assert_one_line_error(run("loss=hinj", cwd=tmp_path), "unknown loss 'hinj'", "hinge, lsgan, minimax, nonsaturating")
    assert_one_line_error(run("-m", "model=gan,wgam", cwd=tmp_path), "unknown model 'wgam'", "dcgan, gan, infogan, lsgan")


def test_missing_dataset_and_bad_value(tmp_path):
    result = run("dataset=mnist", f"dataset.root={tmp_path / 'data'}", *TINY, cwd=tmp_path)
    assert_one_line_error(result, str(tmp_path / "data"), "dataset.download=true")
    assert_one_line_error(run("dataset=folder", *TINY, cwd=tmp_path), "dataset.root is required")
    assert_one_line_error(run(*TINY, "trainer.batch_size=0", cwd=tmp_path), "trainer.batch_size")


def test_a_run_writes_its_folder_and_resumes_in_it(tmp_path):
    result = run(*TINY, "trainer.ckpt_every=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "outputs").glob("*/*")  # outputs/<date>/<time>
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "samples" / "last.png").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    result = run(f"resume={run_dir}", "trainer.steps=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and len(list((tmp_path / "outputs").glob("*/*"))) == 1
    assert checkpoint.load(run_dir)["step"] == 3
    assert list((run_dir / ".hydra").glob("resume-*/config.yaml"))  # the first config is kept


def test_resume_accepts_the_run_own_command_and_refuses_other_components(tmp_path):
    command = ["model=dcgan", "seed=3", *TINY]
    assert run(*command, cwd=tmp_path).returncode == 0
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    again = run(*command, f"resume={run_dir}", "trainer.steps=3", cwd=tmp_path)  # the same command, resume= added
    assert again.returncode == 0, again.stderr
    assert checkpoint.load(run_dir)["step"] == 3
    assert_one_line_error(run("model=wgan", f"resume={run_dir}", cwd=tmp_path),
                          "resume keeps the run's model (dcgan); start a new run to change it")


def test_multirun_sweep_writes_one_folder_per_value(tmp_path):
    result = run("-m", "loss=minimax,nonsaturating", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("*/*/*/checkpoints/last.pt"))
    assert len(jobs) == 2
    losses = {checkpoint.load(j)["config"]["loss"]["name"] for j in jobs}
    assert losses == {"minimax", "nonsaturating"}
    assert (jobs[0].parents[2] / "multirun.yaml").is_file() and jobs[0].parents[2] == jobs[1].parents[2]


def test_job_processes_name_their_folder_by_the_sweep_start(tmp_path):
    """A parallel launcher's job process reads the launch time from its parent's environment."""
    code = "from gan_cli.train import _now; print(_now('%Y-%m-%d/%H-%M-%S'))"
    env = {**os.environ, "GAN_CLI_LAUNCH_TIME": "2026-01-02T03:04:05"}
    result = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.stdout.strip() == "2026-01-02/03-04-05", result.stderr


def test_folder_dataset_from_the_command_line(tmp_path):
    write_images(tmp_path / "images", {"a": 4, "b": 4}, size=(28, 28))
    result = run("dataset=folder", f"dataset.root={tmp_path / 'images'}", *TINY, "trainer.batch_size=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (grid,) = (tmp_path / "outputs").glob("*/*/samples/last.png")
    assert Image.open(grid).mode == "RGB"
