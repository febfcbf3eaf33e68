"""`--rethreshold --apply`: a new shard set holding exactly the clips a run's decisions accept.

`--rethreshold` re-decides `RUN_DIR/decisions.parquet` but leaves `RUN_DIR/shards/` as curated, so
the clips it now rejects are still there for a trainer to read. `apply_decisions` writes a *new*
shard set next to it (the original shards are never modified):

    RUN_DIR/shards_<config hash>/        (or --apply-out DIR)
        clips-000000.tar …               the accepted clips, member bytes copied from RUN_DIR/shards
        decisions.parquet                the run's decisions, `shard` naming the new shards
        config.yaml, apply.json          the config that decided, and what was kept / dropped

Samples are copied member by member (mp4, json, jpg bytes as they are: nothing decoded or
re-encoded; the json keeps the `config_hash` of the run that cut the clip) with
`shards.writer.ShardWriter.write_members`, so each shard is written as `.tar.tmp` and renamed when
complete. The whole set is built in `.<name>.partial/` beside its final place and renamed at the
end, so the directory exists only once it is complete (a leftover `.partial` of a killed apply is
removed by the next one).

A clip accepted under the new thresholds that was rejected when the run curated it was never cut,
so it is in no shard and cannot be copied: it is counted (one line), and in the new set's decisions
it is `rejected` at stage `apply`, reason `not_in_shards`, so that `shards verify --decisions` holds
(every accepted clip in the set exactly once). Re-run curation with the new config on a new
`--output` to get those clips.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import yaml

from pipeline import decisions as dec
from pipeline.config import CurateConfig
from shards.reader import TAR_ERRORS, close_tar, list_shards, open_tar, walk_tar
from shards.schema import clip_key
from shards.writer import ShardWriter

log = logging.getLogger("curate.apply")
NOT_IN_SHARDS = ("rejected", "apply", "not_in_shards",
                 "accepted under these thresholds but rejected when the run curated it, so never cut: "
                 "re-run curation with this config on a new --output to get it")


class ApplyError(ValueError):
    """Input that apply refuses (exit 2 from curate.py): one line naming the file and the problem."""


def default_out(run_dir: str | Path, cfg: CurateConfig) -> Path:
    """RUN_DIR/shards_<config hash>: one set per deciding config (the hash covers the thresholds)."""
    return Path(run_dir) / f"shards_{cfg.config_hash()}"


def accepted_keys(df: pd.DataFrame, where: str) -> list[str]:
    """The keys of the accepted clip rows, each checked against its row (`{video_id}_{clip_index:04d}`,
    `shards.schema.clip_key`, with the video id checked by `decisions.check_id`) and unique: keys come
    back from a file a user may edit, and name shard members."""
    clips = df[df["clip_index"].notna() & df["status"].eq("accepted")]
    keys = []
    for row in clips[["video_id", "clip_index", "key"]].itertuples(index=False):
        try:
            want = clip_key(dec.check_id(row.video_id), int(row.clip_index))
        except (ValueError, TypeError, OverflowError) as e:
            raise ApplyError(f"{where}: accepted clip row {str(row.video_id)[:80]!r} #{row.clip_index!r}: {e}") from None
        if row.key != want:
            raise ApplyError(f"{where}: accepted clip of {row.video_id} #{row.clip_index} has key "
                             f"{str(row.key)[:80]!r}, expected {want!r}")
        keys.append(want)
    dup = pd.Series(keys).duplicated()
    if dup.any():
        raise ApplyError(f"{where}: key {keys[int(dup.idxmax())]} is accepted in more than one row")
    return keys


def _check_out(out: Path, source: Path) -> None:
    src = source.resolve()
    if out.resolve() == src or src in out.resolve().parents:
        raise ApplyError(f"{out}: the new shard set must not be inside the run's shards ({source}): "
                         f"those are never modified")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ApplyError(f"{out} already exists: remove it, or give another --apply-out")


def _copy_shard(url: str, source: Path, wanted: set[str], seen: set[str], dropped: set[str],
                writer: ShardWriter) -> int:
    """Copy the wanted samples of one source shard (one sample in memory at a time); adds to `seen`
    and `dropped`; returns how many wanted samples were already seen (duplicates, not copied)."""
    hint = f"(check the run with `shards verify {source}`)"
    duplicates = 0
    try:
        tar = open_tar(url)
    except TAR_ERRORS as e:
        raise ApplyError(f"{url}: cannot open: {type(e).__name__}: {e} {hint}") from None
    try:
        for raw in walk_tar(tar):
            if raw.key not in wanted:
                dropped.add(raw.key)
            elif raw.key in seen:  # two copies in the source (exactly-once broken): copy one
                duplicates += 1
            elif raw.problems:
                raise ApplyError(f"{url}: sample {raw.key}: {'; '.join(raw.problems)} {hint}")
            else:
                try:
                    writer.write_members(raw.key, raw.parts)
                except ValueError as e:
                    raise ApplyError(f"{url}: sample {raw.key}: {e} {hint}") from None
                seen.add(raw.key)
    except ApplyError:
        raise
    except TAR_ERRORS as e:
        raise ApplyError(f"{url}: unreadable shard: {type(e).__name__}: {e} {hint}") from None
    finally:
        close_tar(tar)
    return duplicates


def apply_decisions(run_dir: str | Path, cfg: CurateConfig, out: str | Path | None = None) -> dict:
    """Write the new shard set of RUN_DIR's decisions (see the module doc); returns what apply.json
    holds: out, shards, kept, dropped, not_in_shards, videos_not_cut, source_duplicates."""
    run_dir = Path(run_dir)
    path = run_dir / "decisions.parquet"
    source = run_dir / "shards"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no decisions to apply (run the pipeline first)")
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: the run has no shards to copy clips from")
    out = Path(out) if out is not None else default_out(run_dir, cfg)
    _check_out(out, source)
    df = pd.read_parquet(path)
    for col in ("video_id", "clip_index", "key", "status"):
        if col not in df:
            raise ApplyError(f"{path}: no `{col}` column (not a decisions file)")
    wanted = set(accepted_keys(df, str(path)))

    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        log.warning("removing %s left by an interrupted apply", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    where: dict[str, str] = {}  # key → new shard name
    seen: set[str] = set()
    dropped: set[str] = set()
    duplicates = 0

    def on_complete(shard: Path, keys: list[str]) -> None:
        where.update((k, shard.name) for k in keys)

    try:
        with ShardWriter(partial, prefix=cfg.shards.prefix, max_bytes=cfg.shards.max_bytes,
                         on_shard_complete=on_complete) as writer:
            for url in list_shards(str(source)):
                duplicates += _copy_shard(url, source, wanted, seen, dropped, writer)
        missing = wanted - seen
        new = df.copy()
        is_clip = new["clip_index"].notna()
        new["shard"] = [where.get(k) if c and isinstance(k, str) else None for k, c in zip(new["key"], is_clip)]
        gone = is_clip & new["status"].eq("accepted") & new["key"].isin(missing)
        new.loc[gone, ["status", "stage", "reason", "detail"]] = list(NOT_IN_SHARDS)
        with_clips = set(new.loc[is_clip, "video_id"])
        videos_not_cut = int((~is_clip & new["status"].eq("accepted") & ~new["video_id"].isin(with_clips)).sum())
        dec.write_decisions(partial, new)
        (partial / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        summary = dict(out=str(out), source=str(source), config_hash=cfg.config_hash(), shards=len(writer.shards),
                       kept=len(seen), dropped=len(dropped), not_in_shards=len(missing),
                       videos_not_cut=videos_not_cut, source_duplicates=duplicates)
        (partial / "apply.json").write_text(json.dumps(summary, indent=2))
        if out.is_dir():
            out.rmdir()  # empty (checked above): the rename needs the name free
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    print(f"apply: {summary['kept']} clips kept in {summary['shards']} shards in {out}, {summary['dropped']} dropped "
          f"(of {summary['kept'] + summary['dropped']} unique keys in {source}); "
          f"decisions: {out / 'decisions.parquet'}",
          flush=True)
    if missing or videos_not_cut:
        print(f"apply: {len(missing)} clips (and {videos_not_cut} videos never cut into clips) are accepted by the new "
              f"thresholds but were never written to {source}, so they are not in {out} "
              f"(stage apply / not_in_shards in its decisions): re-run curation with this config on a new --output "
              f"to get them", flush=True)
    if duplicates:
        print(f"apply: {duplicates} duplicate samples in {source} copied once", flush=True)
    return summary
