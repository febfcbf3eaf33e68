"""Shard reader throughput vs decoding the same mp4 bytes directly with PyAV.

    .venv/bin/python bench/shards.py [--clips 8] [--frames 25] [--repeats 3]

Writes synthetic 1024×512 equirect clips (a textured panorama panning) into shards in a temp dir,
then times, in the same run and alternating: (a) plain PyAV decode of the in-memory mp4 bytes to
RGB arrays, (b) `shards.reader.iter_samples` over the shard files + `shards.video.decode_frames`.
Best of --repeats for each, alternating which runs first. ratio = reader frames/s ÷ direct frames/s (target ≥ 0.9).
"""
import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

# this file is named shards.py: drop its folder from the path so `import shards` finds the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import av  # noqa: E402
import numpy as np  # noqa: E402

from shards.reader import iter_samples  # noqa: E402
from shards.video import decode_frames, encode_mp4  # noqa: E402
from shards.writer import ShardWriter  # noqa: E402


def panorama_clip(rng: np.random.Generator, num_frames: int, height: int = 512, width: int = 1024) -> np.ndarray:
    """A smooth random panorama panning right by 8 px per frame (realistic-ish H.264 bitrate)."""
    coarse = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    pano = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)
    pano = (0.7 * pano + 0.3 * rng.integers(0, 256, size=pano.shape)).astype(np.uint8)
    return np.stack([np.roll(pano, 8 * t, axis=1) for t in range(num_frames)])


def decode_direct(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # same decoder threading as shards.video
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    clips = {f"bench_{i:04d}": encode_mp4(panorama_clip(rng, args.frames), fps=25) for i in range(args.clips)}
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as out:
        with ShardWriter(out, max_samples=max(1, args.clips // 4)) as writer:
            for key, mp4 in clips.items():
                meta = dict(video_id="bench", clip_index=int(key[-4:]), source="synthetic", start_s=0.0,
                            end_s=args.frames / 25, fps=25.0, num_frames=args.frames, width=1024,
                            height=512, config_hash="bench")
                writer.write(key, mp4, meta)
        mb = sum(len(m) for m in clips.values()) / 1e6

        direct, reader = "direct PyAV (bytes in memory)", "shards reader + decode_frames"

        def run_direct() -> int:
            return sum(len(decode_direct(mp4)) for mp4 in clips.values())

        def run_reader() -> int:
            return sum(len(decode_frames(s.mp4)) for s in iter_samples(out))

        run_reader()  # warm-up: first use imports webdataset (and torch)
        best, frames_seen = {direct: float("inf"), reader: float("inf")}, {}
        for r in range(args.repeats):
            # alternate which goes first: on a shared machine load drifts between the two
            for name, fn in ((direct, run_direct), (reader, run_reader))[:: 1 if r % 2 == 0 else -1]:
                t = time.perf_counter()
                frames_seen[name] = fn()
                best[name] = min(best[name], time.perf_counter() - t)

    direct_fps = frames_seen[direct] / best[direct]
    print(f"{args.clips} clips × {args.frames} frames, 1024×512 H.264 crf 20, {mb:.1f} MB of mp4; best of {args.repeats}")
    print(f"{'path':<32} {'seconds':>8} {'clips/s':>8} {'frames/s':>9} {'ratio':>6}")
    for name, seconds in best.items():
        fps = frames_seen[name] / seconds
        print(f"{name:<32} {seconds:>8.3f} {args.clips / seconds:>8.2f} {fps:>9.1f} {fps / direct_fps:>6.3f}")


if __name__ == "__main__":
    main()
