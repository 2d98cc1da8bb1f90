"""gan-sample: look at what a generator learned.

    gan-sample ckpt=<run>                               a grid of 64 samples (G_ema where present)
    gan-sample ckpt=<run> seeds=0-15 nrow=4             the same images again, by their seeds
    gan-sample ckpt=<run> mode=images n=50000 out=fakes  one PNG per sample, for gan-eval fake=fakes
    gan-sample ckpt=<run> mode=interpolate method=slerp steps=10   rows between pairs of z, PNG + GIF
    gan-sample ckpt=<run> mode=arithmetic a=[1,2,3] b=[4,5,6] c=[7,8,9]   DCGAN's vector arithmetic
    gan-sample ckpt=<run> truncation=1.0                the truncation trick (in W for a style-based G)
    gan-sample ckpt=<run> mode=truncation              one row per psi (1 down to 0 in W), the same seeds in every row
    gan-sample ckpt=<stylegan2 run> mode=mix            style mixing: coarse styles of one seed, fine of another
    gan-sample ckpt=<stylegan2 run> mode=noise          the noise inputs' effect: same w, other noise; std map
    gan-sample ckpt=<stylegan2 run> mode=interpolate space=w   rows between the w of two seeds
    gan-sample ckpt=<run> mode=invert input=digits/         the z (w for stylegan2) of each image: codes.pt
    gan-sample ckpt=<run> mode=interpolate codes=<codes.pt>  morph inverted real images into each other
    gan-sample ckpt=<conditional run> class=3           samples of one class
    gan-sample ckpt=<conditional run> classes=[0,1,2]   one row per class, the same z down each column
    gan-sample ckpt=<infogan run> mode=traverse code=0  one continuous code varied, the others fixed
    gan-sample ckpt=<pix2pix run> mode=translate input=sketches   each image translated, under its own name
    gan-sample ckpt=<srgan run> mode=upscale input=photos          each image upscaled by the run's scale
    gan-sample ckpt=<srgan run> mode=upscale input=photos downscale=true sheet=true   bicubic | SR | original

Options and their defaults: conf/sample.yaml. Image i draws its z (and InfoGAN's continuous codes,
after z) from the random stream of its own seed (seed + i, or the i-th of `seeds`) on the CPU, so a
seed gives the same z at any batch size on any machine and the same image on the same device; gan-eval
scores the images of seeds seed, seed + 1, ... (see gan_cli.latents). toy2d checkpoints give a scatter plot over the mixture's modes and the points as .npy.
"""

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from gan_cli import WRITE_FAILED_EXIT, UserError, WriteFailed, build, checkpoint, plots, runtime, writes
from gan_cli.latents import InW, draw, generate, style_based
from gan_cli.options import parse as parse_options
from gan_cli.options import positive_int

log = logging.getLogger("gan_cli.sample")

MODES = ("grid", "images", "interpolate", "arithmetic", "traverse", "truncation", "mix", "noise", "invert",
         "translate", "upscale", "export")
NOISE_DRAWS = 32  # mode=noise: noise draws per seed behind the standard deviation map


# --- latents -------------------------------------------------------------------------------------


def parse_seeds(value) -> list[int]:
    """[3, 7, 9], "0-63" (inclusive) or "0-3,8" -> a list of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise UserError(f"seeds must be integers, got {value!r}")
        return list(value)
    seeds = []
    for part in str(value).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UserError(f"seeds: cannot read '{value}'; write a list [3,7,9] or a range like 0-63")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise UserError(f"seeds: the range {lo}-{hi} runs backwards")
        seeds.extend(range(lo, hi + 1))
    return seeds


def latent(seed: int, z_dim: int, psi=None, mode="resample") -> torch.Tensor:
    """The z of one seed (gan_cli.latents: its own stream, on the CPU)."""
    return draw([seed], z_dim, psi=psi, mode=mode)[0][0]


def latents(seeds, z_dim, options) -> torch.Tensor:
    return draw(seeds, z_dim, psi=options["truncation"], mode=options["truncation_mode"])[0]


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: along the great circle between z0 and z1 (t in [0, 1], one row per t).
    Falls back to the straight line where the two are (nearly) parallel."""
    t = t.reshape(-1, 1).double()
    a, b = z0.double(), z1.double()
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-6:
        out = (1 - t) * a + t * b
    else:
        out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return out.to(z0.dtype)


def lerp(z0, z1, t):
    t = t.reshape(-1, 1).to(z0.dtype)
    return (1 - t) * z0 + t * z1


# --- drawing -------------------------------------------------------------------------------------


def chosen_classes(options: dict, cond) -> list[int] | None:
    """The classes asked for with class= or classes= (every class by default for a conditional G);
    None for a G that takes no class. InfoGAN's categorical code values count as its classes."""
    from gan_cli.conditioning import InfoGAN

    asked = options["classes"] if options["classes"] is not None else options["class"]
    count = cond.num_classes or (cond.categorical if isinstance(cond, InfoGAN) else 0)
    if not count:
        if asked is not None:
            raise UserError(f"class= and classes= need a class-conditional checkpoint; this one is {cond.name}")
        return None
    if asked is None:
        return list(range(count))
    classes = [asked] if isinstance(asked, int) and not isinstance(asked, bool) else asked
    if not isinstance(classes, (list, tuple)) or not classes or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in classes):
        raise UserError(f"class / classes must be an integer or a list of integers, got {asked!r}")
    bad = [k for k in classes if not 0 <= k < count]
    if bad:
        raise UserError(f"class {bad[0]} does not exist: this G knows classes 0-{count - 1}")
    return list(classes)


def condition(cond, labels: list[int] | None, seeds, z_dim: int, options: dict) -> torch.Tensor | None:
    """What G takes beside the z of these seeds: the labels (class-conditional), InfoGAN's codes (the
    categorical code = the label, continuous codes from each seed's stream after its z), or None."""
    return draw(seeds, z_dim, cond, labels, options["truncation"], options["truncation_mode"])[1]


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    array = ((image.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    array = array.permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def default_out(run_dir: Path, options: dict, stem: str, suffix: str) -> Path:
    """out= where given, else <run>/generated/<stem><suffix>. A file name without an image extension
    PIL knows gets `suffix` added (out=grid -> grid.png)."""
    if not options["out"]:
        return run_dir / "generated" / f"{stem}{suffix}"
    path = Path(options["out"]).expanduser()
    if suffix and path.suffix.lower() not in Image.registered_extensions():
        path = path.with_name(path.name + suffix)
    return path


def check_options(o: dict) -> None:
    if not o["ckpt"]:
        raise UserError("ckpt=<checkpoint or run folder> is required")
    if o["mode"] not in MODES:
        raise UserError(f"unknown mode '{o['mode']}'; choose one of: {', '.join(MODES)}")
    if o["method"] not in ("slerp", "lerp"):
        raise UserError(f"unknown method '{o['method']}'; choose slerp or lerp")
    if o["truncation_mode"] not in ("resample", "shrink"):
        raise UserError(f"unknown truncation_mode '{o['truncation_mode']}'; choose resample or shrink")
    if o["truncation"] is not None and (not isinstance(o["truncation"], (int, float)) or o["truncation"] < 0):
        raise UserError(f"truncation must be a number > 0 (or null), got {o['truncation']!r}")
    cutoff = o["truncation_cutoff"]
    if cutoff is not None and (not isinstance(cutoff, int) or isinstance(cutoff, bool) or cutoff < 1):
        raise UserError(f"truncation_cutoff must be a number of layers >= 1 (or null: all), got {cutoff!r}")
    psis = o["truncations"]
    if psis is not None and (not isinstance(psis, (list, tuple)) or not psis or not all(
            isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0 for p in psis)):
        raise UserError(f"truncations must be a list of numbers >= 0, e.g. [1,0.7,0.5,0], got {psis!r}")
    if o["space"] not in ("z", "w", "w+"):
        raise UserError(f"unknown space '{o['space']}'; choose z, w or w+ (mode=invert)")
    if o["space"] == "w+" and o["mode"] != "invert":
        raise UserError("space=w+ (a w per layer) is a space of mode=invert; other modes take z or w")
    if o["codes"] is not None and o["mode"] not in ("interpolate", "arithmetic"):
        raise UserError(f"codes= (inverted images) are read by mode=interpolate and mode=arithmetic, not "
                        f"mode={o['mode']}")
    if o["mode"] == "invert" and o["input"] is None:
        raise UserError("mode=invert needs input=<image or folder> (or input=samples: G's own samples)")
    positive_int(o, "invert_steps", "invert_restarts", "invert_candidates")
    for key in ("invert_lr", "invert_feature_weight", "invert_prior"):
        if isinstance(o[key], bool) or not isinstance(o[key], (int, float)) or o[key] < 0 or \
                (key == "invert_lr" and o[key] == 0):
            raise UserError(f"{key} must be a number {'> 0' if key == 'invert_lr' else '>= 0'}, got {o[key]!r}")
    if o["invert_features"] not in ("classifier", "d", "none"):
        raise UserError(f"unknown invert_features '{o['invert_features']}'; choose classifier, d or none")
    if not isinstance(o["mix_layer"], int) or isinstance(o["mix_layer"], bool) or o["mix_layer"] < 1:
        raise UserError(f"mix_layer must be the first layer (>= 1) whose styles come from the column seed, got "
                        f"{o['mix_layer']!r}")
    positive_int(o, "n", "nrow", "pairs", "batch_size", "frame_ms")
    if o["class"] is not None and o["classes"] is not None:
        raise UserError("give class= (one class) or classes= (a list), not both")
    if not isinstance(o["code"], int) or isinstance(o["code"], bool) or o["code"] < 0:
        raise UserError(f"code must be the index (0, 1, ...) of a continuous code, got {o['code']!r}")
    if not isinstance(o["code_range"], (int, float)) or o["code_range"] <= 0:
        raise UserError(f"code_range must be a number > 0, got {o['code_range']!r}")
    if not isinstance(o["steps"], int) or o["steps"] < 2:
        raise UserError(f"steps must be an integer >= 2 (both ends are frames), got {o['steps']!r}")
    for key in ("sheet", "downscale"):
        if not isinstance(o[key], bool):
            raise UserError(f"{key} must be true or false, got {o[key]!r}")
    if o["mode"] == "arithmetic" and not all(o[k] for k in "abc"):
        raise UserError("mode=arithmetic needs seed groups a=[...] b=[...] c=[...]")


def sample(options: dict) -> list[Path]:
    """Do what the options say; returns the files written."""
    check_options(options)
    device = runtime.pick_device(options["device"])
    loaded = build.load(options["ckpt"], options["use_ema"], device)
    path = loaded.path
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if hasattr(loaded.game, "upscale"):
        return upscale(loaded, options, run_dir, device)
    if options["mode"] == "upscale":
        raise UserError(f"mode=upscale needs a checkpoint of a super-resolution game (srresnet, srgan); "
                        f"{path} is of game {loaded.game.name}")
    if hasattr(loaded.game, "translate"):
        return translate(loaded, options, run_dir, device)
    if options["mode"] == "translate":
        raise UserError(f"mode=translate needs a checkpoint of an image-to-image game (pix2pix, cyclegan); "
                        f"{path} is of game {loaded.game.name}")
    if options["codes"] is not None:
        return codes_figure(loaded, options, run_dir, device)
    if options["mode"] == "export":
        return export_program(loaded, options, run_dir, device)
    if options["mode"] == "invert":
        return run_invert(loaded, options, run_dir, device)
    G, data, state, which, cond = loaded.net, loaded.data, loaded.state, loaded.which, loaded.game.cond
    seeds = parse_seeds(options["seeds"]) if options["seeds"] is not None else \
        list(range(options["seed"], options["seed"] + options["n"]))
    mode, bs = options["mode"], options["batch_size"]
    style = style_based(G)
    if (mode in ("mix", "noise") or options["space"] == "w") and not style:
        what = f"mode={mode}" if mode in ("mix", "noise") else "space=w"
        raise UserError(f"{what} needs a style-based G (model=stylegan2); this checkpoint's G is "
                        f"{loaded.config['generator']['name']}")
    if options["truncation"] == 0 and not style:
        raise UserError("truncation must be a number > 0 (or null), got 0 (only a style-based G takes psi = 0: "
                        "w_avg)")
    if mode == "truncation" and len(data.shape) > 1:
        return truncation_figure(G, cond, options, seeds, run_dir, device)
    if style:
        # psi acts in W: z is drawn untruncated and G pulls w towards its running mean.
        psi = 1.0 if options["truncation"] is None else float(options["truncation"])
        G = InW(G, psi, options["truncation_cutoff"])
        if mode in ("mix", "noise"):
            return styles_figure(G, mode, options, seeds, run_dir, device)
        options = {**options, "truncation_w": options["truncation"], "truncation": None}
    toy = len(data.shape) == 1
    log.info("%s of %s (step %d) on %s", which, path, state["step"], device)
    tag = f"seeds{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed{seeds[0]}"
    psi_shown = options["truncation"] if options.get("truncation_w") is None else options["truncation_w"]
    if psi_shown is not None:
        tag += f"-trunc{psi_shown:g}"
    classes = chosen_classes(options, cond)
    if classes is not None and (options["class"] is not None or options["classes"] is not None):
        tag += "-class" + "_".join(str(k) for k in classes)

    if mode == "grid" and classes is not None and len(classes) > 1 and not toy:
        # One row per class; the same z down each column, so a column shows one "style" in every class.
        z = latents(seeds[:options["nrow"]], G.z_dim, options)
        labels = [k for k in classes for _ in range(len(z))]
        column_seeds = [s for _ in classes for s in seeds[:options["nrow"]]]
        out = generate(G, z.repeat(len(classes), 1), bs, device, condition(cond, labels, column_seeds, G.z_dim, options))
        target = default_out(run_dir, options, f"grid-{tag}", ".png")
        grid = plots.image_grid(out, nrow=len(z))
        plots.save_png(plots.label_rows(grid, [str(k) for k in classes]), target)
        return [target]

    def labels_for(chunk_seeds, start=0):
        """One class for one-class requests; the chosen classes in turn otherwise."""
        if classes is None:
            return None
        return [classes[(start + i) % len(classes)] for i in range(len(chunk_seeds))]

    if mode == "grid":
        out = generate(G, latents(seeds, G.z_dim, options), bs, device, condition(cond, labels_for(seeds), seeds, G.z_dim, options))
        target = default_out(run_dir, options, f"grid-{tag}", ".png")
        if toy:
            from gan_cli.metrics import toy2d as toy2d_metrics

            metrics = toy2d_metrics.mode_metrics(out, data.centres, data.sigma)
            title = f"{data.name}: {toy2d_metrics.summary(metrics, len(data.centres))}"
            plots.save_png(plots.scatter(out, data.centres, title=title), target)
            with writes.atomic(target.with_suffix(".npy")) as tmp:
                np.save(tmp, out.numpy())
            return [target, target.with_suffix(".npy")]
        plots.save_png(plots.image_grid(out, nrow=options["nrow"]), target)
        return [target]

    if toy:
        raise UserError(f"mode={mode} draws images; a toy2d checkpoint gives mode=grid (a scatter plot and .npy)")

    if mode == "images":
        folder = default_out(run_dir, options, f"images-{tag}", "")
        folder.mkdir(parents=True, exist_ok=True)
        digits = max(5, len(str(max(seeds))))
        with tqdm(total=len(seeds), desc="writing images", unit="img", disable=None if options["progress"] else True) as bar:
            for start in range(0, len(seeds), bs):
                chunk = seeds[start:start + bs]  # memory bounded by the batch
                c = condition(cond, labels_for(chunk, start), chunk, G.z_dim, options)
                for seed, image in zip(chunk, generate(G, latents(chunk, G.z_dim, options), bs, device, c)):
                    writes.save_image(Image.fromarray(to_uint8_hwc(image)), folder / f"seed{seed:0{digits}d}.png")
                bar.update(len(chunk))
        return [folder]

    if mode == "interpolate":
        t = torch.linspace(0, 1, options["steps"])
        rows = []
        ends = seeds if options["seeds"] is not None else list(range(options["seed"], options["seed"] + 2 * options["pairs"]))
        if len(ends) < 2:
            raise UserError("mode=interpolate needs at least two seeds")
        path_fn = slerp if options["method"] == "slerp" else lerp
        for i in range(0, len(ends) - 1, 2):
            z0, z1 = latent(ends[i], G.z_dim, options["truncation"], options["truncation_mode"]), \
                latent(ends[i + 1], G.z_dim, options["truncation"], options["truncation_mode"])
            if options["space"] == "w":  # a straight line between the two w (every layer's), as the paper
                with torch.no_grad():
                    w0, w1 = G.ws(torch.stack([z0, z1]).to(device)).cpu()
                ws = torch.lerp(w0[None], w1[None], t[:, None, None].to(w0.dtype))
                rows.append(torch.cat([G.G.synthesis(ws[k:k + bs].to(device)).float().cpu()
                                       for k in range(0, len(ws), bs)]))
                continue
            # The class (and InfoGAN's codes: those of the first end) stay fixed along a row.
            row_label = labels_for([0], i // 2)
            c = condition(cond, None if row_label is None else row_label * len(t), [ends[i]] * len(t), G.z_dim,
                          options)
            rows.append(generate(G, path_fn(z0, z1, t), bs, device, c))
        frames = torch.stack(rows)  # pairs x steps x C x H x W
        method = "lerp-w" if options["space"] == "w" else options["method"]
        stem = f"interpolate-{method}-seeds{ends[0]}-{ends[-1]}"
        if psi_shown is not None:
            stem += f"-trunc{psi_shown:g}"
        return save_interpolation(frames, default_out(run_dir, options, stem, ".png"), options["frame_ms"])

    if mode == "traverse":
        return traverse(G, cond, options, seeds, run_dir, device)

    # arithmetic: each group's images, then the decoded mean of the group; the last row is the result.
    # A conditional G draws them all in one class (class=, or the first class).
    one = None if classes is None else [classes[0]]
    groups = [parse_seeds(options[k]) for k in "abc"]
    rows, means = [], []
    for g in groups:
        z = latents(g, G.z_dim, options)
        means.append(z.mean(0))
        c = condition(cond, None if one is None else one * (len(g) + 1), g + [g[0]], G.z_dim, options)
        rows.append(generate(G, torch.cat([z, z.mean(0, keepdim=True)]), bs, device, c))
    c = condition(cond, one, groups[0][:1], G.z_dim, options)
    result = generate(G, (means[0] - means[1] + means[2])[None], bs, device, c)[0]
    target = default_out(run_dir, options, f"arithmetic-a{groups[0][0]}-b{groups[1][0]}-c{groups[2][0]}", ".png")
    return save_arithmetic(rows, result, target)


def export_program(loaded, options: dict, run_dir: Path, device) -> list[Path]:
    """mode=export: G (G_ema where kept) as a torch.export program that plain PyTorch loads (gan_cli.api.export)."""
    from gan_cli.api import Model, export

    target = Path(options["out"]).expanduser() if options["out"] else run_dir / "generated" / "G.pt2"
    psi = options["truncation"]
    info = export(Model(loaded, device), target, truncation=None if psi is None else float(psi))
    log.info("%s of %s (step %d) -> %s, for any batch size; takes %s, gives %s images in [-1, 1]. Without "
             "gan-cli:\n  G = torch.export.load(%r).module()\n  images = G(torch.randn(16, %d)%s)",
             loaded.which, loaded.path, info["step"], target, info["inputs"], "x".join(map(str, info["output_shape"])),
             str(target), info["z_dim"], ", c" if info["inputs"] != "z" else "")
    return [target]


def save_interpolation(frames: torch.Tensor, target: Path, frame_ms: int) -> list[Path]:
    """frames (rows x steps x C x H x W): a PNG grid, a row per path, and a GIF with one frame per step
    showing every row at that point of the way."""
    plots.save_png(plots.image_grid(frames.flatten(0, 1), nrow=frames.shape[1]), target)
    pictures = [Image.fromarray(plots.image_grid(frames[:, k], nrow=len(frames))) for k in range(frames.shape[1])]
    gif = target.with_suffix(".gif")
    writes.save_image(pictures[0], gif, save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return [target, gif]


def save_arithmetic(rows: list[torch.Tensor], result: torch.Tensor, target: Path) -> list[Path]:
    """The vector-arithmetic figure: rows a, b, c (each group's images, then its decoded mean) and the
    decoded mean(a) - mean(b) + mean(c) at the end of the last row."""
    width = max(len(r) for r in rows)
    blank = -torch.ones_like(result)
    tiles = []
    for images in rows:
        tiles += list(images[:-1]) + [blank] * (width - len(images)) + [images[-1]]
    tiles += [blank] * (width - 1) + [result]
    grid = plots.image_grid(torch.stack(tiles), nrow=width)
    plots.save_png(plots.label_rows(grid, ["a", "- b", "+ c", "="]), target)  # each row ends in its mean
    return [target]


def input_files(given) -> tuple[list[Path], list[str], str]:
    """input= of translate and upscale: (the image files, each one's output name, a word for the output
    folder). A folder's images are found recursively; their names keep the subfolders."""
    from gan_cli.data.folder import scan

    source = Path(str(given)).expanduser()
    if not source.exists():
        raise UserError(f"input={given}: no such image or folder")
    files = [source] if source.is_file() else scan(source)[0]
    names = [f.stem if source.is_file() else str(f.relative_to(source).with_suffix("")) for f in files]
    return files, names, source.stem or "input"


def translate(loaded, options, run_dir, device) -> list[Path]:
    """mode=translate: each input image through G (CycleGAN: G_AB, or G_BA with direction=BtoA), written
    under the input's own name, or as one sheet of input | output pairs (sheet=true). The inputs: an image,
    a folder of images (subfolders kept), or by default the run's test split."""
    from gan_cli.data import to_unit_range
    from gan_cli.data.folder import load_image

    game, data = loaded.game, loaded.data
    if options["mode"] != "translate":
        raise UserError(f"{loaded.path} is a {game.name} checkpoint: it translates images; use mode=translate "
                        "(input=<image or folder>, or its test images by default)")
    direction = options["direction"]
    if direction not in ("AtoB", "BtoA"):
        raise UserError(f"direction must be AtoB or BtoA, got {direction!r}")
    if direction == "BtoA" and game.name != "cyclegan":
        raise UserError(f"a {game.name} G translates one way (A to B); train with dataset.direction=BtoA for the other")
    net = game.forward_net if direction == "AtoB" else "G_BA"
    channels, side = (data.shape_a if direction == "AtoB" else data.shape_b)[:2]
    log.info("%s of %s (step %d) on %s", net, loaded.path, loaded.state["step"], device)
    if options["input"] is None:
        images = data.test(None)["A" if direction == "AtoB" else "B"]
        names = [f"test{i:05d}" for i in range(len(images))]
        where, batches = "test", ((images[i:i + options["batch_size"]], names[i:i + options["batch_size"]])
                                  for i in range(0, len(images), options["batch_size"]))
        total = len(images)
    else:
        files, names, where = input_files(options["input"])
        total = len(files)

        def read(start):
            chunk = files[start:start + options["batch_size"]]
            return to_unit_range(torch.stack([load_image(f, side, channels) for f in chunk]))

        batches = ((read(i), names[i:i + options["batch_size"]]) for i in range(0, len(files), options["batch_size"]))
    pairs = []
    folder = None if options["sheet"] else default_out(run_dir, options, f"translate-{direction}-{where}", "")
    with tqdm(total=total, desc="translating", unit="img", disable=None if options["progress"] else True) as bar:
        for x, chunk in batches:
            y = game.translate(loaded.nets, x.to(device), net).float().cpu()
            if folder is None:
                pairs += [t for pair in zip(x, y) for t in pair]
            else:
                for name, image in zip(chunk, y):
                    target = folder / f"{name}.png"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    writes.save_image(Image.fromarray(to_uint8_hwc(image)), target)
            bar.update(len(chunk))
    if folder is not None:
        return [folder]
    target = default_out(run_dir, options, f"translate-{direction}-{where}", ".png")
    rgb = [t.expand(3, -1, -1) if t.shape[0] == 1 else t for t in pairs]
    plots.save_png(plots.image_grid(torch.stack(rgb), nrow=2 * options["nrow"]), target)
    return [target]


def upscale(loaded, options, run_dir, device) -> list[Path]:
    """mode=upscale: each input image through G, enlarged by the run's scale, written under its own name.
    The inputs: an image or a folder of images (subfolders kept), or by default the run's test images
    (downscaled first, their originals known). downscale=true takes input images as originals too and
    gives G their bicubic downscales, so that each output has its original's size (trimmed to a multiple
    of the scale). sheet=true writes, per input, bicubic | SR | original side by side instead (the
    original where known)."""
    from gan_cli.data import to_unit_range
    from gan_cli.data.superres import low_resolution, read_whole
    from gan_cli.metrics.superres import crop_to_multiple, upscale_bicubic

    game, data = loaded.game, loaded.data
    scale = data.scale
    if options["mode"] != "upscale":
        raise UserError(f"{loaded.path} is a super-resolution checkpoint ({game.name}): use mode=upscale "
                        "(input=<image or folder>, or its test images by default)")
    if options["input"] is None:
        test = data.test(None)
        names = [f"test{i:05d}" for i in range(len(test["hr"]))]
        where, known = "test", True

        def item(i):
            return test["lr"][i], test["hr"][i]
    else:
        files, names, where = input_files(options["input"])
        known = bool(options["downscale"])

        def item(i):
            x = to_unit_range(read_whole(files[i], data.channels)[None])
            if not options["downscale"]:
                return x, None
            hr = crop_to_multiple(x, scale)
            return low_resolution(hr, scale), hr
    folder = default_out(run_dir, options, f"upscale-x{scale}-{where}" + ("-sheets" if options["sheet"] else ""), "")
    log.info("%s of %s (step %d) upscaling %d images by %d on %s -> %s", game.forward_net, loaded.path,
             loaded.state["step"], len(names), scale, device, folder)
    for i in tqdm(range(len(names)), desc="upscaling", unit="img", disable=None if options["progress"] else True):
        lr, hr = item(i)
        sr = game.upscale(loaded.nets, lr.to(device)).float().cpu()
        image = sr[0]
        if options["sheet"]:
            row = [upscale_bicubic(lr, scale).clamp(-1, 1), sr] + ([hr] if known else [])
            row = [x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x for x in row]
            grid = plots.image_grid(torch.cat(row), nrow=len(row))
            target = folder / f"{names[i]}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            plots.save_png(grid, target)
            continue
        target = folder / f"{names[i]}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        writes.save_image(Image.fromarray(to_uint8_hwc(image)), target)
    return [folder]


@torch.no_grad()
def styles_figure(G: InW, mode: str, options: dict, seeds, run_dir: Path, device) -> list[Path]:
    """mode=mix: the style-mixing figure. Rows: `pairs` seeds giving the coarse styles (layers before
    mix_layer); columns: `nrow` further seeds giving the rest. Top row and left column: the seeds' own
    images; cell (r, c): row r's coarse and column c's fine styles. The noise is fixed, so only the styles
    change. mode=noise: per seed (`pairs` rows) the image without noise, four with fresh noise, and the
    per-pixel standard deviation over 32 noise draws (white = most)."""
    if options["seeds"] is None:
        seeds = list(range(options["seed"], options["seed"] + options["pairs"] + options["nrow"]))
    rows_n = min(options["pairs"], len(seeds))
    z = latents(seeds, G.z_dim, options).to(device)
    ws = G.ws(z)
    synthesis = G.G.synthesis
    psi = "" if G.psi == 1 else f"-trunc{G.psi:g}"
    if mode == "mix":
        if len(seeds) <= rows_n:
            raise UserError(f"mode=mix needs more seeds than its {rows_n} rows (the columns come after them)")
        if options["mix_layer"] >= G.G.num_ws:
            raise UserError(f"mix_layer must be below this G's {G.G.num_ws} layers of styles, got "
                            f"{options['mix_layer']}")
        rows, columns = ws[:rows_n], ws[rows_n:]
        own = synthesis(ws, noise="const").float().cpu()
        blank = torch.ones_like(own[0])
        tiles = [blank, *own[rows_n:]]
        for r in range(rows_n):
            mixed = G.G.mix(rows[r:r + 1].expand(len(columns), -1, -1), columns, options["mix_layer"])
            tiles += [own[r], *synthesis(mixed, noise="const").float().cpu()]
        stem = f"mix-layer{options['mix_layer']}-seeds{seeds[0]}-{seeds[-1]}{psi}"
        target = default_out(run_dir, options, stem, ".png")
        plots.save_png(plots.image_grid(torch.stack(tiles), nrow=len(columns) + 1), target)
        return [target]
    tiles = []
    for r in range(rows_n):
        w = ws[r:r + 1]
        draws = synthesis(w.expand(NOISE_DRAWS, -1, -1), noise="random").float().cpu()
        std = draws.std(dim=0).mean(dim=0, keepdim=True)
        std_map = (std / std.max().clamp_min(1e-8)) * 2 - 1
        tiles += [synthesis(w, noise="none").float().cpu()[0], *draws[:4],
                  std_map.expand(draws.shape[1], -1, -1)]
    target = default_out(run_dir, options, f"noise-seeds{seeds[0]}-{seeds[rows_n - 1]}{psi}", ".png")
    plots.save_png(plots.image_grid(torch.stack(tiles), nrow=6), target)
    return [target]


def truncation_figure(G, cond, options: dict, seeds, run_dir: Path, device) -> list[Path]:
    """mode=truncation: the truncation trick's trade of variety for typicality. One row per psi in
    `truncations` (default 1, 0.8, ..., 0.2 and, for a style-based G, 0: w_avg itself), the same `nrow`
    seeds in every column. A style-based G truncates in W (`truncation_cutoff` applies; the noise inputs
    are held fixed); any other G in z
    (`truncation_mode`: resample or shrink). A conditional G draws class= (default: the first class)."""
    style = style_based(G)
    psis = options["truncations"] or ([1.0, 0.8, 0.6, 0.4, 0.2] + ([0.0] if style else []))
    if not style and 0 in psis:
        raise UserError("truncations: psi = 0 needs a style-based G (it draws w_avg); in z every psi must be > 0")
    columns = seeds[:options["nrow"]]
    classes = chosen_classes(options, cond)
    labels = None if classes is None else [classes[0]] * len(columns)
    rows = []
    for psi in psis:
        if style:
            z = latents(columns, G.z_dim, {**options, "truncation": None})  # z untruncated: psi acts in W
            in_w = InW(G, float(psi), options["truncation_cutoff"])
            # The noise inputs held fixed, so that a row changes only by psi (and psi = 0 is one image).
            rows.append(generate(lambda zi, c=None: in_w(zi, noise="const"), z, options["batch_size"], device))
        else:
            at_psi = {**options, "truncation": float(psi)}
            rows.append(generate(G, latents(columns, G.z_dim, at_psi), options["batch_size"], device,
                                 condition(cond, labels, columns, G.z_dim, at_psi)))
    where = "w" if style else "z"
    stem = f"truncation-{where}-seeds{columns[0]}-{columns[-1]}" + ("" if labels is None else f"-class{labels[0]}")
    target = default_out(run_dir, options, stem, ".png")
    grid = plots.image_grid(torch.cat(rows), nrow=len(columns))
    plots.save_png(plots.label_rows(grid, [f"psi={psi:g}" for psi in psis], margin=56), target)
    return [target]


def traverse(G, cond, options, seeds, run_dir, device) -> list[Path]:
    """InfoGAN: one continuous code varied from -code_range to +code_range along each row while z and the
    other codes stay fixed; one row per categorical value (class= / classes= pick them)."""
    from gan_cli.conditioning import InfoGAN

    if not isinstance(cond, InfoGAN) or not cond.continuous:
        raise UserError(f"mode=traverse varies InfoGAN's continuous codes; this checkpoint is {cond.name}"
                        + ("" if isinstance(cond, InfoGAN) else " (try mode=interpolate)"))
    if options["code"] >= cond.continuous:
        raise UserError(f"code={options['code']}: this G has continuous codes 0-{cond.continuous - 1}")
    classes = chosen_classes(options, cond) or [0]
    values = torch.linspace(-options["code_range"], options["code_range"], options["steps"])
    z = latent(seeds[0], G.z_dim, options["truncation"], options["truncation_mode"])
    rows = []
    for k in classes:
        continuous = torch.zeros(len(values), cond.continuous)
        continuous[:, options["code"]] = values
        categories = torch.full((len(values),), k, dtype=torch.long)
        codes = cond.codes(categories, continuous) if cond.categorical else continuous
        rows.append(generate(G, z.expand(len(values), -1), options["batch_size"], device, codes))
    target = default_out(run_dir, options, f"traverse-code{options['code']}-seed{seeds[0]}", ".png")
    grid = plots.image_grid(torch.cat(rows), nrow=len(values))
    labels = [f"c={k}" for k in classes] if cond.categorical else [""]
    plots.save_png(plots.label_rows(grid, labels), target)
    return [target]


def run_invert(loaded, options: dict, run_dir: Path, device) -> list[Path]:
    """gan-sample mode=invert: invert the input images (or G's own samples), write what the module says."""
    from gan_cli import invert as inv
    from gan_cli.data.folder import load_image

    o = options
    G, shape = loaded.net, loaded.data.shape
    if len(shape) != 3:
        raise UserError("mode=invert inverts images; this checkpoint's G draws points")
    if loaded.game.cond.name != "none":
        raise UserError(f"mode=invert inverts an unconditional G; this one is conditioned ({loaded.game.cond.name})")
    space = o["space"]
    decoder = inv.Decoder(G, space)
    labels, true_z = None, None
    if o["input"] == "samples":
        seeds = list(range(o["seed"] + 10_000, o["seed"] + 10_000 + o["n"]))  # away from the candidates' seeds
        true_z = inv.draw_z(seeds, G.z_dim)
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
    feature_loss = inv.FeatureLoss(o["invert_features"], loaded, o.get("cache_dir"), device, o["progress"])
    result = inv.invert(decoder, targets, feature_loss, o, device, o["progress"])
    folder = default_out(run_dir, o, stem, "")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in zip(names, result["images"]):
        target = folder / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        writes.save_image(Image.fromarray(to_uint8_hwc(image)), target)
    pairs = torch.stack([t for pair in zip(targets, result["images"]) for t in pair])
    sheet = folder / "sheet.png"
    plots.save_png(plots.image_grid(pairs, nrow=2 * o["nrow"]), sheet)
    psnr, ssim = inv.psnr_ssim(result["images"], targets)
    report = {"space": space, "images": len(names), "psnr_mean": float(np.mean(psnr)),
              "ssim_mean": float(np.mean(ssim)), "loss_mean": float(result["loss"].mean()),
              "settings": {k: o[k] for k in ("invert_steps", "invert_restarts", "invert_candidates", "invert_lr",
                                             "invert_features", "invert_feature_weight", "invert_prior", "seed")}}
    if labels is not None and feature_loss.kind == "classifier":
        predicted = inv.class_of(feature_loss.net, result["images"], device)
        report["class_kept"] = float((predicted == labels).float().mean())
    if true_z is not None and space == "z":
        error = (result["codes"] - true_z).norm(dim=1) / true_z.norm(dim=1)
        random_z = inv.draw_z(range(o["seed"] + 20_000, o["seed"] + 20_000 + len(true_z)), G.z_dim)
        report["z_error_mean"] = float(error.mean())
        report["random_z_error_mean"] = float(((random_z - true_z).norm(dim=1) / true_z.norm(dim=1)).mean())
    report["per_image"] = [{"name": name, "psnr": p, "ssim": s, "loss": float(v)}
                           for name, p, s, v in zip(names, psnr, ssim, result["loss"])]
    codes_path = folder / "codes.pt"
    checkpoint.save({"space": space, "codes": result["codes"], "names": names, "psnr": psnr, "ssim": ssim,
                     "checkpoint": str(loaded.path)}, codes_path)
    json_path = folder / "invert.json"
    writes.write_text(json_path, json.dumps(report, indent=1) + "\n")
    summary = f"PSNR {report['psnr_mean']:.2f} dB, SSIM {report['ssim_mean']:.4f}"
    if "class_kept" in report:
        summary += f", class kept {100 * report['class_kept']:.1f} %"
    if "z_error_mean" in report:
        summary += f", |z - z_true| / |z_true| {report['z_error_mean']:.3f} (a random z: " \
                   f"{report['random_z_error_mean']:.3f})"
    log.info("inverted %d images in %s: %s", len(names), space, summary)
    written += [folder, sheet, codes_path, json_path]
    return written


def codes_figure(loaded, options: dict, run_dir: Path, device) -> list[Path]:
    """mode=interpolate or mode=arithmetic on the codes of codes.pt (inverted real images) rather than on
    seeds: interpolate joins codes 0 -> 1, 2 -> 3, ... (`pairs` rows; slerp or lerp in z, straight lines in
    W); arithmetic reads a=, b=, c= as indices into the file's codes."""
    from gan_cli import invert as inv

    saved = inv.read_codes(options["codes"])
    decoder = inv.Decoder(loaded.net, saved["space"])
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
        raise UserError(f"mode=arithmetic with codes=: a, b and c are indices of codes 0-{len(codes) - 1}, "
                        f"got {bad[0]}")
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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    from gan_cli.options import show_help

    if show_help(sys.argv[1:], "sample", "gan-sample"):
        return
    writes.setup_cli()
    try:
        written = sample(parse_options(sys.argv[1:], "sample"))
    except UserError as e:
        print(f"gan-sample: error: {e}", file=sys.stderr)
        sys.exit(2)
    except WriteFailed as e:
        print(f"gan-sample: error: {e}", file=sys.stderr)
        sys.exit(WRITE_FAILED_EXIT)
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
