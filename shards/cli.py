"""`shards`: inspect clip shards — ls, stats, show, verify, export.

    shards ls run/shards
    shards stats run/shards --json --plot scores.png
    shards show run/shards abc123_0004 --out abc123_0004.png
    shards verify 'run/shards/clips-*.tar'
    shards verify run/shards_abc123 --decisions run/shards_abc123/decisions.parquet
    shards export run/shards abc123_0004 --out clip.mp4

PATH may be a shard, a directory of shards, a glob, a brace list or a remote URL (see shards.reader);
a `pipe:CMD` URL runs CMD in a shell and is refused unless --allow-pipe is given. What is read from a
shard is bounded (member names, types and sizes, JSON size and depth: shards.reader.ReadLimits;
raise a size with --max-member-mb mp4=512); a member or sample outside the bounds is a problem
line, never a crash.
Exit codes: 0 ok, 1 problems found / key not found / no shards, 2 bad arguments or missing path.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from .reader import (DEFAULT_LIMITS, TAR_ERRORS, ReadLimits, _is_remote, close_tar, is_pipe, iter_samples,
                     list_shards, open_tar, parse_sample, tar_headers, walk_tar)
from .schema import MEMBERS, is_key, split_member_name

PERCENTILES = (5, 25, 50, 75, 95)
VIEWS = (("front", 0.0), ("right", 90.0), ("back", 180.0), ("left", -90.0))


class CliError(Exception):
    """A user-facing error: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _shards(paths: Sequence[str], args=None) -> list[str]:
    try:
        urls = list_shards(paths, allow_pipe=bool(getattr(args, "allow_pipe", False)))
    except (FileNotFoundError, ValueError) as e:  # ValueError: a refused pipe: URL
        raise CliError(str(e), code=2) from None
    if not urls:
        raise CliError(f"no shards (*.tar) found in {', '.join(paths)}")
    return urls


def _progress(items, desc: str, unit: str = "shard"):
    return tqdm(items, desc=desc, unit=unit, file=sys.stderr, disable=len(items) < 2 or None, leave=False)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _limits(args) -> ReadLimits:
    items = getattr(args, "max_member_mb", None) or []
    sizes = {}
    for item in items:
        ext, eq, mb = item.partition("=")
        try:
            sizes[ext.strip()] = float(mb)
        except ValueError:
            raise CliError(f"--max-member-mb {item!r}: expected EXT=MiB, e.g. mp4=512", code=2) from None
        if not eq or not ext.strip():
            raise CliError(f"--max-member-mb {item!r}: expected EXT=MiB, e.g. mp4=512", code=2)
    try:
        return ReadLimits.from_mb(sizes) if sizes else DEFAULT_LIMITS
    except ValueError as e:
        raise CliError(f"--max-member-mb: {e}", code=2) from None


def _size(url: str) -> Optional[int]:
    if _is_remote(url):
        if is_pipe(url):
            return None
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        return int(fs.size(path))
    return os.path.getsize(url)


def read_shard(url: str, limits: ReadLimits = DEFAULT_LIMITS, allow_pipe: bool = False):
    """The shard's samples as the reader sees them (`shards.reader.walk_tar`: same member-name rule,
    same limits), as a list, and the tar error that ended the walk early (None when it reached the end).

    Local shards must also end with the end-of-archive blocks (a shard cut exactly at a member
    boundary would otherwise look complete).
    """
    samples, error = [], None
    try:
        tar = open_tar(url, allow_pipe)
    except TAR_ERRORS as e:
        return samples, e
    try:
        samples.extend(walk_tar(tar, limits))
        if not _is_remote(url):
            end = tar.offset
            with open(url, "rb") as f:
                f.seek(end)
                tail = f.read(2 * 512)
            if len(tail) < 1024 or any(tail):
                raise tarfile.ReadError("truncated: no end-of-archive marker after the last member")
    except TAR_ERRORS as e:
        error = e
    finally:
        close_tar(tar)
    return samples, error


def _count_members(url: str, allow_pipe: bool = False) -> tuple[int, int]:
    """(samples, members) of one shard, reading headers only for local files."""
    keys, members = set(), 0
    if _is_remote(url):
        samples, error = read_shard(url, allow_pipe=allow_pipe)
        if error is not None:
            raise error
        return len(samples), sum(len(s.parts) + len(s.problems) for s in samples)
    with open_tar(url) as tar:
        for info in tar_headers(tar):
            members += 1
            try:
                keys.add(split_member_name(info.name)[0])
            except ValueError:
                pass  # not a sample member by the reader's rule (KEY.EXT): no key of its own
    return len(keys), members


# ---------------------------------------------------------------------------------------- ls
def cmd_ls(args) -> int:
    urls = _shards(args.paths, args)
    total_samples = total_bytes = 0
    rows = []
    for url in _progress(urls, "ls"):
        try:
            size = _size(url)
            samples, _ = _count_members(url, args.allow_pipe)
        except TAR_ERRORS as e:
            size = None
            rows.append((url, "?", _human(size) if size is not None else "?", f"unreadable: {e}"))
            continue
        total_samples += samples
        total_bytes += size or 0
        rows.append((url, str(samples), _human(size) if size is not None else "?", ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'shard':<{width}}  {'samples':>8}  {'bytes':>10}")
    for url, samples, size, note in rows:
        print(f"{url:<{width}}  {samples:>8}  {size:>10}" + (f"  {note}" if note else ""))
    print(f"{'total: ' + str(len(urls)) + ' shards':<{width}}  {total_samples:>8}  {_human(total_bytes):>10}")
    return 0


# ------------------------------------------------------------------------------------- stats
def score_summary(values: Sequence[Optional[float]]) -> dict:
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    out = {"count": int(present.size), "missing": int(len(values) - present.size)}
    if present.size:
        out.update(min=float(present.min()), median=float(np.median(present)),
                   mean=float(present.mean()), max=float(present.max()),
                   **{f"p{p}": float(np.percentile(present, p)) for p in PERCENTILES})
    return out


def collect_stats(metas: Sequence[dict]) -> dict:
    scores: dict[str, list] = defaultdict(list)
    for i, m in enumerate(metas):
        for name in set(m.get("scores", {})) | set(scores):
            scores[name].extend([None] * (i - len(scores[name])))  # scores absent from earlier clips
            scores[name].append(m.get("scores", {}).get(name))
    for name in scores:
        scores[name].extend([None] * (len(metas) - len(scores[name])))
    seconds = sum(m["num_frames"] / m["fps"] for m in metas)
    return {
        "clips": len(metas),
        "videos": len({m["video_id"] for m in metas}),
        "hours": seconds / 3600,
        "resolution": dict(Counter(f"{m['width']}x{m['height']}" for m in metas).most_common()),
        "fps": dict(Counter(f"{m['fps']:g}" for m in metas).most_common()),
        "category": dict(Counter(str(m.get("category")) for m in metas).most_common()),
        "scores": {name: score_summary(v) for name, v in sorted(scores.items())},
        "_values": scores,
    }


def plot_scores(values: dict[str, list], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(values)
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        ax.set_visible(True)
        present = [v for v in values[name] if v is not None]
        ax.hist(present, bins=30, color="tab:blue")
        ax.set_title(f"{name} (n={len(present)})", fontsize=9)
    if not names:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, "no scores", ha="center", va="center")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def cmd_stats(args) -> int:
    urls = _shards(args.paths, args)
    samples = iter_samples(urls, limits=_limits(args), allow_pipe=args.allow_pipe)
    metas = [s.meta for s in tqdm(samples, desc="stats", unit="clip", file=sys.stderr,
                                  disable=len(urls) < 2 or None, leave=False)]
    stats = collect_stats(metas)
    values = stats.pop("_values")
    stats["shards"], stats["skipped"] = len(urls), samples.stats.skipped
    if args.plot:
        plot_scores(values, args.plot)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"shards {stats['shards']}  clips {stats['clips']}  videos {stats['videos']}  "
              f"hours {stats['hours']:.3f}  skipped {stats['skipped']}")
        for field in ("resolution", "fps", "category"):
            print(f"{field}: " + ", ".join(f"{k} ×{v}" for k, v in stats[field].items()))
        if stats["scores"]:
            head = ["count", "missing", "min", "p5", "p25", "median", "mean", "p75", "p95", "max"]
            width = max(8, *(len(n) for n in stats["scores"]))
            print(f"{'score':<{width}}" + "".join(f"{h:>10}" for h in head))
            for name, s in stats["scores"].items():
                cells = [f"{s.get(h, float('nan')):>10.4g}" if h not in ("count", "missing")
                         else f"{s[h]:>10d}" for h in head]
                print(f"{name:<{width}}" + "".join(cells))
    for shard, key, what in samples.stats.problems:
        print(f"{shard}\t{key}\t{what}", file=sys.stderr)
    if args.plot:
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


# -------------------------------------------------------------------------------------- show
def find_sample(paths: Sequence[str], key: str, args=None):
    if not is_key(key):
        raise CliError(f"{key!r} is not a sample key ([A-Za-z0-9_-]); usage: shards show PATH… KEY", code=2)
    urls = _shards(paths, args)
    for sample in iter_samples(urls, limits=_limits(args), allow_pipe=bool(getattr(args, "allow_pipe", False))):
        if sample.key == key:
            return sample
    raise CliError(f"key {key} not found in {len(urls)} shard(s) of {', '.join(paths)}")


def contact_sheet(mp4: bytes, out: str, title: str = "", num_times: int = 6, width: int = 512) -> None:
    """Equirect frames over time, and under them four 90° views (front, right, back, left) of the middle frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from geometry import equirect_to_perspective
    except ImportError:  # package __init__ not exporting yet
        from geometry.projection import equirect_to_perspective

    from .video import decode_frames, probe

    info = probe(mp4)
    height = max(2, round(width * info.height / info.width / 2) * 2)
    times = np.unique(np.linspace(0, info.num_frames - 1, num_times).round().astype(int))
    frames = decode_frames(mp4, indices=times, size=(width, height))
    middle = frames[len(frames) // 2]
    view = height
    views = [equirect_to_perspective(middle, 90.0, yaw=yaw, out_hw=(view, view)) for _, yaw in VIEWS]

    cols = max(len(frames), len(VIEWS))
    fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 2 * 2.6 * 0.75), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, t, frame in zip(axes[0], times, frames):
        ax.imshow(frame)
        ax.set_title(f"frame {t} · {t / info.fps:.1f} s", fontsize=8)
    for ax, (name, yaw), pers in zip(axes[1], VIEWS, views):
        ax.imshow(np.asarray(pers))
        ax.set_title(f"{name} (yaw {yaw:g}°, FoV 90°) · frame {times[len(frames) // 2]}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _split_paths_key(items: Sequence[str], command: str) -> tuple[list[str], str]:
    if len(items) < 2:
        raise CliError(f"usage: shards {command} PATH… KEY (got {len(items)} argument)", code=2)
    return list(items[:-1]), items[-1]


def cmd_show(args) -> int:
    paths, key = _split_paths_key(args.items, "show")
    sample = find_sample(paths, key, args)
    print(f"# {sample.key} in {sample.url}")
    print(json.dumps(sample.meta, indent=2, sort_keys=True))
    print(f"# members: mp4 {len(sample.mp4)} B" + (f", jpg {len(sample.jpg)} B" if sample.jpg else ", no jpg"))
    if args.out:
        category = sample.meta.get("category") or "no category"
        try:
            contact_sheet(sample.mp4, args.out, title=f"{sample.key} ({category})")
        except ValueError as e:  # an mp4 that does not decode or is over the decode budget
            raise CliError(f"{sample.url} {sample.key}: {e}", code=2) from None
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------ export
def cmd_export(args) -> int:
    paths, key = _split_paths_key(args.items, "export")
    sample = find_sample(paths, key, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(sample.mp4)
    if args.json:
        Path(args.json).write_text(json.dumps(sample.meta, indent=2, sort_keys=True))
    print(f"wrote {out} ({len(sample.mp4)} B) from {sample.url}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------ verify
def verify_shard(url: str, decode: bool = True, limits: ReadLimits = DEFAULT_LIMITS, allow_pipe: bool = False
                 ) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Keys of a shard and its problems (shard, key, what); checks members, JSON/schema, mp4, jpg.

    Members are walked exactly as the reader walks them (`read_shard`): a sample the reader would
    skip is a problem here, with the same words."""
    from .video import decode_frames, probe

    problems: list[tuple[str, str, str]] = []
    samples, error = read_shard(url, limits, allow_pipe)
    if error is not None:
        problems.append((url, "-", f"unreadable tar: {type(error).__name__}: {error}"))
    order = []
    for raw in samples:
        key, parts = raw.key, raw.parts
        order.append(key)
        if raw.problems:
            problems.extend((url, key, what) for what in raw.problems)
            if not is_key(key):
                continue
        for m in MEMBERS:
            if m not in parts and not any(f"member {key}.{m} " in p for p in raw.problems):
                problems.append((url, key, f"missing member {m}"))
        for extra in sorted(set(parts) - set(MEMBERS)):
            problems.append((url, key, f"unexpected member {extra}"))
        meta = None
        if "json" in parts:
            try:
                meta = parse_sample({"__key__": key, "mp4": b"-", **parts}, url, limits).meta
            except ValueError as e:
                if "missing member" not in str(e):
                    problems.append((url, key, str(e)))
        if "mp4" in parts:
            try:
                info = probe(parts["mp4"])
                if decode:
                    count = len(decode_frames(parts["mp4"], size=(64, 32)))
                    if count != info.num_frames:
                        problems.append((url, key, f"mp4 decodes {count} frames, its header says {info.num_frames}"))
                if meta is not None:
                    want = (meta["width"], meta["height"], meta["num_frames"])
                    got = (info.width, info.height, info.num_frames)
                    if want != got:
                        problems.append((url, key, f"json says {want[0]}x{want[1]}, {want[2]} frames; "
                                                   f"mp4 is {got[0]}x{got[1]}, {got[2]} frames"))
            except (ValueError, OSError) as e:
                problems.append((url, key, f"mp4 does not decode: {e}"))
        if "jpg" in parts:
            import cv2

            if cv2.imdecode(np.frombuffer(parts["jpg"], np.uint8), cv2.IMREAD_COLOR) is None:
                problems.append((url, key, "jpg does not decode"))
    return order, problems


# the columns of a curation run's decisions.parquet that `verify --decisions` reads (written by
# pipeline/decisions.py; the shards layer reads the file itself, it never imports pipeline/):
# `key` the sample key of a clip row (null on the one row per source video), `status` accepted /
# rejected / error, and when present `stage`, `reason` (said in problem lines) and `shard` (the
# shard file name that holds an accepted clip)
DECISION_KEY, DECISION_STATUS = "key", "status"
DECISION_OPTIONAL = ("stage", "reason", "shard")


@dataclass
class Decisions:
    """The clip rows of a decisions file: key → rows (status, stage, reason, shard), and problems of
    the file itself (bad keys, a key decided twice)."""

    path: str
    rows: dict[str, list[dict]]
    problems: list[tuple[str, str, str]]

    def accepted(self) -> set[str]:
        return {k for k, rows in self.rows.items() if any(r["status"] == "accepted" for r in rows)}


def read_decisions(path: str) -> Decisions:
    """The clip rows of a decisions parquet (columns above), or CliError (exit 2) naming the file."""
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except FileNotFoundError:
        raise CliError(f"--decisions {path}: no such file", code=2) from None
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise CliError(f"--decisions {path}: not a parquet file ({type(e).__name__}: {e})", code=2) from None
    lacking = [c for c in (DECISION_KEY, DECISION_STATUS) if c not in names]
    if lacking:
        raise CliError(f"--decisions {path}: no {', '.join(lacking)} column (not a curation run's decisions.parquet)",
                       code=2)
    cols = [DECISION_KEY, DECISION_STATUS] + [c for c in DECISION_OPTIONAL if c in names]
    try:
        table = pq.read_table(path, columns=cols).to_pydict()
    except (OSError, ValueError) as e:
        raise CliError(f"--decisions {path}: unreadable ({type(e).__name__}: {e})", code=2) from None
    rows: dict[str, list[dict]] = defaultdict(list)
    problems: list[tuple[str, str, str]] = []
    for i, key in enumerate(table[DECISION_KEY]):
        if key is None:
            continue  # a video-level row
        if not is_key(key):  # never printed raw: it may hold tabs or newlines
            problems.append((path, "-", f"row {i}: key {str(key)[:80]!r} is not a sample key ([A-Za-z0-9_-])"))
            continue
        rows[key].append({c: table[c][i] for c in cols if c != DECISION_KEY})
    for key, found in rows.items():
        if len(found) > 1:
            problems.append((path, key, f"{len(found)} decision rows for this key"))
    return Decisions(path, dict(rows), problems)


def check_against_decisions(decisions: Decisions, found: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """Problems between the shards (`found`: key → the shards holding it, in order) and the decisions:
    a shard key without an `accepted` decision, an accepted clip in no shard, one in a shard other than
    its decision's `shard`. (A key in two shards is already a `duplicate key` problem.)"""
    problems = list(decisions.problems)
    accepted = decisions.accepted()
    for key, urls in found.items():
        if key not in decisions.rows:
            problems.extend((url, key, f"no decision for this key in {decisions.path}") for url in urls)
        elif key not in accepted:
            row = decisions.rows[key][0]
            why = "/".join(str(row[c]) for c in ("stage", "reason") if row.get(c))
            problems.extend((url, key, f"decided {row['status']}{' at ' + why if why else ''} in {decisions.path}, "
                                       f"yet in the shards") for url in urls)
        else:
            shard = next((r.get("shard") for r in decisions.rows[key] if r["status"] == "accepted"), None)
            name = lambda p: p.rstrip("/").rsplit("/", 1)[-1]  # noqa: E731 (file names: the column may hold paths)
            if isinstance(shard, str) and shard and name(shard) not in {name(u) for u in urls}:
                problems.append((urls[0], key, f"{decisions.path} puts it in shard {shard}"))
    for key in sorted(accepted - set(found)):
        problems.append((decisions.path, key, "accepted in the decisions, in no shard"))
    return problems


def cmd_verify(args) -> int:
    urls = _shards(args.paths, args)
    decisions = read_decisions(args.decisions) if args.decisions else None
    limits = _limits(args)
    found: dict[str, list[str]] = defaultdict(list)
    problems: list[tuple[str, str, str]] = []
    samples = 0
    for url in _progress(urls, "verify"):
        keys, shard_problems = verify_shard(url, decode=not args.quick, limits=limits, allow_pipe=args.allow_pipe)
        problems.extend(shard_problems)
        for key in keys:
            if key in found:
                problems.append((url, key, f"duplicate key (also in {found[key][0]})"))
            found[key].append(url)
        samples += len(keys)
    if decisions is not None:
        problems.extend(check_against_decisions(decisions, {k: v for k, v in found.items() if is_key(k)}))
    for shard, key, what in problems:
        print(f"{shard}\t{key}\t{what}")
    verdict = "OK" if not problems else f"{len(problems)} problem(s)"
    against = f" against {len(decisions.accepted())} accepted clip(s) in {decisions.path}" if decisions else ""
    print(f"verified {len(urls)} shard(s), {samples} sample(s){against}: {verdict}", file=sys.stderr)
    return 1 if problems else 0


# -------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--allow-pipe", action="store_true",
                        help="let pipe:CMD shard URLs run CMD in a shell (refused by default)")
    common.add_argument("--max-member-mb", action="append", metavar="EXT=MiB",
                        help="raise / lower the size limit of one member type (default mp4=256 jpg=16 json=1)")

    p = sub.add_parser("ls", parents=[common], help="shards with their sample counts and sizes, and totals")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("stats", parents=[common], help="clip count, hours, resolution/fps/category counts, score distributions")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write histograms of every score")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("show", parents=[common], help="metadata of one sample; --out writes a contact sheet PNG")
    p.add_argument("items", nargs="+", metavar="PATH… KEY")
    p.add_argument("--out", metavar="FILE.png", help="contact sheet: frames over time + 4 unwrapped views")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("verify", parents=[common], help="check every shard, sample, member, mp4 and json; one line per problem")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--quick", action="store_true", help="probe mp4 headers instead of decoding every frame")
    p.add_argument("--decisions", metavar="DECISIONS.parquet",
                   help="a curation run's decisions: also check that every shard key is an accepted clip there and "
                        "every accepted clip is in the shards exactly once")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", parents=[common], help="write one sample's mp4 (and --json metadata) to files")
    p.add_argument("items", nargs="+", metavar="PATH… KEY")
    p.add_argument("--out", required=True, metavar="FILE.mp4")
    p.add_argument("--json", metavar="FILE.json", help="also write the metadata")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        print(f"shards {args.command}: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:  # `shards ls … | head`
        return 0
    except (ValueError, OSError) as e:  # anything else about the input: one line, no traceback
        print(f"shards {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
