"""Manifests: what to curate, as one table with a row per source video.

Accepted inputs (`--input` / `input.path`):
- a directory: every file with a video extension (`input.extensions`), sorted;
- one video file;
- a table (.csv, .jsonl, .parquet) with a `path` or `url` column;
- the 360-1M metadata parquet (column `id` = YouTube id, `like_count`, `categories`, …): a source
  `youtube:<id>`, filtered by `like_count > input.min_likes`.
Output columns: video_id (unique, [A-Za-z0-9_-]), source, category, likes, declared_duration_s,
manifest_error (None, or the problem with the row's values, naming the column).
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


def _number(value, column: str) -> tuple[float | None, str]:
    """(value, "") for a finite number >= 0 (None for a missing one), else (None, error naming the column)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None, ""
    if isinstance(value, bool):
        return None, f"column `{column}`: {value!r} is not a number"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, f"column `{column}`: {str(value)[:80]!r} is not a number"
    if not np.isfinite(x):
        return None, f"column `{column}`: {x} is not a finite number"
    if x < 0:
        return None, f"column `{column}`: {x:g} is negative"
    return x, ""


def _text(value) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _from_table(df: pd.DataFrame, where: Path, cfg: InputConfig) -> pd.DataFrame:
    """One manifest row per table row; a row with a bad value gets `manifest_error` naming the column."""
    base = where.parent
    if "path" in df or "url" in df:
        col = "path" if "path" in df else "url"
    elif "id" in df:  # 360-1M metadata: YouTube ids
        col = "id"
    else:
        raise ManifestError(f"{where}: a manifest needs a `path`, `url` or `id` column; "
                            f"found {', '.join(map(str, df.columns))}")
    id_col = "video_id" if "video_id" in df else ("id" if "id" in df and col != "id" else None)
    likes_col = "like_count" if "like_count" in df else ("likes" if "likes" in df else None)
    cat_col = "categories" if "categories" in df else ("category" if "category" in df else None)
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        errors = []
        raw = rec.get(col)
        value = _text(raw)
        if value is None:
            errors.append(f"column `{col}`: {'missing' if raw is None or raw != raw else repr(raw)[:80]} "
                          f"is not a {'YouTube id' if col == 'id' else 'path or URL'}")
            source = f"<{where.name} row {i}>"
        elif col == "id":
            source = YOUTUBE_PREFIX + value
        elif col == "path" and not is_remote(value) and not Path(value).is_absolute():
            source = str(base / value)  # relative paths are relative to the manifest
        else:
            source = value
        if id_col is not None:
            given = rec.get(id_col)
            given = str(int(given)) if isinstance(given, (int, np.integer)) else _text(given)
            if given is None:
                errors.append(f"column `{id_col}`: missing or not text")
            vid = safe_id(given or f"row-{i}")
        else:
            vid = safe_id(value if col == "id" else Path((value or f"row-{i}").rstrip("/")).stem)
        likes, err = _number(rec.get(likes_col), likes_col) if likes_col else (None, "")
        errors += [err] if err else []
        if likes_col and likes is None and not err and cfg.min_likes is None:
            errors.append(f"column `{likes_col}`: missing value")
        duration, err = _number(rec.get("duration"), "duration")
        errors += [err] if err else []
        category = rec.get(cat_col) if cat_col else None
        if category is not None and not (isinstance(category, float) and np.isnan(category)) \
                and not isinstance(category, (str, list, tuple, np.ndarray)):
            errors.append(f"column `{cat_col}`: {category!r} is not a category name")
            category = None
        rows.append(dict(video_id=vid, source=source, category=category, likes=likes,
                         declared_duration_s=duration, manifest_error="; ".join(errors) or None))
    out = pd.DataFrame(rows, columns=COLUMNS + ["manifest_error"])
    if cfg.min_likes is not None and likes_col:
        # the paper's filter: like_count > min_likes (rows without a like count do not pass it);
        # rows with a bad value stay, as error rows
        keep = out["manifest_error"].notna() | (pd.to_numeric(out["likes"], errors="coerce") > cfg.min_likes)
        out = out[keep]
    return out


def read_manifest(path: str | Path, cfg: InputConfig) -> pd.DataFrame:
    """The manifest rows for an input path (see module doc), after min_likes and limit.

    Rows listing the same source again are dropped (their count is in `df.attrs["duplicates"]`);
    a row with a bad value keeps a `manifest_error` naming the column (the run makes it an
    `error` row) instead of stopping the run.
    """
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
                hint = "" if p.is_absolute() else (
                    f" (a relative path is taken from the current directory, {Path.cwd()}; under `ray job submit "
                    f"--working-dir .` that is a copy of the repository: give --input as an absolute path, "
                    f"e.g. --input \"$PWD/{p}\")")
                raise ManifestError(f"{p}: manifest not found{hint}")
            df = _from_table(_read_table(p), p, cfg)
        else:  # a single video; a missing one becomes an error row, like any missing path
            df = pd.DataFrame({"video_id": [safe_id(p.stem)], "source": [str(p)]})
    for col in COLUMNS + ["manifest_error"]:
        if col not in df:
            df[col] = None
    df = df[COLUMNS + ["manifest_error"]].copy()
    before = len(df)
    df = df.drop_duplicates(subset="source", keep="first")
    duplicates = before - len(df)
    if cfg.limit is not None:
        df = df.head(cfg.limit)
    df["video_id"] = unique_ids(df["video_id"].tolist(), df["source"].tolist())
    df["category"] = df["category"].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                                        else _first_category(v))
    df["likes"] = pd.to_numeric(df["likes"], errors="coerce")
    df["declared_duration_s"] = pd.to_numeric(df["declared_duration_s"], errors="coerce")
    df["manifest_error"] = pd.Series([v if isinstance(v, str) and v else None for v in df["manifest_error"]],
                                     index=df.index, dtype=object)
    df = df.reset_index(drop=True)
    df.attrs["duplicates"] = int(duplicates)
    return df


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
