"""BigGAN's generator (Brock, Donahue & Simonyan 2019, "Large Scale GAN Training for High Fidelity Natural
Image Synthesis") and its orthogonal regularisation.

G is the ResNet G of gan_cli/models/resnet.py with three changes:
- a hierarchical latent: z is split into one chunk per residual block plus one for the first linear layer;
- a shared class embedding (shared_dim features): every conditional batch norm of block k reads the embedding
  concatenated with chunk k, through linear maps of its own (gain 1 + W_g [e, z_k], shift W_b [e, z_k]);
- spectral normalisation of every conv and linear layer (the shared embedding excepted), orthogonal
  initialisation, optional self-attention (gan_cli/models/attention.py).
Channels: width * 4 in every block for images of 32 pixels and less (BigGAN's CIFAR-10 G); for larger ones
width * (16, 16, 8, 4, 2) at 64 pixels, (16, 16, 8, 4, 2, 1) at 128 (the paper's tables), i.e. width * 2^i
from the image up to 16 * width. An unconditional BigGAN G (conditioning=none) reads z's chunks alone.

Orthogonal regularisation (the paper's section 3.1): beta * sum over G's weights W (each flattened to one row per
output feature, the embedding excluded) of ||W W^T * (1 - I)||_F^2, the squared off-diagonal entries of the
Gram matrix: filters are pushed towards orthogonality without constraining their norms. It is a term of G's
loss (`generator.ortho_reg` = beta; the paper's 1e-4), taken on the weights before spectral normalisation.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError
from gan_cli.models import check_condition, check_flag, check_init, orthogonal_init
from gan_cli.models.attention import SelfAttention, attention_sides
from gan_cli.models.resnet import GBlock, _check_widths, _conv, _side, spectral_norm_convs


def biggan_channels(side: int, width: int) -> list[int]:
    """Channels of the 4x4 map and of each block's output, from z to the image."""
    blocks = int(math.log2(side // 4))
    if side <= 32:
        return [4 * width] * (blocks + 1)
    from_image = [width * min(16, 2 ** (i + 5 - blocks)) for i in range(blocks)]  # block outputs, image first
    return [16 * width] + from_image[::-1]


def raw_weight(module: nn.Module) -> torch.Tensor:
    """A layer's weight before spectral normalisation (the parameter an optimiser moves)."""
    if nn.utils.parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def orthogonal_penalty(net: nn.Module) -> torch.Tensor:
    """sum over the net's conv and linear weights W of ||W W^T * (1 - I)||_F^2 (embeddings excluded)."""
    total = torch.zeros((), device=next(net.parameters()).device)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = raw_weight(module).flatten(1).float()
            gram = w @ w.T
            total = total + (gram - torch.diag(torch.diagonal(gram))).pow(2).sum()
    return total


class BigGANGenerator(nn.Module):
    """z (N, z_dim) -> images; G(z, labels) when class-conditional (conditioning=projection)."""

    def __init__(self, shape, z_dim: int = 80, width: int = 96, shared_dim: int = 128, spectral_norm: bool = True,
                 attention_at=None, init: str = "ortho", ortho_reg: float = 1e-4, *, num_classes: int = 0,
                 class_input: str = "cbn", code_dim: int = 0):
        super().__init__()
        width, _ = _check_widths("generator", width, width)
        side = _side(tuple(shape), "generator")
        blocks = int(math.log2(side // 4))
        if not isinstance(z_dim, int) or isinstance(z_dim, bool) or z_dim < 1 or z_dim % (blocks + 1):
            raise UserError(f"generator.z_dim must split into {blocks + 1} equal chunks (one for the first layer and "
                            f"one per block at {side} pixels), got {z_dim!r}; e.g. {20 * (blocks + 1)}")
        if not isinstance(shared_dim, int) or isinstance(shared_dim, bool) or shared_dim < 1:
            raise UserError(f"generator.shared_dim must be a positive integer, got {shared_dim!r}")
        if not isinstance(ortho_reg, (int, float)) or isinstance(ortho_reg, bool) or ortho_reg < 0:
            raise UserError(f"generator.ortho_reg must be a number >= 0 (0 = off; BigGAN's 1e-4), got {ortho_reg!r}")
        if code_dim:
            raise UserError("the biggan generator takes classes (conditioning=projection) or nothing, not InfoGAN's "
                            "codes; use generator=dcgan or generator=resnet for conditioning=infogan")
        if num_classes:
            check_condition("generator", num_classes, class_input, ("cbn",))
        check_init("generator", init)
        self.shape, self.z_dim, self.num_classes, self.code_dim = tuple(shape), z_dim, int(num_classes), 0
        self.ortho_reg = float(ortho_reg)
        self.chunk = z_dim // (blocks + 1)
        channels = biggan_channels(side, width)
        self.start = channels[0]
        embed_dim = self.chunk + (shared_dim if num_classes else 0)
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes else None
        self.linear = nn.Linear(self.chunk, 16 * channels[0])
        self.blocks = nn.ModuleList(GBlock(cin, cout, True, embed_dim, zero_init=False)
                                    for cin, cout in zip(channels, channels[1:]))
        sides = [8 * 2 ** i for i in range(blocks)]
        at = attention_sides(attention_at, side, sides, "generator")
        self.attention = nn.ModuleDict({str(i): SelfAttention(channels[i + 1], init) for i, s in enumerate(sides)
                                        if s in at})
        self.out_bn = nn.BatchNorm2d(channels[-1])
        self.out_conv = _conv(channels[-1], self.shape[0], 3, gain=1.0)
        if init == "ortho":
            orthogonal_init(self)
        if check_flag("generator.spectral_norm", spectral_norm):  # convs and linear maps; the embedding stays plain
            spectral_norm_convs(self, conditional_norms=True)

    def regularization(self) -> torch.Tensor | None:
        """ortho_reg * the orthogonal penalty (None when off): a term of G's loss."""
        return self.ortho_reg * orthogonal_penalty(self) if self.ortho_reg else None

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and c is None:
            raise ValueError("this generator is class-conditional: call G(z, labels)")
        chunks = z.split(self.chunk, dim=1)
        e = self.shared(c) if self.num_classes else None
        x = self.linear(chunks[0]).view(-1, self.start, 4, 4)
        for i, block in enumerate(self.blocks):
            x = block(x, chunks[i + 1] if e is None else torch.cat([e, chunks[i + 1]], dim=1))
            if str(i) in self.attention:
                x = self.attention[str(i)](x)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(x))))
