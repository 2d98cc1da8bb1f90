"""Speed of the metric code beside the reference code, measured side by side in one process.

    python benchmarks/metric_speed.py            # 2048-d Frechet distance, Inception feature extraction
    python benchmarks/metric_speed.py --quick

1. The Frechet distance of two 2048-d Gaussians: ours (eigenvalues of L^T S2 L, S1 = L L^T) against
   scipy.linalg.sqrtm of S1 S2 (pytorch-fid's route) and against torch-fidelity's
   fid_statistics_to_metric (general eigenvalues of S1 S2), same statistics, median of --repeats,
   and the relative differences of the results.
2. Inception feature extraction, images/s: gan-eval's backbone against torch-fidelity's extractor
   called directly, on the same uint8 images. The published weights cannot be downloaded on every
   machine, so both use the same randomly initialised weights (speed does not depend on them).
Writes benchmarks/results/metric_speed.md.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from gan_cli.metrics import scores  # noqa: E402
from gan_cli.metrics.backbones import InceptionBackbone  # noqa: E402


def timed(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def random_inception_weights(folder: Path) -> Path:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, *a, **k: None
    import torch_fidelity.feature_extractor_inceptionv3 as module

    saved = getattr(module, "load_state_dict_from_url", None)
    module.load_state_dict_from_url = lambda *a, **k: {}
    try:
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
        if saved is not None:
            module.load_state_dict_from_url = saved
    path = folder / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=100, help="images for the extraction timing")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--dims", type=int, default=2048, help="feature dimensions of the Frechet distance")
    parser.add_argument("--quick", action="store_true", help="one repeat, 512 dimensions, 20 images")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "metric_speed.md")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.images, args.dims = 1, 20, 512
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(0)
    d = args.dims
    stats = []
    for shift in (0.0, 0.3):  # two different covariances, full rank (2 d samples > d dimensions)
        x = rng.standard_normal((2 * d, d)) @ (np.eye(d) + shift * rng.standard_normal((d, d)) / np.sqrt(d))
        stats.append(scores.gaussian(np.abs(x)))  # ReLU-like features: non-negative, correlated
    (mu1, s1), (mu2, s2) = stats
    t_ours, ours = timed(lambda: scores.frechet_distance(mu1, s1, mu2, s2), args.repeats)
    t_fidelity, fidelity = timed(lambda: fid_statistics_to_metric(
        {"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)["frechet_inception_distance"], args.repeats)

    def with_sqrtm():
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)

    t_ref, ref = timed(with_sqrtm, args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        weights = random_inception_weights(Path(tmp))
        images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
        backbone = InceptionBackbone(torch.device("cpu"), str(weights))
        reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                feature_extractor_weights_path=str(weights)).eval()

        def ours_extract():
            for start in range(0, len(images), args.batch):
                backbone.features(images[start:start + args.batch])

        def reference_extract():
            with torch.no_grad():
                for start in range(0, len(images), args.batch):
                    reference(images[start:start + args.batch])

        ours_extract()  # warm-up
        t_ours_x, _ = timed(ours_extract, args.repeats)
        t_ref_x, _ = timed(reference_extract, args.repeats)

    command = "python benchmarks/metric_speed.py" + (" --quick" if args.quick else "")
    lines = [
        "## Metric speed",
        "",
        f"`{command}`; {machine()}; medians of {args.repeats} repeats, measured side by side in one process.",
        "",
        "| what | gan-cli | reference | ratio (reference time / ours) |",
        "| --- | --- | --- | --- |",
        f"| Frechet distance, {d}-d (s) | {t_ours:.3f} | {t_ref:.3f} (scipy.linalg.sqrtm, as pytorch-fid) "
        f"| {t_ref / t_ours:.1f}x |",
        f"| Frechet distance, {d}-d (s) | {t_ours:.3f} | {t_fidelity:.3f} (torch-fidelity 0.4: eigvals of S1 S2) "
        f"| {t_fidelity / t_ours:.1f}x |",
        f"| Inception features, {args.images} images of 32x32 upsampled to 299 (images/s) | {args.images / t_ours_x:.1f} "
        f"| {args.images / t_ref_x:.1f} (torch-fidelity extractor) | {t_ref_x / t_ours_x:.2f}x |",
        "",
        f"The Frechet distances: {ours:.9f} (ours), {ref:.9f} (sqrtm), {fidelity:.9f} (torch-fidelity); relative "
        f"differences {abs(ours - ref) / abs(ref):.1e} and {abs(ours - fidelity) / abs(fidelity):.1e}.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
