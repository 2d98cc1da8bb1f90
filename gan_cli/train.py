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

from gan_cli import UserError, checkpoint, distributed, losses, plots, registry
from gan_cli.safety import NonFiniteGuard, StopRequested, StopSignals
from gan_cli.metrics import toy2d as toy2d_metrics

log = logging.getLogger("gan_cli.train")

GROUPS = ("dataset", "generator", "discriminator", "loss", "optimizer", "conditioning", "model")


# --- setup --------------------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    """`auto` -> cuda, then mps, then cpu; anything else must be a device torch knows and can see.

    Under torchrun each process takes the GPU of its LOCAL_RANK.
    """
    if distributed.launched() and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank())
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


PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
EVAL_METRICS = ("fid", "kid", "is", "precision", "recall", "modes", "hq_percent", "reverse_kl")


def check_trainer(t: dict) -> None:
    """One clear line for each setting that cannot work."""
    for key in ("steps", "batch_size", "n_critic", "log_every", "grid_size", "eval_samples"):
        if not isinstance(t[key], int) or isinstance(t[key], bool) or t[key] < 1:
            raise UserError(f"trainer.{key} must be a positive integer, got {t[key]!r}")
    for key in ("sample_every", "ckpt_every", "num_workers", "keep_checkpoints", "eval_every"):
        if not isinstance(t[key], int) or isinstance(t[key], bool) or t[key] < 0:
            raise UserError(f"trainer.{key} must be a non-negative integer (0 = off), got {t[key]!r}")
    if not isinstance(t["g_ema"], (int, float)) or not 0 <= t["g_ema"] < 1:
        raise UserError(f"trainer.g_ema must be in [0, 1) (0 = off, 0.999 is typical), got {t['g_ema']!r}")
    if t["eval_metric"] not in EVAL_METRICS:
        raise UserError(f"unknown trainer.eval_metric '{t['eval_metric']}'; choose one of: {', '.join(EVAL_METRICS)}")
    if str(t["precision"]) not in PRECISIONS:
        raise UserError(f"unknown trainer.precision '{t['precision']}'; choose 32, bf16 or 16")
    for key in ("compile", "progress"):
        if not isinstance(t[key], bool):
            raise UserError(f"trainer.{key} must be true or false, got {t[key]!r}")


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


# Keys a resume may change freely: how long to train and how the run is watched, not what it learns.
RESUME_FREE = {
    "resume", "resume_override", "trainer.steps", "trainer.progress", "trainer.device", "trainer.num_workers",
    "trainer.log_every", "trainer.sample_every", "trainer.ckpt_every", "trainer.keep_checkpoints",
    "trainer.compile", "trainer.eval_every", "trainer.eval_metric", "trainer.eval_samples", "dataset.root",
    "dataset.download",
}


def flatten(node, prefix="") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def resumed_config(saved: dict, overrides) -> dict:
    """The config of a resumed run: the one it was started with, plus the key=value overrides given now.

    Components (config groups) cannot change on resume. Of single keys, those in RESUME_FREE (e.g.
    trainer.steps=4000) can; any other change is refused, naming the keys, unless resume_override=true.
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
    config = OmegaConf.to_container(config)
    before, after = flatten(saved), flatten(config)
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k) and k not in RESUME_FREE]
    if changed and not config.get("resume_override"):
        shown_changes = ", ".join(f"{k} ({before.get(k)!r} -> {after.get(k)!r})" for k in changed)
        raise UserError(
            f"resume would change {shown_changes}; add resume_override=true to continue the run with the change"
        )
    return config


CONV_NETS = ("dcgan",)


def vector_nets(c: dict) -> list[str]:
    """On vector data (toy2d) the conv nets give way to the mlp ones, as in the WGAN-GP paper's toy runs.

    A replaced node takes conf/<group>/mlp.yaml's defaults plus the options both nets share
    (z_dim, spectral_norm). Returns the groups replaced; `c` is changed in place.
    """
    from gan_cli.options import defaults

    replaced = []
    for group in ("generator", "discriminator"):
        if c[group]["name"] in CONV_NETS:
            node = defaults(group, "mlp")
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
def draw_samples(G, fixed_z, data, fixed_c=None, nrow=None) -> tuple[np.ndarray, dict]:
    """G's output for the fixed z (and condition: one row per class), drawn as an image grid, or for toy2d
    as a scatter plot over the mixture's modes with the mode-collapse metrics (returned too)."""
    was_training = G.training
    G.eval()
    fake = G(fixed_z) if fixed_c is None else G(fixed_z, fixed_c)
    G.train(was_training)
    if len(data.shape) == 1:
        metrics = toy2d_metrics.mode_metrics(fake, data.centres, data.sigma)
        title = f"{data.name}: {toy2d_metrics.summary(metrics, len(data.centres))}"
        return plots.scatter(fake, data.centres, title=title), metrics
    return plots.image_grid(fake, nrow=nrow), {}


# --- the run -------------------------------------------------------------------------------------


# Trainer keys added after the first checkpoints were written, with the values those runs had.
LATER_TRAINER_KEYS = {"keep_checkpoints": 0, "precision": "32", "compile": False, "eval_every": 0,
                      "eval_metric": "fid", "eval_samples": 2000}


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest `keep` periodic checkpoints (0 = all). last.pt is a separate link and stays."""
    if keep:
        for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep]:
            old.unlink(missing_ok=True)


def train(cfg, run_dir, overrides=()) -> dict:
    """Train the GAN a composed config describes, writing everything into run_dir.

    With cfg.resume set, the run continues from that checkpoint (its config, plus the key=value
    `overrides`) in run_dir. Returns a summary: the last step, final losses and the files written.
    Under torchrun (see gan_cli/distributed.py) every process runs this; only rank 0 writes.
    """
    c = plain_config(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    run_dir = Path(run_dir)
    rank, world = distributed.rank(), distributed.world_size()
    main_process = rank == 0
    resume_state = None
    if c.get("resume"):
        ckpt_path = checkpoint.find(c["resume"])
        resume_state = checkpoint.load(ckpt_path)
        c = resumed_config(resume_state["config"], overrides)
        c["resume"] = str(ckpt_path)
    elif (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with resume={run_dir} or start a new one")

    t = c["trainer"]
    for key, value in LATER_TRAINER_KEYS.items():
        t.setdefault(key, value)
    check_trainer(t)
    # Each process draws its own noise and data order; the weights start equal (DDP copies rank 0's).
    seed_everything(c["seed"] + rank)
    device = pick_device(t["device"])
    precision = str(t["precision"])
    amp_dtype = PRECISIONS[precision]
    if amp_dtype is torch.float16 and device.type == "mps":
        raise UserError("trainer.precision=16 is not supported on mps; use 32 or bf16")

    # Components, from their config nodes (plain data) plus runtime facts.
    data = registry.build(
        "dataset", c["dataset"], batch_size=t["batch_size"], device=device, seed=c["seed"] + rank,
        num_workers=t["num_workers"],
    )
    if len(data.shape) == 1 and (replaced := vector_nets(c)):
        log.info("%s holds points, not images: %s use the mlp nets", data.name, " and ".join(replaced))
    # What G and D get besides z and x (a label, InfoGAN's codes, or nothing), and how they take it.
    cond = registry.build("conditioning", c.setdefault("conditioning", {"name": "none"}))
    cond.setup(data.num_classes, data.name)
    G = registry.build("generator", c["generator"], shape=data.shape, **cond.g_kwargs()).to(device)
    D = registry.build("discriminator", c["discriminator"], shape=data.shape, **cond.d_kwargs()).to(device)
    loss = registry.build("loss", c["loss"])
    opt_G, opt_D = make_optimizers(c["optimizer"], G, D)
    # G_ema: an exponential moving average of G's weights, used for samples when enabled.
    G_ema = copy.deepcopy(G).requires_grad_(False) if t["g_ema"] else None
    # The fixed z of the sample grid comes from the seed alone, so a resumed run draws the same grid.
    # A conditional image grid has one row per class (or categorical code value).
    rows = cond.rows if len(data.shape) == 3 else 0
    grid_columns = max(1, t["grid_size"] // rows) if rows else None
    n_fixed = rows * grid_columns if rows else t["grid_size"] * (40 if len(data.shape) == 1 else 1)
    fixed_z = torch.randn(n_fixed, G.z_dim, generator=torch.Generator().manual_seed(c["seed"])).to(device)
    fixed_c = cond.grid_condition(grid_columns, device) if rows else \
        cond.sample(n_fixed, None, device, torch.Generator().manual_seed(c["seed"]))
    # Mixed precision: autocast around the forward passes; fp16 also scales the losses (bf16 needs not).
    autocast = torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None)
    scaler_D = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    scaler_G = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)

    step = 0
    if resume_state is not None:
        checkpoint.load_weights(G, resume_state["G"], "generator", c["resume"])
        if G_ema is not None:
            checkpoint.load_weights(G_ema, resume_state.get("G_ema") or resume_state["G"], "generator", c["resume"])
        checkpoint.load_weights(D, resume_state["D"], "discriminator", c["resume"])
        for opt, key in ((opt_G, "opt_G"), (opt_D, "opt_D")):
            # The moments come from the checkpoint, the settings (lr, betas, ...) from the config,
            # which differs from the saved one only where resume_override=true allowed it.
            settings = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
            opt.load_state_dict(resume_state[key])
            for group, setting in zip(opt.param_groups, settings):
                group.update(setting)
        for scaler, key in ((scaler_D, "scaler_D"), (scaler_G, "scaler_G")):
            if resume_state.get(key) and scaler.is_enabled():
                scaler.load_state_dict(resume_state[key])
        # A process resumes its own data order and RNG state where the checkpoint holds it (same
        # number of processes); a process the checkpoint has no state for starts fresh ones.
        ranks = resume_state.get("ranks") or [{"data": resume_state["data"], "rng": resume_state["rng"]}]
        step = resume_state["step"]
        if rank < len(ranks):
            data.load_state_dict(ranks[rank]["data"])
            checkpoint.set_rng_state(ranks[rank]["rng"])
        else:
            seed_everything(c["seed"] + rank + 1_000_003 * step)
        log.info("resuming %s at step %d of %d", shown(run_dir), step, t["steps"])

    # What the loop runs: compiled and/or wrapped for data parallelism. G and D stay the plain modules
    # (saved, sampled, and used for diagnostics). D_for_G is D without the DDP wrapper: G's update
    # does not train D, so D's gradients need no syncing there.
    G_run, D_run = G, D
    if t["compile"]:
        G_run, D_run = torch.compile(G), torch.compile(D)
    D_for_G = D_run
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if device.type == "cuda":
            G_run = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G_run)
            D_run = torch.nn.SyncBatchNorm.convert_sync_batchnorm(D_run)
        ids = [device.index] if device.type == "cuda" else None
        G_run, D_run = DDP(G_run, device_ids=ids), DDP(D_run, device_ids=ids)
        if G_ema is not None:  # DDP gave every process rank 0's weights
            G_ema.load_state_dict(G.state_dict())

    ckpt_dir, sample_dir = run_dir / "checkpoints", run_dir / "samples"
    writer = None
    if main_process:
        sample_dir.mkdir(parents=True, exist_ok=True)
        # purge_step drops events a crashed run logged after its last checkpoint, so curves continue cleanly.
        writer = SummaryWriter(str(run_dir), purge_step=step + 1 if step else None)
        if not step:
            writer.add_text("config", "```\n" + OmegaConf.to_yaml(c) + "\n```")
    log.info(
        "training %s G + %s D (%s loss%s) on %s, %d steps on %s%s%s -> %s",
        c["generator"]["name"], c["discriminator"]["name"], c["loss"]["name"],
        "" if cond.name == "none" else f", {cond.name} conditioning", data.name, t["steps"], device,
        f" x {world} processes" if world > 1 else "", "" if precision == "32" else f" in {precision}", shown(run_dir),
    )

    guard = NonFiniteGuard(device)
    start_step, saved_step = step, step if resume_state is not None else None

    # trainer.eval_every: a metric of G's samples now and then, and checkpoints/best.pt by its value.
    evaluator, best = None, (resume_state or {}).get("best")
    if t["eval_every"] and main_process:
        from gan_cli.evaluate import TrainingEvaluator

        evaluator = TrainingEvaluator(c["dataset"], data, t["eval_metric"], t["eval_samples"], 250,
                                      c["seed"], device, cond=cond)

    def check_finite() -> None:
        """Stop (on every process) at a non-finite loss, before anything of that state is written."""
        problem = guard.problem()
        if distributed.maximum(int(problem is not None), device):
            where = "no checkpoint was written" if saved_step is None else (
                f"{shown(ckpt_dir / 'last.pt')} still holds step {saved_step}")
            raise UserError(f"{problem or 'a loss is not finite on another process'}; training stopped, {where}")

    def state_at(step: int) -> dict:
        ranks = distributed.gather({"data": data.state_dict(), "rng": checkpoint.rng_state()})
        return {
            "format": checkpoint.FORMAT,
            "step": step,
            "G": G.state_dict(),
            "G_ema": None if G_ema is None else G_ema.state_dict(),
            "D": D.state_dict(),
            "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(),
            "scaler_D": scaler_D.state_dict() if scaler_D.is_enabled() else None,
            "scaler_G": scaler_G.state_dict() if scaler_G.is_enabled() else None,
            "data": ranks[0]["data"],
            "rng": ranks[0]["rng"],
            "ranks": ranks if world > 1 else None,
            "config": c,
            "names": {g: c[g]["name"] for g in GROUPS if g in c},
            "num_classes": data.num_classes,
            "best": best,
        }

    def write_samples(step: int) -> Path:
        picture, metrics = draw_samples(G if G_ema is None else G_ema, fixed_z, data, fixed_c, grid_columns)
        path = sample_dir / f"step_{step:07d}.png"
        plots.save_png(picture, path)
        plots.save_png(picture, sample_dir / "last.png")
        writer.add_image("samples", picture, step, dataformats="HWC")
        for name, value in metrics.items():
            writer.add_scalar(f"modes/{name}", value, step)
        final_metrics.update(metrics)
        return path

    def write_checkpoint(step: int, periodic: bool) -> None:
        """Every process calls this (they pool their RNG and data states); rank 0 writes."""
        nonlocal saved_step
        state = state_at(step)
        saved_step = step
        if not main_process:
            return
        last = ckpt_dir / "last.pt"
        if periodic:
            path = ckpt_dir / f"step_{step:07d}.pt"
            checkpoint.save(state, path)
            checkpoint.link_or_copy(path, last)
            prune_checkpoints(ckpt_dir, t["keep_checkpoints"])
        else:
            checkpoint.save(state, last)

    def evaluate_now(step: int) -> None:
        """Rank 0 measures; every process joins in writing best.pt when the value improved."""
        nonlocal best
        improved = False
        if main_process:
            value = evaluator(G if G_ema is None else G_ema)
            writer.add_scalar(f"eval/{t['eval_metric']}", value, step)
            improved = evaluator.better(value, None if best is None else best["value"])
            log.info("step %d: %s %.4f%s", step, t["eval_metric"], value, " (best so far)" if improved else "")
            if improved:
                best = {"metric": t["eval_metric"], "value": value, "step": step}
        if distributed.maximum(int(improved), device):
            state = state_at(step)
            if main_process:
                checkpoint.save(state, ckpt_dir / "best.pt")

    steps, n_critic, bs = t["steps"], t["n_critic"], t["batch_size"]
    if step >= steps:
        log.info("the run is already at step %d of %d; raise trainer.steps to train further", step, steps)
    bar = tqdm(total=steps, initial=step, desc="train", unit="step", disable=not (t["progress"] and main_process),
               dynamic_ncols=True)
    logged, final_metrics = {}, {}
    t_log, step_log, t_start = time.perf_counter(), step, time.perf_counter()
    G.train()
    D.train()
    with StopSignals() as signals:
        while step < steps:
            step += 1

            # D: n_critic updates on fresh real batches and fresh fakes.
            for k in range(n_critic):
                real, labels = data.next()
                z = torch.randn(bs, G.z_dim, device=device)
                c_fake = cond.sample(bs, labels, device)  # the fakes' labels or codes (None if unconditional)
                last_d_step = k == n_critic - 1
                # The G update reuses the last D step's fakes (as the DCGAN reference code does), saving one
                # G forward pass; so only that one is kept on the autograd graph.
                with autocast:
                    with torch.set_grad_enabled(last_d_step):
                        fake = G_run(z) if c_fake is None else G_run(z, c_fake)
                    real_scores, real_head = cond.run_d(D_run, real, labels)
                    fake_scores, fake_head = cond.run_d(D_run, fake.detach(), c_fake)
                    loss_D = loss.d_loss(real_scores, fake_scores)
                    extra = cond.d_loss(real_head, labels, fake_head, c_fake)  # ACGAN's classes, InfoGAN's codes
                    if extra is not None:
                        loss_D = loss_D + extra
                # computed in float32; the fakes share the real batch's labels, so the interpolates have them too
                penalty = loss.penalty(cond.d_for_penalty(D_for_G, labels), real, fake.detach())
                if penalty is not None:
                    loss_D = loss_D + penalty
                opt_D.zero_grad(set_to_none=True)
                scaler_D.scale(loss_D).backward()
                scaler_D.step(opt_D)
                scaler_D.update()
                loss.after_d_step(D)

            # G: one update through a frozen D (no gradients for D's weights are needed).
            D.requires_grad_(False)
            with autocast:
                scores_G, head_G = cond.run_d(D_for_G, fake, c_fake)
                loss_G = loss.g_loss(scores_G)
                extra = cond.g_loss(head_G, c_fake)
                if extra is not None:
                    loss_G = loss_G + extra
            opt_G.zero_grad(set_to_none=True)
            scaler_G.scale(loss_G).backward()
            scaler_G.step(opt_G)
            scaler_G.update()
            D.requires_grad_(True)
            if G_ema is not None:
                update_ema(G_ema, G, t["g_ema"])
            guard.track(step, {"loss/D": loss_D, "loss/G": loss_G})

            bar.update(1)
            # Scalars are read (one host sync) only on logging steps.
            if step % t["log_every"] == 0 or step == steps:
                check_finite()
                stats = {
                    "loss/D": loss_D.detach(),
                    "loss/G": loss_G.detach(),
                    "D/real_score": real_scores.detach().float().mean(),
                    "D/fake_score": fake_scores.detach().float().mean(),
                    # The size of D's input gradient at real data: large values mean a sharp, overconfident D.
                    "D/grad_norm": losses.input_gradient_norm(cond.d_for_penalty(D, labels), real,
                                                              create_graph=False).mean(),
                    **loss.diagnostics(D),
                    **cond.diagnostics(),
                }
                if loss.critic:  # the critic's estimate of the Wasserstein distance
                    stats["critic/wasserstein"] = stats["D/real_score"] - stats["D/fake_score"]
                # Averaged over the processes, each of which saw its own batch.
                values = distributed.mean(torch.stack([v.float() for v in stats.values()]))
                logged = dict(zip(stats, values.tolist()))
                now = time.perf_counter()
                logged["speed/steps_per_s"] = (step - step_log) / max(now - t_log, 1e-9)
                t_log, step_log = now, step
                if writer is not None:
                    for name, value in logged.items():
                        writer.add_scalar(name, value, step)
                bar.set_postfix(D=f"{logged['loss/D']:.3f}", G=f"{logged['loss/G']:.3f}", refresh=False)
            if t["sample_every"] and step % t["sample_every"] == 0:
                check_finite()
                if main_process:
                    write_samples(step)
            if t["ckpt_every"] and step % t["ckpt_every"] == 0:
                check_finite()
                write_checkpoint(step, periodic=True)
            if t["eval_every"] and step % t["eval_every"] == 0:
                check_finite()
                evaluate_now(step)
            # A signal stops the run once this step is done, on every process at the same step.
            stop = signals.received is not None
            if world > 1:
                stop = bool(distributed.maximum(int(stop), device))
            if stop:
                break
        bar.close()

        # The end of the run (or of this part of it): a final grid and checkpoint, unless written already.
        check_finite()
        if not (t["ckpt_every"] and step % t["ckpt_every"] == 0 and step > start_step):
            write_checkpoint(step, periodic=False)
    grid = sample_dir / f"step_{step:07d}.png"
    if main_process and not grid.exists():
        grid = write_samples(step)
    if writer is not None:
        writer.close()
    if world > 1:
        sums = distributed.checksums(G), distributed.checksums(D)
        in_sync = all(s == sums[0][0] for s in sums[0]) and all(s == sums[1][0] for s in sums[1])
        if not in_sync:
            raise UserError(f"the weights differ between the {world} processes at step {step}; please report this")
        log.info("weights of G and D identical on all %d processes", world)
    elapsed = time.perf_counter() - t_start
    if step < steps:
        raise StopRequested(
            f"stopped at step {step} of {steps}; checkpoint {shown(ckpt_dir / 'last.pt')}. "
            f"Continue with: gan-train resume={shown(run_dir)}",
            code=128 + (signals.received or 2),
        )
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


_LAUNCH_TIME = None


def _now(pattern: str) -> str:
    """Like Hydra's ${now:...}, but one time per launch, shared by every torchrun process."""
    global _LAUNCH_TIME
    if _LAUNCH_TIME is None:
        _LAUNCH_TIME = distributed.launch_time()
    return _LAUNCH_TIME.strftime(pattern)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("gan_now", _now, replace=True)
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
            cfg = compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        match = re.match(r"Could not override '([^']+)'", str(e))
        if match and "not in struct" in str(e.__cause__ or ""):
            key = match.group(1)
            raise UserError(
                f"no option {key} in the config; `gan-train --cfg job` lists them (a new key is written +{key}=...)"
            ) from None
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UserError("; ".join(lines)) from None
    check_values(cfg)


def check_values(cfg) -> None:
    """Values that cannot work, caught before Hydra makes the run folder (train() checks them again)."""
    from gan_cli.models.dcgan import check_side

    check_trainer(OmegaConf.to_container(cfg.trainer, resolve=True))
    side = cfg.dataset.get("resolution")
    if cfg.dataset.name != "toy2d" and isinstance(side, int):
        for part in ("generator", "discriminator"):
            if cfg[part].name in CONV_NETS:
                check_side(side, part)


def check_output_folder(args) -> None:
    """An output folder that cannot be written is one line now, not a traceback from Hydra later."""
    import os

    folder = Path("outputs")
    for arg in args:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value and "$" not in value:
            folder = Path(value)
        elif key == "resume" and value:
            folder = Path(_run_dir(value, "outputs"))
    existing = folder.expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write the run to {folder}: {shown(existing)} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the run to {folder}: no write permission on {shown(existing)} "
                        "(run elsewhere, or set hydra.run.dir=<folder>)")


def fail(prog: str, error: Exception, code: int = 2) -> None:
    print(f"{prog}: error: {error}", file=sys.stderr)
    distributed.cleanup()
    sys.exit(code)


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
        except StopRequested as e:
            print(f"gan-train: {e}", file=sys.stderr)
            distributed.cleanup()
            sys.exit(e.code)

    register_resolvers()
    try:
        check_group_choices(sys.argv[1:])
        check_keys(sys.argv[1:])
        check_output_folder(sys.argv[1:])
    except UserError as e:
        fail("gan-train", e)
    if distributed.launched():
        distributed.setup()
        if not distributed.is_main():  # rank 0 writes the run folder's config and log
            sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    hydra_main()
    distributed.cleanup()


if __name__ == "__main__":
    main()
