"""GAN inversion: the latent code whose image G draws closest to a given real image.

    gan-sample ckpt=<run> mode=invert input=<image or folder>     z (or w for a style-based G) of each image
    gan-sample ckpt=<run> mode=invert input=samples n=16          G's own samples: how well z is recovered
    gan-sample ckpt=<run> mode=interpolate codes=<codes.pt>       morph the inverted images into each other

Each image is matched by optimisation (Adam) from several starting codes: `invert_candidates` random codes
are drawn, the `invert_restarts` that already draw the image best start the descent, and the best result
after `invert_steps` steps is kept. The loss per image is the mean squared pixel error, plus
`invert_feature_weight` times the mean squared error between the features of the two images (the classifier
backbone's, trained on the run's data set and cached as for gan-eval, or D's last layers), plus
`invert_prior` times (|z| - sqrt(dim))^2 / dim, which keeps z on the shell where a Gaussian's samples lie
(in W, where the codes have no fixed norm, the prior pulls towards w_avg by |w - w_avg|^2 / dim).

Written: the reconstructions under the inputs' names, a sheet of input | reconstruction pairs, codes.pt
(the codes, their space, the names and per-image scores; gan-sample codes=codes.pt reads it) and
invert.json: PSNR and SSIM (scikit-image) of every reconstruction, the share the classifier gives the
input's class where the inputs sit in class folders named by the class number, and for input=samples the
relative error |z - z_true| / |z_true| beside a random z's.
"""

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gan_cli import UserError, plots

log = logging.getLogger("gan_cli.invert")

SPACES = ("z", "w", "w+")
FEATURES = ("classifier", "d", "none")


class Decoder:
    """code -> image for one space: z through G; w or w+ (one w per layer) through a style-based G's
    synthesis with its noise inputs held fixed (so an image has one code)."""

    def __init__(self, G, space: str):
        style = hasattr(G, "ws") and hasattr(G, "synthesis")
        if space != "z" and not style:
            raise UserError(f"space={space} needs a style-based G (model=stylegan2); this G reads z: use space=z")
        self.G, self.space = G, space
        self.dim = G.w_dim if space != "z" else G.z_dim

    def codes_of(self, z: torch.Tensor) -> torch.Tensor:
        """The code of each z in this space (z itself, its w, or its w repeated per layer)."""
        if self.space == "z":
            return z
        ws = self.G.ws(z)
        return ws[:, 0] if self.space == "w" else ws

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        if self.space == "z":
            return self.G(codes)
        ws = codes.unsqueeze(1).expand(-1, self.G.num_ws, -1) if self.space == "w" else codes
        return self.G.synthesis(ws, noise="const")

    def prior(self, codes: torch.Tensor) -> torch.Tensor:
        """Per code: (|z| - sqrt(dim))^2 / dim for z; |w - w_avg|^2 / dim (mean over layers for w+)."""
        if self.space == "z":
            return (codes.norm(dim=1) - math.sqrt(self.dim)).square() / self.dim
        diff = codes - self.G.w_avg
        return diff.square().sum(-1).mean(-1) / self.dim if self.space == "w+" else diff.square().sum(-1) / self.dim


class FeatureLoss:
    """Mean squared distance between the features of two image batches, per image: the classifier
    backbone's 128-d features or D's pooled layer outputs (gan_cli.metrics.probe)."""

    def __init__(self, kind: str, loaded, cache_dir, device, progress: bool):
        self.kind, self.net = kind, None
        if kind == "classifier":
            from gan_cli.metrics.backbones import ClassifierBackbone
            from gan_cli.metrics.protocol import labelled_split

            self.backbone = ClassifierBackbone(labelled_split(dict(loaded.config["dataset"])), device, cache_dir,
                                               progress)
            self.net = self.backbone.net
        elif kind == "d":
            from gan_cli.metrics.probe import probe_layers

            if "D" not in loaded.nets:
                raise UserError("invert_features=d needs a D in the checkpoint")
            self.net = loaded.nets["D"]
            self.layers = probe_layers(self.net)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "classifier":
            if x.shape[-1] != 32:
                x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
            return self.net(x)[0]
        from gan_cli.metrics.probe import pool

        kept = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: kept.append(pool(out))) for m in self.layers]
        try:
            self.net(x, torch.zeros(len(x), dtype=torch.long, device=x.device)) \
                if getattr(self.net, "class_input", "none") == "projection" else self.net(x)
        finally:
            for h in hooks:
                h.remove()
        return torch.cat(kept, dim=1)

    def __call__(self, fake: torch.Tensor, target_features: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "none":
            return torch.zeros(len(fake), device=fake.device)
        return (self.features(fake) - target_features).square().mean(1)


def draw_z(seeds, z_dim: int) -> torch.Tensor:
    from gan_cli.latents import draw

    return draw(list(seeds), z_dim)[0]


def invert(decoder: Decoder, targets: torch.Tensor, feature_loss: FeatureLoss, options: dict, device,
           progress: bool = True) -> dict:
    """Codes for target images in [-1, 1] (N, C, H, W). Returns codes (N, ...), reconstructions and the
    final loss per image."""
    o = options
    targets = targets.to(device)
    n, restarts = len(targets), o["invert_restarts"]
    with torch.no_grad():
        target_f = None if feature_loss.kind == "none" else feature_loss.features(targets)

        def loss_of(codes, index):
            fake = decoder(codes)
            pixel = (fake - targets[index]).square().flatten(1).mean(1)
            feats = feature_loss(fake, None if target_f is None else target_f[index])
            return pixel + o["invert_feature_weight"] * feats + o["invert_prior"] * decoder.prior(codes), fake

        # Starting points: of `invert_candidates` random codes, the `restarts` that draw each image best.
        candidates = decoder.codes_of(draw_z(range(o["seed"], o["seed"] + o["invert_candidates"]),
                                             decoder.G.z_dim).to(device))
        starts = []
        for i in range(n):
            scores = torch.cat([loss_of(candidates[k:k + 256], torch.full((len(candidates[k:k + 256]),), i,
                                                                              device=device))[0]
                                for k in range(0, len(candidates), 256)])
            starts.append(candidates[scores.argsort()[:restarts]])
    codes = torch.cat(starts).clone().requires_grad_(True)  # image i's restarts at rows i * restarts + r
    index = torch.arange(n, device=device).repeat_interleave(restarts)
    opt = torch.optim.Adam([codes], lr=o["invert_lr"])
    for _ in tqdm(range(o["invert_steps"]), desc="inverting", unit="step", disable=None if progress else True,
                  leave=False):
        loss, _ = loss_of(codes, index)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        loss, fake = loss_of(codes, index)
        best = loss.view(n, restarts).argmin(1) + torch.arange(n, device=device) * restarts
    return {"codes": codes.detach()[best].cpu(), "images": fake[best].float().cpu(), "loss": loss[best].cpu()}


def psnr_ssim(fake: torch.Tensor, real: torch.Tensor) -> tuple[list[float], list[float]]:
    """PSNR (dB) and SSIM of each reconstruction against its input, both in [-1, 1] (scored as 8-bit images)."""
    from gan_cli.metrics.protocol import to_uint8
    from gan_cli.metrics.translation import per_image_scores

    _, psnr, ssim = per_image_scores(to_uint8(fake), to_uint8(real))
    return psnr, ssim


def run_invert(loaded, options: dict, run_dir: Path, device) -> list[Path]:
    """gan-sample mode=invert: invert the input images (or G's own samples), write what the module says."""
    from gan_cli.data.folder import load_image
    from gan_cli.sample import default_out, input_files, to_uint8_hwc

    o = options
    G, shape = loaded.net, loaded.data.shape
    if len(shape) != 3:
        raise UserError("mode=invert inverts images; this checkpoint's G draws points")
    if loaded.game.cond.name != "none":
        raise UserError(f"mode=invert inverts an unconditional G; this one is conditioned ({loaded.game.cond.name})")
    space = o["space"]
    decoder = Decoder(G, space)
    labels, true_z = None, None
    if o["input"] == "samples":
        seeds = list(range(o["seed"] + 10_000, o["seed"] + 10_000 + o["n"]))  # away from the candidates' seeds
        true_z = draw_z(seeds, G.z_dim)
        with torch.no_grad():
            targets = torch.cat([decoder(decoder.codes_of(true_z[i:i + 64].to(device))).float().cpu()
                                 for i in range(0, len(true_z), 64)])
        names = [f"seed{s}" for s in seeds]
        stem = f"invert-samples-seeds{seeds[0]}-{seeds[-1]}"
    else:
        files, names, stem = input_files(o["input"])
        targets = torch.stack([load_image(f, shape[1], shape[0]) for f in files]).float().div(127.5).sub(1.0)
        # Inputs in folders named by a class number carry that class (for the classifier's check).
        parents = [f.parent.name for f in files]
        if all(p.isdigit() for p in parents):
            labels = torch.tensor([int(p) for p in parents])
        stem = f"invert-{stem}"
    feature_loss = FeatureLoss(o["invert_features"], loaded, o.get("cache_dir"), device, o["progress"])
    result = invert(decoder, targets, feature_loss, o, device, o["progress"])
    folder = default_out(run_dir, o, stem, "")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in zip(names, result["images"]):
        target = folder / (Path(name).with_suffix(".png") if o["input"] != "samples" else f"{name}.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(to_uint8_hwc(image)).save(target)
    pairs = torch.stack([t for pair in zip(targets, result["images"]) for t in pair])
    sheet = folder / "sheet.png"
    plots.save_png(plots.image_grid(pairs, nrow=2 * o["nrow"]), sheet)
    psnr, ssim = psnr_ssim(result["images"], targets)
    report = {"space": space, "images": len(names), "psnr_mean": float(np.mean(psnr)),
              "ssim_mean": float(np.mean(ssim)), "loss_mean": float(result["loss"].mean()),
              "settings": {k: o[k] for k in ("invert_steps", "invert_restarts", "invert_candidates", "invert_lr",
                                             "invert_features", "invert_feature_weight", "invert_prior", "seed")}}
    if labels is not None and feature_loss.kind == "classifier":
        predicted = class_of(feature_loss.net, result["images"], device)
        report["class_kept"] = float((predicted == labels).float().mean())
    if true_z is not None and space == "z":
        error = (result["codes"] - true_z).norm(dim=1) / true_z.norm(dim=1)
        random_z = draw_z(range(o["seed"] + 20_000, o["seed"] + 20_000 + len(true_z)), G.z_dim)
        report["z_error_mean"] = float(error.mean())
        report["random_z_error_mean"] = float(((random_z - true_z).norm(dim=1) / true_z.norm(dim=1)).mean())
    report["per_image"] = [{"name": name, "psnr": p, "ssim": s, "loss": float(v)}
                           for name, p, s, v in zip(names, psnr, ssim, result["loss"])]
    codes_path = folder / "codes.pt"
    torch.save({"space": space, "codes": result["codes"], "names": names, "psnr": psnr, "ssim": ssim,
                "checkpoint": str(loaded.path)}, codes_path)
    json_path = folder / "invert.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    summary = f"PSNR {report['psnr_mean']:.2f} dB, SSIM {report['ssim_mean']:.4f}"
    if "class_kept" in report:
        summary += f", class kept {100 * report['class_kept']:.1f} %"
    if "z_error_mean" in report:
        summary += f", |z - z_true| / |z_true| {report['z_error_mean']:.3f} (a random z: " \
                   f"{report['random_z_error_mean']:.3f})"
    log.info("inverted %d images in %s: %s", len(names), space, summary)
    written += [folder, sheet, codes_path, json_path]
    return written


@torch.no_grad()
def class_of(net, images: torch.Tensor, device) -> torch.Tensor:
    x = images.to(device)
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return net(x)[1].argmax(1).cpu()


def read_codes(path) -> dict:
    """codes.pt of mode=invert: {'space', 'codes', 'names', ...}; anything else is a one-line error."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise UserError(f"codes={path}: no such file (mode=invert writes codes.pt)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise UserError(f"codes={path} is not a codes file of mode=invert ({type(e).__name__})") from None
    if not isinstance(saved, dict) or saved.get("space") not in SPACES or not torch.is_tensor(saved.get("codes")):
        raise UserError(f"codes={path} is not a codes file of mode=invert")
    return saved


def codes_figure(loaded, options: dict, run_dir: Path, device) -> list[Path]:
    """mode=interpolate or mode=arithmetic on the codes of codes.pt (inverted real images) rather than on
    seeds: interpolate joins codes 0 -> 1, 2 -> 3, ... (`pairs` rows; slerp or lerp in z, straight lines in
    W); arithmetic reads a=, b=, c= as indices into the file's codes."""
    from gan_cli.sample import default_out, parse_seeds, save_arithmetic, save_interpolation, slerp, lerp

    saved = read_codes(options["codes"])
    decoder = Decoder(loaded.net, saved["space"])
    codes, names = saved["codes"].float(), list(saved.get("names") or range(len(saved["codes"])))
    if codes.shape[-1] != decoder.dim or (saved["space"] == "w+" and codes.shape[1] != loaded.net.num_ws):
        raise UserError(f"codes={options['codes']} hold {saved['space']} codes of another G (shape "
                        f"{tuple(codes.shape)}); invert with this checkpoint first")
    stem = Path(str(options["codes"])).parent.name or "codes"

    def decode(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([decoder(batch[k:k + options["batch_size"]].to(device)).float().cpu()
                              for k in range(0, len(batch), options["batch_size"])])

    if options["mode"] == "interpolate":
        if len(codes) < 2:
            raise UserError(f"mode=interpolate needs two codes or more; codes={options['codes']} holds {len(codes)}")
        t = torch.linspace(0, 1, options["steps"])
        rows = []
        for i in range(0, min(len(codes) - 1, 2 * options["pairs"]), 2):
            if saved["space"] == "z":
                path = (slerp if options["method"] == "slerp" else lerp)(codes[i], codes[i + 1], t)
            else:  # W: straight lines, as StyleGAN's paper
                path = torch.lerp(codes[i][None], codes[i + 1][None], t.view(-1, *[1] * codes[i].dim()))
            rows.append(decode(path))
        method = options["method"] if saved["space"] == "z" else f"lerp-{saved['space']}"
        target = default_out(run_dir, options, f"interpolate-{method}-{stem}", ".png")
        return save_interpolation(torch.stack(rows), target, options["frame_ms"])
    groups = [parse_seeds(options[k]) for k in "abc"]
    bad = [i for g in groups for i in g if not 0 <= i < len(codes)]
    if bad:
        raise UserError(f"mode=arithmetic with codes=: a, b and c are indices of codes 0-{len(codes) - 1}, got {bad[0]}")
    rows, means = [], []
    for g in groups:
        chosen = codes[g]
        means.append(chosen.mean(0))
        rows.append(decode(torch.cat([chosen, chosen.mean(0, keepdim=True)])))
    result = decode((means[0] - means[1] + means[2])[None])[0]
    target = default_out(run_dir, options, f"arithmetic-{stem}-a{groups[0][0]}-b{groups[1][0]}-c{groups[2][0]}",
                         ".png")
    log.info("arithmetic on %s: a = %s, b = %s, c = %s", options["codes"], *([names[i] for i in g] for g in groups))
    return save_arithmetic(rows, result, target)
