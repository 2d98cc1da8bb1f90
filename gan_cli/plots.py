"""Pictures a person looks at: image grids and 2-D scatter plots, drawn with PIL alone."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from gan_cli import writes


def image_grid(images: torch.Tensor, nrow: int | None = None) -> np.ndarray:
    """Images in [-1, 1] (N x C x H x W) -> one uint8 H x W x 3 grid, nrow images per row."""
    nrow = nrow or max(1, int(len(images) ** 0.5))
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))
    return grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def scatter(points: torch.Tensor, centres: torch.Tensor | None = None, size: int = 480, title: str = "") -> np.ndarray:
    """2-D points (blue) and the mixture's centres (red crosses) -> a uint8 H x W x 3 plot with a light grid."""
    points = points.detach().float().cpu().numpy()
    # A square view around the centres (or the points), with a margin.
    frame = points if centres is None else centres.detach().float().cpu().numpy()
    lo, hi = frame.min(0), frame.max(0)
    half = max(float((hi - lo).max()) / 2, 0.5) * 1.25
    mid = (lo + hi) / 2
    left, top, plot = 40, 24, size - 56

    def to_px(xy):
        u = (xy[..., 0] - (mid[0] - half)) / (2 * half)
        v = (xy[..., 1] - (mid[1] - half)) / (2 * half)
        return left + u * plot, top + (1 - v) * plot

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    # Grid lines and labels at round coordinates.
    step = 10 ** np.floor(np.log10(half)) if half >= 1 else 0.5
    for t in np.arange(np.ceil((mid[0] - half) / step) * step, mid[0] + half + 1e-9, step):
        x, _ = to_px(np.array([t, 0.0]))
        draw.line([(x, top), (x, top + plot)], fill=(230, 230, 230))
        draw.text((x - 8, top + plot + 4), f"{t:g}", fill=(90, 90, 90))
    for t in np.arange(np.ceil((mid[1] - half) / step) * step, mid[1] + half + 1e-9, step):
        _, y = to_px(np.array([0.0, t]))
        draw.line([(left, y), (left + plot, y)], fill=(230, 230, 230))
        draw.text((4, y - 6), f"{t:g}", fill=(90, 90, 90))
    draw.rectangle([left, top, left + plot, top + plot], outline=(120, 120, 120))
    xs, ys = to_px(points)
    inside = (xs >= left) & (xs <= left + plot) & (ys >= top) & (ys <= top + plot)
    for x, y in zip(xs[inside], ys[inside]):
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(40, 90, 200))
    if centres is not None:
        cx, cy = to_px(centres.detach().float().cpu().numpy())
        for x, y in zip(cx, cy):
            draw.line([(x - 5, y - 5), (x + 5, y + 5)], fill=(220, 30, 30), width=2)
            draw.line([(x - 5, y + 5), (x + 5, y - 5)], fill=(220, 30, 30), width=2)
    outside = int((~inside).sum())
    note = f"{title}  ({outside} of {len(points)} points outside)" if outside else title
    draw.text((left, 6), note, fill=(0, 0, 0))
    return np.asarray(image)


def label_rows(grid: np.ndarray, labels: list[str], margin: int = 44) -> np.ndarray:
    """A white margin on the left of an image grid with one label per row of tiles."""
    height, width = grid.shape[:2]
    image = Image.new("RGB", (width + margin, height), "white")
    image.paste(Image.fromarray(grid), (margin, 0))
    draw = ImageDraw.Draw(image)
    row = height / len(labels)
    for i, label in enumerate(labels):
        draw.text((4, int(row * (i + 0.5)) - 6), label, fill=(0, 0, 0))
    return np.asarray(image)


def save_png(array: np.ndarray, path: Path) -> None:
    writes.save_image(Image.fromarray(array), path)
