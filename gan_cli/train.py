"""gan-train: the whole training loop, top to bottom.

    gan-train                                   DCGAN on the bundled digits
    gan-train model=gan dataset=toy2d           the 2014 GAN on a ring of 8 Gaussians
    gan-train -m loss=minimax,nonsaturating     a sweep
    gan-train resume=outputs/<date>/<time>      continue a run

`train(cfg, run_dir)` does the work and can be called without Hydra (the tests do);
`main()` is the console script: Hydra composes conf/ and hands the config to it.
"""

import copy
import logging
import random
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from gan_cli import UserError, checkpoint, losses, plots, registry
from gan_cli.metrics import toy2d as toy2d_metrics

log = logging.getLogger("gan_cli.train")

GROUPS = ("dataset", "generator", "discriminator", "loss", "optimizer", "model")


# --- setup --------------------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    """`auto` -> cuda, then mps, then cpu; anything else must be a device torch knows and can see."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown trainer.device '{name}'; choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"trainer.device={name} but MPS is not available; use trainer.device=auto or cpu")
    return device


def shown(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_trainer(t: dict) -> None:
    """One clear line for each setting that cannot work."""
    for key in ("steps", "batch_size", "n_critic", "log_every", "grid_size"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise UserError(f"trainer.{key} must be a positive integer, got {t[key]!r}")
    for key in ("sample_every", "ckpt_every", "num_workers"):
        if not isinstance(t[key], int) or t[key] < 0:
            raise UserError(f"trainer.{key} must be a non-negative integer (0 = off), got {t[key]!r}")
    if not isinstance(t["g_ema"], (int, float)) or not 0 <= t["g_ema"] < 1:
        raise UserError(f"trainer.g_ema must be in [0, 1) (0 = off, 0.999 is typical), got {t['g_ema']!r}")


@torch.no_grad()
def update_ema(G_ema, G, decay: float) -> None:
    """G_ema <- decay * G_ema + (1 - decay) * G for the weights; buffers (batch-norm statistics) are copied."""
    ema_params, params = list(G_ema.parameters()), list(G.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def plain_config(cfg) -> dict:
    """The resolved config as plain dicts and lists; a missing required value is a one-line error."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        key = e.full_key or str(e)
        raise UserError(f"{key} is required: add {key}=... to the command") from None


def resumed_config(saved: dict, overrides) -> dict:
    """The config of a resumed run: the one it was started with, plus the key=value overrides given now.

    Components (config groups) cannot change on resume; single keys can (e.g. trainer.steps=4000).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    config = OmegaConf.create(saved)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key == "resume" or key.startswith("hydra"):
            continue
        if key.split(".")[0] in GROUPS and "." not in key:
            raise UserError(f"resume keeps the run's {key}; start a new run to change it (drop {key}= from the command)")
        if override.is_delete():
            continue
        OmegaConf.update(config, key, override.value(), force_add=True)
    return OmegaConf.to_container(config)


CONV_NETS = ("dcgan",)


def vector_nets(c: dict) -> list[str]:
    """On vector data (toy2d) the conv nets give way to the mlp ones, as in the WGAN-GP paper's toy runs.

    A replaced node takes conf/<group>/mlp.yaml's defaults plus the options both nets share
    (z_dim, spectral_norm). Returns the groups replaced; `c` is changed in place.
    """
    import importlib.resources

    replaced = []
    for group in ("generator", "discriminator"):
        if c[group]["name"] in CONV_NETS:
            text = importlib.resources.files("gan_cli.conf").joinpath(group, "mlp.yaml").read_text()
            node = OmegaConf.to_container(OmegaConf.create(text))
            shared = set(registry.options(group, "mlp")) & set(c[group])
            c[group] = {**node, **{k: c[group][k] for k in shared}}
            replaced.append(group)
    return replaced


def make_optimizers(node: dict, G, D):
    """One optimizer each for G and D; `d_lr` (null = lr) sets D's learning rate."""
    node = dict(node)
    d_lr = node.pop("d_lr", None)
    opt_G = registry.build("optimizer", node, params=G.parameters())
    opt_D = registry.build("optimizer", {**node, "lr": node["lr"] if d_lr is None else d_lr}, params=D.parameters())
    return opt_G, opt_D


# --- pictures -------------------------------------------------------------------------------------


@torch.no_grad()
def draw_samples(G, fixed_z, data) -> tuple[np.ndarray, dict]:
    """G's output for the fixed z, drawn as an image grid, or for toy2d as a scatter plot over the
    mixture's modes with the mode-collapse metrics (returned too)."""
    was_training = G.training
    G.eval()
    fake = G(fixed_z)
    G.train(was_training)
    if len(data.shape) == 1:
        metrics = toy2d_metrics.mode_metrics(fake, data.centres, data.sigma)
        title = f"{data.name}: {toy2d_metrics.summary(metrics, len(data.centres))}"
        return plots.scatter(fake, data.centres, title=title), metrics
    return plots.image_grid(fake), {}


# --- the run -------------------------------------------------------------------------------------


def train(cfg, run_dir, overrides=()) -> dict:
    """Train the GAN a composed config describes, writing everything into run_dir.

    With cfg.resume set, the run continues from that checkpoint (its config, plus the key=value
    `overrides`) in run_dir. Returns a summary: the last step, final losses and the files written.
    """
    c = plain_config(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    run_dir = Path(run_dir)
    resume_state = None
    if c.get("resume"):
        ckpt_path = checkpoint.find(c["resume"])
        resume_state = checkpoint.load(ckpt_path)
        c = resumed_config(resume_state["config"], overrides)
        c["resume"] = str(ckpt_path)
    elif (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with resume={run_dir} or start a new one")

    t = c["trainer"]
    check_trainer(t)
    seed_everything(c["seed"])
    device = pick_device(t["device"])

    # Components, from their config nodes (plain data) plus runtime facts.
    data = registry.build(
        "dataset", c["dataset"], batch_size=t["batch_size"], device=device, seed=c["seed"], num_workers=t["num_workers"]
    )
    if len(data.shape) == 1 and (replaced := vector_nets(c)):
        log.info("%s holds points, not images: %s use the mlp nets", data.name, " and ".join(replaced))
    G = registry.build("generator", c["generator"], shape=data.shape).to(device)
    D = registry.build("discriminator", c["discriminator"], shape=data.shape).to(device)
    loss = registry.build("loss", c["loss"])
    opt_G, opt_D = make_optimizers(c["optimizer"], G, D)
    # G_ema: an exponential moving average of G's weights, used for samples when enabled.
    G_ema = copy.deepcopy(G).requires_grad_(False) if t["g_ema"] else None
    # The fixed z of the sample grid comes from the seed alone, so a resumed run draws the same grid.
    n_fixed = t["grid_size"] * (40 if len(data.shape) == 1 else 1)
    fixed_z = torch.randn(n_fixed, G.z_dim, generator=torch.Generator().manual_seed(c["seed"])).to(device)

    step = 0
    if resume_state is not None:
        G.load_state_dict(resume_state["G"])
        if G_ema is not None:
            G_ema.load_state_dict(resume_state.get("G_ema") or resume_state["G"])
        D.load_state_dict(resume_state["D"])
        opt_G.load_state_dict(resume_state["opt_G"])
        opt_D.load_state_dict(resume_state["opt_D"])
        data.load_state_dict(resume_state["data"])
        checkpoint.set_rng_state(resume_state["rng"])
        step = resume_state["step"]
        log.info("resuming %s at step %d of %d", shown(run_dir), step, t["steps"])

    ckpt_dir, sample_dir = run_dir / "checkpoints", run_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    # purge_step drops events a crashed run logged after its last checkpoint, so curves continue cleanly.
    writer = SummaryWriter(str(run_dir), purge_step=step + 1 if step else None)
    if not step:
        writer.add_text("config", "```\n" + OmegaConf.to_yaml(c) + "\n```")
    log.info(
        "training %s G + %s D (%s loss) on %s, %d steps on %s -> %s",
        c["generator"]["name"], c["discriminator"]["name"], c["loss"]["name"], data.name, t["steps"], device, shown(run_dir),
    )

    def state_at(step: int) -> dict:
        return {
            "format": checkpoint.FORMAT,
            "step": step,
            "G": G.state_dict(),
            "G_ema": None if G_ema is None else G_ema.state_dict(),
            "D": D.state_dict(),
            "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(),
            "data": data.state_dict(),
            "rng": checkpoint.rng_state(),
            "config": c,
            "names": {g: c[g]["name"] for g in GROUPS if g in c},
        }

    def write_samples(step: int) -> Path:
        picture, metrics = draw_samples(G if G_ema is None else G_ema, fixed_z, data)
        path = sample_dir / f"step_{step:07d}.png"
        plots.save_png(picture, path)
        plots.save_png(picture, sample_dir / "last.png")
        writer.add_image("samples", picture, step, dataformats="HWC")
        for name, value in metrics.items():
            writer.add_scalar(f"modes/{name}", value, step)
        final_metrics.update(metrics)
        return path

    def write_checkpoint(step: int, periodic: bool) -> None:
        last = ckpt_dir / "last.pt"
        if periodic:
            path = ckpt_dir / f"step_{step:07d}.pt"
            checkpoint.save(state_at(step), path)
            checkpoint.link_or_copy(path, last)
        else:
            checkpoint.save(state_at(step), last)

    steps, n_critic, bs = t["steps"], t["n_critic"], t["batch_size"]
    if step >= steps:
        log.info("the run is already at step %d of %d; raise trainer.steps to train further", step, steps)
    bar = tqdm(total=steps, initial=step, desc="train", unit="step", disable=not t["progress"], dynamic_ncols=True)
    logged, final_metrics = {}, {}
    t_log, step_log, t_start = time.perf_counter(), step, time.perf_counter()
    G.train()
    D.train()
    while step < steps:
        step += 1

        # D: n_critic updates on fresh real batches and fresh fakes.
        for k in range(n_critic):
            real, _ = data.next()
            z = torch.randn(bs, G.z_dim, device=device)
            last_d_step = k == n_critic - 1
            # The G update reuses the last D step's fakes (as the DCGAN reference code does), saving one G
            # forward pass; so only that one is kept on the autograd graph.
            with torch.set_grad_enabled(last_d_step):
                fake = G(z)
            real_scores, fake_scores = D(real), D(fake.detach())
            loss_D = loss.d_loss(real_scores, fake_scores)
            penalty = loss.penalty(D, real, fake.detach())
            if penalty is not None:
                loss_D = loss_D + penalty
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
            loss.after_d_step(D)

        # G: one update through a frozen D (no gradients for D's weights are needed).
        D.requires_grad_(False)
        loss_G = loss.g_loss(D(fake))
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        D.requires_grad_(True)
        if G_ema is not None:
            update_ema(G_ema, G, t["g_ema"])

        bar.update(1)
        # Scalars are read (one host sync) only on logging steps.
        if step % t["log_every"] == 0 or step == steps:
            stats = {
                "loss/D": loss_D.detach(),
                "loss/G": loss_G.detach(),
                "D/real_score": real_scores.detach().mean(),
                "D/fake_score": fake_scores.detach().mean(),
                # The size of D's input gradient at real data: large values mean a sharp, overconfident D.
                "D/grad_norm": losses.input_gradient_norm(D, real, create_graph=False).mean(),
                **loss.diagnostics(D),
            }
            if loss.critic:  # the critic's estimate of the Wasserstein distance
                stats["critic/wasserstein"] = stats["D/real_score"] - stats["D/fake_score"]
            logged = dict(zip(stats, torch.stack([v.float() for v in stats.values()]).tolist()))
            now = time.perf_counter()
            logged["speed/steps_per_s"] = (step - step_log) / max(now - t_log, 1e-9)
            t_log, step_log = now, step
            for name, value in logged.items():
                writer.add_scalar(name, value, step)
            bar.set_postfix(D=f"{logged['loss/D']:.3f}", G=f"{logged['loss/G']:.3f}", refresh=False)
        if t["sample_every"] and step % t["sample_every"] == 0:
            write_samples(step)
        if t["ckpt_every"] and step % t["ckpt_every"] == 0:
            write_checkpoint(step, periodic=True)
    bar.close()

    # The end of the run: a final grid and checkpoint, unless the last step already wrote them.
    grid = sample_dir / f"step_{step:07d}.png"
    if not grid.exists():
        grid = write_samples(step)
    if not (ckpt_dir / f"step_{step:07d}.pt").exists():
        write_checkpoint(step, periodic=False)
    writer.close()
    elapsed = time.perf_counter() - t_start
    log.info("done: step %d in %.0f s; samples %s; checkpoint %s", step, elapsed, shown(grid), shown(ckpt_dir / "last.pt"))
    log.info("curves: tensorboard --logdir %s", shown(run_dir))
    if final_metrics:
        log.info("modes at step %d: %s", step, toy2d_metrics.summary(final_metrics, len(data.centres)))
    return {
        "step": step,
        "run_dir": run_dir,
        "grid": grid,
        "checkpoint": ckpt_dir / "last.pt",
        "logged": logged,
        "modes": final_metrics,
    }


# --- the console script --------------------------------------------------------------------------


def _run_dir(resume, default):
    """hydra.run.dir: a resumed run goes back to its own folder; a new one gets `default`."""
    if not resume:
        return default
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_file():
        return str(checkpoint.run_dir_of(path))
    return default  # train() reports the missing checkpoint


def _hydra_subdir(resume):
    """Where Hydra writes its config copy; a resume keeps the original and adds its own beside it."""
    return f".hydra/resume-{datetime.now():%Y-%m-%d_%H-%M-%S}" if resume else ".hydra"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("gan_run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("gan_hydra_subdir", _hydra_subdir, replace=True)


def check_group_choices(args, config_root="gan_cli.conf") -> None:
    """Catch `group=unknown` before Hydra does, as one line listing the valid choices.

    Sweeps (`loss=a,b`) are checked value by value; other override syntax is left to Hydra.
    """
    import importlib.resources

    conf = importlib.resources.files(config_root)
    for arg in args:
        match = re.fullmatch(r"[+~]?([a-z_]+)=([\w,-]+)", arg)
        if not match or not conf.joinpath(match.group(1)).is_dir():
            continue
        group = match.group(1)
        choices = sorted(p.name[:-5] for p in conf.joinpath(group).iterdir() if p.name.endswith(".yaml"))
        for value in match.group(2).split(","):
            if value not in choices:
                raise UserError(f"unknown {group} '{value}'; choose one of: {', '.join(choices)}")


def check_keys(args, config_root="gan_cli.conf", config_name="train") -> None:
    """Compose the config once before Hydra does, to turn a misspelt key into one clear line.

    Flags (--help, --cfg, -m) and hydra.* overrides are left to Hydra.
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if any(a.startswith("-") for a in args):
        return
    overrides = [a for a in args if not a.lstrip("+~").startswith("hydra")]
    try:
        with initialize_config_module(config_module=config_root, version_base="1.3"):
            compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        match = re.match(r"Could not override '([^']+)'", str(e))
        if match and "not in struct" in str(e.__cause__ or ""):
            key = match.group(1)
            raise UserError(
                f"no option {key} in the config; `gan-train --cfg job` lists them (a new key is written +{key}=...)"
            ) from None
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UserError("; ".join(lines)) from None


def fail(prog: str, error: Exception) -> None:
    print(f"{prog}: error: {error}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(version_base="1.3", config_path="pkg://gan_cli.conf", config_name="train")
    def hydra_main(cfg: DictConfig) -> None:
        hc = HydraConfig.get()
        try:
            train(cfg, Path(hc.runtime.output_dir), overrides=hc.overrides.task)
        except UserError as e:
            fail("gan-train", e)

    register_resolvers()
    try:
        check_group_choices(sys.argv[1:])
        check_keys(sys.argv[1:])
    except UserError as e:
        fail("gan-train", e)
    hydra_main()


if __name__ == "__main__":
    main()
