"""gan-eval of a super-resolution checkpoint (SRResNet, SRGAN), on the run's test images, with the protocol
of gan_cli/metrics/superres.py (kept apart from it: that module is pure math the data sets use too)."""

import numpy as np
import torch

from gan_cli import UserError
from gan_cli.metrics.superres import psnr_y, ssim_y, upscale_bicubic


SR_METRICS = ("psnr", "ssim", "fid", "accuracy")


def evaluate_superres(loaded, options: dict, device, result: dict) -> dict:
    """gan-eval of an SRResNet / SRGAN checkpoint on its run's test images: PSNR and SSIM on Y with `scale`
    pixels shaved, of G and of bicubic upsampling side by side; where the data carry labels (digits, ...)
    also the classifier's accuracy on the upscaled images (a sharpness measure: blur loses the digit) and
    the FID of the upscaled images against the originals, through the classifier backbone."""
    from tqdm import tqdm

    from gan_cli.metrics import scores
    from gan_cli.metrics.backbones import ClassifierBackbone
    from gan_cli.metrics.protocol import extract, to_uint8

    game, data = loaded.game, loaded.data
    scale, protocol, m = data.scale, result["protocol"], result["metrics"]
    labelled = data.test_labels is not None and data.num_classes > 0 and hasattr(data.sources[0], "images")
    wanted = list(options["metrics"] or (["psnr", "ssim"] + (["fid", "accuracy"] if labelled else [])))
    other = [k for k in wanted if k not in SR_METRICS]
    if other:
        raise UserError(f"metrics {', '.join(other)} do not apply to super-resolution checkpoints; choose from: "
                        f"{', '.join(SR_METRICS)}")
    if not labelled and any(k in wanted for k in ("fid", "accuracy")):
        raise UserError(f"fid and accuracy of super-resolution read the images with a classifier of {data.name}'s "
                        "labels, and it has none; use metrics=[psnr,ssim]")
    test = data.test(None)
    outputs = {"sr": [], "bicubic": []}
    values = {k: [] for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}
    for lr, hr in tqdm(list(zip(test["lr"], test["hr"])), desc="upscaling", unit="img", leave=False,
                       disable=None if options["progress"] else True):
        sr = game.upscale(loaded.nets, lr.to(device)).cpu()
        bicubic = upscale_bicubic(lr, scale).clamp(-1, 1)
        for name, image in (("", sr), ("bicubic_", bicubic)):
            values[f"{name}psnr"].append(psnr_y(image, hr, scale))
            values[f"{name}ssim"].append(ssim_y(image, hr, scale))
        outputs["sr"].append(to_uint8(sr))
        outputs["bicubic"].append(to_uint8(bicubic))
    for key, v in values.items():
        if key.split("_")[-1] in wanted:
            m[key] = float(torch.cat(v).mean())
    sizes = sorted({tuple(x.shape[-2:]) for x in test["hr"]})
    protocol.update({
        "fake": f"{game.forward_net} of {loaded.path} (step {loaded.state['step']}) upscaling the {len(test['hr'])} test "
                f"images of {data.name} by {scale} (inputs: their antialiased bicubic downscales, 8-bit)",
        "num_fake": len(test["hr"]), "image_sizes": [list(s) for s in sizes[:8]],
        "psnr_ssim": f"on Y (BT.601, MATLAB's rgb2ycbcr; grey images: the grey value), {scale} pixels shaved from "
                     "each border, both images quantised to 8 bits, per image then the mean; SSIM with an 11x11 "
                     "Gaussian window of sigma 1.5 (Wang et al. 2004); bicubic_*: the inputs upscaled by "
                     "antialiased bicubic interpolation",
    })
    if any(k in wanted for k in ("fid", "accuracy")):
        base = data.sources[0]
        originals = torch.cat([to_uint8(x) for x in test["hr"]])
        description = f"the training images of {data.name}, its test images held out"
        backbone = ClassifierBackbone((base.images.cpu(), base.labels.cpu(), originals, test["labels"].cpu(),
                                       description), device, options["cache_dir"], options["progress"])
        result["classifier_test_accuracy"] = backbone.accuracy
        protocol.update(backbone.protocol)
        batch, labels = options["batch_size"], test["labels"].cpu().numpy()
        features = {}
        for name, images in (("original", originals), ("sr", torch.cat(outputs["sr"])),
                             ("bicubic", torch.cat(outputs["bicubic"]))):
            features[name] = extract(backbone, (images[i:i + batch] for i in range(0, len(images), batch)),
                                     len(images), f"{name} images", options["progress"])
        if "accuracy" in wanted:
            m["accuracy"] = float((features["sr"][1].argmax(1) == labels).mean())
            m["bicubic_accuracy"] = float((features["bicubic"][1].argmax(1) == labels).mean())
            m["original_accuracy"] = float((features["original"][1].argmax(1) == labels).mean())
            protocol["accuracy"] = "share of upscaled test images the classifier gives their label"
        if "fid" in wanted:
            real = scores.gaussian(features["original"][0].astype(np.float64))
            m["fid"] = scores.frechet_distance(*scores.gaussian(features["sr"][0].astype(np.float64)), *real)
            m["bicubic_fid"] = scores.frechet_distance(*scores.gaussian(features["bicubic"][0].astype(np.float64)),
                                                       *real)
            protocol.update({"real": f"the {len(originals)} original test images", "num_real": len(originals)})
    return result
