"""Mode-collapse metrics for the 2-D Gaussian mixtures, with the PacGAN protocol (Lin et al. 2018).

Each sample is assigned to its nearest mode; it is high quality when it lies within 3 standard
deviations of that mode. A mode is captured when at least one high-quality sample sits on it.
The reverse KL is KL(p || uniform) for p the histogram of all samples over their nearest modes.
"""

import torch


def mode_metrics(samples: torch.Tensor, centres: torch.Tensor, sigma: float, threshold: float = 3.0) -> dict:
    """{"modes": captured modes, "hq_percent": % high-quality samples, "reverse_kl": KL(p || uniform)}."""
    samples, centres = samples.detach().double().cpu(), centres.detach().double().cpu()
    if samples.ndim != 2 or samples.shape[1] != centres.shape[1] or not len(samples):
        raise ValueError(f"samples must be N x {centres.shape[1]} with N > 0, got {tuple(samples.shape)}")
    distance, nearest = torch.cdist(samples, centres).min(dim=1)
    high_quality = distance <= threshold * sigma
    k = len(centres)
    captured = torch.bincount(nearest[high_quality], minlength=k) > 0
    p = torch.bincount(nearest, minlength=k).double() / len(samples)
    reverse_kl = float((p[p > 0] * (p[p > 0] * k).log()).sum())
    return {
        "modes": int(captured.sum()),
        "hq_percent": 100.0 * float(high_quality.double().mean()),
        "reverse_kl": max(reverse_kl, 0.0),  # a tiny negative is rounding
    }


def summary(metrics: dict, total_modes: int) -> str:
    return (f"{metrics['modes']}/{total_modes} modes, {metrics['hq_percent']:.1f}% high quality, "
            f"reverse KL {metrics['reverse_kl']:.3f}")
