"""Projection throughput: 1024×512 equirect ↔ 512×512 perspective, batches of 25 frames.

    .venv/bin/python bench/geometry.py [--frames 25] [--repeats 5] [--threads 1]

Times our equirect_to_perspective / perspective_to_equirect on numpy uint8 (T, H, W, 3) and
torch float32 (T, 3, H, W) batches, with the sampling grid cached (same poses again) and
uncached (new poses each call, as for every training pair), and py360convert's e2p on the same
frames in the same run. Prints the median over repeats and the speed-up per frame over e2p.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Run as `python bench/geometry.py`, this file's folder comes first on sys.path and its name
# would shadow the `geometry` package: import from the repository root instead.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from geometry import equirect_to_perspective, perspective_to_equirect, simulate_trajectory  # noqa: E402
from geometry.projection import _inverse_grid, _perspective_grid  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=5)
    # One thread by default: on the shared 2-core dev machine, 2 OpenMP threads competing with
    # other jobs ran ~10× slower (spin-waiting); try --threads N (with OMP_WAIT_POLICY=PASSIVE).
    ap.add_argument("--threads", type=int, default=1, help=f"torch threads (this machine: {os.cpu_count()} cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    T = args.frames
    rng = np.random.default_rng(0)
    # Smooth-ish content (upsampled noise) so memory access patterns are those of real frames.
    coarse = rng.integers(0, 256, (T, 64, 128, 3), dtype=np.uint8)
    equi_u8 = np.ascontiguousarray(np.repeat(np.repeat(coarse, 8, 1), 8, 2))
    equi_f32 = torch.from_numpy(equi_u8).permute(0, 3, 1, 2).float().div(255).contiguous()
    tr = simulate_trajectory(T, rng)
    fov, yaw, pitch, roll = (90.0, 90.0), tr.yaw, tr.pitch, tr.roll
    pers_u8 = equirect_to_perspective(equi_u8, fov, yaw, pitch, roll, out_hw=(512, 512))
    pers_f32 = equirect_to_perspective(equi_f32, fov, yaw, pitch, roll, out_hw=(512, 512))

    shift = iter(range(1, 10**6))

    def fresh_e2p():  # new poses: the grid is computed again
        _perspective_grid.cache_clear()
        equirect_to_perspective(equi_u8, fov, yaw + next(shift), pitch, roll, out_hw=(512, 512))

    def fresh_p2e():
        _inverse_grid.cache_clear()
        perspective_to_equirect(pers_u8, fov, yaw + next(shift), pitch, roll, out_hw=(512, 1024))

    rows = [
        ("e2p numpy uint8, grid cached", lambda: equirect_to_perspective(equi_u8, fov, yaw, pitch, roll, out_hw=(512, 512)), T),
        ("e2p numpy uint8, new poses", fresh_e2p, T),
        ("e2p torch float32, grid cached", lambda: equirect_to_perspective(equi_f32, fov, yaw, pitch, roll, out_hw=(512, 512)), T),
        ("p2e numpy uint8, grid cached", lambda: perspective_to_equirect(pers_u8, fov, yaw, pitch, roll, out_hw=(512, 1024)), T),
        ("p2e numpy uint8, new poses", fresh_p2e, T),
        ("p2e torch float32, grid cached", lambda: perspective_to_equirect(pers_f32, fov, yaw, pitch, roll, out_hw=(512, 1024)), T),
    ]
    results = [(name, median_ms(fn, args.repeats), n) for name, fn, n in rows]

    try:
        import py360convert
    except ImportError:
        py360convert = None
    if py360convert is not None:
        frame = equi_u8[0]
        ref_cached = median_ms(lambda: [py360convert.e2p(frame, fov_deg=fov, u_deg=30.0, v_deg=5.0, out_hw=(512, 512)) for _ in range(5)], args.repeats) / 5
        angle = iter(np.linspace(-170, 170, 10**4))
        ref_fresh = median_ms(lambda: [py360convert.e2p(frame, fov_deg=fov, u_deg=float(next(angle)), v_deg=5.0, out_hw=(512, 512)) for _ in range(5)], args.repeats) / 5
        results.append(("py360convert e2p uint8, sampler cached", ref_cached, 1))
        results.append(("py360convert e2p uint8, new pose", ref_fresh, 1))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {T} frames per batch, "
          f"equirect 1024×512 ↔ perspective 512×512, median of {args.repeats}")
    print(f"{'operation':40s} {'ms/batch':>9s} {'ms/frame':>9s} {'frames/s':>9s} {'× e2p':>7s}")
    for name, ms, n in results:
        per_frame = ms / n
        ratio = ""
        if py360convert is not None:
            ref = ref_fresh if "new pose" in name else ref_cached
            ratio = f"{ref / per_frame:7.2f}"
        print(f"{name:40s} {ms:9.1f} {per_frame:9.2f} {1e3 / per_frame:9.1f} {ratio:>7s}")


if __name__ == "__main__":
    main()
