"""Intra-frame scores: are the two halves of each frame copies of each other? (supp. §2.1, step 2)

- `lpips_lr`: LPIPS between the left and right halves. Side-by-side stereo and 180° (dual
  fisheye) videos store two near-identical views next to each other: small LPIPS.
- `lpips_tb`: LPIPS between the top and bottom halves (over-under stereo).
Mean over `num_frames` of the sampled frames. The real `lpips` module (VGG, as the authors' code).

Backbone weights: torchvision's VGG/Alex weights are loaded from the torch hub cache when they are
there (the scores then match the published thresholds: < 0.05 left/right, < 0.3 top/bottom).
Without them (no download here) the backbone is randomly initialised from a fixed seed and a
warning is logged; the scores are still 0 for identical halves and grow with the difference, but
their scale differs, so the thresholds in the config must be calibrated for the backbone in use.
"""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import torch

from ..config import IntraFrameFilterConfig
from . import add_scores

log = logging.getLogger(__name__)

SCORES = ["lpips_lr", "lpips_tb"]
# torchvision's file names of the ImageNet backbones lpips uses
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def backbone_cached(net: str) -> bool:
    name = BACKBONE_FILES.get(net)
    return bool(name) and os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", name))


def load_lpips(net: str = "vgg", seed: int = 0):
    """lpips.LPIPS with the pretrained backbone when cached, else a seeded random one (warned)."""
    import lpips

    pretrained = backbone_cached(net)
    if not pretrained:
        log.warning("LPIPS: no cached %s backbone weights in %s; using a random backbone (seed %d). "
                    "Intra-frame thresholds must be calibrated for it.", net,
                    os.path.join(torch.hub.get_dir(), "checkpoints"), seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = lpips.LPIPS(net=net, pnet_rand=not pretrained, verbose=False)
    return model.eval(), pretrained


def halves(frames: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """(T, H, W, 3) uint8 → left, right (T, size, size, 3) and top, bottom (T, size/2, 2·size, 3)."""
    h, w = frames.shape[1:3]
    rs = lambda f, wh: cv2.resize(f, wh, interpolation=cv2.INTER_AREA)
    left = np.stack([rs(f[:, : w // 2], (size, size)) for f in frames])
    right = np.stack([rs(f[:, w // 2: 2 * (w // 2)], (size, size)) for f in frames])
    top = np.stack([rs(f[: h // 2], (2 * size, size // 2)) for f in frames])
    bottom = np.stack([rs(f[h // 2: 2 * (h // 2)], (2 * size, size // 2)) for f in frames])
    return left, right, top, bottom


def to_lpips_input(x: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) → float (T, 3, H, W) in [-1, 1], as lpips expects."""
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class IntraFrameScores:
    """Ray Data callable: loads LPIPS once, adds lpips_lr and lpips_tb."""

    def __init__(self, cfg: IntraFrameFilterConfig, device: str | None = None):
        torch.set_num_threads(max(1, cfg.threads))
        cv2.setNumThreads(1)
        self.cfg = cfg
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.pretrained = load_lpips(cfg.net, cfg.seed)
        self.model.to(self.device)

    @torch.no_grad()
    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        d = self.model(to_lpips_input(a).to(self.device), to_lpips_input(b).to(self.device))
        return float(d.mean())

    def scores(self, frames: np.ndarray) -> dict:
        pick = np.linspace(0, len(frames) - 1, min(self.cfg.num_frames, len(frames))).round().astype(int)
        left, right, top, bottom = halves(frames[pick], self.cfg.size)
        return dict(lpips_lr=self.distance(left, right), lpips_tb=self.distance(top, bottom))

    def __call__(self, batch: dict) -> dict:
        return add_scores(batch, "intra_frame", SCORES, lambda i: self.scores(batch["frames"][i]))
