"""Format scores: is this really one equirectangular 360° video? (paper supp. §2.1, step 1)

On the sampled frames (grey, analysis size) of each video:
- `aspect_ratio`: source width / height (2.0 for equirect; 16:9-encoded equirects exist, so the
  rule on it is loose).
- `seam_ratio`: how much the ±180° seam breaks continuity: mean |first column − last column| over
  the mean |column j − column j+1| next to the seam, as the authors' sample code checks the column
  that was the seam after rolling by W/2. ≈ 1 for a true equirect, ≫ 1 for a perspective frame.
- `hline_mid`: share of the width covered by near-horizontal Hough lines within `mid_band` of
  mid-height: where the two halves of a top-bottom (over-under) layout meet.
- `mid_rows_detail`: horizontal detail (mean |∂x|) of the rows next to mid-height over the median
  row. In a top-bottom layout these rows are the nadir of one eye and the zenith of the other (one
  point each, smeared over the width: ≪ 1); in a mono equirect they are the equator, the most
  detailed rows (≳ 1). The format rule needs both, because a real horizon is a mid-height line too.
- `vline_border`: share of the height covered by a near-vertical Hough line within `border_margin`
  of the left or right edge whose outer strip is a flat bar (pillarboxed perspective videos,
  posters).
Every score is the median over the sampled frames.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import FormatFilterConfig
from . import add_scores, grey

SCORES = ["aspect_ratio", "seam_ratio", "hline_mid", "mid_rows_detail", "vline_border"]


def seam_ratio(g: np.ndarray, k: int | None = None) -> float:
    """(H, W) grey → mean |I[:, 0] − I[:, W−1]| over the mean |I[:, j] − I[:, j+1]| of the k column
    pairs next to each side of the seam (+1 grey level each, so flat frames give 1, not 0/0).

    The comparison is local: sharp detail right at the seam (a meridian line that resizing blurs
    into one edge column only) raises both terms alike, while unrelated left / right edges (a
    perspective frame) raise only the seam term.
    """
    k = k or max(2, g.shape[1] // 128)
    seam = np.abs(g[:, 0] - g[:, -1]).mean()
    d = np.abs(np.diff(g, axis=1)).mean(axis=0)
    local = np.concatenate([d[:k], d[-k:]]).mean()
    return float((seam + 1.0) / (local + 1.0))


def mid_rows_detail(g: np.ndarray, band: float) -> float:
    """Horizontal detail of the rows within `band`·H of mid-height over that of the median row."""
    h = g.shape[0]
    k = max(1, int(round(band * h)))
    detail = np.abs(np.diff(g, axis=1)).mean(axis=1)  # (H,)
    mid = detail[h // 2 - k: h // 2 + k].mean()
    return float((mid + 0.5) / (np.median(detail) + 0.5))


def hough_segments(g: np.ndarray, cfg: FormatFilterConfig) -> np.ndarray:
    """Line segments (N, 4) x0, y0, x1, y1 from Canny edges + probabilistic Hough."""
    h, w = g.shape
    edges = cv2.Canny(np.clip(g, 0, 255).astype(np.uint8), cfg.canny_low, cfg.canny_high)
    short = min(h, w)
    lines = cv2.HoughLinesP(edges, 1, np.pi / 360, threshold=max(8, short // 8),
                            minLineLength=max(8, short // 8), maxLineGap=max(2, short // 64))
    return np.zeros((0, 4), np.int32) if lines is None else lines.reshape(-1, 4).astype(np.int64)


def _angle_deg(seg: np.ndarray) -> np.ndarray:
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    return np.degrees(np.arctan2(np.abs(dy), np.abs(dx)))  # 0 = horizontal, 90 = vertical


def hline_mid(g: np.ndarray, seg: np.ndarray, cfg: FormatFilterConfig) -> float:
    """Share of columns covered by near-horizontal segments lying within mid_band·H of H/2."""
    h, w = g.shape
    band = max(1.0, cfg.mid_band * h)
    flat = seg[_angle_deg(seg) <= cfg.max_angle_deg]
    near = flat[(np.abs(flat[:, 1] - h / 2) <= band) & (np.abs(flat[:, 3] - h / 2) <= band)]
    covered = np.zeros(w, bool)
    for x0, _, x1, _ in near:
        covered[min(x0, x1): max(x0, x1) + 1] = True
    return float(covered.mean())


def vline_border(g: np.ndarray, seg: np.ndarray, cfg: FormatFilterConfig) -> float:
    """Largest share of rows covered by a near-vertical segment group near a side edge whose outer
    strip (between it and that edge) is flat, i.e. the inner edge of a bar."""
    h, w = g.shape
    margin = cfg.border_margin * w
    vert = seg[_angle_deg(seg) >= 90.0 - cfg.max_angle_deg]
    best = 0.0
    for x in np.unique(np.round((vert[:, 0] + vert[:, 2]) / 2.0).astype(int)):
        left, right = x <= margin, x >= w - 1 - margin
        if not (left or right):
            continue
        strip = g[:, : max(0, x - 1)] if left else g[:, x + 2:]
        if strip.shape[1] < 2 or strip.std() > cfg.bar_max_std:
            continue
        group = vert[np.abs((vert[:, 0] + vert[:, 2]) / 2.0 - x) <= 1.5]
        covered = np.zeros(h, bool)
        for _, y0, _, y1 in group:
            covered[min(y0, y1): max(y0, y1) + 1] = True
        best = max(best, float(covered.mean()))
    return best


def format_scores(frames: np.ndarray, width: int, height: int, cfg: FormatFilterConfig) -> dict:
    """All format scores of one video's sampled frames (T, H, W, 3) uint8 and its source size."""
    per_frame = []
    for g in grey(frames):
        seg = hough_segments(g, cfg)
        per_frame.append((seam_ratio(g), hline_mid(g, seg, cfg), mid_rows_detail(g, cfg.mid_band),
                          vline_border(g, seg, cfg)))
    med = np.median(np.asarray(per_frame), axis=0)
    return dict(aspect_ratio=float(width) / float(height), seam_ratio=med[0], hline_mid=med[1],
                mid_rows_detail=med[2], vline_border=med[3])


class FormatScores:
    """Ray Data callable: adds the format score columns (no model to load)."""

    def __init__(self, cfg: FormatFilterConfig):
        self.cfg = cfg
        cv2.setNumThreads(1)

    def __call__(self, batch: dict) -> dict:
        return add_scores(batch, "format", SCORES, lambda i: format_scores(
            batch["frames"][i], int(batch["width"][i]), int(batch["height"][i]), self.cfg))
