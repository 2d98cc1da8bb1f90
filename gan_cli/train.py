"""gan-train: the training loop, top to bottom, for any game.

    gan-train                                   DCGAN on the bundled digits
    gan-train model=gan dataset=toy2d           the 2014 GAN on a ring of 8 Gaussians
    gan-train -m loss=minimax,nonsaturating     a sweep
    gan-train resume=outputs/<date>/<time>      continue a run

`train(cfg, run_dir)` does the work and can be called without Hydra (the tests do);
`main()` is the console script: Hydra composes conf/ and hands the config to it.
The game (gan_cli/games) says who plays and what each update's loss is; this file owns what no game
should repeat: steps, autocast and loss scaling, backward and optimizer steps, which nets train,
compile and DDP wrapping, EMA, logging, the NaN guard, signals, pictures, evaluation and checkpoints.
"""

import copy
import json
import logging
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from torch.utils.tensorboard import SummaryWriter

from gan_cli import (WRITE_FAILED_EXIT, UserError, WriteFailed, augment, build, checkpoint, distributed, lock, plots,
                     runtime, search, writes)
from gan_cli.build import GROUPS, WHO
from gan_cli.games import Nets
from gan_cli.metrics import toy2d as toy2d_metrics
from gan_cli.metrics.scores import minimum_samples
from gan_cli.options import HELP_FLAGS, suggest
from gan_cli.progress import Progress
from gan_cli.runtime import shown
from gan_cli.safety import NonFiniteGuard, StopRequested, StopSignals

log = logging.getLogger("gan_cli.train")

EVAL_METRICS = ("fid", "kid", "is", "precision", "recall", "modes", "hq_percent", "reverse_kl", "balanced_hq")


# --- settings -------------------------------------------------------------------------------------


def check_trainer(t: dict) -> None:
    """One clear line for each setting that cannot work."""
    if t.get("objective", "none") not in OBJECTIVE_CHOICES:
        raise UserError(f"unknown trainer.objective {t['objective']!r}; choose one of: {', '.join(OBJECTIVE_CHOICES)}")
    if not isinstance(t["device"], str):
        raise UserError(f"trainer.device must be auto, cpu, cuda, cuda:N or mps, got {t['device']!r}")
    seconds = t["progress_seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
        raise UserError(f"trainer.progress_seconds must be a number of seconds >= 0, got {seconds!r}")
    for key in ("steps", "batch_size", "n_critic", "log_every", "grid_size", "eval_samples"):
        if not isinstance(t[key], int) or isinstance(t[key], bool) or t[key] < 1:
            raise UserError(f"trainer.{key} must be a positive integer, got {t[key]!r}")
    for key in ("sample_every", "ckpt_every", "num_workers", "keep_checkpoints", "eval_every"):
        if not isinstance(t[key], int) or isinstance(t[key], bool) or t[key] < 0:
            raise UserError(f"trainer.{key} must be a non-negative integer (0 = off), got {t[key]!r}")
    if not isinstance(t["g_ema"], (int, float)) or not 0 <= t["g_ema"] < 1:
        raise UserError(f"trainer.g_ema must be in [0, 1) (0 = off, 0.999 is typical), got {t['g_ema']!r}")
    rampup = t["g_ema_rampup"]
    if isinstance(rampup, bool) or not isinstance(rampup, (int, float)) or rampup < 0:
        raise UserError(f"trainer.g_ema_rampup must be a number >= 0 (0 = off, 0.05 is StyleGAN2's), got {rampup!r}")
    start = t["g_ema_start"]
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise UserError(f"trainer.g_ema_start must be a step >= 0 (0 = from the start; BigGAN's 20000), got {start!r}")
    if t["eval_metric"] not in EVAL_METRICS:
        raise UserError(f"unknown trainer.eval_metric '{t['eval_metric']}'; choose one of: {', '.join(EVAL_METRICS)}")
    need = minimum_samples(t["eval_metric"])  # the evaluator's IS takes 10 splits, precision/recall k = 3
    if t["eval_every"] and t["eval_samples"] < need:
        raise UserError(f"trainer.eval_metric={t['eval_metric']} needs trainer.eval_samples >= {need}, "
                        f"got {t['eval_samples']}")
    if str(t["precision"]) not in runtime.PRECISIONS:
        raise UserError(f"unknown trainer.precision '{t['precision']}'; choose 32, bf16 or 16")
    for key in ("compile", "progress", "sync_batchnorm", "tf32", "cudnn_benchmark", "channels_last", "deterministic"):
        if not isinstance(t[key], bool):
            raise UserError(f"trainer.{key} must be true or false, got {t[key]!r}")
    augment.check(t)


def check_optimizer(node: dict) -> None:
    from gan_cli import schedules

    schedules.check(node.get("schedule", "constant"), node.get("warmup", 0), node.get("decay_start", 0))


@torch.no_grad()
def update_ema(ema, net, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net, for the weights. Batch-norm statistics are left alone: they
    belong to the weights they were measured with, and the game recomputes the copy's own
    (Game.refresh_statistics) before it draws or is saved. Other buffers are states of the net that the
    copy shares (a growing net's level, StyleGAN's running mean of w): they are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 - decay)
    for kept, current in zip(ema.modules(), net.modules()):
        if not isinstance(current, torch.nn.modules.batchnorm._BatchNorm):
            for a, b in zip(kept.buffers(recurse=False), current.buffers(recurse=False)):
                a.copy_(b)


def ema_decay(decay: float, rampup: float, step: int, start: int = 0) -> float:
    """G_ema's decay at G step `step` (1, 2, ...). With a ramp-up r > 0 the average's half-life is at most
    r * step steps, so it forgets the initial weights as fast as training moves away from them (StyleGAN2-ADA's
    ema_rampup, there counted in images: the same thing at a fixed batch size): min(decay, 0.5^(1 / (r step))).
    Up to step `start` the decay is 0: G_ema copies G, and averages from then on (BigGAN's ema_start)."""
    if step <= start:
        return 0.0
    if not rampup:
        return decay
    return min(decay, 0.5 ** (1.0 / (rampup * step)))


def plain_config(cfg) -> dict:
    """The resolved config as plain dicts and lists; a missing required value is a one-line error."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        key = e.full_key or str(e)
        raise UserError(f"{key} is required: add {key}=... to the command") from None


# Keys a resume may change freely: how long to train, how the run is watched and on what hardware settings it
# runs (the device, TF32, layouts), not what it learns.
RESUME_FREE = {
    "resume", "resume_override", "trainer.steps", "trainer.progress", "trainer.device", "trainer.num_workers",
    "trainer.log_every", "trainer.sample_every", "trainer.ckpt_every", "trainer.keep_checkpoints",
    "trainer.compile", "trainer.eval_every", "trainer.eval_metric", "trainer.eval_samples", "dataset.root",
    "dataset.download", "trainer.progress_seconds", "trainer.tf32", "trainer.cudnn_benchmark", "trainer.channels_last",
    "trainer.deterministic", "trainer.objective",
}


def flatten(node, prefix="") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def run_choices(state: dict, path: Path) -> dict:
    """The config-group choices a run was started with (model=dcgan, dataset=digits, ...): kept in the
    checkpoint, or, for checkpoints written before that, in the run folder's .hydra/hydra.yaml."""
    if state.get("choices"):
        return state["choices"]
    hydra_file = checkpoint.run_dir_of(path) / ".hydra" / "hydra.yaml"
    try:
        return dict(OmegaConf.load(hydra_file).hydra.runtime.choices)
    except Exception:  # no folder config (a copied checkpoint): only the names of the components are known
        return dict(state.get("names") or {})


def resumed_config(saved: dict, overrides, choices: dict | None = None) -> dict:
    """The config of a resumed run: the one it was started with, plus the key=value overrides given now.

    Components (config groups) cannot change on resume: `group=x` is accepted where x is the run's own
    choice and refused otherwise. Of single keys, those in RESUME_FREE (e.g. trainer.steps=4000) can
    change; any other change is refused, naming the keys, unless resume_override=true.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = choices or {}
    config = OmegaConf.create(saved)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key == "resume" or key.startswith("hydra"):
            continue
        if key.split(".")[0] in GROUPS and "." not in key:
            if not override.is_delete() and str(override.value()) == str(choices.get(key)):
                continue  # the run's own choice, repeated
            raise UserError(f"resume keeps the run's {key}"
                            + (f" ({choices[key]})" if choices.get(key) else "")
                            + f"; start a new run to change it (drop {key}= from the command)")
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


# Trainer keys added after the first checkpoints were written, with the values those runs had.
LATER_TRAINER_KEYS = {"keep_checkpoints": 0, "precision": "32", "compile": False, "eval_every": 0,
                      "eval_metric": "fid", "eval_samples": 2000, "augment": [], "augment_p": 1.0,
                      "augment_target": None, "augment_speed": 100_000,
                      "g_ema_rampup": 0.0, "sync_batchnorm": False, "progress_seconds": 30, "tf32": False,
                      "cudnn_benchmark": False, "channels_last": False, "deterministic": False,
                      "objective": "none", "g_ema_start": 0}


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest `keep` periodic checkpoints (0 = all). last.pt is a separate link and stays."""
    if keep:
        for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep]:
            old.unlink(missing_ok=True)


# --- the pieces of a run --------------------------------------------------------------------------


def prepare(cfg, run_dir: Path, overrides, choices) -> tuple[dict, dict | None, dict]:
    """The plain config of the run (for a resume: the saved one plus the allowed overrides), the
    checkpoint it resumes from, and the run's config-group choices."""
    c = plain_config(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    resume_state = None
    if c.get("resume"):
        ckpt_path = checkpoint.find(c["resume"])
        resume_state = checkpoint.load(ckpt_path)
        resume_state["choices"] = run_choices(resume_state, ckpt_path)
        c = resumed_config(resume_state["config"], overrides, resume_state["choices"])
        c["resume"] = str(ckpt_path)
    elif (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with resume={run_dir} or start a new one")
    t = c["trainer"]
    for key, value in LATER_TRAINER_KEYS.items():
        t.setdefault(key, value)
    if not isinstance(c.get("seed"), int) or isinstance(c.get("seed"), bool):
        raise UserError(f"seed must be a whole number, got {c.get('seed')!r}")
    check_trainer(t)
    check_optimizer(c["optimizer"])
    if choices is None:
        choices = (resume_state or {}).get("choices") or {}
    c_choices = {k: v for k, v in dict(choices).items() if not k.startswith("hydra") and v is not None}
    return c, resume_state, c_choices


def restore(state: dict, game, ema, optimizers, scalers, schedules, data, c: dict, rank: int) -> int:
    """Load a checkpoint's nets, copies, optimizer moments, scalers, schedules, game state, data order and
    random streams into a freshly built run; returns its step."""
    where = c["resume"]
    for name, net in game.nets.items():
        checkpoint.load_weights(net, state["nets"][name], WHO.get(name, name), where)
    for name, net in ema.items():
        source = game.ema()[name]
        checkpoint.load_weights(net, state["ema"].get(name) or state["nets"][source], WHO.get(source, source), where)
    for name, opt in optimizers.items():
        # The moments come from the checkpoint, the settings (lr, betas, ...) from the config,
        # which differs from the saved one only where resume_override=true allowed it.
        settings = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
        opt.load_state_dict(state["optimizers"][name])
        for group, setting in zip(opt.param_groups, settings):
            group.update(setting)
    for name, scaler in scalers.items():
        if state["scalers"].get(name) and scaler.is_enabled():
            scaler.load_state_dict(state["scalers"][name])
    for name, schedule in schedules.items():
        if name in state.get("schedules", {}):
            schedule.load_state_dict(state["schedules"][name])
    game.load_state_dict(state.get("game_state") or {})
    # A process resumes its own data order and RNG state where the checkpoint holds it (same
    # number of processes); a process the checkpoint has no state for starts fresh ones.
    ranks = state.get("ranks") or [{"data": state["data"], "rng": state["rng"]}]
    step = state["step"]
    if rank < len(ranks):
        data.load_state_dict(ranks[rank]["data"])
        checkpoint.set_rng_state(ranks[rank]["rng"])
    else:
        runtime.seed_everything(c["seed"] + rank + 1_000_003 * step)
    return step


def initialise(source, game) -> None:
    """Start the game's nets from the weights of the nets of the same names in another run's checkpoint
    (`init_from`): SRGAN's G from an SRResNet run. Only weights: the step, optimizers and data start afresh."""
    path = checkpoint.find(source)
    state = checkpoint.load(path)
    shared = [name for name in game.nets if name in state["nets"]]
    if not shared:
        raise UserError(f"init_from={source}: its checkpoint holds nets {', '.join(state['nets'])}, none of this "
                        f"run's ({', '.join(game.nets)})")
    for name in shared:
        try:
            checkpoint.load_weights(game.nets[name], state["nets"][name], WHO.get(name, name), path)
        except UserError as e:  # another architecture, or other channels or sizes
            raise UserError(f"init_from: {str(e).split(': it was written')[0]}; start from a run of the same "
                            "nets on data of the same channels") from None
    fresh = [name for name in game.nets if name not in shared]
    log.info("%s start from %s (step %d)%s", " and ".join(shared), shown(path), state["step"],
             f"; {', '.join(fresh)} from scratch" if fresh else "")


def wrap(game, t: dict, world: int, device) -> tuple[dict, dict]:
    """The modules the loop runs: under torchrun with trainer.sync_batchnorm their batch norm pooled over the
    processes, compiled where asked, and under torchrun DDP-wrapped for the updates that train them
    (`running`); `frozen` are the same without DDP, for updates that leave them alone."""
    running = dict(game.nets)
    synced = set()
    if world > 1 and t["sync_batchnorm"]:
        twice = game.differentiated_twice()
        for name, net in running.items():
            if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
                continue
            if name in twice:
                raise UserError(f"trainer.sync_batchnorm=true: {name} has batch norm and its gradient penalty "
                                "differentiates it twice, which SyncBatchNorm cannot; use trainer.sync_batchnorm="
                                "false (per-process statistics) or a D without batch norm")
            if device.type != "cuda":
                raise UserError("trainer.sync_batchnorm=true needs CUDA devices (PyTorch's SyncBatchNorm); "
                                "set it to false on the CPU")
            running[name] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            synced.add(name)
        if synced:
            log.info("batch norm of %s pooled over the %d processes", " and ".join(sorted(synced)), world)
    if t["compile"]:
        running = {name: torch.compile(net) for name, net in running.items()}
    frozen = dict(running)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        for name, net in running.items():
            # Per-process batch norm: rank 0's statistics are broadcast before each forward, as DDP does by
            # default. Pooled (SyncBatchNorm) statistics are the same everywhere already.
            running[name] = DDP(net, device_ids=[device.index] if device.type == "cuda" else None,
                                broadcast_buffers=name not in synced)
    return running, frozen


def set_trainable(nets: dict, player) -> None:
    """Gradients for the nets the player trains (and those whose graph a later player reuses) only."""
    for name, net in nets.items():
        net.requires_grad_(name in player.trains or name in player.keeps_graph)


# --- the run -------------------------------------------------------------------------------------


def assemble(c: dict, device, rank: int = 0, world: int = 1):
    """The run's data (this process's share), game with its nets, optimizers and learning-rate schedules."""
    t = c["trainer"]
    data = build.data(c, device, t["num_workers"], t["batch_size"]).shard(rank, world)
    if len(data.shape) == 1 and (replaced := build.vector_nets(c)):
        log.info("%s holds points, not images: %s use the mlp nets", data.name, " and ".join(replaced))
    game = build.game(c, data, device)
    if t["channels_last"] and len(data.shape) == 3:  # NHWC weights: convolutions then run in that layout
        for net in game.nets.values():
            net.to(memory_format=torch.channels_last)
    optimizers = build.optimizers(c["optimizer"], game)
    schedules = build.schedules(c["optimizer"], optimizers, t["steps"])
    return data, game, optimizers, schedules


def check_config(cfg) -> None:
    """Every check a new run makes of its config before its first step, and nothing else: the values,
    the device and precision, and building the data, nets, game, optimizers and schedules (on the CPU
    unless the config names a device). Writes nothing; raises what train() would raise."""
    c, _, _ = prepare(cfg, Path("/nonexistent-run-folder"), (), {})
    device = runtime.pick_device(c["trainer"]["device"])
    runtime.Precision(c["trainer"]["precision"], device)
    runtime.seed_everything(c["seed"])
    data, game, _, _ = assemble(c, device)
    objective_metric(c, data, game)


def train(cfg, run_dir, overrides=(), choices=None) -> dict:
    """Train the game a composed config describes, writing everything into run_dir, which this run
    holds (gan_cli/lock.py) until it ends: another run into it, or a resume of it, is refused meanwhile.

    With cfg.resume set, the run continues from that checkpoint (its config, plus the key=value
    `overrides`) in run_dir. `choices`: the config-group choices (Hydra's), kept in the checkpoint.
    Returns a summary: the last step, final losses and the files written.
    Under torchrun (see gan_cli/distributed.py) every process runs this; only rank 0 writes (and locks).
    """
    run_dir = Path(run_dir)
    try:
        if distributed.rank() != 0:
            return _train(cfg, run_dir, overrides, choices)
        with lock.RunLock(run_dir):
            return _train(cfg, run_dir, overrides, choices)
    except (WriteFailed, OSError) as e:
        if isinstance(e, OSError) and not writes.is_write_error(e):
            raise
        failure = e if isinstance(e, WriteFailed) else writes.failed(e)
        path = shown(failure.path) if Path(str(failure.path)).is_absolute() else failure.path
        raise WriteFailed(path, failure.reason, resume_hint(run_dir)) from None


def resume_hint(run_dir: Path) -> str:
    """What a run that could not write still has, and how to go on from it."""
    last = run_dir / "checkpoints" / "last.pt"
    try:
        step = checkpoint.load(last)["step"]
    except UserError:
        return "no checkpoint of this run was written yet; once the folder can be written, start it again"
    return (f"the last good checkpoint is {shown(last)} (step {step}); once the folder can be written again, "
            f"continue with: gan-train resume={shown(run_dir)}")


def _train(cfg, run_dir: Path, overrides, choices) -> dict:
    c, resume_state, choices = prepare(cfg, run_dir, overrides, choices)
    t = c["trainer"]
    rank, world = distributed.rank(), distributed.world_size()
    main_process = rank == 0
    # Each process draws its own noise; the weights start equal (DDP copies rank 0's).
    runtime.seed_everything(c["seed"] + rank)
    device = runtime.pick_device(t["device"])
    precision = runtime.Precision(t["precision"], device)
    policy = runtime.apply_policy(t, device)

    # The data (each process its own share), the game and its nets, optimizers, schedules and copies.
    data, game, optimizers, schedules = assemble(c, device, rank, world)
    objective_name = objective_metric(c, data, game)  # a score that cannot be measured is said now
    if getattr(data, "skipped", None) and main_process:  # dataset.on_bad_file=skip left files out
        listed = run_dir / "skipped_files.txt"
        writes.write_text(listed, "".join(f"{path}\t{why}\n" for path, why in data.skipped))
        log.info("%d unreadable files left out of the data set; the list: %s", len(data.skipped), shown(listed))
    scalers = {name: precision.scaler() for name in optimizers}
    # Moving averages of the nets the game names (G_ema), used for pictures and samples when enabled.
    ema = {name: copy.deepcopy(game.nets[source]).requires_grad_(False)
           for name, source in game.ema().items()} if t["g_ema"] else {}
    # The preview's inputs come from the seed alone, so a resumed run draws the same grid.
    fixed = game.fixed_inputs(c["seed"], t["grid_size"], device)

    step = 0
    if c.get("init_from") and resume_state is None:
        initialise(c["init_from"], game)
    if resume_state is not None:
        step = restore(resume_state, game, ema, optimizers, scalers, schedules, data, c, rank)
        log.info("resuming %s at step %d of %d", shown(run_dir), step, t["steps"])
        for name, schedule in schedules.items():
            if schedule.changes and schedule.total != t["steps"]:
                log.info("the %s learning-rate schedule keeps the horizon of %d steps the run started with",
                         name, schedule.total)
    running, frozen = wrap(game, t, world, device)
    if world > 1 and resume_state is None:  # DDP gave every process rank 0's weights
        for name, source in game.ema().items():
            if name in ema:
                ema[name].load_state_dict(game.nets[source].state_dict())
    players = game.players()
    views = {p.name: Nets({n: running[n] if n in p.trains + p.keeps_graph else frozen[n] for n in game.nets},
                          game.nets) for p in players}
    plain = Nets(game.nets, game.nets)

    ckpt_dir, sample_dir = run_dir / "checkpoints", run_dir / "samples"
    writer = None
    if main_process:
        sample_dir.mkdir(parents=True, exist_ok=True)
        # purge_step drops events a crashed run logged after its last checkpoint, so curves continue cleanly.
        writer = SummaryWriter(str(run_dir), purge_step=step + 1 if step else None)
        if not step:
            writer.add_text("config", "```\n" + OmegaConf.to_yaml(c) + "\n```")
    log.info("training %s on %s, %d steps on %s%s%s -> %s", game.describe(), data.name, t["steps"], device,
             f" x {world} processes" if world > 1 else "", "" if precision.name == "32" else f" in {precision.name}",
             shown(run_dir))

    guard = NonFiniteGuard(device)
    start_step, saved_step = step, step if resume_state is not None else None

    # trainer.eval_every: a metric of G's samples now and then, and checkpoints/best.pt by its value.
    evaluator, best = None, (resume_state or {}).get("best")
    if t["eval_every"] and main_process:
        from gan_cli.metrics.protocol import TrainingEvaluator

        evaluator = TrainingEvaluator(c["dataset"], data, game, t["eval_metric"], t["eval_samples"], 250,
                                      c["seed"], device)

    def check_finite() -> None:
        """Stop (on every process) at a non-finite loss, before anything of that state is written."""
        problem = guard.problem()
        if distributed.maximum(int(problem is not None), device):
            where = "no checkpoint was written" if saved_step is None else (
                f"{shown(ckpt_dir / 'last.pt')} still holds step {saved_step}")
            raise UserError(f"{problem or 'a loss is not finite on another process'}; training stopped, {where}")

    refreshed = [None]

    def sampling_nets() -> dict:
        """The game's nets and their averaged copies, whose batch-norm statistics are made their own once
        per step (without touching the run's random streams)."""
        if refreshed[0] != step:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                for name, net in ema.items():
                    game.refresh_statistics(name, net, device)
            refreshed[0] = step
        return {**game.nets, **ema}

    def state_at(step: int) -> dict:
        ranks = distributed.gather({"data": data.state_dict(), "rng": checkpoint.rng_state()})
        sampling_nets()
        return {
            "format": checkpoint.FORMAT,
            "step": step,
            "game": game.name,
            "nets": {name: net.state_dict() for name, net in game.nets.items()},
            "ema": {name: net.state_dict() for name, net in ema.items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "scalers": {name: s.state_dict() if s.is_enabled() else None for name, s in scalers.items()},
            "schedules": {name: s.state_dict() for name, s in schedules.items()},
            "game_state": game.state_dict(),
            "data": ranks[0]["data"],
            "rng": ranks[0]["rng"],
            "ranks": ranks if world > 1 else None,
            "config": c,
            "names": {g: c[g]["name"] for g in GROUPS if g in c},
            "choices": choices,
            "num_classes": data.num_classes,
            "best": best,
            "precision_policy": policy,
        }

    def write_samples(step: int) -> Path:
        picture, metrics = game.preview(sampling_nets(), fixed)
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
            value = evaluator(sampling_nets())
            writer.add_scalar(f"eval/{t['eval_metric']}", value, step)
            improved = evaluator.better(value, None if best is None else best["value"])
            log.info("step %d: %s %.4f%s", step, t["eval_metric"], value, " (best so far)" if improved else "")
            if improved:
                best = {"metric": t["eval_metric"], "value": value, "step": step}
        if distributed.maximum(int(improved), device):
            state = state_at(step)
            if main_process:
                checkpoint.save(state, ckpt_dir / "best.pt")

    steps = t["steps"]
    if step >= steps:
        log.info("the run is already at step %d of %d; raise trainer.steps to train further", step, steps)
    bar = Progress(steps, step, t["progress"] and main_process, t["progress_seconds"])
    logged, final_metrics, stats, batch = {}, {}, {}, None
    t_log, step_log, t_start = time.perf_counter(), step, time.perf_counter()
    for net in game.nets.values():
        net.train()
    with StopSignals() as signals:
        while step < steps:
            step += 1
            changed = game.schedule(step)
            if changed and main_process:  # a growth level, ...
                log.info("step %d: %s", step, ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changed.items()))
            for schedule in schedules.values():
                schedule.step(step)

            # Each player due at this step: `repeat` updates of the nets it trains.
            losses = {}
            for player in players:
                if not player.due(step):
                    continue
                set_trainable(game.nets, player)
                nets = views[player.name]
                opt, scaler = optimizers[player.optimizer], scalers[player.optimizer]
                for _ in range(player.repeat):
                    if player.fresh_batch or batch is None:
                        batch = data.next()
                    with precision.autocast:
                        loss, player_stats = game.loss(player, batch, nets, step)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    game.after_update(player, nets)
                losses[f"loss/{player.name}"] = loss
                stats.update(player_stats)
            for name, source in game.ema().items():
                if name in ema:
                    update_ema(ema[name], game.nets[source], ema_decay(t["g_ema"], t["g_ema_rampup"], step,
                                                                               t["g_ema_start"]))
            guard.track(step, losses)

            bar.update()
            # Scalars are read (one host sync) only on logging steps.
            logging_step = step % t["log_every"] == 0 or step == steps
            if logging_step:
                check_finite()
                # Diagnostics leave every buffer and random stream as they found them.
                with runtime.untouched(game.nets.values(), device):
                    diagnostics = game.diagnostics(plain, batch)
                values = {**stats, **diagnostics}
                # Averaged over the processes, each of which saw its own batch.
                averaged = distributed.mean(torch.stack([v.detach().float() for v in values.values()]))
                logged = dict(zip(values, averaged.tolist()))
                for name, schedule in schedules.items():
                    logged[f"lr/{name}"] = schedule.lr
                now = time.perf_counter()
                logged["speed/steps_per_s"] = (step - step_log) / max(now - t_log, 1e-9)
                t_log, step_log = now, step
                if writer is not None:
                    for name, value in logged.items():
                        writer.add_scalar(name, value, step)
                bar.logged({k[5:]: v for k, v in logged.items() if k.startswith("loss/")})
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
            # A signal stops the run once this step is done, on every process at the same step: with several
            # processes they agree on logging steps only (agreeing costs a host sync), so at most log_every later.
            stop = signals.received is not None
            if world > 1:
                stop = logging_step and bool(distributed.maximum(int(stop), device))
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
    objective = None
    if main_process and step >= steps and objective_name:  # what a sweep ranks and a search optimises
        objective = measure_objective(objective_name, c, data, game, sampling_nets(), device, evaluator)
        log.info("objective: %s %.4f (%s)", objective["metric"], objective["value"], objective["direction"])
        writer.add_hparams(hparams_of(overrides), {f"objective/{objective['metric']}": objective["value"]},
                           run_name=".", global_step=step)
    if main_process:
        stopped = None if step >= steps else f"stopped by {signal_name(signals.received)} at step {step} of {steps}"
        write_metrics(run_dir, "stopped" if stopped else "finished", reason=stopped, step=step, steps=steps,
                      objective=objective, losses=logged, wall_s=time.perf_counter() - t_start, modes=final_metrics)
    if writer is not None:
        writer.close()
    if world > 1:
        for name, net in game.nets.items():
            sums = distributed.checksums(net)
            if not all(s == sums[0] for s in sums):
                raise UserError(f"the weights of {name} differ between the {world} processes at step {step}; "
                                "please report this")
        log.info("weights of %s identical on all %d processes", " and ".join(game.nets), world)
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
        "objective": objective,
    }


# --- the run's score ------------------------------------------------------------------------------

OBJECTIVE_CHOICES = ("auto", "none", *EVAL_METRICS)


def objective_metric(c: dict, data, game) -> str | None:
    """trainer.objective resolved for this run: auto is the classifier FID on labelled z -> image data, the
    high-quality share on toy2d, and none where no such score applies (image-to-image and super-resolution
    runs, unlabelled images: score those with gan-eval)."""
    name = c["trainer"].get("objective", "none")
    if name == "none":
        return None
    toy = len(data.shape) == 1
    scorable = not (hasattr(game, "upscale") or hasattr(game, "translate")) and (toy or data.num_classes > 0)
    if name == "auto":
        from gan_cli.search import AUTO_OBJECTIVES

        return AUTO_OBJECTIVES.get(data.name, "balanced_hq" if toy else "fid") if scorable else None
    if not scorable:
        raise UserError(f"trainer.objective={name} cannot be measured on this run ({game.name} on {data.name}); "
                        "use trainer.objective=none and score it with gan-eval")
    from gan_cli.metrics.protocol import allowed_metrics

    allowed = allowed_metrics(data)
    if name not in allowed:
        raise UserError(f"trainer.objective={name} does not apply to {data.name}; choose one of: "
                        f"{', '.join(allowed)}, auto or none")
    return name


def measure_objective(metric: str, c: dict, data, game, nets, device, evaluator=None) -> dict:
    """{metric, value, direction} of the trained nets (metric: objective_metric's answer)."""
    from gan_cli.metrics.protocol import TrainingEvaluator, direction

    t = c["trainer"]
    if evaluator is None or evaluator.metric != metric:
        evaluator = TrainingEvaluator(c["dataset"], data, game, metric, t["eval_samples"], 250, c["seed"], device)
    value = float(evaluator(nets))
    return {"metric": metric, "value": value, "direction": direction(metric)}


def worst_value(metric: str) -> float:
    """What a failed run scores: the worst value the metric can take."""
    from gan_cli.metrics.protocol import direction

    return float("inf") if direction(metric) == "minimize" else 0.0


def hparams_of(overrides) -> dict:
    """The command's key=value overrides as TensorBoard hparams (numbers stay numbers)."""
    out = {}
    for override in overrides or ():
        key, sep, value = str(override).lstrip("+~").partition("=")
        if not sep or key.startswith("hydra"):
            continue
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def signal_name(signum) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except (ValueError, TypeError):
        return "a signal"


def write_metrics(run_dir: Path, status: str, **fields) -> Path:
    """<run>/metrics.json: the objective, the last logged losses, steps, wall time and how the run ended."""
    record = {"status": status, **{k: v for k, v in fields.items() if v is not None}}
    path = run_dir / "metrics.json"
    writes.write_text(path, json.dumps(record, indent=2, default=float) + "\n")
    return path


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
LAUNCH_TIME_VARIABLE = "GAN_CLI_LAUNCH_TIME"  # a sweep's start time, for the job processes it starts


def _now(pattern: str) -> str:
    """Like Hydra's ${now:...}, but one time per launch: shared by every torchrun process, and by the job
    processes of a parallel sweep (joblib), which learn it from the launching process's environment."""
    global _LAUNCH_TIME
    if _LAUNCH_TIME is None:
        inherited = os.environ.get(LAUNCH_TIME_VARIABLE)
        _LAUNCH_TIME = datetime.fromisoformat(inherited) if inherited else distributed.launch_time()
    return _LAUNCH_TIME.strftime(pattern)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("gan_now", _now, replace=True)
    OmegaConf.register_new_resolver("gan_run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("gan_hydra_subdir", _hydra_subdir, replace=True)
    OmegaConf.register_new_resolver("gan_job_dir", search.job_dir, replace=True)


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
                raise UserError(f"unknown {group} '{value}'{suggest(value, choices)}; choose one of: "
                                f"{', '.join(choices)}")


# Hydra's flags that take a value (`--cfg hydra`, `-cn train`); --info takes one of INFO_TOPICS or none.
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
               "--experimental-rerun"}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def overrides_in(args) -> list[str]:
    """The overrides of a command line: Hydra's flags and the values they take left out."""
    overrides, previous = [], None
    for arg in args:
        flag_value = previous in VALUE_FLAGS or (previous in ("--info", "-i") and arg in INFO_TOPICS)
        if not flag_value and not arg.startswith("-"):
            overrides.append(arg)
        previous = arg
    return overrides


# Flags after which the command composes some other config, or none: the key check leaves these to Hydra.
OTHER_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun",
                      "--shell-completion", "-sc", "--version", "--hydra-help"}


# Hydra runs a command in one of these modes, and refuses two at once.
MODES = {"-m": "-m", "--multirun": "-m", "-r": "--run", "--run": "--run", "-c": "--cfg", "--cfg": "--cfg",
         "-i": "--info", "--info": "--info", "-sc": "--shell-completion", "--shell-completion": "--shell-completion"}


def check_modes(args) -> None:
    """`gan-train -m ... --cfg job` and the like: one line, not Hydra's traceback."""
    modes = sorted({MODES[a.split("=")[0]] for a in args if a.split("=")[0] in MODES})
    if len(modes) > 1:
        raise UserError(f"{' and '.join(modes)} cannot go together: Hydra runs one of -m, --run, --cfg, --info and "
                        "--shell-completion at a time (`gan-train --cfg job seed=0` shows one job's config)")


def composable(args) -> tuple[list[str], list[str], bool]:
    """The overrides of a command line that one compose can take: hydra.* left out and, in a sweep, each
    listed sweep (`seed=0,1`, `range(3)`, `choice(a,b)`) at its first value. Returns those, the keys of the
    sweeps that list no values (Optuna's `interval(...)`), and whether the command is a sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    sweep = any(a in ("-m", "--multirun") for a in args)
    overrides, open_keys, parser = [], [], OverridesParser.create()
    for arg in overrides_in(args):
        if arg.lstrip("+~").startswith("hydra"):
            continue
        try:
            override = parser.parse_override(arg)
        except HydraException as e:
            raise UserError(runtime.one_line(str(e))) from None
        if not (sweep and override.is_sweep_override()):
            overrides.append(arg)
            continue
        try:
            first = next(iter(override.sweep_string_iterator()))
        except HydraException:  # interval(), tag(), glob(): no list to take a value from
            if not override.is_add():
                open_keys.append(override.key_or_group)
            continue
        overrides.append(f"{override.get_key_element()}={first}")
    return overrides, open_keys, sweep


def check_keys(args, config_root="gan_cli.conf", config_name="train") -> None:
    """Compose the config once before Hydra does, to turn a misspelt key into one clear line.

    Hydra's flags are read for what they are (`--cfg hydra`, `-m`); hydra.* overrides are left to Hydra, and so
    are commands of another config (-cn, -cp). A sweep composes at each listed sweep's first value, and its values
    are left to the jobs, where a bad one fails that job alone.
    """
    import importlib.resources

    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if any(a.split("=")[0] in OTHER_CONFIG_FLAGS for a in args):
        return
    overrides, open_keys, sweep = composable(args)
    try:
        with initialize_config_module(config_module=config_root, version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        match = re.match(r"Could not override '([^']+)'", str(e))
        if match and "not in struct" in str(e.__cause__ or ""):
            key = match.group(1)
            others = [o for o in overrides if not re.match(rf"[+~]?{re.escape(key)}=", o)]
            raise UserError(f"no option {key} in the config{near_keys(key, others, config_root, config_name)}; "
                            "`gan-train --help` lists them all") from None
        raise UserError(runtime.one_line(str(e))) from None
    absent = object()
    for key in open_keys:
        group = importlib.resources.files(config_root).joinpath(key).is_dir()
        if not group and OmegaConf.select(cfg, key, default=absent) is absent:
            raise UserError(f"no option {key} in the config{near_keys(key, overrides, config_root, config_name)}; "
                            "`gan-train --help` lists them all")
    if not sweep:
        check_values(cfg)


def near_keys(key, overrides, config_root, config_name) -> str:
    """`suggest`'s hint among the keys of the config that the rest of the command composes (a preset's nets
    have their own keys)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module=config_root, version_base="1.3"):
            known = [*GROUPS, *flatten(OmegaConf.to_container(compose(config_name, overrides=overrides)))]
    except (HydraException, OmegaConfBaseException):
        known = list(GROUPS)
    return suggest(key, known)


HELP_ORDER = ("model", "dataset", "generator", "discriminator", "loss", "optimizer", "conditioning", "game")


def print_help(args, config_root="gan_cli.conf") -> None:
    """`gan-train --help [group=option ...]`: how to call it, every group with its options, then every
    key of the config those choices compose, file by file as written, with its default and comment."""
    import importlib.resources

    from hydra import compose, initialize_config_module

    conf = importlib.resources.files(config_root)
    args = [a for a in args if a not in HELP_FLAGS]
    check_group_choices(args, config_root)
    check_keys(args, config_root)  # a misspelt key is one line here too
    overrides = composable(args)[0]
    with initialize_config_module(config_module=config_root, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    train_yaml = conf.joinpath("train.yaml").read_text()
    own, _, _ = train_yaml.partition("\nhydra:")
    out = [cfg.hydra.help.header.rstrip(), "",
           "Groups: pick one option of each with group=option (the ones this command picks in brackets)."]
    for group in (*HELP_ORDER, "hparams_search"):
        options = sorted(p.name[:-5] for p in conf.joinpath(group).iterdir() if p.name.endswith(".yaml"))
        out.append(f"  {group}: " + ", ".join(f"[{o}]" if o == choices.get(group) else o for o in options))
    out += ["", "Every key, as the files that this command composes set it (a later file wins: the preset last);",
            "change any with key=value. `gan-train --help model=wgan_gp dataset=mnist` shows those choices.", ""]
    out += ["# ---- gan-train's own keys (conf/train.yaml) ----", own.split("\n\n", 1)[-1].rstrip(), ""]
    for group in HELP_ORDER[1:] + ("model", "model_dataset", "hparams_search"):
        choice = choices.get(group)
        if choice and conf.joinpath(group, f"{choice}.yaml").is_file():
            out += [f"# ---- {group}={choice} (conf/{group}/{choice}.yaml) ----",
                    conf.joinpath(group, f"{choice}.yaml").read_text().rstrip(), ""]
    out.append(cfg.hydra.help.footer.rstrip())
    try:
        print("\n".join(out), flush=True)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# Hydra's launcher plugins: the package each one's configs come in, and gan-cli's extra that installs it.
LAUNCHERS = {"submitit_": ("hydra_plugins.hydra_submitit_launcher", "slurm", "hydra-submitit-launcher"),
             "joblib": ("hydra_plugins.hydra_joblib_launcher", None, "hydra-joblib-launcher"),
             "ray": ("hydra_plugins.hydra_ray_launcher", None, "hydra-ray-launcher"),
             "rq": ("hydra_plugins.hydra_rq_launcher", None, "hydra-rq-launcher")}


def check_launcher(args) -> None:
    """hydra/launcher=<name> whose plugin is not installed: one line naming what to install."""
    import importlib.util

    for arg in args:
        key, _, name = arg.lstrip("+").partition("=")
        if key != "hydra/launcher" or name == "basic":
            continue
        plugin = next((v for prefix, v in LAUNCHERS.items() if name.startswith(prefix)), None)
        if plugin is None:
            raise UserError(f"unknown hydra/launcher '{name}'; gan-cli knows basic, submitit_local, submitit_slurm, "
                            "joblib, ray and rq")
        module, extra, package = plugin
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # the hydra_plugins namespace itself is absent
            found = False
        if not found:
            how = f"pip install 'gan-cli[{extra}]' (or pip install {package})" if extra else f"pip install {package}"
            raise UserError(f"hydra/launcher={name} needs Hydra's {package} plugin, which is not installed: {how}")


def check_values(cfg) -> None:
    """Values that cannot work, caught before Hydra makes the run folder (train() checks them again)."""
    from gan_cli.models.dcgan import check_side

    check_trainer(OmegaConf.to_container(cfg.trainer, resolve=True))
    check_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True))
    side = cfg.dataset.get("resolution")
    if cfg.dataset.name != "toy2d" and isinstance(side, int):
        for part in ("generator", "discriminator"):
            if cfg[part].name in build.CONV_NETS:
                check_side(side, part)


def check_output_folder(args) -> None:
    """An output folder that cannot be written is one line now, not a traceback from Hydra later."""
    import os

    folder, run_folder, resumed = Path("outputs"), None, False
    for arg in args:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value and "$" not in value:
            folder = Path(value)
            run_folder = folder if key == "hydra.run.dir" else run_folder
        elif key == "resume" and value and value != "null":
            folder = run_folder = Path(_run_dir(value, "outputs"))
            resumed = True
    # Before Hydra writes its config and log into the folder: a live run's files stay untouched.
    if run_folder is not None and run_folder.is_dir() and not any(a in ("-m", "--multirun") for a in args):
        lock.check_free(run_folder)
        if not resumed and (run_folder / "checkpoints" / "last.pt").exists():
            raise UserError(f"{run_folder} already holds a run; continue it with resume={run_folder} or start a "
                            "new one")
    existing = folder.expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write the run to {folder}: {shown(existing)} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the run to {folder}: no write permission on {shown(existing)} "
                        "(run elsewhere, or set hydra.run.dir=<folder>)")


def failed_job(cfg, run_dir: Path, error: Exception) -> float:
    """A sweep's job that stopped on a user error or a non-finite loss: said in one line, recorded in its
    metrics.json with the worst value of the objective, which is what the sweep gets back."""
    from gan_cli.metrics.protocol import direction

    name = search.objective_of(cfg) or search.auto_objective(cfg)  # none: scored as auto would be
    worst = worst_value(name) if name in EVAL_METRICS else float("inf")
    message = runtime.one_line(str(error))
    print(f"gan-train: job {run_dir.name} failed: {message}; recorded as {name} = {worst}", file=sys.stderr)
    write_metrics(run_dir, "failed", reason=message,
                  objective={"metric": name, "value": worst, "direction": direction(name)})
    return worst


def remove_refused(run_dir: Path, resumed: bool, started: float) -> None:
    """A command refused after Hydra made its run folder leaves nothing behind: the folder of a new run
    is removed when it holds only what Hydra wrote (its config, an empty or short log), with the date
    folders above it that it leaves empty; a refused resume removes only its own config copy."""
    import shutil

    run_dir = run_dir.absolute()
    if resumed:
        for copy_of_config in (run_dir / ".hydra").glob("resume-*"):
            if copy_of_config.stat().st_mtime >= started - 1:  # written by this command
                shutil.rmtree(copy_of_config, ignore_errors=True)
        return
    try:
        entries = {p.name for p in run_dir.iterdir()}
    except OSError:
        return
    if not entries <= {".hydra", "train.log", lock.NAME} or (run_dir / "checkpoints").exists():
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    cwd = Path.cwd().absolute()
    for parent in run_dir.parents:  # outputs/<date>/ and outputs/ when now empty, never above the working folder
        if parent == cwd or cwd not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:  # not empty
            break


def fail(prog: str, error: Exception, code: int = 2) -> None:
    print(f"{prog}: error: {runtime.one_line(str(error))}", file=sys.stderr)
    distributed.cleanup()
    sys.exit(code)


def fail_before_launch(prog: str, error: Exception) -> None:
    """A bad command line, found the same way by every process. Under torchrun rank 0 says it, and the
    other processes wait for torchrun to end them when rank 0 exits: a process that exited first would
    have torchrun end rank 0, perhaps before it could say anything. A process whose error rank 0 did not
    share (a folder it cannot write on another machine) says its own after the wait."""
    if distributed.launched() and int(os.environ.get("RANK", "0")) != 0:
        time.sleep(120)
    fail(prog, error)


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    @hydra.main(version_base="1.3", config_path="pkg://gan_cli.conf", config_name="train")
    def hydra_main(cfg: DictConfig) -> None:
        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        try:
            result = train(cfg, run_dir, overrides=hc.overrides.task, choices=OmegaConf.to_container(hc.runtime.choices))
        except UserError as e:
            if hc.mode == RunMode.MULTIRUN and distributed.is_main():
                # One job of a sweep: recorded as failed with the worst score, and the sweep goes on.
                return failed_job(cfg, run_dir, e)
            if distributed.is_main():
                remove_refused(run_dir, bool(cfg.get("resume")), started)
            fail("gan-train", e)
        except WriteFailed as e:
            fail("gan-train", e, WRITE_FAILED_EXIT)
        except StopRequested as e:
            print(f"gan-train: {e}", file=sys.stderr)
            distributed.cleanup()
            sys.exit(e.code)
        objective = result.get("objective")
        return None if objective is None else objective["value"]  # what a search sweeper optimises

    global _LAUNCH_TIME
    started = time.time()
    writes.setup_cli()
    register_resolvers()
    try:
        if any(a in HELP_FLAGS for a in sys.argv[1:]):
            print_help(sys.argv[1:])
            return
        check_modes(sys.argv[1:])
        check_launcher(sys.argv[1:])
        check_group_choices(sys.argv[1:])
        check_keys(sys.argv[1:])
        check_output_folder(sys.argv[1:])
        if any(a.startswith(("hparams_search=", "hydra/sweeper=")) for a in sys.argv[1:]):
            sys.argv += search.prepare(overrides_in(sys.argv[1:]))
    except UserError as e:
        fail_before_launch("gan-train", e)
    if distributed.launched():
        distributed.setup()
        if not distributed.is_main():  # rank 0 writes the run folder's config and log
            sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    sweep = any(a in ("-m", "--multirun") for a in sys.argv[1:])
    if sweep and LAUNCH_TIME_VARIABLE not in os.environ:
        # One sweep, one folder: the job processes of a parallel launcher use this process's start time.
        _LAUNCH_TIME = _LAUNCH_TIME or datetime.now()
        os.environ[LAUNCH_TIME_VARIABLE] = _LAUNCH_TIME.isoformat()
    try:
        hydra_main()
    finally:
        if sweep:
            os.environ.pop(LAUNCH_TIME_VARIABLE, None)
    distributed.cleanup()


if __name__ == "__main__":
    main()
