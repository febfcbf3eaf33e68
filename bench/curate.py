"""Curation benchmark: the whole `curate.py` run against the floor of decoding every source frame
once, per-stage figures, and the peak memory of the driver and of the largest Ray worker.

    .venv/bin/python bench/curate.py [--config configs/curate/local.yaml] [--minutes 2 20]
                                     [--sample PATH] [--skip-stages] [--set KEY=VALUE ...]

Inputs: the real sample testRoom1_1920Mono.mp4 (12 s, 1920x960) and, for each --minutes M, a
1024x512 video of M minutes made from it (looped, scaled; libx264 ultrafast) in a temp dir; and,
first, its first second (no clip to cut: the run's fixed cost). For each input:
- floor: PyAV decoding every frame of the source once (no conversion), seconds (the best of
  two, all measured before the first run);
- run: `python pipeline/curate.py --config … --input VIDEO --output TMP` in a subprocess (a local
  Ray started by the driver, as a user runs it), wall seconds, source seconds per wall second, and
  wall / floor; meanwhile the resident memory of the driver and of every Ray worker under it is
  sampled every 0.2 s: the peak of the driver and of the largest worker are printed. A worker's
  memory is what it owns: its RSS less the object-store pages it has mapped (the node's one
  plasma file, sized by `ray.object_store_mb`, counted in the RSS of every worker that reads a
  block from it); its RSS is printed beside it;
- stages (unless --skip-stages): each stage body alone in this process, no Ray, one after the
  other (sample, video filters, cuts = TransNetV2 over every frame, then per clip: cut, motion,
  text, pixels), wall seconds and x floor.
At the end: the fixed cost (the 1-s run) and the marginal cost between the two longest inputs
(extra wall seconds per extra floor second), which is what a long video approaches.
Overrides (--set) go to curate.py too; the default clips are 10 s (the paper's), at local.yaml's
size, so the number of clips grows with the video's length.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402

from pipeline.config import CurateConfig, apply_overrides  # noqa: E402
from shards.video import ffmpeg_exe, probe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "samples" / "testRoom1_1920Mono.mp4"
DEFAULT_SET = ["clips.duration_s=10", "clips.min_duration_s=10", "ray.progress_bars=false"]


def decode_floor(path: Path) -> float:
    """Seconds PyAV takes to decode every frame of `path` once (threaded, as the stages decode)."""
    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            pass
    return time.perf_counter() - t0


def reencode(src: Path, seconds: float, out: Path, loops: int = 0, scale: str | None = None) -> Path:
    """The first `seconds` of `src` looped `loops` more times, optionally scaled, re-encoded with
    libx264 ultrafast (so it starts on a key frame) and without audio."""
    vf = ["-vf", f"scale={scale}"] if scale else []
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(src), "-t", f"{seconds}",
                    *vf, "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-an", str(out)], check=True)
    return out


def make_short(src: Path, seconds: float, out: Path) -> Path:
    """Shorter than a clip, so a run on it is the fixed cost alone — Ray, the actors, one video
    through the video level."""
    return reencode(src, seconds, out)


def make_long(src: Path, minutes: float, out: Path) -> Path:
    secs = minutes * 60
    return reencode(src, secs, out, loops=int(np.ceil(secs / probe(src).duration_s)), scale="1024:512")


def object_store_bytes(pid: int) -> int:
    """Resident bytes of a process's mappings of Ray's object store (the node's plasma file in
    /dev/shm, sized by `ray.object_store_mb`): every worker maps the same pages, so they count in
    each worker's RSS without being that worker's memory."""
    total, in_store = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if not line[0].isupper():  # a mapping's header line: "start-end perms offset dev inode path"
                in_store = "/plasma" in line
            elif in_store and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


class PeakRSS(threading.Thread):
    """Samples the memory of a process and of each of its descendants (Ray workers) until stopped:
    for a worker, its RSS and what it owns (RSS less its resident object-store pages)."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.every_s, self.stop = psutil.Process(pid), every_s, threading.Event()
        self.driver, self.workers = 0, {}  # workers: pid -> (peak owned, peak RSS, name)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.driver = max(self.driver, self.root.memory_info().rss)
                for p in self.root.children(recursive=True):
                    try:
                        name = p.cmdline()[0] if p.cmdline() else ""
                        if name.startswith("ray::"):  # a Ray worker (raylet, gcs are not)
                            rss = p.memory_info().rss
                            owned, peak_rss, _ = self.workers.get(p.pid, (0, 0, ""))
                            self.workers[p.pid] = (max(owned, rss - object_store_bytes(p.pid)),
                                                   max(peak_rss, rss), name)
                    except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError, OSError):
                        continue
            except psutil.NoSuchProcess:
                return
            time.sleep(self.every_s)

    def largest_worker(self) -> tuple[int, int, str]:
        """(owned, RSS, name) of the worker that owned the most."""
        return max(self.workers.values(), default=(0, 0, ""))

    def by_stage(self) -> dict[str, tuple[int, int]]:
        """Peak (owned, RSS) per kind of worker (the last operator of its fused chain), largest first."""
        out: dict[str, tuple[int, int]] = {}
        for owned, rss, name in self.workers.values():
            stage = name.split(" ")[0].split("->")[-1].rstrip(")").replace("MapBatches(", "").replace("Map(", "")
            stage = stage.replace("ray::", "").replace("MapWorker(", "")
            prev = out.get(stage, (0, 0))
            out[stage] = (max(prev[0], owned), max(prev[1], rss))
        return dict(sorted(out.items(), key=lambda kv: -kv[1][0]))


def whole_run(video: Path, config: str, sets: list[str], tmp: Path) -> dict:
    out = tmp / f"run-{video.stem}"
    cmd = [sys.executable, str(REPO / "pipeline" / "curate.py"), "--config", config, "--input", str(video),
           "--output", str(out), "--set", *sets]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mon = PeakRSS(p.pid)
    mon.start()
    log = p.communicate()[0]
    wall = time.perf_counter() - t0
    mon.stop.set()
    mon.join()
    if p.returncode != 0:
        raise RuntimeError(f"curate.py failed on {video}:\n{log[-3000:]}")
    line = next((ln for ln in log.splitlines() if ln.startswith("curate:")), "")
    owned, rss, name = mon.largest_worker()
    per_stage = ", ".join(f"{k} {o / 2**20:.0f} ({r / 2**20:.0f})" for k, (o, r) in list(mon.by_stage().items())[:6])
    return dict(wall=wall, line=line, driver_mib=mon.driver / 2**20, worker_mib=owned / 2**20,
                worker_rss_mib=rss / 2**20, worker_name=name.split(" ")[0][:60], per_stage=per_stage)


def stages(video: Path, cfg: CurateConfig, tmp: Path) -> list[tuple[str, float]]:
    """Each stage body alone in this process (no Ray), in pipeline order."""
    from pipeline.clips import PlanClips, CutClip
    from pipeline.curate import cut_threshold
    from pipeline.filters.cuts import VideoCuts
    from pipeline.filters.format import FormatScores
    from pipeline.filters.inter_frame import inter_frame_scores
    from pipeline.filters.intra_frame import IntraFrameScores
    from pipeline.filters.motion import MotionScores
    from pipeline.filters.pixels import PixelScores
    from pipeline.filters.text import TextScores
    from pipeline.sample import SampleFrames

    rows = []

    def timed(name, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        rows.append((name, time.perf_counter() - t0))
        return out

    b = {"video_id": np.array([video.stem], dtype=object), "source": np.array([str(video)], dtype=object),
         "local_path": np.array([str(video)], dtype=object)}
    b = timed("sample (probe + 8 frames)", SampleFrames(cfg), b)
    intra = IntraFrameScores(cfg.filters.intra_frame)
    t0 = time.perf_counter()
    for fn in (PixelScores(cfg.filters.pixels, "video_", "video_pixels"), FormatScores(cfg.filters.format), intra,
               inter_frame_scores):
        b = fn(b)
    rows.append(("video filters (pixels, format, LPIPS, inter)", time.perf_counter() - t0))
    row = {k: (v[0] if not isinstance(v, list) else v[0]) for k, v in b.items() if k != "frames"}
    row.update(status="accepted", error="")  # every clip through the clip stages, whatever the verdict
    cuts = VideoCuts(cfg.filters.cuts, cfg.download, str(tmp))
    row = timed("cuts (decode every frame 48x27 + TransNetV2)", cuts, row)
    planned = PlanClips(cfg, cut_threshold(cfg.thresholds))(dict(row))[1:]
    cut, motion, text, pixels = CutClip(cfg, str(tmp)), MotionScores(cfg.filters.motion), TextScores(cfg.filters.text), \
        PixelScores(cfg.filters.pixels)
    acc = {"cut (ffmpeg cut+encode, analysis decode, jpg)": 0.0, "motion": 0.0, "text": 0.0, "pixels": 0.0}
    for c in planned:
        t0 = time.perf_counter()
        c = cut(c)
        acc["cut (ffmpeg cut+encode, analysis decode, jpg)"] += time.perf_counter() - t0
        cb = {k: np.array([v], dtype=object) for k, v in c.items() if k != "frames"}
        cb["frames"] = [c["frames"]]
        for name, fn in (("motion", motion), ("text", text), ("pixels", pixels)):
            t0 = time.perf_counter()
            cb = fn(cb)
            acc[name] += time.perf_counter() - t0
    rows += [(f"{k} x{len(planned)} clips", v) for k, v in acc.items()]
    rows.append(("all stages", sum(t for _, t in rows)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "curate" / "local.yaml"))
    ap.add_argument("--sample", default=str(SAMPLE))
    ap.add_argument("--minutes", type=float, nargs="*", default=[2.0])
    ap.add_argument("--skip-stages", action="store_true")
    ap.add_argument("--skip-run", action="store_true")
    ap.add_argument("--set", nargs="*", default=[])
    args = ap.parse_args()
    sets = DEFAULT_SET + args.set
    cfg = CurateConfig.from_dict(apply_overrides(yaml.safe_load(Path(args.config).read_text()), list(sets)))
    print(f"machine: {psutil.cpu_count()} CPUs, load {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}; "
          f"config {args.config} + {' '.join(sets)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        tmp = Path(tmp)
        videos = [Path(args.sample)] + [make_long(Path(args.sample), m, tmp / f"long_{m:g}min_1024x512.mp4")
                                        for m in args.minutes]
        if not args.skip_run:  # the fixed cost first: a run with no clip to cut
            videos.insert(0, make_short(Path(args.sample), 1.0, tmp / "fixed_1s.mp4"))
        runs = []  # (video, floor, wall) of every whole run
        # every floor before any run (a run's Ray processes are still exiting when it returns) and
        # the best of two: a floor is a few seconds of threaded decoding, easily disturbed
        floors = {v: min(decode_floor(v), decode_floor(v)) for v in videos}
        for v in videos:
            info = probe(v)
            floor = floors[v]
            print(f"\n== {v.name}: {info.duration_s:.0f} s, {info.width}x{info.height} @ {info.fps:g} fps, "
                  f"{info.num_frames} frames; floor (PyAV, every frame once) {floor:.2f} s = "
                  f"{info.duration_s / floor:.1f} source s per s", flush=True)
            if not args.skip_run:
                r = whole_run(v, args.config, sets, tmp)
                runs.append((v, floor, r["wall"]))
                print(f"whole curate.py run: {r['wall']:.1f} s wall = {info.duration_s / r['wall']:.2f} source s per "
                      f"wall s = {r['wall'] / floor:.1f}x floor; peak RSS driver {r['driver_mib']:.0f} MiB, "
                      f"largest worker {r['worker_mib']:.0f} MiB owned, {r['worker_rss_mib']:.0f} MiB RSS ({r['worker_name']})\n"
                      f"  workers' peak by stage, MiB owned (RSS with object-store pages): "
                      f"{r['per_stage']}\n  {r['line']}", flush=True)
            if not args.skip_stages:
                print(f"{'stage (in-process, no Ray)':<58} {'wall s':>8} {'x floor':>8}")
                for name, t in stages(v, cfg, tmp):
                    print(f"{name:<58} {t:8.2f} {t / floor:8.2f}", flush=True)
        print_fixed_and_marginal(runs)


def print_fixed_and_marginal(runs: list[tuple[Path, float, float]]) -> None:
    """Split the whole runs into what does not depend on the video's length (the 1-s run: start-up)
    and what does (between the two longest inputs: extra wall seconds per extra floor second)."""
    if not runs:
        return
    fixed = runs[0][2]
    print(f"\nfixed cost (the run on {runs[0][0].name}: Ray start, actors built, one video, no clip): {fixed:.1f} s "
          f"= the 5x-floor budget of a source whose floor is {fixed / 5:.1f} s", flush=True)
    longest = sorted(runs[1:], key=lambda r: r[1])[-2:]
    if len(longest) == 2 and longest[1][1] > longest[0][1]:
        (va, fa, wa), (vb, fb, wb) = longest
        print(f"marginal cost ({va.name} -> {vb.name}): {(wb - wa) / (fb - fa):.1f}x floor "
              f"({wb - wa:.1f} s more wall for {fb - fa:.2f} s more floor)", flush=True)


if __name__ == "__main__":
    main()
