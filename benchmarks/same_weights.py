"""Does a change keep the numbers? Train short CPU runs of some presets and store or compare their weights.

    python benchmarks/same_weights.py --save before.pt                 # on the commit before the change
    python benchmarks/same_weights.py --compare before.pt              # on the change: every tensor, bit for bit
    python benchmarks/same_weights.py --compare before.pt --presets dcgan lsgan --steps 20

Each run is `gan-train model=<preset> seed=0 trainer.steps=<steps> trainer.device=cpu` (digits, the
preset's own nets and settings) in a scratch folder. Stored: the nets of the last checkpoint, whatever its
format (gan-cli checkpoint v1 keys G / D / G_ema; later ones keep nets by name). The comparison names
every tensor that differs and says whether it is a weight or a buffer (batch-norm statistics,
spectral-norm vectors). CPU runs are deterministic with the same number of threads; the script uses one.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from gan_cli.train import register_resolvers, train

DEFAULT_PRESETS = ["dcgan", "lsgan", "cgan", "acgan", "infogan", "gan", "wgan", "wgan_gp", "sngan", "sngan_projection"]


def nets_of(path: Path) -> dict:
    """{net name: state dict} of a checkpoint, for the v1 layout and the by-name one."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "nets" in state:
        return {**state["nets"], **{k: v for k, v in (state.get("ema") or {}).items() if v is not None}}
    return {k: state[k] for k in ("G", "D", "G_ema") if state.get(k) is not None}


def run(preset: str, steps: int) -> dict:
    overrides = [f"model={preset}", "seed=0", f"trainer.steps={steps}", "trainer.device=cpu",
                 "trainer.progress=false", "trainer.objective=none", "trainer.num_workers=0"]
    with initialize_config_module(config_module="gan_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp))
        return nets_of(Path(tmp) / "checkpoints" / "last.pt")


def compare(before: dict, after: dict) -> list[str]:
    """Lines naming what differs; empty where every tensor is equal."""
    problems = []
    for net in sorted(set(before) | set(after)):
        if net not in before or net not in after:
            problems.append(f"{net}: only {'before' if net in before else 'after'}")
            continue
        a, b = before[net], after[net]
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                problems.append(f"{net}.{key}: only {'before' if key in a else 'after'}")
            elif not torch.equal(a[key], b[key]):
                kind = "weight" if a[key].is_floating_point() and not _is_buffer(key) else "buffer"
                diff = (a[key].double() - b[key].double()).abs().max().item()
                problems.append(f"{net}.{key} ({kind}): max |difference| {diff:.3g}")
    return problems


def _is_buffer(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked", "_u", "_v"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path, help="store the weights of the runs here")
    action.add_argument("--compare", type=Path, help="compare the runs with weights stored earlier")
    parser.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    register_resolvers()
    stored = torch.load(args.compare, weights_only=True) if args.compare else {}
    results, same = {}, True
    for preset in args.presets:
        results[preset] = run(preset, args.steps)
        if args.compare:
            if preset not in stored:
                print(f"{preset}: not in {args.compare}")
                continue
            problems = compare(stored[preset], results[preset])
            weights = [p for p in problems if "(buffer)" not in p]
            verdict = "identical" if not problems else (
                "weights identical, buffers differ" if not weights else "WEIGHTS DIFFER")
            print(f"{preset}: {verdict}")
            for line in problems[:12]:
                print(f"    {line}")
            same &= not weights
        else:
            print(f"{preset}: {sum(t.numel() for net in results[preset].values() for t in net.values())} values")
    if args.save:
        torch.save(results, args.save)
        print(f"wrote {args.save}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
