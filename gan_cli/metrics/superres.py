"""The super-resolution literature's measurement protocol, as plain functions on torch tensors.

Images are batches N x C x H x W: float in [-1, 1] (G's range) or uint8 in [0, 255].

    crop_to_multiple    trims H and W down to multiples of the scale, keeping the top-left corner
                        (the "modcrop" every SR evaluation script applies to the ground truth first)
    downscale           bicubic, antialiased, by an integer factor: the LR input the protocol derives
                        from the HR image (PIL's BICUBIC resize; see below)
    upscale_bicubic     the same kernel the other way: the bicubic baseline every SR paper reports
    rgb_to_y            ITU-R BT.601 luma as MATLAB's rgb2ycbcr defines it, on the 0..255 scale
    shave               drops `border` pixels on each side (the protocol shaves `scale` pixels)
    psnr_y, ssim_y      per-image PSNR (dB) and SSIM on Y after shaving, both images first quantised to
                        uint8, as the saved images the papers' MATLAB code reads would be

A paper's table reports the mean over the images of these per-image numbers (not the PSNR of the mean
MSE): take `.mean()` of what psnr_y and ssim_y return.

The bicubic kernel. torch's antialiased bicubic path is a port of Pillow's resampler: Keys' cubic with
a = -0.5 (the non-antialiased path uses OpenCV's a = -0.75), stretched by the scale when shrinking, its
weights renormalised where the window leaves the image. On float images it agrees with Pillow's
mode "F" resize to float32 rounding (3e-5 grey levels at most, measured). On uint8 images Pillow resizes in
two passes and rounds and clips to 8 bits in between, so the two differ by up to a grey level or two
(see tests/test_superres_metrics.py for the measured differences). MATLAB's imresize uses the same
kernel and support but mirrors the image at its edges instead of renormalising the weights, so it departs
from these two only within a few pixels of the border; that band is wider than the `scale` pixels the
protocol shaves, so numbers made here can differ slightly from ones made with MATLAB.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from gan_cli import UserError

# MATLAB rgb2ycbcr's luma row, for R, G, B in [0, 1] giving Y in [16, 235]; with R, G, B in [0, 255]:
# Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255. (These are BT.601's 0.299, 0.587, 0.114 scaled by
# 219, the span of video-range luma; the familiar 16 + (65.738 R + 129.057 G + 25.064 B) / 256 is the
# same row times 256/255, rounded to three decimals: the two agree to about 1e-3 of a grey level.)
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0

# PSNR of identical images is infinite; the MSE is clamped here instead so that a mean stays finite. The
# cap it gives, 10 log10(255^2 / 1e-10) = 148.13 dB, lies far above anything a reconstruction reaches:
# greyscale images that differ by one level in one pixel stay below it up to 1e10 pixels. (Colour images
# that differ in chroma only can differ on Y by less; they read as identical, which on Y they nearly are.)
MSE_FLOOR = 1e-10


def _batch(x: torch.Tensor, what: str, any_dtype: bool = False) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(f"{what}: expected a batch of images N x C x H x W, got {shape}")
    if not any_dtype and x.dtype != torch.uint8 and not x.is_floating_point():
        raise UserError(f"{what}: expected float images in [-1, 1] or uint8 images, got {x.dtype}")
    return x


def _scale(scale, what: str) -> int:
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise UserError(f"{what}: scale must be a whole number >= 1, got {scale!r}")
    return int(scale)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8, rounded to the nearest level (the convention of metrics.protocol.to_uint8)."""
    if x.dtype == torch.uint8:
        return x
    return ((x.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def _bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize to `size`: uint8 in -> uint8 out (rounded, like an 8-bit resize),
    float in -> float out, clamped to [-1, 1]."""
    if x.dtype == torch.uint8:
        y = F.interpolate(x.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
        return y.round_().clamp_(0, 255).to(torch.uint8)
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    y = F.interpolate(work, size=size, mode="bicubic", antialias=True, align_corners=False)
    return y.clamp_(-1, 1).to(x.dtype)


def crop_to_multiple(x: torch.Tensor, scale: int) -> torch.Tensor:
    """x with H and W trimmed down to multiples of scale, anchored at the top-left corner: the rows and
    columns dropped are the last ones (MATLAB modcrop's convention, so crops match published numbers)."""
    x, scale = _batch(x, "crop_to_multiple", any_dtype=True), _scale(scale, "crop_to_multiple")
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise UserError(f"crop_to_multiple: a {h}x{w} image has no {scale}x{scale} block to keep")
    return x[..., : h - h % scale, : w - w % scale]


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR image of hr: antialiased bicubic (Keys, a = -0.5) shrinking by scale, as PIL's BICUBIC and
    MATLAB's imresize do. H and W must be multiples of scale. Float in [-1, 1] stays float (clamped to
    [-1, 1], not quantised); uint8 stays uint8 (rounded)."""
    hr, scale = _batch(hr, "downscale"), _scale(scale, "downscale")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise UserError(f"downscale: image size {h}x{w} is not a multiple of scale {scale}; trim it first with "
                        f"crop_to_multiple (to {h - h % scale}x{w - w % scale})")
    return _bicubic(hr, (h // scale, w // scale))


def upscale_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """lr enlarged scale times with the same bicubic kernel as downscale: the papers' "Bicubic" baseline.
    Float stays float (clamped to [-1, 1]), uint8 stays uint8."""
    lr, scale = _batch(lr, "upscale_bicubic"), _scale(scale, "upscale_bicubic")
    h, w = lr.shape[-2:]
    return _bicubic(lr, (h * scale, w * scale))


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma Y, float64 N x 1 x H x W on the 0..255 scale, of float images in [-1, 1] or uint8 images.

    Three channels (RGB): BT.601 video-range luma as MATLAB's rgb2ycbcr defines it,
    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B in [0, 255], so black is 16 and white 235.
    Y is left unrounded, as in the Python ports of the protocol (rgb2ycbcr on a uint8 image rounds it to
    an integer, which lowers a PSNR by 0.01 to 0.05 dB at 29 to 37 dB, measured on bicubic x2..x4
    baselines, and by about 1 dB at 50 dB). One channel: the grey value itself, in [0, 255],
    not squeezed into [16, 235] (what the SR evaluation scripts do with greyscale images).
    No rounding or clamping happens here: psnr_y and ssim_y quantise to uint8 before calling this."""
    x = _batch(x, "rgb_to_y")
    if x.shape[1] not in (1, 3):
        raise UserError(f"rgb_to_y: expected 3 (RGB) or 1 (grey) channels, got {x.shape[1]}")
    v = x.double() if x.dtype == torch.uint8 else (x.double() + 1) * 127.5
    if x.shape[1] == 1:
        return v
    r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
    return Y_OFFSET + (Y_WEIGHTS[0] * r + Y_WEIGHTS[1] * g + Y_WEIGHTS[2] * b) / 255


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    """x without `border` pixels on each of its four sides (H and W shrink by 2 * border)."""
    if x.dim() < 2:
        raise UserError(f"shave: expected images (... x H x W), got shape {tuple(x.shape)}")
    if isinstance(border, bool) or int(border) != border or border < 0:
        raise UserError(f"shave: border must be a whole number >= 0, got {border!r}")
    border = int(border)
    h, w = x.shape[-2:]
    if 2 * border >= min(h, w):
        raise UserError(f"shave: a border of {border} leaves nothing of a {h}x{w} image")
    return x[..., border : h - border, border : w - border] if border else x


def _y_pair(sr: torch.Tensor, hr: torch.Tensor, border: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Y of both images, quantised to uint8 first, then shaved."""
    sr, hr = _batch(sr, what), _batch(hr, what)
    if sr.shape != hr.shape:
        raise UserError(f"{what}: the images differ in shape: {tuple(sr.shape)} against {tuple(hr.shape)}")
    return (shave(rgb_to_y(_to_uint8(sr.detach().cpu())), border),
            shave(rgb_to_y(_to_uint8(hr.detach().cpu())), border))


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, border: int) -> torch.Tensor:
    """Per-image PSNR in dB (float64, N) of sr against hr on Y, `border` pixels shaved off each side:
    10 log10(255^2 / MSE). Float images are quantised to uint8 first (rounded to the nearest level), as
    the saved PNGs the papers' MATLAB scripts read would be. Identical images get the finite cap
    10 log10(255^2 / MSE_FLOOR) = 148.13 dB rather than inf."""
    y_sr, y_hr = _y_pair(sr, hr, border, "psnr_y")
    mse = (y_sr - y_hr).square().flatten(1).mean(1)
    return 10 * torch.log10(255.0 ** 2 / mse.clamp_min(MSE_FLOOR))


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, border: int) -> torch.Tensor:
    """Per-image SSIM (float64, N) of sr against hr on Y, `border` pixels shaved off each side, both images
    quantised to uint8 first as in psnr_y. The settings reproduce Wang et al.'s (2004) MATLAB ssim_index:
    an 11 x 11 Gaussian window of sigma 1.5, population (not sample) covariances, K1 = 0.01, K2 = 0.03,
    the mean over the window positions that lie wholly inside the image, and a data range of 255 (Y's
    scale; Y itself spans only 16..235 but the papers' code uses 255). Without the automatic downsampling
    of Wang's later ssim.m, as the SR papers' code does."""
    from skimage.metrics import structural_similarity

    y_sr, y_hr = _y_pair(sr, hr, border, "ssim_y")
    side = 2 * int(3.5 * 1.5 + 0.5) + 1  # the window scikit-image's Gaussian filter uses: 11
    if min(y_sr.shape[-2:]) < side:
        raise UserError(f"ssim_y: images {y_sr.shape[-2]}x{y_sr.shape[-1]} after shaving are smaller than the "
                        f"{side}x{side} SSIM window")
    values = [structural_similarity(a[0].numpy(), b[0].numpy(), data_range=255.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
              for a, b in zip(y_sr, y_hr)]
    return torch.tensor(np.asarray(values, dtype=np.float64))


def summary(psnr: torch.Tensor, ssim: torch.Tensor) -> dict:
    """The table row: mean PSNR (dB) and mean SSIM over the images, and how many PSNRs sit at the cap
    (pairs identical on Y after quantising and shaving)."""
    cap = 10 * math.log10(255.0 ** 2 / MSE_FLOOR)
    return {"psnr_y": float(psnr.double().mean()), "ssim_y": float(ssim.double().mean()),
            "num_images": int(psnr.numel()), "num_identical": int((psnr >= cap - 1e-9).sum())}

