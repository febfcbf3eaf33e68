"""Frames as every part of `model` passes them around: pixel conversions, resizing, the
perspective size that matches a panorama's pixel density, and the mask outline drawn on previews.

Training pairs (`model.data`), the trainer's validation samples (`model.train`), generation
(`model.generate`) and the demo use these; none of them is about training pairs, so they live here
rather than in `model.data`. They stay in `model/` rather than below it (DESIGN.md's layers):
`pipeline/` uses none of them. It has two one-line conversions of its own, `synthetic.to_uint8`
(from [0, 1] floats, not these [−1, 1] tensors) and the LPIPS filter's uint8 → [−1, 1]
(`to_signed_unit`'s arithmetic); sharing that one line would make `shards/` import torch for pixels
(today it only asks torch.distributed for the rank, lazily).

Layouts: numpy frames are (T,H,W,3) uint8; torch pixels are (…,C,H,W), uint8 or float in [−1, 1].
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


# ----------------------------------------------------------------------------- pixel conversions
def to_signed_unit(frames: np.ndarray) -> torch.Tensor:
    """(T,H,W,C) uint8 → (T,C,H,W) float32 in [−1, 1] (contiguous)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    out = torch.empty(x.shape, dtype=torch.float32)  # one allocation: the layout change and the
    out.copy_(x)                                     # cast are a single pass, the scaling in place
    return out.mul_(1 / 127.5).sub_(1.0)


def channels_first(frames: np.ndarray) -> torch.Tensor:
    """(T,H,W,C) uint8 → (T,C,H,W) uint8 (contiguous): how pixels cross process boundaries,
    a quarter of float32; `signed_unit` makes the [−1, 1] floats where they are used."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


def signed_unit(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels (any layout) → float in [−1, 1], the inverse of `to_uint8`'s rounding; float
    input is returned as it is (cast to dtype)."""
    if x.dtype == torch.uint8:
        return x.to(dtype).mul_(1 / 127.5).sub_(1.0)
    return x.to(dtype)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(…,C,H,W) float in [−1,1] (or uint8) → (…,H,W,C) uint8 (the inverse of `to_signed_unit`)."""
    if x.dtype == torch.uint8:
        return x.detach().cpu().movedim(-3, -1).contiguous().numpy()
    return ((x.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).numpy()


# -------------------------------------------------------------------------------------- sizes
def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize (T,H,W,3) uint8 frames to hw: area filter when shrinking, bilinear when enlarging."""
    import cv2

    h, w = hw
    if frames.shape[1:3] == (h, w):
        return frames
    shrink = h * w < frames.shape[1] * frames.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def native_render_hw(fov_deg: Sequence[float], equi_hw: tuple[int, int], scale: float = 1.0) -> tuple[int, int]:
    """Perspective size whose pixels at the view centre are as dense as the equirect's (× scale).

    A pinhole image of width w spans 2·tan(h/2) focal lengths, so w pixels over that match the
    equirect's W/2π pixels per radian when w = W/2π · 2·tan(h/2).
    """
    h, v = np.radians(np.asarray(fov_deg, dtype=np.float64))
    H, W = equi_hw
    pw = W / (2 * math.pi) * 2 * math.tan(h / 2) * scale
    ph = H / math.pi * 2 * math.tan(v / 2) * scale
    return max(8, int(math.ceil(ph))), max(8, int(math.ceil(pw)))


# ------------------------------------------------------------------------------- mask outline
OUTLINE_RGB = (255, 40, 40)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a (H,W) bool equirect mask; wraps at the seam so it draws no false edge there."""
    m = mask.astype(bool)
    inner = m.copy()
    for axis, shift in ((1, 1), (1, -1)):
        inner &= np.roll(m, shift, axis=axis)  # longitude wraps
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    edge = m & ~inner
    return edge | np.roll(edge, 1, axis=1) | np.roll(edge, -1, axis=1)  # 2 px wide so it shows


def outlined(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(T,H,W,3) uint8 frames with each frame's (T,H,W) mask boundary drawn in OUTLINE_RGB (a copy)."""
    out = frames.copy()
    for t in range(len(out)):
        out[t][mask_outline(mask[t])] = OUTLINE_RGB
    return out
