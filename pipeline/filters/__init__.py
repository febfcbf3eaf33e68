"""Filters: small callable classes that add score columns to a Ray Data batch, never verdicts.

A batch is a dict of numpy arrays (Ray Data's "numpy" format), one entry per row. Rows whose
`error` is set (a failed download / decode) are passed through with NaN scores. Every filter also
records the seconds it spent on each row in `t_<stage>`, which the report turns into throughput.
Thresholds are applied elsewhere, in one place: `pipeline.thresholds`.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np

FRAMES = "frames"


def row_ok(batch: Mapping[str, np.ndarray], i: int, column: str = FRAMES) -> bool:
    """True when row i has no error and a non-empty array in `column`."""
    err = batch.get("error")
    if err is not None and isinstance(err[i], str) and err[i]:
        return False
    frames = batch.get(column)
    return frames is not None and frames[i] is not None and np.asarray(frames[i]).size > 0


def add_scores(batch: dict, stage: str, names: list[str], score_fn: Callable[[int], dict],
               column: str = FRAMES) -> dict:
    """Run score_fn(row_index) → {name: value} on every usable row and add the columns.

    A row where score_fn raises becomes an error row of this stage (its message kept), so one bad
    clip never stops a run.
    """
    n = len(next(iter(batch.values())))
    cols = {name: np.full(n, np.nan, np.float64) for name in names}
    seconds = np.zeros(n, np.float64)
    errors = np.array(batch["error"], dtype=object) if "error" in batch else np.full(n, "", dtype=object)
    err_stage = np.array(batch.get("error_stage", np.full(n, "", dtype=object)), dtype=object)
    err_reason = np.array(batch.get("error_reason", np.full(n, "", dtype=object)), dtype=object)
    for i in range(n):
        if not row_ok(batch, i, column):
            continue
        t0 = time.perf_counter()
        try:
            values = score_fn(i)
        except Exception as e:  # noqa: BLE001 - any failure of one row becomes that row's error
            errors[i], err_stage[i], err_reason[i] = f"{stage}: {type(e).__name__}: {e}", stage, f"{stage}_failed"
            continue
        finally:
            seconds[i] = time.perf_counter() - t0
        for name in names:
            cols[name][i] = float(values[name])
    batch.update(cols)
    batch[f"t_{stage}"] = seconds
    batch["error"], batch["error_stage"], batch["error_reason"] = errors, err_stage, err_reason
    return batch


def grey(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB → (T, H, W) float32 luma (BT.601), 0..255."""
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def latitude_weights(height: int) -> np.ndarray:
    """cos(latitude) of each equirect row (pixel centres), normalised to mean 1: the solid angle a
    row covers, so poles (stretched across the whole width) do not dominate averages."""
    lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi
    w = np.cos(lat)
    return (w / w.mean()).astype(np.float32)
