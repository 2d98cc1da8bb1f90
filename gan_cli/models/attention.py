"""SAGAN's self-attention block (Zhang et al. 2019, "Self-Attention Generative Adversarial Networks"), as
BigGAN uses it: every position of a feature map gathers features from every other position.

    q = W_q x (C/8 channels), k = maxpool2(W_k x) (C/8), v = maxpool2(W_v x) (C/2)     1x1 convs
    attention = softmax over the pooled positions of q^T k
    out = x + gamma * W_o (v attention^T)                                              W_o: 1x1 conv C/2 -> C

The four 1x1 convs are spectrally normalised; gamma starts at 0, so a fresh block passes x through
unchanged and the net learns how much of the attention to mix in. The key and value maps are pooled 2x2
(a quarter of the positions), which SAGAN's and BigGAN's code do to save memory.

`attention_at` of the ResNet nets lists the feature-map sides that get a block (after the residual block
that produces that side): numbers (16, 32) or fractions of the image side ("1/2": 16 for 32-pixel images,
32 for 64-pixel ones), so one preset suits every resolution.
"""

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import UserError


class SelfAttention(nn.Module):
    """x (N, C, H, W) -> x + gamma * attention(x), same shape. C must be at least 8; H and W even."""

    def __init__(self, channels: int, init: str = "xavier"):
        super().__init__()
        if channels < 8:
            raise UserError(f"a self-attention block needs at least 8 channels, its feature map has {channels}")

        def conv(cin, cout):
            layer = nn.Conv2d(cin, cout, 1, bias=False)
            (nn.init.orthogonal_ if init == "ortho" else nn.init.xavier_uniform_)(layer.weight)
            return nn.utils.parametrizations.spectral_norm(layer)

        self.query, self.key = conv(channels, channels // 8), conv(channels, channels // 8)
        self.value, self.out = conv(channels, channels // 2), conv(channels // 2, channels)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2)                                   # (N, C/8, HW)
        k = F.max_pool2d(self.key(x), 2).flatten(2)                    # (N, C/8, HW/4)
        v = F.max_pool2d(self.value(x), 2).flatten(2)                  # (N, C/2, HW/4)
        attention = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (N, HW, HW/4)
        gathered = torch.bmm(v, attention.transpose(1, 2)).view(n, c // 2, h, w)
        return x + self.gamma * self.out(gathered)


def attention_sides(spec, image_side: int, sides, who: str) -> set[int]:
    """The feature-map sides of `attention_at` (numbers, or "1/k" of the image side), checked against the
    sides the net's blocks produce (`sides`)."""
    if spec is None:
        return set()
    if isinstance(spec, (int, str)) and not isinstance(spec, bool):
        spec = [spec]
    chosen = set()
    for entry in spec:
        side = entry
        if isinstance(entry, str):
            parts = entry.split("/")
            if len(parts) != 2 or parts[0].strip() != "1" or not parts[1].strip().isdigit() or \
                    int(parts[1]) < 1:
                raise UserError(f"{who}.attention_at takes feature-map sides (16, 32) or fractions of the image "
                                f"side ('1/2', '1/4'), got {entry!r}")
            side = image_side // int(parts[1])
        if not isinstance(side, int) or isinstance(side, bool) or side not in sides:
            raise UserError(f"{who}.attention_at: {entry!r} is no side of this net's feature maps for "
                            f"{image_side}-pixel images; choose from {', '.join(map(str, sorted(set(sides))))}")
        chosen.add(side)
    return chosen
