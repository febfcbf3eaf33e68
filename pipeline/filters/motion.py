"""Motion score: how much does the scene move? (paper supp. §2.1: optical flow for low motion)

- `motion_deg_s`: Farnebäck optical flow (OpenCV) between consecutive analysis frames (sampled at
  `clips.analysis_fps`), on the equirect resized to `width`, circularly padded so flow is
  continuous across the ±180° seam. Each flow vector is turned into an angle on the sphere
  (Δlon·cos φ, Δlat), rows are weighted by cos φ (solid angle), and the mean is expressed in
  degrees per second, so the score does not depend on the analysis size or frame rate.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import MotionFilterConfig
from . import add_scores, grey

SCORES = ["motion_deg_s"]


def angular_flow_deg(flow: np.ndarray) -> np.ndarray:
    """(H, W, 2) pixel flow of an equirect (W = 2H) → (H, W) angular displacement in degrees."""
    h, w = flow.shape[:2]
    deg_per_px = 360.0 / w
    lat = (0.5 - (np.arange(h) + 0.5) / h) * np.pi
    dx = flow[..., 0] * np.cos(lat)[:, None]
    return deg_per_px * np.sqrt(dx ** 2 + flow[..., 1] ** 2)


def motion_deg_s(frames: np.ndarray, fps: float, cfg: MotionFilterConfig) -> float:
    """(T, H, W, 3) uint8 frames sampled at fps → mean angular flow speed, degrees per second."""
    if len(frames) < 2:
        raise ValueError(f"motion needs >= 2 frames, got {len(frames)}")
    w = cfg.width
    h = w // 2
    pad = int(round(cfg.wrap_pad * w))
    g = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in grey(frames).astype(np.uint8)]
    g = [np.concatenate([f[:, -pad:], f, f[:, :pad]], axis=1) if pad else f for f in g]
    weights = np.cos((0.5 - (np.arange(h) + 0.5) / h) * np.pi)
    speeds = []
    for a, b in zip(g[:-1], g[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, cfg.pyr_scale, cfg.levels, cfg.winsize,
                                            cfg.iterations, cfg.poly_n, cfg.poly_sigma, 0)
        ang = angular_flow_deg(flow[:, pad: pad + w])
        speeds.append((ang.mean(axis=1) * weights).sum() / weights.sum())
    return float(np.mean(speeds) * fps)


class MotionScores:
    """Ray Data callable (no model: flow runs as tasks): adds motion_deg_s."""

    def __init__(self, cfg: MotionFilterConfig):
        self.cfg = cfg
        cv2.setNumThreads(1)

    def __call__(self, batch: dict) -> dict:
        return add_scores(batch, "motion", SCORES, lambda i: {"motion_deg_s": motion_deg_s(
            batch["frames"][i], float(batch["analysis_fps"][i]), self.cfg)})
