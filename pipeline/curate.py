"""Curate 360° videos into filtered equirect clips in WebDataset shards, on Ray Data.

    python pipeline/curate.py --config configs/curate/local.yaml [--input PATH] [--output RUN_DIR]
    ray job submit --working-dir . -- python pipeline/curate.py --config … --output /abs/RUN_DIR
    python pipeline/curate.py --config NEW.yaml --output RUN_DIR --rethreshold [--apply [--apply-out DIR]]

Two Ray Data passes over the manifest (videos already finished in RUN_DIR are skipped; videos
that failed transiently — a 429, the bot check, a time-out — are redone):
1. videos: download (task, a small CPU share) → probe + projection metadata + sample frames (task)
   → pixel gate (task) → format (task, or a pool) →
   intra-frame LPIPS (actor pool) → inter-frame variance (task) → thresholds (video level);
2. clips of the surviving videos: cut + encode + decode analysis frames (task) → motion flow
   (task) → cuts TransNetV2 (actor pool) → text rapidocr (actor pool) → pixels (task) →
   thresholds (clip level) → accepted clips into shards (in this driver, one writer).
A video's decisions are recorded only once all its accepted clips sit in complete shards, so a
killed run restarted on the same RUN_DIR ends with every clip exactly once.
Outputs: RUN_DIR/shards/, RUN_DIR/decisions.parquet, RUN_DIR/report/, RUN_DIR/config.yaml.
--rethreshold re-decides RUN_DIR/decisions.parquet and lists shard changes; with --apply it also
writes a new shard set of exactly the clips now accepted (pipeline/apply.py), under the run's lock.
Exit codes: 0 done; 2 bad config / arguments, RUN_DIR locked by another run, or a resume with a
changed config (--allow-config-change to go on); 3 the download circuit breaker opened (the message
says how to resume).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script (also under `ray job submit`): import the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from pipeline import decisions as dec  # noqa: E402
from pipeline.apply import apply_decisions  # noqa: E402
from pipeline.clips import CutClips, plan_clips  # noqa: E402
from pipeline.config import ConfigError, CurateConfig, apply_overrides, changed_keys  # noqa: E402
from pipeline.download import Breaker, FetchSources, cache_root, release  # noqa: E402
from pipeline.filters.cuts import CutScores  # noqa: E402
from pipeline.filters.format import FormatScores  # noqa: E402
from pipeline.filters.inter_frame import inter_frame_scores  # noqa: E402
from pipeline.filters.intra_frame import IntraFrameScores  # noqa: E402
from pipeline.filters.motion import MotionScores  # noqa: E402
from pipeline.filters.pixels import PixelScores  # noqa: E402
from pipeline.filters.text import TextScores  # noqa: E402
from pipeline.manifest import ManifestError, read_manifest  # noqa: E402
from pipeline.report import one_line, summarize, write_report  # noqa: E402
from pipeline.sample import SampleFrames  # noqa: E402
from pipeline.thresholds import decide  # noqa: E402
from shards.reader import list_shards, shard_keys  # noqa: E402
from shards.schema import ClipMeta, clip_key  # noqa: E402
from shards.writer import ShardWriter, thumbnail_jpg  # noqa: E402

log = logging.getLogger("curate")
REPO = Path(__file__).resolve().parents[1]
MODEL_STAGES = ("intra_frame", "cuts", "text")  # must run as actor pools: their model loads once
DROP = ["frames", "frames_cuts"]
# one intra-op thread per worker: Ray runs several workers per core here (fractional CPU shares);
# more threads each only oversubscribe the cores, and OpenMP threads spin-waiting for work in
# one actor steal the core from the others (each model actor also calls torch.set_num_threads).
WORKER_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


# ---------------------------------------------------------------------------------------------
# Ray plumbing


def init_ray(cfg: CurateConfig):
    import ray

    if ray.is_initialized():
        return ray
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:  # an existing cluster (ray job submit sets RAY_ADDRESS)
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=True,
                 object_store_memory=cfg.ray.object_store_mb * 2**20 if cfg.ray.object_store_mb else None,
                 runtime_env={"env_vars": dict(WORKER_THREADS, PYTHONPATH=str(REPO))})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.ray.progress_bars
    return ray


def _run_stateless(batch, cls, args):
    """Task body for a stage configured without an actor pool (cheap, model-free classes)."""
    return cls(*args)(batch)


def map_stage(ds, name: str, cls, args: tuple, cfg: CurateConfig):
    """ds.map_batches for one stage: an actor pool of cfg.ray.stages[name].pool actors that build
    `cls(*args)` once, or stateless tasks when pool is 0. CPU / GPU shares come from the config."""
    import ray

    res = cfg.stage(name)
    common = dict(batch_size=res.batch_size, num_cpus=res.num_cpus, batch_format="numpy")
    if res.num_gpus:
        common["num_gpus"] = res.num_gpus
    if res.pool > 0:
        return ds.map_batches(cls, fn_constructor_args=args, compute=ray.data.ActorPoolStrategy(size=res.pool),
                              **common)
    if name in MODEL_STAGES:
        raise ConfigError(f"ray.stages.{name}.pool must be >= 1: the stage loads a model once per actor")
    return ds.map_batches(_run_stateless, fn_kwargs=dict(cls=cls, args=args), **common)


def _row_dict(batch: pd.DataFrame):
    for rec in batch.to_dict("records"):
        yield {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}


def video_pass(rows: list[dict], cfg: CurateConfig, cache_dir: str):
    """Pass 1 as a Ray Dataset of video rows with every video-level score (frames dropped)."""
    import ray

    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    ds = map_stage(ds, "download", FetchSources, (cfg.download, cache_dir), cfg)
    ds = map_stage(ds, "sample", SampleFrames, (cfg,), cfg)
    ds = map_stage(ds, "video_pixels", PixelScores, (cfg.filters.pixels, "video_", "video_pixels"), cfg)
    ds = map_stage(ds, "format", FormatScores, (cfg.filters.format,), cfg)
    ds = map_stage(ds, "intra_frame", IntraFrameScores, (cfg.filters.intra_frame,), cfg)
    res = cfg.stage("inter_frame")
    ds = ds.map_batches(inter_frame_scores, batch_size=res.batch_size, num_cpus=res.num_cpus, batch_format="numpy")
    return ds.drop_columns(["frames"])


def clip_pass(videos: list[dict], cfg: CurateConfig, cache_dir: str):
    """Pass 2 as a Ray Dataset of clip rows with every clip score (frames dropped, mp4 kept)."""
    import ray

    ds = ray.data.from_items(videos, override_num_blocks=max(1, len(videos)))
    res = cfg.stage("cut")
    ds = ds.flat_map(CutClips, fn_constructor_args=(cfg, cache_dir), num_cpus=res.num_cpus,
                     compute=ray.data.ActorPoolStrategy(size=max(1, res.pool))) if res.pool else \
        ds.flat_map(lambda row: CutClips(cfg, cache_dir)(row), num_cpus=res.num_cpus)
    ds = map_stage(ds, "motion", MotionScores, (cfg.filters.motion,), cfg)
    ds = map_stage(ds, "cuts", CutScores, (cfg.filters.cuts,), cfg)
    ds = map_stage(ds, "text", TextScores, (cfg.filters.text,), cfg)
    ds = map_stage(ds, "pixels", PixelScores, (cfg.filters.pixels, "", "pixels"), cfg)
    return ds.drop_columns(DROP)


# ---------------------------------------------------------------------------------------------
# Exactly-once bookkeeping


class Progress:
    """Holds each unfinished video's decision rows until all its accepted clips are in complete
    shards, then writes its decisions part (the run's record that the video is done)."""

    def __init__(self, run_dir: Path, existing: dict[str, str], on_finish=None):
        self.run_dir, self.on_finish = run_dir, on_finish
        self.existing = existing  # key → shard file name, from complete shards of earlier runs
        self.rows: dict[str, list[dict]] = {}
        self.expected: dict[str, int] = {}
        self.waiting: dict[str, set[str]] = {}
        self.finished = 0

    def start_video(self, video_row: dict, num_clips: int) -> None:
        vid = video_row["video_id"]
        self.rows[vid], self.expected[vid], self.waiting[vid] = [video_row], num_clips, set()
        self._maybe_finish(vid)

    def add_clip(self, clip_row: dict, written: bool) -> None:
        vid = clip_row["video_id"]
        self.rows[vid].append(clip_row)
        if written:
            self.waiting[vid].add(clip_row["key"])
        self._maybe_finish(vid)

    def on_shard_complete(self, path: Path, keys: list[str]) -> None:
        for key in keys:
            vid = key.rsplit("_", 1)[0]
            for row in self.rows.get(vid, []):
                if row.get("key") == key:
                    row["shard"] = Path(path).name
            self.waiting.get(vid, set()).discard(key)
        for vid in {k.rsplit("_", 1)[0] for k in keys}:
            if vid in self.rows:
                self._maybe_finish(vid)

    def _maybe_finish(self, vid: str) -> None:
        if len(self.rows[vid]) - 1 == self.expected[vid] and not self.waiting[vid]:
            rows = self.rows.pop(vid)
            dec.write_part(self.run_dir, vid, rows, retry=rows[0].get("error_kind") == "transient")
            if self.on_finish is not None:
                self.on_finish(rows[0])
            del self.expected[vid], self.waiting[vid]
            self.finished += 1

    def unfinished(self) -> list[str]:
        return sorted(self.rows)


def crash_test_hook(on_shard_complete):
    """Fault injection for the exactly-once test: with CURATE_SIGKILL_AFTER_SHARDS=N in the
    environment, the process SIGKILLs itself once its N-th shard is complete but before that
    shard's videos are recorded as finished — the worst moment to die."""
    limit = int(os.environ.get("CURATE_SIGKILL_AFTER_SHARDS", "0") or 0)
    if limit <= 0:
        return on_shard_complete
    seen = []

    def hook(path, keys):
        seen.append(path)
        if len(seen) >= limit:
            log.warning("CURATE_SIGKILL_AFTER_SHARDS=%d: killing this process after %s", limit, path)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        on_shard_complete(path, keys)

    return hook


def existing_shard_keys(shard_dir: Path) -> dict[str, str]:
    """key → shard name for every sample in the complete shards of shard_dir."""
    out = {}
    if shard_dir.is_dir():
        for url in list_shards(str(shard_dir)):
            for key in shard_keys(url):
                out[key] = Path(url).name
    return out


def _clean(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in DROP and k not in ("mp4", "local_path", "num_clips", "manifest_error")}
    if out.get("category") == "":
        out["category"] = None
    return out


def _scores(row: dict) -> dict:
    skip = {"video_id", "clip_index", "width", "height", "fps", "num_frames", "duration_s", "start_s", "end_s",
            "clip_fps", "clip_num_frames", "analysis_fps", "likes", "declared_duration_s", "num_clips"}
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in row.items()
            if k not in skip and not k.startswith("t_") and isinstance(v, (int, float, np.number))
            and not isinstance(v, bool)}


def clip_meta(row: dict, cfg: CurateConfig, config_hash: str) -> dict:
    likes = row.get("likes")
    return dict(video_id=row["video_id"], clip_index=int(row["clip_index"]), source=str(row["source"]),
                start_s=float(row["start_s"]), end_s=float(row["end_s"]), fps=float(row["clip_fps"]),
                num_frames=int(row["clip_num_frames"]), width=2 * cfg.clips.height, height=cfg.clips.height,
                category=row.get("category") or None,
                likes=None if likes is None or not np.isfinite(likes) or likes < 0 else int(likes),
                scores=_scores(row), config_hash=config_hash)


# ---------------------------------------------------------------------------------------------
# The run


class RunLocked(RuntimeError):
    pass


class ConfigChanged(RuntimeError):
    pass


def lock_run_dir(run_dir: Path):
    """An exclusive flock on RUN_DIR/.lock held for the whole run (its file names the holder);
    RunLocked when another process holds it. The lock goes with the process, however it ends."""
    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunLocked(f"{run_dir} is in use by {holder}; wait for it to finish (or stop it) first") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    return f


def check_resume_config(run_dir: Path, cfg: CurateConfig, allow_change: bool) -> None:
    """Stop a resume whose config would decide differently from the run's (ConfigChanged naming the
    keys), unless allow_change."""
    path = run_dir / "config.yaml"
    if not path.is_file() or not dec.done_videos(run_dir):
        return
    try:
        old = CurateConfig.from_dict(yaml.safe_load(path.read_text()) or {}, where=str(path))
    except (ConfigError, ValueError, yaml.YAMLError) as e:
        old, keys = None, [f"(unreadable {path}: {e})"]
    if old is not None:
        if old.config_hash() == cfg.config_hash():
            return
        keys = changed_keys(old, cfg)
    if allow_change:
        log.warning("%s: resuming with a changed config (%s): --allow-config-change", run_dir, ", ".join(keys))
        return
    raise ConfigChanged(f"{run_dir} was run with another config; changed: {', '.join(keys)}. Resume with the "
                        f"run's own config ({path}), use a new --output, or pass --allow-config-change to mix "
                        f"them knowingly (decisions then come from two configs)")


def run(cfg: CurateConfig, run_dir: str | Path, allow_config_change: bool = False) -> dict:
    """Curate cfg.input.path into run_dir; returns the summary dict (`breaker` set when the download
    circuit breaker opened: the caller exits non-zero)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_run_dir(run_dir)
    try:
        return _run(cfg, run_dir, allow_config_change)
    finally:
        lock.close()


def _run(cfg: CurateConfig, run_dir: Path, allow_config_change: bool) -> dict:
    t_start = time.perf_counter()
    check_resume_config(run_dir, cfg, allow_config_change)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    cache_dir = str(cache_root(cfg.download, run_dir))
    breaker = Breaker(Path(cache_dir), cfg.download.breaker_after)
    breaker.reset()
    config_hash = cfg.config_hash()
    shard_dir = run_dir / "shards"
    shard_dir.mkdir(exist_ok=True)

    manifest = read_manifest(cfg.input.path, cfg.input)
    done = dec.done_videos(run_dir)
    todo = manifest[~manifest["video_id"].isin(done)]
    log.info("manifest: %d videos, %d already finished, %d to do", len(manifest), len(manifest) - len(todo), len(todo))
    wall = {}
    if len(todo):
        init_ray(cfg)
        # the writer opens first: it drops partial (.tmp) shards of a killed run
        existing = existing_shard_keys(shard_dir)
        progress = Progress(run_dir, existing,
                            on_finish=lambda row: release(str(row["source"]), cache_dir, cfg.download))
        with ShardWriter(shard_dir, prefix=cfg.shards.prefix, max_bytes=cfg.shards.max_bytes,
                         on_shard_complete=crash_test_hook(progress.on_shard_complete)) as writer:
            existing.update(existing_shard_keys(shard_dir))
            # pass 1: video-level filters
            t0 = time.perf_counter()
            survivors = []
            rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                    for r in todo.to_dict("records")]
            for r in rows:  # text columns: "" for none, so every Ray block infers one type
                r["category"], r["manifest_error"] = r.get("category") or "", r.get("manifest_error") or ""
            for batch in video_pass(rows, cfg, cache_dir).iter_batches(batch_size=None, batch_format="pandas"):
                for row in _row_dict(batch):
                    row["clip_index"] = None
                    row["status"], row["stage"], row["reason"], row["detail"] = decide(row, cfg.thresholds, "video")
                    spans = plan_clips(row.get("duration_s") or 0.0, cfg.clips) if row["status"] == "accepted" else []
                    if row["status"] == "accepted" and not spans:
                        row["status"], row["stage"], row["reason"] = "rejected", "clips", "too_short"
                        row["detail"] = f"duration {row.get('duration_s')} s < clips.min_duration_s"
                    if row["status"] == "accepted":
                        survivors.append({k: v for k, v in row.items() if k not in ("status", "stage", "reason", "detail")})
                    progress.start_video(_clean(row), len(spans))
            wall["videos"] = time.perf_counter() - t0
            # pass 2: clip-level filters and shard writing
            t0 = time.perf_counter()
            if survivors:
                for batch in clip_pass(survivors, cfg, cache_dir).iter_batches(batch_size=None, batch_format="pandas"):
                    for row in _row_dict(batch):
                        row["status"], row["stage"], row["reason"], row["detail"] = decide(row, cfg.thresholds, "clip")
                        row["key"] = clip_key(row["video_id"], int(row["clip_index"]))
                        written = False
                        if row["status"] == "accepted":
                            if row["key"] in existing:  # already in a complete shard of an earlier run
                                row["shard"] = existing[row["key"]]
                            else:
                                meta = ClipMeta(**clip_meta(row, cfg, config_hash))
                                writer.write(row["key"], row["mp4"], meta,
                                             jpg=thumbnail_jpg(row["mp4"], width=cfg.clips.thumbnail_width))
                                written = True
                        progress.add_clip(_clean(row), written)
            wall["clips"] = time.perf_counter() - t0
        if progress.unfinished():
            raise RuntimeError(f"videos left unfinished after the run: {progress.unfinished()[:10]}")
    df = dec.read_parts(run_dir)
    dec.write_decisions(run_dir, df)
    wall["total"] = time.perf_counter() - t_start
    write_report(run_dir, df, cfg.thresholds, wall, extra={"manifest_duplicates": int(manifest.attrs.get("duplicates", 0))})
    summary = summarize(df)
    summary["manifest_duplicates"] = int(manifest.attrs.get("duplicates", 0))
    state = breaker.state()
    if state.get("open"):
        summary["breaker"] = state
    (run_dir / "run.json").write_text(json.dumps(dict(summary, config_hash=config_hash, wall_s=wall), indent=2))
    print(one_line(summary, wall["total"]), flush=True)
    if summary["manifest_duplicates"]:
        print(f"manifest: {summary['manifest_duplicates']} duplicate entries (same source) curated once", flush=True)
    return summary


def rethreshold(cfg: CurateConfig, run_dir: str | Path) -> pd.DataFrame:
    """Re-decide decisions.parquet with cfg.thresholds (no video decoded); rewrite the decisions,
    parts and report; return and write the list of shard changes (rethreshold_changes.csv)."""
    run_dir = Path(run_dir)
    path = run_dir / "decisions.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no decisions to re-threshold (run the pipeline first)")
    old = pd.read_parquet(path)
    for vid in old["video_id"].unique():  # ids come back from a file: never build a path from a bad one
        dec.check_id(vid)
    new = old.copy()
    for i, row in enumerate(_row_dict(old)):
        level = "video" if row.get("clip_index") is None else "clip"
        new.iloc[i, [new.columns.get_loc(c) for c in ("status", "stage", "reason", "detail")]] = \
            decide(row, cfg.thresholds, level)
    video_status = new[new["clip_index"].isna()].set_index("video_id")["status"]
    clips = new["clip_index"].notna()
    gated = clips & new["video_id"].map(video_status).ne("accepted") & new["status"].ne("error")
    new.loc[gated, ["status", "stage", "reason"]] = ["rejected", "video", "video_rejected"]
    new.loc[gated, "detail"] = "its source video is now rejected at the video level"
    changes = []
    was, now = old["status"].eq("accepted"), new["status"].eq("accepted")
    for i in np.flatnonzero(clips & was & ~now):
        changes.append(dict(change="drop", key=new.at[i, "key"], shard=new.at[i, "shard"], video_id=new.at[i, "video_id"]))
    for i in np.flatnonzero(clips & ~was & now):
        changes.append(dict(change="add", key=new.at[i, "key"], shard=None, video_id=new.at[i, "video_id"]))
    with_clips = set(new.loc[clips, "video_id"])
    for i in np.flatnonzero(~clips & ~was & now):
        if new.at[i, "video_id"] not in with_clips:
            changes.append(dict(change="needs_run", key=None, shard=None, video_id=new.at[i, "video_id"]))
    changes = pd.DataFrame(changes, columns=["change", "key", "shard", "video_id"])
    new.loc[clips & ~now, "shard"] = None
    dec.write_decisions(run_dir, new)
    for vid, g in new.groupby("video_id"):
        rows = g.to_dict("records")
        dec.write_part(run_dir, vid, rows, retry=any(r.get("error_kind") == "transient" for r in rows))
    changes.to_csv(run_dir / "rethreshold_changes.csv", index=False)
    (run_dir / "config.rethreshold.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_report(run_dir, new, cfg.thresholds)
    counts = changes["change"].value_counts().to_dict()
    print(f"rethreshold: {one_line(summarize(new))}; shards would drop {counts.get('drop', 0)} clips, "
          f"add {counts.get('add', 0)} clips (re-cut needed), {counts.get('needs_run', 0)} videos need a run "
          f"(listed in {run_dir / 'rethreshold_changes.csv'})", flush=True)
    return changes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python pipeline/curate.py", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="curation config YAML (configs/curate/*.yaml)")
    ap.add_argument("--input", help="directory of videos, a video, or a manifest (.csv/.jsonl/.parquet); "
                                    "overrides input.path")
    ap.add_argument("--output", help="run directory (overrides `output` in the config)")
    ap.add_argument("--rethreshold", action="store_true",
                    help="re-decide RUN_DIR/decisions.parquet with this config's thresholds; no decoding")
    ap.add_argument("--apply", action="store_true",
                    help="with --rethreshold: also write a new shard set holding exactly the clips now accepted "
                         "(copied from RUN_DIR/shards, never modified) to RUN_DIR/shards_<config hash>/ "
                         "(pipeline/apply.py)")
    ap.add_argument("--apply-out", metavar="DIR",
                    help="where --apply writes the new shard set (a new or empty directory; implies --apply)")
    ap.add_argument("--allow-config-change", action="store_true",
                    help="resume RUN_DIR although this config differs from the one it was run with")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. clips.duration_s=4 ray.num_cpus=2")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        data = yaml.safe_load(Path(args.config).read_text()) if Path(args.config).is_file() else None
        if data is None:
            raise ConfigError(f"{args.config}: config file not found or empty")
        data = apply_overrides(data, args.set)
        if args.input:
            data.setdefault("input", {})["path"] = args.input
        if args.output:
            data["output"] = args.output
        cfg = CurateConfig.from_dict(data, where=args.config)
    except (ConfigError, ValueError) as e:
        ap.error(str(e))
    if not cfg.output:
        ap.error("no run directory: give --output RUN_DIR (or `output:` in the config)")
    if (args.apply or args.apply_out) and not args.rethreshold:
        ap.error("--apply and --apply-out go with --rethreshold")
    try:
        if args.rethreshold:
            lock = lock_run_dir(Path(cfg.output)) if Path(cfg.output).is_dir() else None  # no run writing meanwhile
            try:
                rethreshold(cfg, cfg.output)
                if args.apply or args.apply_out:
                    apply_decisions(cfg.output, cfg, args.apply_out)
            finally:
                if lock is not None:
                    lock.close()
            return 0
        summary = run(cfg, cfg.output, allow_config_change=args.allow_config_change)
    except (RunLocked, ConfigChanged, ManifestError, ValueError, FileNotFoundError) as e:
        print(f"curate: {e}", file=sys.stderr, flush=True)
        return 2
    if summary.get("breaker"):
        b = summary["breaker"]
        print(f"curate: downloads stopped: {b['consecutive']} consecutive transient download failures "
              f"(download.breaker_after = {cfg.download.breaker_after}; last: {str(b.get('last', ''))[:300]}). "
              f"Videos not downloaded are `error` rows that the next run retries: fix the cause (for YouTube's "
              f"bot check: wait, lower download.max_concurrent_per_node, or give download.cookies), then run the "
              f"same command again with --output {cfg.output}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
