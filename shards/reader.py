"""Stream samples out of clip shards (WebDataset tar format: `KEY.mp4`, `KEY.json`, `KEY.jpg`).

`urls` may mix local files, directories (their `*.tar`), globs, brace lists (`clips-{000000..000009}.tar`)
and fsspec URLs (`s3://…`, `gs://…`, `file://…`). `pipe:CMD` URLs run CMD in a shell, so they are
refused unless the caller opts in (`allow_pipe=True`; `data.allow_pipe: true` in a train config,
`--allow-pipe` on the CLIs). Partial shards (`*.tar.tmp`) are never read. Shards are split by rank
(torch.distributed / DeepSpeed, or explicit rank and world_size) and then by DataLoader worker, so
each sample goes to exactly one consumer when there are at least ranks × workers shards.

Shards may come from anyone, so every member header is checked before its data is read
(`ReadLimits`): the name must be `KEY.EXT` (`shards.schema.split_member_name`, the same rule as
`shards verify`), the member a plain regular file (no sparse, link, device or directory members),
its size under the limit for its extension; the JSON is size- and depth-bounded and its numbers
finite and in range. webdataset's own tar expander reads every member whole, with no limit (a
10 KB tar with a sparse member declaring 1 TB is a MemoryError), so the tar is walked here with
`tarfile`, one member at a time. A bad sample (bad member, missing member, bad JSON, wrong schema)
or an unreadable shard is skipped and counted in `stats`; strict=True raises instead.
"""
from __future__ import annotations

import glob as globlib
import os
import random
import re
import sys
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import braceexpand

from .schema import (MAX_JSON_BYTES, MAX_JSON_DEPTH, SchemaError, check_key, loads_bounded, split_member_name,
                     validate_meta)

REMOTE_TIMEOUT_S = 60.0  # connect / read timeout of one remote request (http, https)
REQUIRED_MEMBERS = ("mp4", "json")  # jpg is a convenience: its absence does not make a sample bad
# what a tar error looks like while walking a shard (truncated data, bad headers, I/O)
TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, OverflowError, TimeoutError)
# A GNU long name / long link or a PAX record block: real ones hold a path and a few records (hundreds
# of bytes); tarfile reads one whole, before the member it describes, so it is bounded here.
MAX_EXTENDED_HEADER_BYTES = 2**20
MAX_EXTENDED_CHAIN = 8  # extended headers in a row before a member (real tars: L, K, x, g at most)
_EXTENDED_TYPES = {tarfile.GNUTYPE_LONGNAME: "GNU long-name header", tarfile.GNUTYPE_LONGLINK: "GNU long-link header",
                   tarfile.XHDTYPE: "PAX header", tarfile.XGLTYPE: "PAX global header",
                   tarfile.SOLARIS_XHDTYPE: "PAX header"}


class ShardReadError(ValueError, RuntimeError):
    """A bad sample or shard met in strict mode (a ValueError: bad input, said in one line)."""


class PipeRefused(ValueError):
    """A `pipe:` URL (it runs a shell command) given without the explicit opt-in."""


@dataclass(frozen=True)
class ReadLimits:
    """What the reader accepts from a shard: bytes per member by extension, JSON size and depth."""

    member_bytes: Mapping[str, int] = field(default_factory=lambda: {
        "mp4": 256 * 2**20,   # a 10-s 1024×512 clip is a few MB; 4K clips stay far below this
        "jpg": 16 * 2**20,
        "json": MAX_JSON_BYTES,
    })
    other_bytes: int = 16 * 2**20  # any other extension
    json_depth: int = MAX_JSON_DEPTH
    remote_timeout_s: float = REMOTE_TIMEOUT_S  # one remote request (http/https) that hangs longer fails

    @classmethod
    def from_mb(cls, member_mb: Mapping[str, float] | None = None, **kw) -> "ReadLimits":
        """Limits with some extensions overridden, in MiB (configs: `data.max_member_mb: {mp4: 512}`)."""
        sizes = dict(cls().member_bytes)
        for ext, mb in (member_mb or {}).items():
            if not isinstance(mb, (int, float)) or isinstance(mb, bool) or not 0 < mb < 2**20:
                raise ValueError(f"max_member_mb.{ext}: expected a size in MiB in (0, 2^20), got {mb!r}")
            sizes[str(ext).lower()] = int(mb * 2**20)
        return cls(member_bytes=sizes, **kw)

    def for_ext(self, ext: str) -> int:
        return int(self.member_bytes.get(ext, self.other_bytes))


DEFAULT_LIMITS = ReadLimits()


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


def is_pipe(url: str) -> bool:
    """A URL that webdataset would run as a shell command (`pipe:CMD`, any case, leading spaces)."""
    return str(url).lstrip().lower().startswith("pipe:")


def check_pipe(url: str, allow_pipe: bool) -> None:
    if is_pipe(url) and not allow_pipe:
        raise PipeRefused(f"{url}: a pipe: URL runs a shell command; refused unless you opt in "
                          f"(data.allow_pipe: true in a config, --allow-pipe on the command line)")


def _is_remote(url: str) -> bool:
    return is_pipe(url) or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url) is not None


def list_shards(paths: str | os.PathLike | Sequence[str | os.PathLike], allow_pipe: bool = False) -> list[str]:
    """Expand paths (files, directories, globs, brace lists, remote URLs) into shard URLs.

    Directories give their `*.tar` files, sorted; `.tmp` files are never listed. A local path
    that matches nothing raises FileNotFoundError naming it; a `pipe:` URL raises PipeRefused
    (a ValueError) unless allow_pipe.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    urls: list[str] = []
    for raw in paths:
        check_pipe(str(raw), allow_pipe)
        for path in braceexpand.braceexpand(str(raw)):
            check_pipe(path, allow_pipe)
            if is_pipe(path):
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


def remote_options(url: str, timeout_s: float = REMOTE_TIMEOUT_S) -> dict:
    """fsspec storage options that bound how long one request may hang (http/https: aiohttp
    timeouts; other backends keep their own defaults)."""
    if url.split("://", 1)[0].lower() in ("http", "https"):
        import aiohttp

        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)}}
    return {}


def _list_remote(url: str) -> list[str]:
    import fsspec

    if url.endswith(".tar"):  # one shard: nothing to list (and no request that could hang)
        return [url]
    fs, path = fsspec.core.url_to_fs(url, **remote_options(url))
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    unstrip = (lambda p: p) if protocol == "file" else (lambda p: f"{protocol}://{p}")
    if any(c in path for c in "*?["):
        found = sorted(fs.glob(path))
    elif fs.isdir(path):
        found = sorted(p for p in fs.ls(path, detail=False))
    else:
        return [url] if not url.endswith(".tmp") else []
    return [unstrip(p) for p in found if p.endswith(".tar")]


def _open_url(url: str, allow_pipe: bool = False, timeout_s: float = REMOTE_TIMEOUT_S):
    check_pipe(url, allow_pipe)
    if is_pipe(url):
        from webdataset.gopen import gopen

        return gopen(url.lstrip(), "rb")
    if _is_remote(url):
        import fsspec

        return fsspec.open(url, "rb", **remote_options(url, timeout_s)).open()
    return open(url, "rb")


# ------------------------------------------------------------------------------- bounded tar walk
class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses, before reading it, an extended header declaring more than
    MAX_EXTENDED_HEADER_BYTES (tarfile would read a long name declaring 2 GiB into memory whole), and
    a chain of more than MAX_EXTENDED_CHAIN of them (tarfile recurses once per header: a RecursionError)."""

    def _proc_member(self, tar):
        kind = _EXTENDED_TYPES.get(self.type)
        if kind is None:
            tar._argus_chain = 0
            return super()._proc_member(tar)
        tar._argus_chain = getattr(tar, "_argus_chain", 0) + 1
        if self.size > MAX_EXTENDED_HEADER_BYTES:
            raise tarfile.ReadError(f"{kind} at byte {self.offset} declares {self.size} bytes, "
                                    f"over the limit of {MAX_EXTENDED_HEADER_BYTES}")
        if tar._argus_chain > MAX_EXTENDED_CHAIN:
            raise tarfile.ReadError(f"more than {MAX_EXTENDED_CHAIN} extended headers in a row at byte {self.offset}")
        return super()._proc_member(tar)


def tar_headers(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The member headers of an open tar, one at a time, without keeping them (TarFile's own iterator
    keeps every header it has read: memory that grows with the member count)."""
    while True:
        info = tar.next()
        tar.members.clear()
        if info is None:
            return
        yield info


@dataclass
class RawSample:
    """The members of one key as found in a shard, or why they cannot make a sample."""

    key: str
    parts: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _member_problem(info: tarfile.TarInfo, limits: ReadLimits) -> tuple[str, str, Optional[str]]:
    """(key, ext, problem) of a member header; problem None when its data may be read."""
    try:
        key, ext = split_member_name(info.name)
    except ValueError as e:
        return repr(info.name), "", str(e)
    if info.issparse() or info.type == tarfile.GNUTYPE_SPARSE:
        return key, ext, f"member {info.name} is a sparse file (declares {info.size} bytes): not allowed"
    if not info.isreg():
        return key, ext, f"member {info.name} is not a regular file (tar type {info.type!r})"
    limit = limits.for_ext(ext)
    if info.size > limit:
        return key, ext, f"member {info.name} is {info.size} bytes, over the {ext} limit of {limit} bytes"
    return key, ext, None


def walk_tar(tar: tarfile.TarFile, limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[RawSample]:
    """The samples of an open tar, grouping consecutive members by key (as webdataset does); the
    data of a member is read only after its header passed `_member_problem`. Tar errors propagate."""
    current: Optional[RawSample] = None
    for info in tar_headers(tar):
        key, ext, problem = _member_problem(info, limits)
        if current is not None and key != current.key:
            yield current
            current = None
        if current is None:
            current = RawSample(key)
        if problem is not None:
            current.problems.append(problem)
        elif ext in current.parts:
            current.problems.append(f"duplicate member {ext}")
        else:
            data = tar.extractfile(info).read()
            if len(data) != info.size:
                raise tarfile.ReadError(f"member {info.name}: {len(data)} of {info.size} bytes (truncated)")
            current.parts[ext] = data
    if current is not None:
        yield current


def open_tar(url: str, allow_pipe: bool = False, timeout_s: float = REMOTE_TIMEOUT_S) -> tarfile.TarFile:
    """A TarFile over a shard: seekable for local files, streamed for remote ones (uncompressed tar only)."""
    if _is_remote(url):
        stream = _open_url(url, allow_pipe, timeout_s)
        try:
            tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo)
        except BaseException:
            stream.close()
            raise
        tar._argus_stream = stream  # closed with the tar (close_tar)
        return tar
    return tarfile.open(url, mode="r:", tarinfo=BoundedTarInfo)


def close_tar(tar: tarfile.TarFile) -> None:
    try:
        tar.close()
    finally:
        stream = getattr(tar, "_argus_stream", None)
        if stream is not None:
            stream.close()


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else from RANK/WORLD_SIZE, else (0, 1)."""
    if "torch" not in sys.modules:  # nothing can have initialised it (and importing torch costs seconds)
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def worker_rank() -> tuple[int, int]:
    """(worker id, number of workers) inside a torch DataLoader worker, else (0, 1)."""
    if "torch" not in sys.modules:  # not inside a DataLoader worker
        return 0, 1
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


def parse_sample(raw: dict, url: str, limits: ReadLimits = DEFAULT_LIMITS) -> Sample:
    """A sample dict (`__key__` and members by extension) → Sample, or SchemaError / ValueError saying
    what is wrong."""
    key = raw.get("__key__", "?")
    check_key(key)
    missing = [m for m in REQUIRED_MEMBERS if m not in raw]
    if missing:
        raise ValueError(f"missing member(s): {', '.join(missing)}")
    if len(raw["mp4"]) == 0:
        raise ValueError("empty mp4 member")
    obj = loads_bounded(raw["json"], "json", max_bytes=limits.for_ext("json"), max_depth=limits.json_depth)
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
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 limits: ReadLimits = DEFAULT_LIMITS, allow_pipe: bool = False):
        self.urls = list_shards(urls, allow_pipe=allow_pipe)
        self.limits, self.allow_pipe = limits, allow_pipe
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
        for url in shards:
            try:
                tar = open_tar(url, self.allow_pipe, self.limits.remote_timeout_s)
            except TAR_ERRORS as e:
                self._problem(url, "-", f"cannot open: {type(e).__name__}: {e}")
                continue
            self.stats.shards += 1
            try:
                for raw in walk_tar(tar, self.limits):
                    if raw.problems:
                        self._problem(url, raw.key, "; ".join(raw.problems))
                        continue
                    try:
                        sample = parse_sample({"__key__": raw.key, **raw.parts}, url, self.limits)
                    except ValueError as e:
                        self._problem(url, raw.key, str(e))
                        continue
                    self.stats.samples += 1
                    yield sample
            except TAR_ERRORS as e:  # truncated / corrupt tar: the rest of this shard is lost
                self._problem(url, "-", f"unreadable tar: {type(e).__name__}: {e}")
            finally:
                close_tar(tar)


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
                 world_size: Optional[int] = None, limits: ReadLimits = DEFAULT_LIMITS,
                 allow_pipe: bool = False) -> ShardSamples:
    """Samples of the shards at `urls` (see module doc); `.stats` on the result counts what was skipped.

    shuffle=N shuffles shard order and keeps an N-sample shuffle buffer. rank/world_size given
    explicitly override split_by_node's torch.distributed lookup. `limits` bounds what is read
    (ReadLimits); `allow_pipe` lets `pipe:` URLs run their shell command.
    """
    return ShardSamples(urls, shuffle=shuffle, split_by_node=split_by_node,
                        split_by_worker=split_by_worker, strict=strict, seed=seed,
                        rank=rank, world_size=world_size, limits=limits, allow_pipe=allow_pipe)


def shard_keys(url: str) -> list[str]:
    """Keys of the complete samples (mp4 + json present) in one local shard, reading headers only."""
    members: dict[str, set[str]] = {}
    with open_tar(url) as tar:
        for info in tar_headers(tar):
            try:
                base, ext = split_member_name(info.name)
            except ValueError:
                continue  # the reader skips it too
            if info.isreg() and not info.issparse():
                members.setdefault(base, set()).add(ext)
    return [k for k, exts in members.items() if all(m in exts for m in REQUIRED_MEMBERS)]


def shard_index(directory: str | os.PathLike) -> dict[str, list[str]]:
    """key → names of the complete shards (`*.tar`, never `.tmp`) of a directory that hold it; empty
    when there is none. Reads tar headers only. A shard that cannot be read raises ShardReadError
    naming it: a resume must take its clips neither as missing (writing them again) nor as done."""
    directory = Path(directory)
    if not directory.exists():
        return {}
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a directory")
    index: dict[str, list[str]] = {}
    for url in list_shards(directory):
        try:
            keys = shard_keys(url)
        except TAR_ERRORS as e:
            raise ShardReadError(f"{url}: unreadable shard ({type(e).__name__}: {e}); move it out of "
                                 f"{directory} or restore it") from e
        for key in keys:
            index.setdefault(key, []).append(Path(url).name)
    return index
