"""How the inputs of a sampled image are drawn: every image has a seed, and its z and its random codes come
from that seed's own random stream, on the CPU.

    z       the first z_dim normals of the stream (redrawn beyond +-psi under truncation=psi, resample)
    codes   InfoGAN's continuous codes: the next uniform numbers of the same stream, scaled to [-1, 1];
            the categorical code is the image's class

So an image depends on its seed alone: not on the batch it is drawn in, the images beside it, the device or
the order of drawing. gan-eval's sample i is the image of seed `seed + i`, the one `gan-sample seed=<seed>`
writes as its i-th image.

Below, G drawn in batches from such inputs (`generate`), and a style-based G through W with truncation
(`InW`), for gan-sample and the Python API (gan_cli.api).
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


# --- drawing with them (gan-sample and the Python API) ---------------------------------------------


@torch.no_grad()
def generate(G, z: torch.Tensor, batch_size: int, device, c: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) (or G(z, c): labels or codes, one per z) in batches, on the CPU."""
    out = []
    for i in range(0, len(z), batch_size):
        zi = z[i:i + batch_size].to(device)
        out.append((G(zi) if c is None else G(zi, c[i:i + batch_size].to(device))).float().cpu())
    return torch.cat(out)


class InW:
    """A style-based G drawing with the truncation trick in W: w_avg + psi (w - w_avg) in the first
    `cutoff` layers (all when None), z itself untruncated."""

    def __init__(self, G, psi: float, cutoff: int | None):
        self.G, self.psi, self.cutoff, self.z_dim = G, psi, cutoff, G.z_dim

    def ws(self, z: torch.Tensor) -> torch.Tensor:
        return self.G.ws(z, self.psi, self.cutoff)

    def __call__(self, z, c=None, noise="random"):
        return self.G.synthesis(self.ws(z), noise)


def style_based(G) -> bool:
    return hasattr(G, "ws") and hasattr(G, "synthesis")
