"""Mode-collapse metrics for the 2-D Gaussian mixtures, with the PacGAN protocol (Lin et al. 2018).

Each sample is assigned to its nearest mode; it is high quality when it lies within 3 standard
deviations of that mode. A mode is captured when at least one high-quality sample sits on it.
The reverse KL is KL(p || uniform) for p the histogram of all samples over their nearest modes.
Not in the paper: `balanced_hq`, the high-quality share counting each of the K modes at most up to its
fair share 1/K, i.e. 100 * sum_k min(hq_k / N, 1 / K). It is 100 only when every mode gets its share of
high-quality samples, so, unlike hq_percent, collapsing onto a few sharp modes does not raise it (one
sharp mode of K scores at most 100 / K): a single number for a search to maximise.
"""

import torch


def mode_metrics(samples: torch.Tensor, centres: torch.Tensor, sigma: float, threshold: float = 3.0) -> dict:
    """{"modes": captured modes, "hq_percent": % high-quality samples, "reverse_kl": KL(p || uniform),
    "balanced_hq": % high-quality samples, each mode counted up to 1/K}."""
    samples, centres = samples.detach().double().cpu(), centres.detach().double().cpu()
    if samples.ndim != 2 or samples.shape[1] != centres.shape[1] or not len(samples):
        raise ValueError(f"samples must be N x {centres.shape[1]} with N > 0, got {tuple(samples.shape)}")
    distance, nearest = torch.cdist(samples, centres).min(dim=1)
    high_quality = distance <= threshold * sigma
    k = len(centres)
    per_mode = torch.bincount(nearest[high_quality], minlength=k)
    captured = per_mode > 0
    p = torch.bincount(nearest, minlength=k).double() / len(samples)
    reverse_kl = float((p[p > 0] * (p[p > 0] * k).log()).sum())
    return {
        "modes": int(captured.sum()),
        "hq_percent": 100.0 * float(high_quality.double().mean()),
        "reverse_kl": max(reverse_kl, 0.0),  # a tiny negative is rounding
        "balanced_hq": 100.0 * float((per_mode.double() / len(samples)).clamp(max=1.0 / k).sum()),
    }


def summary(metrics: dict, total_modes: int) -> str:
    return (f"{metrics['modes']}/{total_modes} modes, {metrics['hq_percent']:.1f}% high quality, "
            f"reverse KL {metrics['reverse_kl']:.3f}")
