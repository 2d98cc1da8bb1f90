"""The PacGAN mode metrics on samples made by hand."""

import math

import pytest
import torch

from gan_cli.data.toy2d import mixture_centres
from gan_cli.metrics.toy2d import mode_metrics


@pytest.mark.parametrize("mixture", ["ring", "grid"])
def test_perfect_samples_capture_every_mode(mixture):
    centres, sigma = mixture_centres(mixture)
    samples = centres.repeat(100, 1) + sigma * 0.5 * torch.randn(100 * len(centres), 2).clamp(-2, 2)
    m = mode_metrics(samples, centres, sigma)
    assert m["modes"] == len(centres) and m["hq_percent"] == 100.0
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_all_samples_on_one_mode():
    centres, sigma = mixture_centres("ring")
    samples = centres[3] + sigma * torch.randn(500, 2).clamp(-2, 2)
    m = mode_metrics(samples, centres, sigma)
    assert m["modes"] == 1 and m["hq_percent"] == 100.0
    assert m["reverse_kl"] == pytest.approx(math.log(8))  # KL(one mode || uniform over 8)


def test_far_samples_are_low_quality_but_still_counted_in_the_histogram():
    centres, sigma = mixture_centres("grid")
    # Half the samples exactly on mode 0, half 10 sigma off mode 1 (nearest mode 1, not high quality).
    on = centres[0].repeat(50, 1)
    off = centres[1].repeat(50, 1) + torch.tensor([10 * sigma, 0.0])
    m = mode_metrics(torch.cat([on, off]), centres, sigma)
    assert m["modes"] == 1 and m["hq_percent"] == 50.0
    assert m["reverse_kl"] == pytest.approx(2 * 0.5 * math.log(0.5 * 25))


def test_balanced_hq_counts_each_mode_up_to_its_share():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    sigma = 0.1
    collapsed = mode_metrics(torch.zeros(100, 2), centres, sigma)  # every sample sharp, all on one mode
    assert collapsed["hq_percent"] == 100.0 and collapsed["balanced_hq"] == pytest.approx(25.0)
    spread = centres.repeat_interleave(25, dim=0)  # 25 sharp samples on each mode
    assert mode_metrics(spread, centres, sigma)["balanced_hq"] == pytest.approx(100.0)
    # Half the samples far from every mode, the rest split 30 / 10 / 10 / 0: min(30, 25) + 10 + 10 + 0.
    mixed = torch.cat([centres[0].repeat(30, 1), centres[1].repeat(10, 1), centres[2].repeat(10, 1),
                       torch.full((50, 2), 5.0)])
    assert mode_metrics(mixed, centres, sigma)["balanced_hq"] == pytest.approx(45.0)
