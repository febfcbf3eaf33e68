"""Stream samples out of clip shards, built on webdataset's tar iterators.

`urls` may mix local files, directories (their `*.tar`), globs, brace lists (`clips-{000000..000009}.tar`),
`pipe:` commands and fsspec URLs (`s3://…`, `gs://…`, `file://…`). Partial shards (`*.tar.tmp`)
are never read. Shards are split by rank (torch.distributed / DeepSpeed, or explicit rank and
world_size) and then by DataLoader worker, so each sample goes to exactly one consumer when there
are at least ranks × workers shards. A bad sample (missing member, bad JSON, wrong schema) or an
unreadable shard is skipped and counted in `stats`; strict=True raises instead.
"""
from __future__ import annotations

import glob as globlib
import json
import os
import random
import re
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import braceexpand

from .schema import SchemaError, check_key, validate_meta

REQUIRED_MEMBERS = ("mp4", "json")  # jpg is a convenience: its absence does not make a sample bad


class ShardReadError(RuntimeError):
    """A bad sample or shard met in strict mode."""


@dataclass(frozen=True)
class Sample:
    key: str
    meta: dict
    mp4: bytes
    jpg: Optional[bytes]
    url: str = ""


@dataclass
class ReadStats:
    """What a pass over the shards saw. `problems` holds (shard, key, what); key '-' for a whole shard."""

    shards: int = 0
    samples: int = 0
    skipped: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def add_problem(self, shard: str, key: str, what: str) -> None:
        self.skipped += 1
        self.problems.append((shard, key, what))


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url) is not None


def list_shards(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Expand paths (files, directories, globs, brace lists, remote URLs) into shard URLs.

    Directories give their `*.tar` files, sorted; `.tmp` files are never listed. A local path
    that matches nothing raises FileNotFoundError naming it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    urls: list[str] = []
    for raw in paths:
        for path in braceexpand.braceexpand(str(raw)):
            if path.startswith("pipe:"):
                urls.append(path)
            elif _is_remote(path):
                urls.extend(_list_remote(path))
            elif any(c in path for c in "*?["):
                found = sorted(p for p in globlib.glob(path) if p.endswith(".tar"))
                if not found:
                    raise FileNotFoundError(f"{path}: no shards match")
                urls.extend(found)
            elif os.path.isdir(path):
                urls.extend(sorted(str(p) for p in Path(path).glob("*.tar") if p.is_file()))
            elif path.endswith(".tmp"):
                warnings.warn(f"{path}: partial shard (.tmp) skipped")
            elif os.path.isfile(path):
                urls.append(path)
            else:
                raise FileNotFoundError(f"{path}: no such shard, directory or glob")
    seen: set[str] = set()
    return [u for u in urls if not (u in seen or seen.add(u))]


def _list_remote(url: str) -> list[str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    unstrip = (lambda p: p) if protocol == "file" else (lambda p: f"{protocol}://{p}")
    if any(c in path for c in "*?["):
        found = sorted(fs.glob(path))
    elif fs.isdir(path):
        found = sorted(p for p in fs.ls(path, detail=False))
    else:
        return [url] if not url.endswith(".tmp") else []
    return [unstrip(p) for p in found if p.endswith(".tar")]


def _open_url(url: str):
    if url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    if _is_remote(url):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url, "rb")


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else from RANK/WORLD_SIZE, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def worker_rank() -> tuple[int, int]:
    """(worker id, number of workers) inside a torch DataLoader worker, else (0, 1)."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return 0, 1
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def split_shards(urls: Sequence[str], rank: int, world_size: int, worker: int = 0,
                 num_workers: int = 1) -> list[str]:
    """The shards of one (rank, worker): every world_size-th from rank, then every num_workers-th."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in [0, world_size={world_size})")
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} not in [0, num_workers={num_workers})")
    return list(urls)[rank::world_size][worker::num_workers]


def parse_sample(raw: dict, url: str) -> Sample:
    """A webdataset sample dict → Sample, or SchemaError / ValueError saying what is wrong."""
    key = raw.get("__key__", "?")
    check_key(key)
    missing = [m for m in REQUIRED_MEMBERS if m not in raw]
    if missing:
        raise ValueError(f"missing member(s): {', '.join(missing)}")
    if len(raw["mp4"]) == 0:
        raise ValueError("empty mp4 member")
    try:
        obj = json.loads(raw["json"])
    except (ValueError, UnicodeDecodeError) as e:
        raise SchemaError(f"json is not valid JSON ({e})") from None
    clip = validate_meta(obj, where="json")
    if clip.key != key:
        raise SchemaError(f"json describes {clip.key!r}, not the sample key")
    return Sample(key=key, meta=clip.model_dump(mode="json"), mp4=raw["mp4"], jpg=raw.get("jpg"), url=url)


class ShardSamples:
    """An iterable over Samples (each `iter()` is a new pass; a new shuffle order per pass).

    Also usable as an iterator (`next()`); `stats` counts shards, samples and skipped problems.
    """

    def __init__(self, urls, shuffle: int = 0, split_by_node: bool = False,
                 split_by_worker: bool = False, strict: bool = False, seed: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        self.urls = list_shards(urls)
        self.shuffle, self.strict, self.seed = int(shuffle), strict, seed
        self.split_by_node, self.split_by_worker = split_by_node, split_by_worker
        self.rank, self.world_size = rank, world_size
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        self.stats = ReadStats()
        self.epoch = 0
        self._it: Optional[Iterator[Sample]] = None

    def my_shards(self) -> list[str]:
        urls = list(self.urls)
        if self.shuffle:  # same order on every rank (same seed), so the split stays a partition
            random.Random(self.seed + self.epoch).shuffle(urls)
        rank, world = (self.rank, self.world_size) if self.rank is not None else (
            distributed_rank() if self.split_by_node else (0, 1))
        worker, workers = worker_rank() if self.split_by_worker else (0, 1)
        return split_shards(urls, rank, world, worker, workers)

    def __iter__(self) -> Iterator[Sample]:
        shards = self.my_shards()
        rng = random.Random(hash((self.seed, self.epoch, *worker_rank(), *distributed_rank())))
        self.epoch += 1
        samples = self._samples(shards)
        return _shuffled(samples, self.shuffle, rng) if self.shuffle > 1 else samples

    def __next__(self) -> Sample:
        if self._it is None:
            self._it = iter(self)
        return next(self._it)

    def _problem(self, shard: str, key: str, what: str) -> None:
        if self.strict:
            raise ShardReadError(f"{shard}\t{key}\t{what}")
        self.stats.add_problem(shard, key, what)

    def _samples(self, shards: list[str]) -> Iterator[Sample]:
        from webdataset import tariterators  # imported here: it imports torch, slow for the CLI

        current = {"url": None}

        def opened() -> Iterator[dict]:
            for url in shards:
                current["url"] = url
                try:
                    stream = _open_url(url)
                except OSError as e:
                    self._problem(url, "-", f"cannot open: {e}")
                    continue
                self.stats.shards += 1
                try:
                    yield dict(url=url, stream=stream)
                finally:  # webdataset reads a shard to its end before asking for the next
                    stream.close()

        def on_error(exn: Exception) -> bool:
            # exceptions from inside webdataset: an unreadable / truncated tar, duplicate members
            what = str(exn.args[0]) if exn.args else repr(exn)
            what = what.split(" @ ")[0]
            self._problem(current["url"] or "?", "-", f"unreadable tar: {type(exn).__name__}: {what}")
            return True

        files = tariterators.tar_file_expander(opened(), handler=on_error)
        for raw in tariterators.group_by_keys(files, handler=on_error):
            url = raw.get("__url__", current["url"])
            try:
                sample = parse_sample(raw, url)
            except ValueError as e:
                self._problem(url, str(raw.get("__key__", "?")), str(e))
                continue
            self.stats.samples += 1
            yield sample


def _shuffled(samples: Iterable[Sample], bufsize: int, rng: random.Random) -> Iterator[Sample]:
    """Reservoir-style shuffle buffer (as webdataset's `shuffle`), deterministic for a seed."""
    buffer: list[Sample] = []
    for sample in samples:
        if len(buffer) < bufsize:
            buffer.append(sample)
            continue
        i = rng.randrange(len(buffer))
        buffer[i], sample = sample, buffer[i]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


def iter_samples(urls, shuffle: int = 0, split_by_node: bool = False, split_by_worker: bool = False,
                 strict: bool = False, seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> ShardSamples:
    """Samples of the shards at `urls` (see module doc); `.stats` on the result counts what was skipped.

    shuffle=N shuffles shard order and keeps an N-sample shuffle buffer. rank/world_size given
    explicitly override split_by_node's torch.distributed lookup.
    """
    return ShardSamples(urls, shuffle=shuffle, split_by_node=split_by_node,
                        split_by_worker=split_by_worker, strict=strict, seed=seed,
                        rank=rank, world_size=world_size)


def shard_keys(url: str) -> list[str]:
    """Keys of the complete samples (mp4 + json present) in one local shard, reading headers only."""
    members: dict[str, set[str]] = {}
    with tarfile.open(url, mode="r:") as tar:
        for info in tar:
            base, _, ext = info.name.rpartition("/")[2].partition(".")
            members.setdefault(base, set()).add(ext.lower())
    return [k for k, exts in members.items() if all(m in exts for m in REQUIRED_MEMBERS)]


def existing_keys(directory: str | os.PathLike) -> set[str]:
    """Keys already in the complete shards (`*.tar`, never `.tmp`) of a directory; empty if none.

    An unreadable shard is skipped with a warning (its keys are not counted as done).
    """
    directory = Path(directory)
    if not directory.exists():
        return set()
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a directory")
    keys: set[str] = set()
    for url in list_shards(directory):
        try:
            keys.update(shard_keys(url))
        except (tarfile.TarError, OSError) as e:
            warnings.warn(f"{url}: unreadable shard ignored by existing_keys ({e})")
    return keys
