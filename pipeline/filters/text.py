"""Text score: is there text on the clip? (paper supp. §2.1: text detection on unwrapped views)

- `text_area_frac`: the largest share of one view's area covered by detected text boxes, over six
  90° perspective views (front, right, back, left, up, down) unwrapped with `geometry` and
  `num_frames` frames of the clip. The largest view, not the mean of six: a title or subtitle laid
  over the picture fills a large part of the one view that holds it (a title covering 20% of one
  view scored 0.033 as a mean and passed a 0.05 threshold), while text belonging to the scene (shop
  signs, street names) is small and spread over the views. Only boxes shaped like text lines count
  (short side <= `max_line_frac` of the view). Detection only (rapidocr's shipped PP-OCR det model,
  onnxruntime; its CUDA provider with `device: cuda`): recognising the characters is not needed.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import TextFilterConfig
from . import add_scores

SCORES = ["text_area_frac"]
VIEWS_YAW_PITCH = [(0.0, 0.0), (90.0, 0.0), (180.0, 0.0), (-90.0, 0.0), (0.0, 90.0), (0.0, -90.0)]


def unwrap_views(equi: np.ndarray, size: int, fov_deg: float) -> np.ndarray:
    """(H, W, 3) uint8 equirect → (6, size, size, 3) uint8 perspective views (cube faces at 90°)."""
    import geometry  # torch: imported by the text actor, not by every task that imports this module

    yaw = np.array([v[0] for v in VIEWS_YAW_PITCH])
    pitch = np.array([v[1] for v in VIEWS_YAW_PITCH])
    stack = np.repeat(equi[None], len(VIEWS_YAW_PITCH), axis=0)
    views = geometry.equirect_to_perspective(stack, fov_deg, yaw=yaw, pitch=pitch, roll=np.zeros(6),
                                             out_hw=(size, size))
    return np.asarray(views).astype(np.uint8)


def text_lines(boxes, size: int, max_line_frac: float) -> list[np.ndarray]:
    """The boxes (N, 4, 2) shaped like lines of text: short side <= max_line_frac · size.

    On smooth, textured views (sky, paving) the detector sometimes returns one box around the
    whole view; no line of text is that tall, so such boxes are not counted.
    """
    if boxes is None or len(boxes) == 0:
        return []
    keep = []
    for b in np.asarray(boxes, np.float32):
        (_, _), (w, h), _ = cv2.minAreaRect(b)
        if min(w, h) <= max_line_frac * size:
            keep.append(b)
    return keep


def box_area_frac(boxes, size: int) -> float:
    """Union area of quadrilateral boxes (N, 4, 2) inside a size × size view, as a share of it."""
    if boxes is None or len(boxes) == 0:
        return 0.0
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(b)).astype(np.int32) for b in boxes], 1)
    return float(mask.mean())


def text_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """The `num_frames` frames of a clip that the text score reads, evenly spaced. Picking them
    again from what this returns gives the same frames, so the pipeline cuts the clip's frames down
    to these before its text actor (pipeline.curate.keep_text_frames) without changing the score."""
    return frames[np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)]


class TextScores:
    """Ray Data callable: loads the rapidocr detector once, adds text_area_frac."""

    def __init__(self, cfg: TextFilterConfig):
        import geometry  # noqa: F401 - torch, for unwrap_views: loaded with the model, not on the first clip
        from rapidocr import RapidOCR

        cv2.setNumThreads(1)
        self.cfg = cfg
        self.engine = RapidOCR(params={
            "Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "error",
            "Det.limit_side_len": cfg.view_size, "Det.limit_type": "max", "Det.box_thresh": cfg.box_thresh,
            "EngineConfig.onnxruntime.intra_op_num_threads": cfg.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": cfg.device == "cuda",
        })

    def frame_text_frac(self, equi: np.ndarray) -> float:
        views = unwrap_views(equi, self.cfg.view_size, self.cfg.fov_deg)
        fracs = []
        for view in views:
            out = self.engine(np.ascontiguousarray(view[..., ::-1]), use_det=True, use_cls=False, use_rec=False)
            lines = text_lines(getattr(out, "boxes", None), self.cfg.view_size, self.cfg.max_line_frac)
            fracs.append(box_area_frac(lines, self.cfg.view_size))
        return float(np.max(fracs))

    def scores(self, frames: np.ndarray) -> dict:
        return {"text_area_frac": max(self.frame_text_frac(f) for f in text_frames(frames, self.cfg.num_frames))}

    def __call__(self, batch: dict) -> dict:
        return add_scores(batch, "text", SCORES, lambda i: self.scores(batch["frames"][i]))
