"""The configs ship inside the package, so a regular (non-editable) install works from anywhere."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    try:
        import setuptools  # noqa: F401  (build with the installed one: no download needed)

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (path,) = out.glob("gan_cli-*.whl")
    return path


def test_wheel_holds_every_config_and_the_console_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for yaml in ROOT.glob("conf/**/*.yaml"):
        assert f"gan_cli/conf/{yaml.relative_to(ROOT / 'conf').as_posix()}" in names, yaml
    for module in ROOT.glob("gan_cli/**/*.py"):  # every subpackage is listed in pyproject.toml
        assert module.relative_to(ROOT).as_posix() in names, module
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("gan-train = gan_cli.train:main", "gan-eval", "gan-sample"):
        assert script in text


def test_installed_wheel_composes_its_configs_from_another_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = (
        "import gan_cli, hydra, gan_cli.train; from hydra import compose, initialize_config_module\n"
        "assert gan_cli.__file__.startswith(%r), gan_cli.__file__\n"
        "with initialize_config_module(config_module='gan_cli.conf', version_base='1.3'):\n"
        "    cfg = compose('train', overrides=['model=gan'])\n"
        "print(cfg.generator.name, cfg.loss.name)\n" % str(target)
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mlp", "minimax"]
