"""How the inputs of a sampled image are drawn: every image has a seed, and its z and its random codes come
from that seed's own random stream, on the CPU.

    z       the first z_dim normals of the stream (redrawn beyond +-psi under truncation=psi, resample)
    codes   InfoGAN's continuous codes: the next uniform numbers of the same stream, scaled to [-1, 1];
            the categorical code is the image's class

So an image depends on its seed alone: not on the batch it is drawn in, the images beside it, the device or
the order of drawing. gan-eval's sample i is the image of seed `seed + i`, the one `gan-sample seed=<seed>`
writes as its i-th image.
"""

import torch


def stream(seed: int) -> torch.Generator:
    """The random stream of one image."""
    return torch.Generator().manual_seed(int(seed))


def truncate(z: torch.Tensor, psi, mode: str, generator: torch.Generator) -> torch.Tensor:
    """The truncation trick: `resample` redraws entries beyond +-psi until none are left (BigGAN);
    `shrink` scales z by psi towards the mean of the prior, 0."""
    if psi is None:
        return z
    if mode == "shrink":
        return z * psi
    z = z.clone()
    while (outside := z.abs() > psi).any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
    return z


def draw(seeds, z_dim: int, cond=None, labels=None, psi=None, mode: str = "resample"):
    """(z, c) of the images with these seeds: z is len(seeds) x z_dim; c is what G takes beside z (None,
    the labels as a tensor, or InfoGAN's codes), given `cond` (the game's conditioning) and the images'
    classes `labels` (a class-conditional G; InfoGAN's categorical code). Everything on the CPU."""
    from gan_cli.conditioning import InfoGAN

    infogan = isinstance(cond, InfoGAN)
    zs, continuous = [], []
    for seed in seeds:
        g = stream(seed)
        zs.append(truncate(torch.randn(z_dim, generator=g), psi, mode, g))
        if infogan:
            continuous.append(torch.rand(cond.continuous, generator=g) * 2 - 1)
    z = torch.stack(zs) if zs else torch.empty(0, z_dim)
    if infogan:
        categories = torch.as_tensor(labels if labels is not None else [0] * len(zs), dtype=torch.long)
        return z, cond.codes(categories, torch.stack(continuous) if continuous else torch.empty(0, cond.continuous))
    if labels is None:
        return z, None
    return z, torch.as_tensor(labels, dtype=torch.long)
