"""Training speed: gan-train beside a plain PyTorch DCGAN loop, run back to back in one process.

    python benchmarks/train_speed.py                  # 200 steps, 5 repetitions of each, alternating
    python benchmarks/train_speed.py --quick          # 50 steps, 3 repetitions

The rival, `plain_dcgan` below, is written the way pytorch/examples' dcgan/main.py trains: the same
G and D as gan-train's dcgan preset (transposed convs 100 -> 256 -> 128 -> 64 -> 1 channels, batch norm,
ReLU / LeakyReLU 0.2, N(0, 0.02) weights), nn.Sigmoid + nn.BCELoss (the non-saturating loss), one Adam
(lr 2e-4, betas 0.5 / 0.999) per net, a shuffled torch DataLoader over the same images (scikit-learn's
digits at 32x32, scaled to [-1, 1]), and per step: D on a real batch (backward), D on G(z).detach()
(backward), D's step, then G's step through D on the same fakes. It is lean: no printing, no image
saving, one checkpoint at the end. gan-train runs as a user would run it, `gan-train trainer.steps=N`
(the default model=dcgan dataset=digits batch 64), with its TensorBoard scalars every 10 steps, a sample
grid every 100, a checkpoint every 500 and at the end; only the progress bar is off.

Each repetition times the whole call, setup included (loading the data, building the nets), from the
same state of the process; the two run alternately so that a change in the machine's load hits both.
The ratio is gan-train's steps/s over the plain loop's, per pair of repetitions; the table gives medians.

On a CUDA device (`--device cuda`, the default when one is visible) the comparison adds gan-train with
trainer.precision=bf16 and/or trainer.compile=true. There the setup (CUDA context, compilation) would
swamp short runs, so the rate comes from two runs of each, of `steps` and of 2 x `steps`:
steps / (time of the long run - time of the short run).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, compose, machine, table  # noqa: E402

from gan_cli.train import train  # noqa: E402

# --- the plain loop, in the style of pytorch/examples' dcgan ------------------------------------


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class Generator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            # z, going into a convolution: nz x 1 x 1 -> (ngf*4) x 4 x 4
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # -> (ngf*2) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # -> ngf x 16 x 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # -> nc x 32 x 32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ndf=64, nc=1):
        super().__init__()
        self.main = nn.Sequential(
            # nc x 32 x 32 -> ndf x 16 x 16
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # -> (ndf*2) x 8 x 8
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # -> (ndf*4) x 4 x 4
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # -> 1 x 1 x 1
            nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input)


def load_digits_32():
    """scikit-learn's digits as float images in [-1, 1] at 32x32 (bilinear, as gan-cli's digits)."""
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images * (255.0 / 16.0)).float().unsqueeze(1).round()
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    images = images.round().clamp(0, 255) / 127.5 - 1.0
    return torch.utils.data.TensorDataset(images, torch.from_numpy(bunch.target))


def plain_dcgan(steps, batch_size, device, out_dir, seed=0, workers=0):
    """Train for `steps` G steps; returns the last losses (read once, at the end)."""
    torch.manual_seed(seed)
    dataset = load_digits_32()
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                             num_workers=workers, pin_memory=device.type == "cuda")
    nz = 100
    netG = Generator(nz).to(device)
    netG.apply(weights_init)
    netD = Discriminator().to(device)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    real_label, fake_label = 1.0, 0.0
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))

    step = 0
    while step < steps:
        for data in dataloader:
            # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            real_cpu = data[0].to(device, non_blocking=True)
            b_size = real_cpu.size(0)
            label = torch.full((b_size,), real_label, dtype=real_cpu.dtype, device=device)
            output = netD(real_cpu).view(-1)
            errD_real = criterion(output, label)
            errD_real.backward()
            noise = torch.randn(b_size, nz, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach()).view(-1)
            errD_fake = criterion(output, label)
            errD_fake.backward()
            errD = errD_real + errD_fake
            optimizerD.step()
            # (2) Update G: maximize log(D(G(z)))
            netG.zero_grad()
            label.fill_(real_label)
            output = netD(fake).view(-1)
            errG = criterion(output, label)
            errG.backward()
            optimizerG.step()
            step += 1
            if step == steps:
                break
    torch.save({"netG": netG.state_dict(), "netD": netD.state_dict()}, Path(out_dir) / "plain.pth")
    return {"loss_D": errD.item(), "loss_G": errG.item()}


# --- gan-train, as a user runs it -----------------------------------------------------------------


def toolkit_overrides(steps, batch_size, device, extra=()):
    return [f"trainer.steps={steps}", f"trainer.batch_size={batch_size}", f"trainer.device={device}",
            "trainer.progress=false", "trainer.objective=none", *extra]


def run_toolkit(steps, batch_size, device, out_dir, extra=()):
    cfg = compose(toolkit_overrides(steps, batch_size, device, extra))
    result = train(cfg, Path(out_dir) / f"run-{time.monotonic_ns()}")
    return result["logged"]


def timed(fn, device, *args):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


VARIANTS_GPU = {"32": [], "bf16": ["trainer.precision=bf16"], "compile": ["trainer.compile=true"],
                "bf16 + compile": ["trainer.precision=bf16", "trainer.compile=true"]}


def cuda_profile(args, tmp, extra) -> dict:
    """One run of a variant on CUDA: its peak memory, the synchronisations CUDA reported per step and the
    recompilations torch.compile counted."""
    import warnings

    from torch._dynamo.utils import counters

    torch.cuda.reset_peak_memory_stats()
    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_toolkit(args.steps, args.batch_size, args.device, tmp, extra)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    recompiles = sum(counters["recompiles"].values()) if "recompiles" in counters else 0
    return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20, "syncs_per_step": syncs / args.steps,
            "recompiles": recompiles}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="G steps per timed run")
    parser.add_argument("--reps", type=int, default=5, help="timed runs of each, alternating")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="50 steps, 3 repetitions")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_speed.md")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.reps = 50, 3
    device = torch.device(args.device)
    command = "python benchmarks/train_speed.py" + (" --quick" if args.quick else "") + (
        f" --steps {args.steps} --reps {args.reps}" if not args.quick else "") + (
        f" --device {args.device}" if device.type != "cpu" else "")
    where = machine(args.device)
    cuda = device.type == "cuda"
    variants = VARIANTS_GPU if cuda else {"32": []}

    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: one short run of each, so that neither pays the process's first-use costs.
        plain_dcgan(5, args.batch_size, device, tmp)
        for extra in variants.values():
            run_toolkit(5, args.batch_size, args.device, tmp, extra)

        def plain_time(steps):
            return timed(plain_dcgan, device, steps, args.batch_size, device, tmp)

        def toolkit_time(steps, extra):
            return timed(run_toolkit, device, steps, args.batch_size, args.device, tmp, extra)

        rates = {"plain": []} | {name: [] for name in variants}
        for rep in range(args.reps):
            # Steps per second of each, one after the other; on CUDA from the difference of two runs.
            if cuda:
                rates["plain"].append(args.steps / (plain_time(2 * args.steps) - plain_time(args.steps)))
            else:
                rates["plain"].append(args.steps / plain_time(args.steps))
            for name, extra in variants.items():
                if cuda:
                    rate = args.steps / (toolkit_time(2 * args.steps, extra) - toolkit_time(args.steps, extra))
                else:
                    rate = args.steps / toolkit_time(args.steps, extra)
                rates[name].append(rate)
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.2f} steps/s" for k, v in rates.items()),
                  flush=True)

        extras = {name: cuda_profile(args, tmp, extra) for name, extra in variants.items()} if cuda else {}

    rows = []
    plain = statistics.median(rates["plain"])
    rows.append(["plain PyTorch loop (pytorch/examples style)", f"{plain:.2f}",
                 ", ".join(f"{r:.2f}" for r in rates["plain"]), "1.00x", "", f"`{command}`", where])
    for name in variants:
        ratios = [t / p for t, p in zip(rates[name], rates["plain"])]
        label = "gan-train" + ("" if name == "32" else f", {name}")
        goal = 1.5 if cuda else 1.0
        rows.append([label, f"{statistics.median(rates[name]):.2f}", ", ".join(f"{r:.2f}" for r in rates[name]),
                     f"{statistics.median(ratios):.2f}x", "yes" if statistics.median(ratios) >= goal else "no",
                     f"`{command}`", where])
    how = ("steps / (time of a 2 x steps run - time of a steps run)" if cuda else "whole runs timed, setup included")
    lines = [
        "## Training speed: gan-train beside a plain PyTorch loop",
        "",
        f"DCGAN on digits (32x32, batch {args.batch_size}), {args.steps} G steps per run, {args.reps} runs of each "
        f"alternating in one process; steps/s {how}; ratio = median over the repetitions of gan-train's steps/s "
        f"over the plain loop's in the same repetition (goal: >= {'1.5' if cuda else '1.0'}x).",
        "",
        *table(["loop", "steps/s (median)", "steps/s per run", "ratio", "goal met", "command", "machine"], rows),
        "",
    ]
    if extras:
        lines += ["Per variant, one more run of the same length: peak CUDA memory, host synchronisations the CUDA "
                  "runtime reported per training step (torch.cuda.set_sync_debug_mode('warn'), setup and logging "
                  "steps included, so the floor is above 0), and torch.compile's recompilations (target 0 after "
                  "the first compile).", "",
                  *table(["variant", "peak memory (MiB)", "syncs per step", "recompiles"],
                         [[name, f"{e['peak_mib']:.0f}", f"{e['syncs_per_step']:.2f}", e["recompiles"]]
                          for name, e in extras.items()]), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture = args.out.with_suffix(".png")
    plot(rates, picture, f"DCGAN on digits, batch {args.batch_size}, {args.steps} steps per run; {where}")
    lines += [f"![training speed]({args.out.parent.name}/{picture.name})", ""]
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": where, "device": args.device, "rates": rates,
                                                         "steps": args.steps, "batch_size": args.batch_size,
                                                         "cuda_profile": extras}))
    print("\n".join(lines))


def plot(rates, path, title):
    """Steps/s of every run, one row of dots per loop, the medians marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rates)
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.55 * len(names)))
    for i, name in enumerate(names):
        ax.plot(rates[name], [i] * len(rates[name]), "o", alpha=0.6, color="tab:gray" if i == 0 else "tab:blue")
        ax.plot([statistics.median(rates[name])] * 2, [i - 0.3, i + 0.3], "-", color="black")
    labels = ["plain loop" if n == "plain" else "gan-train" + ("" if n == "32" else f", {n}") for n in names]
    ax.set_yticks(range(len(names)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("G steps / s (each dot one run, the bar the median)")
    ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
