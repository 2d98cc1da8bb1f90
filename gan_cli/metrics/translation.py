"""gan-eval of an image-to-image checkpoint (Pix2Pix, CycleGAN), on the run's test split.

    l1, psnr, ssim      paired data: each translation G(A) against its target B, in [0, 1] pixel units
                        (L1: mean absolute difference; PSNR: 10 log10(1 / MSE) per image, then the mean;
                        SSIM: scikit-image's structural_similarity with Wang et al.'s Gaussian window,
                        sigma 1.5, per image then the mean)
    fid, kid            the translations against the target domain's training images, through the
                        classifier backbone where that domain is labelled (else Inception)
    label_preservation  where both domains carry labels: the share of translations that a classifier
                        of the target domain gives the source image's label
    label_preservation_joint
                        the same read by a classifier trained on both domains' training images: it
                        knows each class in both styles, so a translation that keeps its digit but
                        falls between the styles still counts, and one that changes the digit does not
"""

import logging

import numpy as np
import torch

from gan_cli import UserError
from gan_cli.metrics import scores
from gan_cli.metrics.backbones import ClassifierBackbone, InceptionBackbone
from gan_cli.metrics.protocol import extract, to_uint8
from gan_cli.data.images import resize_uint8

log = logging.getLogger("gan_cli.metrics")

METRICS = ("l1", "psnr", "ssim", "fid", "kid", "label_preservation", "label_preservation_joint")


def paired_scores(fake: torch.Tensor, target: torch.Tensor) -> dict:
    """L1, PSNR and SSIM of uint8 translations against uint8 targets (N x C x H x W), per image then the
    mean, on [0, 1] pixel values."""
    l1, psnr, ssim = per_image_scores(fake, target)
    return {"l1": float(np.mean(l1)), "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}


def per_image_scores(fake: torch.Tensor, target: torch.Tensor) -> tuple[list, list, list]:
    """L1, PSNR (dB) and SSIM (scikit-image, Gaussian 1.5 as the SSIM paper) of each uint8 image against
    its uint8 target, on [0, 1] pixel values."""
    from skimage.metrics import structural_similarity

    x, y = fake.double() / 255, target.double() / 255
    l1 = (x - y).abs().flatten(1).mean(1)
    mse = (x - y).square().flatten(1).mean(1)
    psnr = 10 * torch.log10(1 / mse.clamp_min(1e-12))
    ssim = [float(structural_similarity(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), data_range=1.0,
                                        channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
            for a, b in zip(x, y)]
    return l1.tolist(), psnr.tolist(), ssim


def _target_images(data, side: str = "B") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The target domain's training images (uint8, at the crop size) and labels: side B's, or A's when a
    CycleGAN's G_BA is scored."""
    source = data.sources[-1] if side == "B" else data.sources[0]
    if not hasattr(source, "images"):
        raise UserError(f"{data.name} streams its training images from disk; gan-eval scores translations "
                        "against target images held in memory (lower dataset.max_memory_mb is not the fix: raise it)")
    images = source.images.cpu()
    if data.paired:
        images = images[:, data.channels_a:]
    labels = None if source.labels is None else source.labels.cpu()
    return resize_uint8(images, (data.shape_b if side == "B" else data.shape_a)[1]), labels


def evaluate_translation(loaded, options: dict, device, result: dict) -> dict:
    game, data = loaded.game, loaded.data
    protocol, m = result["protocol"], result["metrics"]
    test = data.test(None)
    backward = options["direction"] == "BtoA"
    if options["direction"] not in ("AtoB", "BtoA"):
        raise UserError(f"direction must be AtoB or BtoA, got {options['direction']!r}")
    if backward and game.name != "cyclegan":
        raise UserError(f"direction=BtoA scores CycleGAN's G_BA; a {game.name} G translates one way (A to B)")
    if backward:  # G_BA on the test B images, scored against domain A: the same code with the sides swapped
        test = {"A": test["B"], "B": test["A"], "labels_A": test["labels_B"], "labels_B": test["labels_A"]}
    net, target_side = ("G_BA", "A") if backward else (game.forward_net, "B")
    inputs, targets = test["A"], test["B"]
    fakes = []
    for start in range(0, len(inputs), options["batch_size"]):
        batch = inputs[start:start + options["batch_size"]].to(device)
        fakes.append(to_uint8(game.translate(loaded.nets, batch, net).cpu()))
    fake = torch.cat(fakes)
    protocol.update({"fake": f"{net} of {loaded.path} (step {loaded.state['step']}) on the {len(fake)} "
                             f"test {'B' if backward else 'A'} images of {data.name}", "num_fake": len(fake),
                     "image_shape": list(data.shape_a if backward else data.shape_b)})
    labelled = data.sources[0 if backward else -1].num_classes > 0 and test["labels_B"] is not None and \
        test["labels_A"] is not None
    if options["metrics"] is None:  # what applies: the paired scores, FID and KID, and label preservation
        wanted = (["l1", "psnr", "ssim"] if data.paired else []) + ["fid", "kid"] + \
            (["label_preservation"] if labelled else [])
    else:
        wanted = list(options["metrics"])
        other = [k for k in wanted if k not in METRICS]
        if other:
            raise UserError(f"metrics {', '.join(other)} do not apply to image-to-image checkpoints; choose from: "
                            f"{', '.join(METRICS)}")
    if any(k in wanted for k in ("l1", "psnr", "ssim")):
        if not data.paired:
            raise UserError(f"metrics l1, psnr and ssim compare translations with their targets: {data.name} has no "
                            "pairs; use metrics=[fid,kid,label_preservation]")
        m.update({k: v for k, v in paired_scores(fake, to_uint8(targets)).items() if k in wanted})
        protocol["paired"] = "each test translation against its target, [0, 1] pixel values, per image then the mean"
    for key in ("label_preservation", "label_preservation_joint"):
        if key in wanted and not labelled:
            raise UserError(f"{key} needs labels on both sides of {data.name}; drop it from metrics")
    if any(k in wanted for k in ("fid", "kid", "label_preservation")):
        real_images, real_labels = _target_images(data, target_side)
        if options["backbone"] == "classifier" and real_labels is not None and test["labels_B"] is not None:
            description = f"the target domain of {data.name}: its training images, its test images held out"
            backbone = ClassifierBackbone((real_images, real_labels, to_uint8(targets), test["labels_B"], description),
                                          device, options["cache_dir"], options["progress"])
            result["classifier_test_accuracy"] = backbone.accuracy
        elif options["backbone"] == "classifier":
            raise UserError(f"the target domain of {data.name} has no labels for a classifier backbone; "
                            "use backbone=inception")
        else:
            backbone = InceptionBackbone(device, options["inception_weights"])
        protocol.update(backbone.protocol)
        batch = options["batch_size"]
        real_f, _ = extract(backbone, (real_images[i:i + batch] for i in range(0, len(real_images), batch)),
                            len(real_images), "target images", options["progress"])
        fake_f, fake_p = extract(backbone, (fake[i:i + batch] for i in range(0, len(fake), batch)), len(fake),
                                 "translations", options["progress"])
        protocol.update({"real": f"the {len(real_f)} training images of the target domain", "num_real": len(real_f)})
        if "fid" in wanted:
            m["fid"] = scores.frechet_distance(*scores.gaussian(fake_f.astype(np.float64)),
                                               *scores.gaussian(real_f.astype(np.float64)))
        if "kid" in wanted:
            size = min(options["kid_subset_size"], len(fake_f), len(real_f))
            m["kid_mean"], m["kid_std"] = scores.kernel_inception_distance(real_f, fake_f, options["kid_subsets"], size,
                                                                           seed=options["seed"])
        if "label_preservation" in wanted:
            if options["backbone"] != "classifier":
                raise UserError("label_preservation reads the target domain's classes: use backbone=classifier")
            source_labels = test["labels_A"].numpy()
            kept = fake_p.argmax(1) == source_labels
            m["label_preservation"] = float(kept.mean())
            result["label_preservation_by_class"] = {int(c): float(kept[source_labels == c].mean())
                                                     for c in np.unique(source_labels)}
            protocol["label_preservation"] = ("share of test translations the target domain's classifier gives the "
                                              "source image's label (label_preservation_by_class: per source class)")
    if "label_preservation_joint" in wanted:
        m["label_preservation_joint"] = _joint_preservation(data, target_side, test, fake, options, device, result)
        protocol["label_preservation_joint"] = ("share of test translations a classifier of both domains' training "
                                                "images gives the source image's label")
    return result


def _joint_preservation(data, target_side: str, test: dict, fake: torch.Tensor, options: dict, device,
                        result: dict) -> float:
    """label_preservation_joint: one classifier learns both domains' training images (each class in both
    styles; tested on both test splits), then reads the translations."""
    target, target_labels = _target_images(data, target_side)
    source, source_labels = _target_images(data, "A" if target_side == "B" else "B")
    if source.shape[1] != target.shape[1]:
        raise UserError(f"label_preservation_joint trains one classifier on both domains, which needs as many "
                        f"channels on both sides (source {source.shape[1]}, target {target.shape[1]})")
    side = target.shape[-1]
    images = torch.cat([resize_uint8(source, side), target])
    labels = torch.cat([source_labels, target_labels])
    test_images = torch.cat([resize_uint8(to_uint8(test["A"]), side), resize_uint8(to_uint8(test["B"]), side)])
    test_labels = torch.cat([test["labels_A"], test["labels_B"]])
    joint = ClassifierBackbone((images, labels, test_images, test_labels, f"both domains of {data.name}"), device,
                               options["cache_dir"], options["progress"])
    result["joint_classifier_test_accuracy"] = joint.accuracy
    batch = options["batch_size"]
    _, probabilities = extract(joint, (fake[i:i + batch] for i in range(0, len(fake), batch)), len(fake),
                               "translations (joint classifier)", options["progress"])
    return float((probabilities.argmax(1) == test["labels_A"].numpy()).mean())
