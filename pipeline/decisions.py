"""Decisions: one row per source video and one per clip, written per video, atomically.

A run directory keeps `decisions/parts/<video_id>.parquet`: a video's part is written (tmp file +
rename) only once the video is finished — rejected or failed at the video level, or every one of
its accepted clips is inside a *complete* shard. The parts are the run's progress record: a
restarted run skips the videos that have a part and redoes the others. `decisions.parquet` is the
concatenation of the parts, rewritten at the end of a run.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

# identity / bookkeeping columns first; scores and timings follow in the order they appear
ID_COLUMNS = ["video_id", "clip_index", "key", "status", "stage", "reason", "detail", "source", "category",
              "likes", "width", "height", "fps", "duration_s", "start_s", "end_s", "clip_fps",
              "clip_num_frames", "shard", "error", "error_stage", "error_reason"]


VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


def check_id(video_id) -> str:
    """A video id safe to build a file name from (ids come back from files a user may edit)."""
    if not isinstance(video_id, str) or not VIDEO_ID.fullmatch(video_id):
        raise ValueError(f"video id {str(video_id)[:80]!r} is not [A-Za-z0-9_-]{{1,200}}: refusing to build a path from it")
    return video_id


def parts_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "decisions" / "parts"


def retry_dir(run_dir: str | Path) -> Path:
    """Markers of the videos whose part records a transient failure: the next run redoes them."""
    return Path(run_dir) / "decisions" / "retry"


def done_videos(run_dir: str | Path) -> set[str]:
    d = parts_dir(run_dir)
    done = {p.stem for p in d.glob("*.parquet")} if d.is_dir() else set()
    r = retry_dir(run_dir)
    return done - ({p.name for p in r.iterdir()} if r.is_dir() else set())


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if "clip_index" in df:
        df["clip_index"] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)
                                     for v in df["clip_index"]], dtype="Int64")
    for col in ("category", "key", "shard", "detail", "reason", "stage", "error", "error_stage",
                "error_reason", "source"):
        if col in df:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def write_part(run_dir: str | Path, video_id: str, rows: list[dict], retry: bool = False) -> Path:
    """Atomically write one finished video's rows (its video row first, then its clips); `retry`
    marks a transient failure that the next run redoes."""
    check_id(video_id)
    marker = retry_dir(run_dir) / video_id
    if retry:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    d = parts_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"{video_id}.parquet"
    tmp = d / f".{video_id}.parquet.tmp"
    _frame(rows).to_parquet(tmp, index=False)
    os.replace(tmp, final)
    if not retry:
        marker.unlink(missing_ok=True)
    return final


def read_parts(run_dir: str | Path) -> pd.DataFrame:
    d = parts_dir(run_dir)
    files = sorted(d.glob("*.parquet")) if d.is_dir() else []
    if not files:
        return pd.DataFrame(columns=ID_COLUMNS)
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in a stable order (ids, then scores sorted, then timings); rows by video, clip."""
    ids = [c for c in ID_COLUMNS if c in df]
    timings = sorted(c for c in df if c.startswith("t_"))
    rest = sorted(c for c in df if c not in ids and c not in timings)
    df = df[ids + rest + timings]
    order = df["clip_index"].fillna(-1).astype(int) if "clip_index" in df else 0
    return df.assign(_o=order).sort_values(["video_id", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def write_decisions(run_dir: str | Path, df: pd.DataFrame | None = None) -> Path:
    """decisions.parquet from the parts (or from df), written atomically."""
    df = read_parts(run_dir) if df is None else df
    path = Path(run_dir) / "decisions.parquet"
    tmp = path.with_name(".decisions.parquet.tmp")
    ordered(df).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def video_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Final verdict per source video: the video row when it was rejected / failed there; else
    accepted when any clip was accepted; else the first clip rejection (or error)."""
    out = []
    for vid, g in df.groupby("video_id", sort=True):
        video = g[g["clip_index"].isna()]
        clips = g[g["clip_index"].notna()].sort_values("clip_index")
        v = video.iloc[0] if len(video) else None
        if v is not None and v["status"] != "accepted":
            out.append((vid, v["status"], v["stage"], v["reason"], 0, len(clips)))
            continue
        n_acc = int((clips["status"] == "accepted").sum())
        if n_acc:
            out.append((vid, "accepted", "", "", n_acc, len(clips)))
        elif len(clips):
            rej = clips[clips["status"] == "rejected"]
            first = rej.iloc[0] if len(rej) else clips.iloc[0]
            out.append((vid, first["status"], first["stage"], first["reason"], 0, len(clips)))
        else:
            out.append((vid, "rejected", "clips", "too_short", 0, 0))
    return pd.DataFrame(out, columns=["video_id", "status", "stage", "reason", "accepted_clips", "clips"])
