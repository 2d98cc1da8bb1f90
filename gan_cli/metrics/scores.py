"""The sample-quality metrics as pure functions of features or class probabilities, in float64.

    frechet_distance      FID (Heusel et al. 2017) between two Gaussians fitted to features
    inception_score       IS (Salimans et al. 2016) over splits, from class probabilities
    kernel_inception_distance   KID (Binkowski et al. 2018): unbiased MMD^2, cubic polynomial kernel
    precision_recall      improved precision and recall (Kynkaanniemi et al. 2019), k-NN manifolds

Nothing here knows which network made the features.
"""

import numpy as np
import torch


def gaussian(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, N - 1) of an N x d feature matrix, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need an N x d feature matrix with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    values, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2, which equal those of
    the symmetric PSD matrix L^T S2 L for any L with S1 = L L^T: the Cholesky factor (cheap), or the
    symmetric square root where S1 is singular (fewer samples than dimensions). One symmetric
    eigenvalue problem, values only, keeps every step real, so there is no imaginary part to
    discard (scipy.linalg.sqrtm's route, which pytorch-fid uses, can leave one of order 1e-10).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"mismatched statistics: {mu1.shape}, {s1.shape} against {mu2.shape}, {s2.shape}")
    try:
        factor = np.linalg.cholesky((s1 + s1.T) / 2)
    except np.linalg.LinAlgError:  # singular: the PSD square root is a factor too
        factor = _psd_sqrt(s1)
    middle = factor.T @ s2 @ factor
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


def inception_score(probs, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) on each of `splits` parts; returns (mean, std) over them.

    The items are shuffled first (a seeded permutation, drawn as torch-fidelity draws it): images read
    from class folders come sorted by class, and a split holding one class would score near 1.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits:
        raise ValueError(f"need an N x classes matrix with N >= splits={splits}, got shape {p.shape}")
    if shuffle:
        p = p[np.random.RandomState(seed).permutation(len(p))]
    scores, n = [], len(p)
    for i in range(splits):  # the parts of the original code (and torch-fidelity): [i N / s, (i + 1) N / s)
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def minimum_samples(metric: str, is_splits: int = 10, pr_k: int = 3) -> int:
    """The fewest features a side needs for a metric: FID and KID a covariance / a pair (2), IS two
    images per split (a split of one image scores exactly 1), precision/recall k + 1 (a point's k-th
    nearest other point). The functions above raise ValueError below these."""
    return {"fid": 2, "kid": 2, "is": 2 * is_splits, "pr": pr_k + 1, "precision": pr_k + 1,
            "recall": pr_k + 1}.get(metric, 1)


def _poly_kernel(x, y, degree, gamma, coef0):
    return (gamma * (x @ y.T) + coef0) ** degree


def kernel_inception_distance(real, fake, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                              gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with k(x, y) = (gamma x.y + coef0)^degree (gamma = 1/d), averaged over `subsets`
    random subsets of `subset_size` from each side (drawn without replacement); returns (mean, std)."""
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least 2 features on each side")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)  # the legacy generator, drawn in torch-fidelity's order: same subsets
    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k_aa, k_bb, k_ab = (_poly_kernel(u, v, degree, gamma, coef0) for u, v in ((a, a), (b, b), (a, b)))
        mmd = ((k_aa.sum() - np.trace(k_aa)) + (k_bb.sum() - np.trace(k_bb))) / (m * (m - 1)) - 2 * k_ab.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def _kth_neighbour_radius(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    radii = []
    for start in range(0, len(x), chunk):
        d = torch.cdist(x[start:start + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself, at distance 0
    return torch.cat(radii)


def _inside_any(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    inside = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start:start + chunk], centres)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real, fake, k: int = 3, chunk: int = 1024, device="cpu") -> tuple[float, float]:
    """Precision: the share of fake features inside the real manifold (the union of balls around each
    real feature reaching its k-th nearest real neighbour); recall: the share of real features inside
    the fake manifold, built the same way. The distances are taken on `device`, `chunk` rows at a time,
    in float64."""
    x = torch.as_tensor(np.asarray(real), dtype=torch.float64).to(device)
    y = torch.as_tensor(np.asarray(fake), dtype=torch.float64).to(device)
    if len(x) <= k or len(y) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} features on each side")
    precision = _inside_any(y, x, _kth_neighbour_radius(x, k, chunk), chunk).double().mean()
    recall = _inside_any(x, y, _kth_neighbour_radius(y, k, chunk), chunk).double().mean()
    return float(precision), float(recall)
