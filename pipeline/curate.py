"""Curate 360° videos into filtered equirect clips in WebDataset shards, on Ray Data.

    python pipeline/curate.py --config configs/curate/local.yaml [--input PATH] [--output RUN_DIR]
    ray job submit --working-dir . -- python pipeline/curate.py --config … --output /abs/RUN_DIR
    python pipeline/curate.py --config NEW.yaml --output RUN_DIR --rethreshold [--apply [--apply-out DIR]]

One streaming Ray Data pipeline over the manifest (videos already finished in RUN_DIR are
skipped; videos that failed transiently — a 429, the bot check, a time-out — are redone), with no
barrier between the video and the clip level (see `pipeline()` and docs/curation.md):
download → sample → video pixels → format → intra-frame LPIPS (actors) → inter-frame → video
thresholds → cuts: TransNetV2 over every frame of the video (actors) → plan clip spans (fixed |
cut_aware) → cut + encode one clip, analysis frames → motion → pixels → text rapidocr (actors, on
the few frames it reads) →
write: clip thresholds and the accepted clips into shards, on the workers.
The driver receives only small rows (decisions, keys, shard names); a video's decisions are
recorded once its video row and all its clip rows are back (its clips then sit in committed
shards), and the shards are reconciled with the decisions at the end, so a run killed anywhere
(driver, worker, node) and restarted on the same RUN_DIR ends with every clip exactly once.
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
from pipeline.clips import VIDEO_ROW, CutClip, PlanClips  # noqa: E402
from pipeline.config import ConfigError, CurateConfig, apply_overrides, changed_keys  # noqa: E402
from pipeline.download import Breaker, FetchSources, cache_root, release  # noqa: E402
from pipeline.filters.cuts import VideoCuts  # noqa: E402
from pipeline.filters.format import FormatScores  # noqa: E402
from pipeline.filters.inter_frame import inter_frame_scores  # noqa: E402
from pipeline.filters.intra_frame import IntraFrameScores  # noqa: E402
from pipeline.filters.motion import MotionScores  # noqa: E402
from pipeline.filters.pixels import PixelScores  # noqa: E402
from pipeline.filters.text import TextScores, text_frames  # noqa: E402
from pipeline.manifest import ManifestError, read_manifest  # noqa: E402
from pipeline.report import one_line, summarize, write_report  # noqa: E402
from pipeline.sample import SampleFrames  # noqa: E402
from pipeline.thresholds import decide  # noqa: E402
from shards.reader import shard_index  # noqa: E402
from shards.schema import ClipMeta, clip_key  # noqa: E402
from shards.writer import content_shard_name, rewrite_without, write_shard  # noqa: E402

log = logging.getLogger("curate")
REPO = Path(__file__).resolve().parents[1]
MODEL_STAGES = ("intra_frame", "cuts", "text")  # must run as actor pools: their model loads once
# columns of the stream that are not decisions: bytes, frames, per-frame arrays, bookkeeping
DROP = ["frames", "mp4", "jpg", "cut_probs", "local_path", "num_clips", "manifest_error"]
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
    # small blocks: the plan stage's rows (a video's clip spans, a few KB each) are cut into
    # blocks of about ray.block_kb, so a long video's clips spread over many tasks (chunks of
    # clips) instead of one task cutting them all in turn; every clip row with its frames is then
    # a block of its own, and no task holds more than a chunk's rows at once.
    ctx.target_max_block_size = cfg.ray.block_kb * 1024
    ctx.target_min_block_size = min(ctx.target_min_block_size, 1024)
    return ray


def _run_stateless(batch, cls, args):
    """Task body for a stage configured without an actor pool (cheap, model-free classes)."""
    return cls(*args)(batch)


def _resources(name: str, cfg: CurateConfig, actor: bool) -> dict:
    """num_cpus / num_gpus and the pool or task concurrency of stage `name`, as Ray Data arguments."""
    import ray

    res = cfg.stage(name)
    out = dict(num_cpus=res.num_cpus)
    if res.num_gpus:
        out["num_gpus"] = res.num_gpus
    size = res.size()
    if actor:
        lo, hi = size or (1, 1)
        out["compute"] = ray.data.ActorPoolStrategy(min_size=lo, max_size=hi)
    elif size:
        out["concurrency"] = size[1]
    return out


def map_stage(ds, name: str, cls, args: tuple, cfg: CurateConfig):
    """ds.map_batches for one stage: an actor pool (concurrency [min, max] or pool) of actors that
    build `cls(*args)` once, or stateless tasks. CPU / GPU shares come from the config."""
    res = cfg.stage(name)
    actor = res.size() is not None and (name in MODEL_STAGES or res.pool > 0)
    if name in MODEL_STAGES and not actor:
        raise ConfigError(f"ray.stages.{name}: give pool >= 1 or concurrency [min, max]: the stage loads a model once per actor")
    common = dict(batch_size=res.batch_size, batch_format="numpy", **_resources(name, cfg, actor))
    if actor:
        return ds.map_batches(cls, fn_constructor_args=args, **common)
    return ds.map_batches(_run_stateless, fn_kwargs=dict(cls=cls, args=args), **common)


def _decide_video(row: dict, thresholds) -> dict:
    row["status"], row["stage"], row["reason"], row["detail"] = decide(row, thresholds, "video")
    return row


def _plan(row: dict, cfg: CurateConfig, threshold: float) -> list[dict]:
    return PlanClips(cfg, threshold)(row)


def _cut(row: dict, cfg: CurateConfig, cache_dir: str) -> dict:
    return CutClip(cfg, cache_dir)(row)


def keep_text_frames(batch: dict, num_frames: int) -> dict:
    batch["frames"] = [f if f is None else text_frames(np.asarray(f), num_frames) for f in batch["frames"]]
    return batch


def cut_threshold(thresholds) -> float:
    """The cut probability above which the `cuts` thresholds reject a clip: where cut_aware ends a
    shot (the lowest `cut_prob: {above: x}`; 0.4, cosmos-curate's, when there is no such rule)."""
    values = [float(cond["above"]) for rule in (thresholds or {}).get("clip", {}).get("cuts", []) or []
              for name, cond in (rule.get("reject_if") or {}).items() if name == "cut_prob" and "above" in cond]
    return min(values) if values else 0.4


class WriteShards:
    """Ray Data task body of the last stage, on the workers: decides each clip row (thresholds,
    clip level), writes the accepted clips of the batch into shards of at most shards.max_bytes
    (content-named, atomic: shards.writer.write_shard), and returns the rows without clip bytes or
    frames — the driver receives decisions, keys and shard names only. A clip already in a committed shard
    (`existing`: written by a run killed before it recorded the video) is not written again."""

    def __init__(self, cfg: CurateConfig, shard_dir: str, existing: dict[str, str], config_hash: str):
        self.cfg, self.shard_dir, self.existing, self.config_hash = cfg, Path(shard_dir), existing, config_hash

    def _flush(self, samples: list, rows: list[dict]) -> None:
        if not samples:
            return
        name = content_shard_name(self.cfg.shards.prefix, [k for k, *_ in samples])
        write_shard(self.shard_dir / name, samples)  # False: a retried task's shard is already there
        for row in rows:
            row["shard"] = name

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        out, samples, pending, size = [], [], [], 0
        for row in _row_dict(batch):
            row["shard"], row["writer_node"] = None, ""
            if int(row["clip_index"]) != VIDEO_ROW:
                row["status"], row["stage"], row["reason"], row["detail"] = decide(row, self.cfg.thresholds, "clip")
                row["key"] = clip_key(row["video_id"], int(row["clip_index"]))
                if row["status"] == "accepted":
                    row["writer_node"] = node
                    if row["key"] in self.existing:
                        row["shard"] = self.existing[row["key"]]
                    else:
                        nbytes = len(row["mp4"]) + len(row["jpg"]) + 4096
                        if samples and size + nbytes > self.cfg.shards.max_bytes:
                            self._flush(samples, pending)
                            samples, pending, size = [], [], 0
                        samples.append((row["key"], row["mp4"], ClipMeta(**clip_meta(row, self.cfg, self.config_hash)),
                                        row["jpg"]))
                        pending.append(row)
                        size += nbytes
            out.append(row)
        self._flush(samples, pending)
        for row in out:
            for column in ("mp4", "jpg", "frames"):
                row.pop(column, None)
        return pd.DataFrame(out)


class SpreadOverNodes:
    """`ray_remote_args_fn` of the write stage: each write task to the next alive node with CPUs in
    turn (soft: elsewhere when that node is gone), so shard writing — the I/O of every accepted
    clip — is spread over the cluster rather than following wherever the data happens to be."""

    def __init__(self, refresh: int = 64):
        self.refresh, self.calls, self.nodes = refresh, 0, []

    def __call__(self) -> dict:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not self.nodes or self.calls % self.refresh == 0:
            self.nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        self.calls += 1
        if not self.nodes:
            return {}
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(self.nodes[self.calls % len(self.nodes)], soft=True)}


def pipeline(rows: list[dict], cfg: CurateConfig, cache_dir: str, shard_dir: Path, existing: dict[str, str],
             config_hash: str):
    """The one streaming Ray Dataset, manifest rows → rows of decisions (no barrier between the
    video and the clip level: a clip of the first video can be written while later videos are
    still downloading):

      download → sample → video_pixels → format → intra_frame → inter_frame  (video rows, 8 frames)
        → decide (video) → cuts (TransNetV2 over every frame, per video)
        → plan: flat_map to the video row + one small row per clip span
        → cut (one clip per row: ffmpeg, analysis frames, thumbnail) → motion → pixels
        → keep the text score's frames only → text (actors)
        → write (clip decisions, shards on the worker) → driver (small rows only)
    """
    import ray

    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    ds = map_stage(ds, "download", FetchSources, (cfg.download, cache_dir), cfg)
    ds = map_stage(ds, "sample", SampleFrames, (cfg,), cfg)
    ds = map_stage(ds, "video_pixels", PixelScores, (cfg.filters.pixels, "video_", "video_pixels"), cfg)
    ds = map_stage(ds, "format", FormatScores, (cfg.filters.format,), cfg)
    ds = map_stage(ds, "intra_frame", IntraFrameScores, (cfg.filters.intra_frame,), cfg)
    inter = _resources("inter_frame", cfg, False)
    ds = ds.map_batches(inter_frame_scores, batch_size=cfg.stage("inter_frame").batch_size, batch_format="numpy",
                        **inter)
    # the video level's frames: no later stage needs them. Light steps take the resources of the
    # stage before them, so Ray Data fuses them into its task (each operator costs the driver's
    # scheduling loop time on every step, and every unfused hop goes through the object store).
    ds = ds.drop_columns(["frames"], **inter)
    ds = ds.map(_decide_video, fn_kwargs=dict(thresholds=cfg.thresholds), **inter)
    ds = ds.map(VideoCuts, fn_constructor_args=(cfg.filters.cuts, cfg.download, cache_dir),
                **_resources("cuts", cfg, True))
    ds = ds.flat_map(_plan, fn_kwargs=dict(cfg=cfg, threshold=cut_threshold(cfg.thresholds)), num_cpus=0.05)
    ds = ds.map(_cut, fn_kwargs=dict(cfg=cfg, cache_dir=cache_dir), **_resources("cut", cfg, False))
    ds = map_stage(ds, "motion", MotionScores, (cfg.filters.motion,), cfg)
    ds = map_stage(ds, "pixels", PixelScores, (cfg.filters.pixels, "", "pixels"), cfg)
    # every analysis frame is done with but the text score's few: only those go on to the text
    # actors (a 10-s clip's 30 frames are ~12 MiB at 512×256). Same resources as pixels, so Ray Data
    # fuses it into the pixels task and the full frames never pass through the object store again.
    ds = ds.map_batches(keep_text_frames, fn_kwargs=dict(num_frames=cfg.filters.text.num_frames),
                        batch_size=cfg.stage("pixels").batch_size, batch_format="numpy",
                        **_resources("pixels", cfg, False))
    ds = map_stage(ds, "text", TextScores, (cfg.filters.text,), cfg)
    res = cfg.stage("write")  # WriteShards drops the text frames with the clip bytes
    return ds.map_batches(_run_stateless, fn_kwargs=dict(cls=WriteShards, args=(cfg, str(shard_dir), existing, config_hash)),
                          batch_size=res.batch_size, batch_format="pandas", ray_remote_args_fn=SpreadOverNodes(),
                          **_resources("write", cfg, False))


def _row_dict(batch: pd.DataFrame):
    for rec in batch.to_dict("records"):
        yield {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}


# ---------------------------------------------------------------------------------------------
# Exactly-once bookkeeping


class Progress:
    """Holds each unfinished video's decision rows (small: no bytes, no frames) until its video
    row and all its clip rows have come back — every accepted clip is then in a committed shard,
    written by a worker — and writes its decisions part (the run's record that the video is done).
    Rows of a video arrive in any order."""

    def __init__(self, run_dir: Path, on_finish=None, on_new_shard=None):
        self.run_dir, self.on_finish, self.on_new_shard = run_dir, on_finish, on_new_shard
        self.rows: dict[str, list[dict]] = {}
        self.expected: dict[str, int] = {}
        self.shards: set[str] = set()
        self.finished = 0

    def add(self, row: dict) -> None:
        vid = row["video_id"]
        shard = row.get("shard")
        if shard and shard not in self.shards:
            self.shards.add(shard)
            if self.on_new_shard is not None:
                self.on_new_shard(shard)
        if int(row["clip_index"]) == VIDEO_ROW:
            self.expected[vid] = int(row.get("num_clips") or 0)
            row["clip_index"] = None
            self.rows.setdefault(vid, []).insert(0, _clean(row))
        else:
            self.rows.setdefault(vid, []).append(_clean(row))
        if vid in self.expected and len(self.rows[vid]) - 1 == self.expected[vid]:
            rows = self.rows.pop(vid)
            rows[1:] = sorted(rows[1:], key=lambda r: int(r["clip_index"]))
            dec.write_part(self.run_dir, vid, rows, retry=rows[0].get("error_kind") == "transient")
            if self.on_finish is not None:
                self.on_finish(rows[0])
            del self.expected[vid]
            self.finished += 1

    def unfinished(self) -> list[str]:
        return sorted(self.rows)


def crash_test_hook():
    """Fault injection for the exactly-once test: with CURATE_SIGKILL_AFTER_SHARDS=N in the
    environment, the driver SIGKILLs itself when it learns of its N-th committed shard, before
    that shard's videos are recorded as finished — the worst moment to die."""
    limit = int(os.environ.get("CURATE_SIGKILL_AFTER_SHARDS", "0") or 0)
    if limit <= 0:
        return None
    seen = []

    def hook(shard):
        seen.append(shard)
        if len(seen) >= limit:
            log.warning("CURATE_SIGKILL_AFTER_SHARDS=%d: killing this process after %s", limit, shard)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def reconcile_shards(shard_dir: Path, decisions: pd.DataFrame) -> dict:
    """Make the shards agree with the decisions: every key in a shard has an `accepted` decision
    naming that shard, once. A key that is not accepted, or sits in a shard other than the one its
    decision names (a task retried after a lost worker wrote it twice; a worker of a killed run
    committed a shard after the restart scanned the directory), is removed by rewriting that
    shard (atomically). Normally a no-op that only reads the tar headers."""
    home = {}
    if len(decisions) and {"key", "shard", "clip_index", "status"} <= set(decisions):  # no clip rows: no columns
        clips = decisions[decisions["clip_index"].notna() & decisions["status"].eq("accepted")]
        home = dict(zip(clips["key"], clips["shard"]))
    drops: dict[str, set[str]] = {}
    for key, shards in shard_index(shard_dir).items():
        for name in shards:
            if home.get(key) != name:
                drops.setdefault(name, set()).add(key)
    for name, keys in sorted(drops.items()):
        log.warning("%s: removing %d clip(s) without an accepted decision naming this shard: %s",
                    name, len(keys), ", ".join(sorted(keys)[:5]))
        rewrite_without(shard_dir / name, keys)
    return dict(shards_rewritten=len(drops), clips_removed=sum(map(len, drops.values())))


def _clean(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in DROP}
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
        # this run holds the lock: a .tmp is a partial shard of a killed run (or of its workers)
        for leftover in shard_dir.glob("*.tmp"):
            log.warning("removing partial shard left by an interrupted run: %s", leftover)
            leftover.unlink(missing_ok=True)
        todo_ids = set(todo["video_id"])
        # clips of unfinished videos already in committed shards (the driver died after a worker
        # committed them but before their video was recorded): reused, not written again. Before
        # Ray starts: an unreadable shard stops the run at once (exit 2, naming it).
        existing = {k: v[0] for k, v in shard_index(shard_dir).items() if k.rsplit("_", 1)[0] in todo_ids}
        init_ray(cfg)
        progress = Progress(run_dir, on_finish=lambda row: release(str(row["source"]), cache_dir, cfg.download),
                            on_new_shard=crash_test_hook())
        t0 = time.perf_counter()
        rows = list(_row_dict(todo))
        for r in rows:  # text columns: "" for none, so every Ray block infers one type
            r["category"], r["manifest_error"] = r.get("category") or "", r.get("manifest_error") or ""
        for batch in pipeline(rows, cfg, cache_dir, shard_dir, existing, config_hash).iter_batches(
                batch_size=None, batch_format="pandas"):
            for row in _row_dict(batch):
                progress.add(row)
        wall["stream"] = time.perf_counter() - t0
        if progress.unfinished():
            raise RuntimeError(f"videos left unfinished after the run: {progress.unfinished()[:10]}")
    df = dec.read_parts(run_dir)
    dec.write_decisions(run_dir, df)
    fixed = reconcile_shards(shard_dir, df)
    wall["total"] = time.perf_counter() - t_start
    write_report(run_dir, df, cfg.thresholds, wall, extra={"manifest_duplicates": int(manifest.attrs.get("duplicates", 0))})
    summary = summarize(df)
    summary["manifest_duplicates"] = int(manifest.attrs.get("duplicates", 0))
    state = breaker.state()
    if state.get("open"):
        summary["breaker"] = state
    (run_dir / "run.json").write_text(json.dumps(dict(summary, config_hash=config_hash, wall_s=wall, shards_reconciled=fixed),
                                                  indent=2))
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
