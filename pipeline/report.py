"""The run report (report/ in a run directory), made from decisions.parquet alone.

- funnel.csv: rows per level (video / clip), status, stage and reason; videos.csv: final verdict
  per source video (pipeline.decisions.video_verdicts);
- throughput.csv: per stage, rows, summed compute seconds (`t_<stage>` columns), seconds of source
  video they covered, and throughput = source seconds / compute second (one worker);
- hist_<score>.png: histogram of every score with its threshold(s) marked;
- summary.md: all of the above as text, plus the wall time of the run when known.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .decisions import ID_COLUMNS, video_verdicts
from .thresholds import threshold_marks

VIDEO_LEVEL_STAGES = ("download", "sample", "format", "intra_frame", "inter_frame", "video_pixels", "cuts")  # cuts: once per video


def funnel(df: pd.DataFrame) -> pd.DataFrame:
    level = np.where(df["clip_index"].isna(), "video", "clip")
    f = (df.assign(level=level).fillna({"stage": "", "reason": ""})
         .groupby(["level", "status", "stage", "reason"], sort=False).size().rename("count").reset_index())
    return f.sort_values(["level", "status", "stage", "reason"], ascending=[False, True, True, True])


def _numbers(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


def throughput(df: pd.DataFrame, wall: Mapping[str, float] | None = None) -> pd.DataFrame:
    rows = []
    is_video = df["clip_index"].isna()
    for col in sorted(c for c in df if c.startswith("t_")):
        stage = col[2:]
        sub = df[is_video] if stage in VIDEO_LEVEL_STAGES else df[~is_video]
        t = _numbers(sub, col).fillna(0.0)
        done = t > 0
        if stage in VIDEO_LEVEL_STAGES:
            src = _numbers(sub, "duration_s").fillna(0.0)
        else:  # a run whose every video failed early has no clip columns at all
            src = (_numbers(sub, "end_s") - _numbers(sub, "start_s")).fillna(0.0)
        compute = float(t[done].sum())
        source = float(src[done].sum())
        rows.append(dict(stage=stage, rows=int(done.sum()), compute_s=round(compute, 3), source_s=round(source, 2),
                         source_s_per_compute_s=round(source / compute, 2) if compute > 0 else np.nan))
    out = pd.DataFrame(rows, columns=["stage", "rows", "compute_s", "source_s", "source_s_per_compute_s"])
    if wall:
        out = pd.concat([out, pd.DataFrame([dict(stage=f"wall:{k}", compute_s=round(v, 2)) for k, v in wall.items()])],
                        ignore_index=True)
    return out


def score_columns(df: pd.DataFrame) -> list[str]:
    skip = set(ID_COLUMNS) | {"declared_duration_s", "num_frames", "num_clips", "analysis_fps", "local_path"}
    out = []
    for c in df:
        if c in skip or c.startswith("t_") or df[c].dtype == bool:
            continue
        values = pd.to_numeric(df[c], errors="coerce")  # parts with only nulls make object columns
        if np.isfinite(values.to_numpy(float)).any():
            out.append(c)
    return out


def histogram(values: np.ndarray, score: str, marks: list[tuple[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    vals = values[np.isfinite(values)]
    ax.hist(vals, bins=min(40, max(5, len(vals))), color="#4477aa")
    for label, limit in marks:
        ax.axvline(limit, color="#cc3311", linestyle="--", linewidth=1.5)
        ax.text(limit, ax.get_ylim()[1] * 0.95, f" {label}: {limit:g}", color="#cc3311", fontsize=7,
                rotation=90, va="top")
    ax.set_title(f"{score} (n = {len(vals)})", fontsize=10)
    ax.set_xlabel(score)
    ax.set_ylabel("rows")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


WRITTEN = ".written.json"  # the histograms the last report wrote: the only files a report deletes


def write_report(run_dir: str | Path, df: pd.DataFrame, thresholds: Mapping, wall: Mapping | None = None,
                 extra: Mapping | None = None) -> Path:
    out = Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    try:
        previous = json.loads((out / WRITTEN).read_text())
    except (OSError, ValueError):
        previous = []
    for name in previous if isinstance(previous, list) else []:
        if isinstance(name, str) and re.fullmatch(r"hist_[A-Za-z0-9_]+\.png", name):
            (out / name).unlink(missing_ok=True)
    written = []
    f = funnel(df)
    f.to_csv(out / "funnel.csv", index=False)
    verdicts = video_verdicts(df) if len(df) else pd.DataFrame()
    verdicts.to_csv(out / "videos.csv", index=False)
    tp = throughput(df, wall)
    tp.to_csv(out / "throughput.csv", index=False)
    marks = threshold_marks(thresholds)
    video_rows = df["clip_index"].isna()
    for score in score_columns(df):
        values = pd.to_numeric(df[score], errors="coerce")
        # a video-level score is copied onto its clips: count it once per video
        level = video_rows if values[video_rows].notna().any() else ~video_rows
        if re.fullmatch(r"[A-Za-z0-9_]+", score):
            histogram(values[level].to_numpy(float), score, marks.get(score, []), out / f"hist_{score}.png")
            written.append(f"hist_{score}.png")
    (out / WRITTEN).write_text(json.dumps(written))
    lines = ["# Curation report", "", f"run: `{Path(run_dir).resolve()}`", ""]
    if len(verdicts):
        counts = verdicts.groupby(["status", "stage", "reason"], dropna=False).size().rename("videos").reset_index()
        lines += ["## Videos (final verdict)", "", counts.to_markdown(index=False) if _has_tabulate() else counts.to_string(index=False), ""]
    lines += ["## Funnel (decisions rows)", "", f.to_string(index=False), "", "## Throughput per stage", "",
              tp.to_string(index=False), ""]
    (out / "summary.md").write_text("\n".join(lines))
    summary = summarize(df)
    if extra:
        lines += ["## Manifest", ""] + [f"- {k}: {v}" for k, v in extra.items()] + [""]
        (out / "summary.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps(dict(summary, **dict(extra or {}), wall_s=dict(wall or {})), indent=2))
    return out


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


def summarize(df: pd.DataFrame) -> dict:
    if not len(df):
        return dict(videos=0, videos_accepted=0, videos_rejected=0, videos_error=0, clips=0, clips_accepted=0)
    v = video_verdicts(df)
    clips = df[df["clip_index"].notna()]
    return dict(videos=int(len(v)), videos_accepted=int((v["status"] == "accepted").sum()),
                videos_rejected=int((v["status"] == "rejected").sum()), videos_error=int((v["status"] == "error").sum()),
                clips=int(len(clips)), clips_accepted=int((clips["status"] == "accepted").sum()))


def one_line(summary: dict, wall_s: float | None = None) -> str:
    s = (f"curate: {summary['videos']} videos → {summary['videos_accepted']} accepted, "
         f"{summary['videos_rejected']} rejected, {summary['videos_error']} errors; "
         f"{summary['clips_accepted']}/{summary['clips']} clips accepted")
    return s + (f" in {wall_s:.1f} s" if wall_s is not None else "")
