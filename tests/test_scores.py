"""The metric math on hand-made features, against scipy and against the formulas written out."""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg

from gan_cli.metrics.scores import (
    frechet_distance, gaussian, inception_score, kernel_inception_distance, precision_recall,
)


def random_covariance(rng, d, n=None):
    x = rng.standard_normal((n or 3 * d, d)) @ rng.standard_normal((d, d))
    return np.atleast_2d(np.cov(x, rowvar=False))


def frechet_with_sqrtm(mu1, s1, mu2, s2):
    """The reference route (pytorch-fid, TTUR): scipy's sqrtm of S1 S2, real part."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [1, 8, 64, 256])
def test_frechet_distance_agrees_with_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.1
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    ours, reference = frechet_distance(mu1, s1, mu2, s2), frechet_with_sqrtm(mu1, s1, mu2, s2)
    assert ours == pytest.approx(reference, rel=1e-6)


def test_frechet_distance_of_one_dimensional_gaussians_by_hand():
    # N(m1, v1) and N(m2, v2): (m1 - m2)^2 + (sqrt(v1) - sqrt(v2))^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # Diagonal covariances: the sum over dimensions of the 1-D case.
    assert frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 0], np.diag([4.0, 16.0])) == pytest.approx(1 + 1 + 4)


def test_frechet_distance_of_equal_statistics_is_zero_even_when_rank_deficient():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((10, 32))  # 10 samples in 32 dimensions: a singular covariance
    mu, sigma = gaussian(features)
    # Zero up to the rounding of the ~20 zero eigenvalues, far below any FID worth reporting.
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-7 * np.trace(sigma) * len(sigma)


def test_inception_score_by_hand():
    # Confident and evenly spread over 4 classes: IS = 4; the same prediction everywhere: IS = 1.
    confident = np.tile(np.eye(4), (10, 1))
    assert inception_score(confident, splits=10, shuffle=False) == pytest.approx((4.0, 0.0))
    assert inception_score(np.full((40, 4), 0.25), splits=10) == pytest.approx((1.0, 0.0))
    # Two classes, p = (0.9, 0.1) and (0.1, 0.9) alternating: exp(KL((0.9, 0.1) || (0.5, 0.5))).
    alternating = np.tile([[0.9, 0.1], [0.1, 0.9]], (5, 1))
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert inception_score(alternating, splits=1, shuffle=False)[0] == pytest.approx(math.exp(kl))
    # Sorted by class (as images read from class folders are), splits must not see one class each.
    sorted_by_class = np.repeat(np.eye(4), 25, axis=0)
    assert inception_score(sorted_by_class, splits=4, shuffle=False)[0] == pytest.approx(1.0)
    assert inception_score(sorted_by_class, splits=4)[0] > 3.0


def test_kid_matches_the_unbiased_estimator_written_out():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 5
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=5)
    assert mean == pytest.approx(xx + yy - 2 * xy) and std == pytest.approx(0, abs=1e-12)  # the same subset thrice


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((1000, 16)), rng.standard_normal((1000, 16))
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=500)
    shifted, _ = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=500)
    assert abs(same) < 0.01 < shifted


def test_precision_recall_by_hand():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert precision_recall(real, real, k=1) == (1.0, 1.0)
    assert precision_recall(real, real + 100, k=1) == (0.0, 0.0)
    # k = 1: every real ball has radius 1, covering [-1, 4]. Fakes at 0.5, 3.9, 10, 11: two inside.
    # The fake balls: 0.5 and 3.9 reach each other (3.4); 10 and 11 reach 1; real 0..3 lie within 3.4 of 0.5.
    fake = np.array([[0.5], [3.9], [10.0], [11.0]])
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
