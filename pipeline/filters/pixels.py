"""Pixel statistics: black pixels and flat frames (paper supp. §2.1, fine-grained filtering).

- `black_frac`: share of pixels whose grey level is <= black_level, mean over frames (latitude
  weighted). The authors' sample code rejects when > 20% are near-black.
- `flat_std`: grey-level standard deviation within each frame, mean over frames (latitude
  weighted): low visual complexity (uniform colour, fades) scores ≈ 0.
Used on clips, and on the sampled frames of the whole video (prefix `video_`) as a first gate,
because the format and intra-frame measures are meaningless on frames with no content.
"""
from __future__ import annotations

import numpy as np

from ..config import PixelsFilterConfig
from . import add_scores, grey, latitude_weights


def black_frac(g: np.ndarray, black_level: int) -> float:
    """(T, H, W) grey → latitude-weighted share of pixels <= black_level, mean over T."""
    w = latitude_weights(g.shape[1])
    return float(((g <= black_level).mean(axis=2) * w).mean())


def flat_std(g: np.ndarray) -> float:
    """(T, H, W) grey → latitude-weighted per-frame standard deviation, mean over T."""
    w = latitude_weights(g.shape[1])[None, :, None]
    mean = (g * w).mean(axis=(1, 2), keepdims=True)
    return float(np.sqrt(((g - mean) ** 2 * w).mean(axis=(1, 2))).mean())


class PixelScores:
    """Ray Data callable (no model): adds `{prefix}black_frac` and `{prefix}flat_std`."""

    def __init__(self, cfg: PixelsFilterConfig, prefix: str = "", stage: str = "pixels"):
        self.cfg, self.prefix, self.stage = cfg, prefix, stage
        self.names = [f"{prefix}black_frac", f"{prefix}flat_std"]

    def scores(self, frames: np.ndarray) -> dict:
        g = grey(frames)
        return {self.names[0]: black_frac(g, self.cfg.black_level), self.names[1]: flat_std(g)}

    def __call__(self, batch: dict) -> dict:
        return add_scores(batch, self.stage, self.names, lambda i: self.scores(batch["frames"][i]))
