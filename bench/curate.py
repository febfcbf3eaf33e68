"""Curation stage benchmark: per-stage wall time and throughput against the decode floor.

    .venv/bin/python bench/curate.py [--corpus DIR] [--sample PATH] [--config configs/curate/local.yaml]

Runs every stage body in this process, one after the other (no Ray, so each stage's time is its
own), on the synthetic corpus (made in a temp dir unless --corpus is given) and on the real
sample testRoom1_1920Mono.mp4. Throughput = seconds of source video per wall second. The decode
floor is PyAV decoding the same sampled frames alone (shards.video.decode_frames); ratio = stage
time / floor time. Peak memory is this process's max RSS.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pipeline.clips import CutClips  # noqa: E402
from pipeline.config import CurateConfig  # noqa: E402
from pipeline.filters.cuts import CutScores  # noqa: E402
from pipeline.filters.format import FormatScores  # noqa: E402
from pipeline.filters.inter_frame import inter_frame_scores  # noqa: E402
from pipeline.filters.intra_frame import IntraFrameScores  # noqa: E402
from pipeline.filters.motion import MotionScores  # noqa: E402
from pipeline.filters.pixels import PixelScores  # noqa: E402
from pipeline.filters.text import TextScores  # noqa: E402
from pipeline.sample import SampleFrames, frame_indices  # noqa: E402
from shards.video import decode_frames, probe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "samples" / "testRoom1_1920Mono.mp4"


def timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0


def bench(name: str, files: list[Path], cfg: CurateConfig, models: dict) -> list[tuple]:
    batch = {"video_id": np.array([f.stem for f in files], dtype=object), "source": np.array([str(f) for f in files], dtype=object)}
    rows = []
    # decode floor: PyAV alone on the same frames the sample stage decodes
    floor = 0.0
    source_s = 0.0
    for f in files:
        try:
            info = probe(f)
        except ValueError:
            continue
        source_s += info.duration_s
        idx = frame_indices(f.stem, info.num_frames, cfg.sample.num_frames, cfg.sample.seed)
        floor += timed(decode_frames, f, idx, None, None, (cfg.sample.width, cfg.sample.height))[1]
    b, t = timed(SampleFrames(cfg, tempfile.gettempdir()), batch)
    rows.append(("sample (fetch+probe+decode)", t))
    for stage, fn in [("video_pixels", PixelScores(cfg.filters.pixels, "video_", "video_pixels")),
                      ("format", FormatScores(cfg.filters.format)), ("intra_frame", models["intra"]),
                      ("inter_frame", inter_frame_scores)]:
        b, t = timed(fn, b)
        rows.append((stage, t))
    ok = [i for i in range(len(files)) if not b["error"][i]]
    cut = CutClips(cfg, tempfile.gettempdir())
    t0 = time.perf_counter()
    clips = [c for i in ok for c in cut({k: b[k][i] for k in b})]
    rows.append(("cut (ffmpeg encode + analysis decode)", time.perf_counter() - t0))
    cb = {k: np.array([c[k] for c in clips], dtype=object) for k in clips[0] if k not in ("frames", "frames_cuts")}
    cb["frames"] = [c["frames"] for c in clips]
    cb["frames_cuts"] = [c["frames_cuts"] for c in clips]
    for stage, fn in [("motion", MotionScores(cfg.filters.motion)), ("cuts", models["cuts"]), ("text", models["text"]),
                      ("pixels", PixelScores(cfg.filters.pixels))]:
        cb, t = timed(fn, cb)
        rows.append((stage, t))
    rows.append(("all stages", sum(t for _, t in rows)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # max RSS so far
    return [(name, stage, t, source_s / t if t else float("nan"), t / floor if floor else float("nan"), peak_mb)
            for stage, t in rows] + \
        [(name, "decode floor (PyAV, same frames)", floor, source_s / floor if floor else float("nan"), 1.0, peak_mb)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "curate" / "local.yaml"))
    ap.add_argument("--corpus", help="synthetic corpus directory (default: generate a small one)")
    ap.add_argument("--sample", default=str(SAMPLE))
    args = ap.parse_args()
    cfg = CurateConfig.from_yaml(args.config)
    t0 = time.perf_counter()
    models = dict(intra=IntraFrameScores(cfg.filters.intra_frame), cuts=CutScores(cfg.filters.cuts),
                  text=TextScores(cfg.filters.text))
    print(f"model load (LPIPS + TransNetV2 + rapidocr): {time.perf_counter() - t0:.1f} s")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.corpus) if args.corpus else Path(tmp) / "corpus"
        if not args.corpus:
            from pipeline.synthetic import generate_corpus

            generate_corpus(corpus, 0, dict(count=1), progress=False)
        results += bench("synthetic corpus", sorted(corpus.glob("*.mp4")), cfg, models)
        if Path(args.sample).is_file():
            results += bench(Path(args.sample).name, [Path(args.sample)], cfg, models)
        else:
            print(f"skipping the real sample: {args.sample} not found")
    print(f"\n{'input':<26} {'stage':<40} {'wall s':>8} {'src s/wall s':>13} {'x floor':>8} {'peak MiB':>9}")
    for name, stage, t, tp, ratio, peak in results:
        print(f"{name:<26} {stage:<40} {t:8.2f} {tp:13.2f} {ratio:8.2f} {peak:9.0f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory = max RSS of this process after each input (models loaded first); "
          f"overall {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
