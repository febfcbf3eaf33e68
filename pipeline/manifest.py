"""Manifests: what to curate, as one table with a row per source video.

Accepted inputs (`--input` / `input.path`):
- a directory: every file with a video extension (`input.extensions`), sorted;
- one video file;
- a table (.csv, .jsonl, .parquet) with a `path` or `url` column;
- the 360-1M metadata parquet (column `id` = YouTube id, `like_count`, `categories`, …): a source
  `youtube:<id>`, filtered by `like_count > input.min_likes`.
Output columns: video_id (unique, [A-Za-z0-9_-]), source, category, likes, declared_duration_s.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .config import InputConfig
from .download import YOUTUBE_PREFIX, is_remote

COLUMNS = ["video_id", "source", "category", "likes", "declared_duration_s"]
TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")


class ManifestError(ValueError):
    pass


def safe_id(text: str) -> str:
    """A sample-key-safe id: [A-Za-z0-9_-] only, never empty."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    return out or "video"


def unique_ids(ids: list[str], sources: list[str]) -> list[str]:
    """Ids made unique by appending a short hash of the source to every duplicate."""
    counts = pd.Series(ids).value_counts()
    return [i if counts[i] == 1 else f"{i}-{hashlib.sha1(s.encode()).hexdigest()[:8]}"
            for i, s in zip(ids, sources)]


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad manifest
        raise ManifestError(f"{path}: cannot be read as a {path.suffix[1:]} manifest ({e})") from e


def _from_table(df: pd.DataFrame, where: Path, cfg: InputConfig) -> pd.DataFrame:
    base = where.parent
    if "path" in df or "url" in df:
        col = "path" if "path" in df else "url"
        sources = []
        for value in df[col]:
            s = str(value)
            if col == "path" and not is_remote(s) and not Path(s).is_absolute():
                s = str(base / s)  # relative paths are relative to the manifest
            sources.append(s)
        if "id" in df or "video_id" in df:
            ids = [safe_id(str(v)) for v in df["video_id" if "video_id" in df else "id"]]
        else:
            ids = [safe_id(Path(s.rstrip("/")).stem) for s in sources]
    elif "id" in df:  # 360-1M metadata: YouTube ids
        sources = [YOUTUBE_PREFIX + str(v) for v in df["id"]]
        ids = [safe_id(str(v)) for v in df["id"]]
    else:
        raise ManifestError(f"{where}: a manifest needs a `path`, `url` or `id` column; "
                            f"found {', '.join(map(str, df.columns))}")
    likes = df["like_count"] if "like_count" in df else df.get("likes")
    out = pd.DataFrame({
        "video_id": ids, "source": sources,
        "category": df["categories"] if "categories" in df else df.get("category"),
        "likes": likes, "declared_duration_s": df.get("duration"),
    })
    return out


def read_manifest(path: str | Path, cfg: InputConfig) -> pd.DataFrame:
    """The manifest rows for an input path (see module doc), after min_likes and limit."""
    if path is None:
        raise ManifestError("no input: give --input PATH or input.path in the config")
    spath = str(path)
    if is_remote(spath):
        df = pd.DataFrame({"video_id": [safe_id(Path(spath).stem)], "source": [spath]})
    else:
        p = Path(spath)
        if p.is_dir():
            exts = {e.lower() for e in cfg.extensions}
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts)
            if not files:
                raise ManifestError(f"{p}: directory holds no videos (extensions {', '.join(sorted(exts))})")
            df = pd.DataFrame({"video_id": [safe_id(f.stem) for f in files], "source": [str(f) for f in files]})
        elif p.suffix.lower() in TABLE_SUFFIXES:
            if not p.is_file():
                raise ManifestError(f"{p}: manifest not found")
            df = _from_table(_read_table(p), p, cfg)
        else:  # a single video; a missing one becomes an error row, like any missing path
            df = pd.DataFrame({"video_id": [safe_id(p.stem)], "source": [str(p)]})
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    df = df[COLUMNS].copy()
    if cfg.min_likes is not None:
        likes = pd.to_numeric(df["likes"], errors="coerce")
        df = df[likes > cfg.min_likes]
    if cfg.limit is not None:
        df = df.head(cfg.limit)
    df["video_id"] = unique_ids(df["video_id"].tolist(), df["source"].tolist())
    df["category"] = df["category"].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                        else _first_category(v))
    df["likes"] = pd.to_numeric(df["likes"], errors="coerce")
    df["declared_duration_s"] = pd.to_numeric(df["declared_duration_s"], errors="coerce")
    return df.reset_index(drop=True)


def _first_category(value) -> str:
    """360-1M stores one category name, sometimes a JSON / python list of names."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return str(value[0]) if len(value) else None
    s = str(value)
    if s.startswith("["):
        try:
            items = json.loads(s.replace("'", '"'))
            return str(items[0]) if items else None
        except ValueError:
            pass
    return s
