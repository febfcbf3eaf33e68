"""Inter-frame score: does anything change between frames? (paper supp. §2.1, step 3)

- `interframe_var`: per-pixel grey-level variance across the randomly sampled frames, averaged
  over the image with latitude weights (cos φ). A poster or a still scene scores ≈ 0 (only coding
  noise); the authors' sample code keeps videos with variance > 500 at 5 sampled positions.
"""
from __future__ import annotations

import numpy as np

from . import add_scores, grey, latitude_weights

SCORES = ["interframe_var"]


def interframe_var(frames: np.ndarray) -> float:
    """(T, H, W, 3) uint8 → latitude-weighted mean over pixels of the variance over T."""
    var = grey(frames).var(axis=0)  # (H, W)
    return float((var.mean(axis=1) * latitude_weights(var.shape[0])).mean())


def inter_frame_scores(batch: dict) -> dict:
    """Ray Data task (stateless): adds interframe_var."""
    return add_scores(batch, "inter_frame", SCORES, lambda i: {"interframe_var": interframe_var(batch["frames"][i])})
