"""The synthetic corpus: deterministic, labelled, and each video really has its defect."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from pipeline import synthetic as S
from shards.video import decode_frames, encode_mp4, probe

# small enough that the three corpora below take a few seconds
CONFIG = S.SyntheticConfig(width=192, height=96, seconds=2.0, fps=6.0, count=2)

REJECT_STAGES = {
    "perspective": "format", "perspective_pillarbox": "format", "stereo_top_bottom": "format",
    "stereo_side_by_side": "intra_frame", "vr180_fisheye": "intra_frame", "poster": "inter_frame",
    "static_scene": "motion", "hard_cut": "cuts", "text": "text", "black": "black", "flat": "flat",
    "truncated": "decode",
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Seed 0 twice (determinism) and seed 1 once (variety)."""
    out = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        d = tmp_path_factory.mktemp(f"corpus_{name}")
        out[name] = (d, S.generate_corpus(d, seed, CONFIG, progress=False))
    return out


def decoded(directory, file):
    return decode_frames(directory / file).astype(np.int16)


def seam_and_interior(frames: np.ndarray) -> tuple[float, float]:
    """Mean |first column − last column| and the median adjacent-column difference."""
    g = frames.astype(np.float32).mean(-1)
    seam = np.abs(g[..., 0] - g[..., -1]).mean()
    interior = np.median(np.abs(np.diff(g, axis=-1)).mean(axis=(0, 1)))
    return float(seam), float(interior)


def test_labels_list_every_file_and_every_kind(corpora):
    d, labels = corpora["a"]
    assert list(labels.columns) == S.LABEL_COLUMNS
    on_disk = sorted(p.name for p in d.glob("*.mp4"))
    assert sorted(labels.file) == on_disk
    assert pd.read_csv(d / "labels.csv", keep_default_na=False).equals(labels.fillna(""))
    assert (labels.kind == "equirect").sum() == CONFIG.count
    assert set(labels.loc[labels.expected_verdict == "accepted", "kind"]) == {"equirect"}
    stages = dict(zip(labels.kind, labels.expected_stage))
    for kind, stage in REJECT_STAGES.items():
        assert stages.get(kind) == stage, kind
    assert set(labels.expected_verdict) == {"accepted", "rejected", "error"}
    assert (labels.loc[labels.expected_verdict == "accepted", "expected_stage"] == "").all()


def test_same_seed_same_corpus_other_seed_differs(corpora):
    (da, la), (db, lb), (dc, lc) = corpora["a"], corpora["b"], corpora["c"]
    assert (da / "labels.csv").read_bytes() == (db / "labels.csv").read_bytes()
    for file in la.file:
        if file.startswith("truncated"):
            assert (da / file).read_bytes() == (db / file).read_bytes()
            continue
        assert (da / file).read_bytes() == (db / file).read_bytes(), file
    for file in ("equirect_000.mp4", "equirect_001.mp4", "perspective_000.mp4"):
        diff = np.abs(decoded(da, file) - decoded(dc, file)).mean()
        assert diff > 10.0, f"{file}: seeds 0 and 1 differ by only {diff:.2f} grey levels"


# Generates seed 0 in a fresh process. The second run first generates another seed (warm caches, a
# different heap) and may be confined to one core (x264's default thread count follows the cores).
_GENERATE = """
import sys
from pipeline.synthetic import SyntheticConfig, generate_corpus
config = SyntheticConfig(width=int(sys.argv[2]), height=int(sys.argv[3]), seconds=1.0, fps=6.0, count=1)
if sys.argv[4] == "warm":
    generate_corpus(sys.argv[1] + "-warmup", 1, config, progress=False)
generate_corpus(sys.argv[1], 0, config, progress=False)
"""


def _generate_in_subprocess(out: Path, size: tuple[int, int], threads: int, warm: bool, cores=None):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    preexec = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    subprocess.run([sys.executable, "-c", _GENERATE, str(out), *map(str, size), "warm" if warm else "cold"],
                   env=env, cwd=Path(__file__).resolve().parents[2], check=True, timeout=300,
                   preexec_fn=preexec)


@pytest.mark.parametrize("size", [(192, 96), (512, 256)])
def test_same_seed_gives_identical_bytes_across_processes_and_thread_counts(tmp_path, size):
    """Issue 11: one process with one thread (and one core) and a cold start, another with two
    threads after generating another seed: every file byte for byte the same."""
    one_core = {min(os.sched_getaffinity(0))}
    _generate_in_subprocess(tmp_path / "a", size, threads=1, warm=False, cores=one_core)
    _generate_in_subprocess(tmp_path / "b", size, threads=2, warm=True)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir()) and "labels.csv" in files
    differ = [f for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert not differ, f"seed 0 at {size[0]}x{size[1]} differs between processes in {differ}"


def test_decoded_size_frame_count_and_fps_match_the_config(corpora):
    d, labels = corpora["a"]
    for file in labels.file[labels.expected_verdict != "error"]:
        info = probe(d / file)
        assert (info.width, info.height) == (CONFIG.width, CONFIG.height), file
        assert info.num_frames == CONFIG.num_frames, file
        assert info.fps == pytest.approx(CONFIG.fps), file
        assert decode_frames(d / file).shape == (CONFIG.num_frames, CONFIG.height, CONFIG.width, 3)


def test_valid_videos_are_seam_continuous_and_perspective_is_not(corpora):
    d, labels = corpora["a"]
    for file in labels.file[labels.kind == "equirect"]:
        seam, interior = seam_and_interior(decoded(d, file))
        assert seam < 2.0 * interior + 1.0, f"{file}: seam {seam:.2f} vs columns {interior:.2f}"
    seam, interior = seam_and_interior(decoded(d, "perspective_000.mp4"))
    assert seam > 3.0 * interior + 1.0, f"perspective seam {seam:.2f} vs columns {interior:.2f}"


def test_valid_videos_move_and_have_texture(corpora):
    d, labels = corpora["a"]
    for file in labels.file[labels.kind == "equirect"]:
        f = decoded(d, file)
        assert np.abs(np.diff(f, axis=0)).mean() > 2.0, f"{file}: frames barely change"
        assert f.mean(-1).var(axis=(1, 2)).min() > 200.0, f"{file}: low grey-level variance"


def test_poster_is_one_frame_and_static_scene_is_not(corpora):
    d, _ = corpora["a"]
    poster = decoded(d, "poster_000.mp4")
    drift = np.abs(poster - poster[:1])
    assert drift.mean() < 0.3 and drift.max() <= 8  # identical input frames; codec rounding only
    noisy = decoded(d, "static_scene_000.mp4")
    step = np.abs(np.diff(noisy, axis=0)).mean()
    assert step > 1.0, f"static scene frames differ by only {step:.2f}: indistinct from the poster"
    # no motion: every frame stays within noise of the time-average (a moving scene would not)
    spread = np.abs(noisy - noisy.mean(0)).mean()
    assert spread < 6.0, f"static scene frames spread {spread:.2f} around their mean: something moves"
    moving = decoded(d, "equirect_000.mp4")
    assert np.abs(moving - moving.mean(0)).mean() > 2.0 * spread


def test_black_is_black_and_flat_is_flat(corpora):
    d, _ = corpora["a"]
    assert decoded(d, "black_000.mp4").max() <= 4
    flat = decoded(d, "flat_000.mp4").astype(np.float32).mean(-1)
    assert flat.std(axis=(1, 2)).max() < 4.0


def test_stereo_and_180_halves_are_near_duplicates(corpora):
    d, _ = corpora["a"]
    w, h = CONFIG.width, CONFIG.height
    for file in ("stereo_side_by_side_000.mp4", "vr180_fisheye_000.mp4"):
        f = decoded(d, file)
        same = np.abs(f[:, :, : w // 2] - f[:, :, w // 2:]).mean()
        assert same < 6.0, f"{file}: left/right halves differ by {same:.2f}"
    tb = decoded(d, "stereo_top_bottom_000.mp4")
    assert np.abs(tb[:, : h // 2] - tb[:, h // 2:]).mean() < 6.0
    eq = decoded(d, "equirect_000.mp4")
    assert np.abs(eq[:, :, : w // 2] - eq[:, :, w // 2:]).mean() > 10.0  # a mono 360° is not


def test_hard_cut_is_one_big_jump(corpora):
    d, _ = corpora["a"]
    f = decoded(d, "hard_cut_000.mp4")
    steps = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    assert int(steps.argmax()) + 1 == CONFIG.num_frames // 2
    assert steps.max() > 3.0 * np.median(steps)


def test_text_differs_from_its_clean_twin_only_in_the_text_box():
    items = S.corpus_items(3, CONFIG)
    clean = next(it for it in items if it.kind == "equirect").make()  # the first one is the twin
    text = next(it for it in items if it.kind == "text").make()
    matches = [S.burn_in_text(clean, phrase) for phrase in S.TEXTS]
    match = next(((f, box) for f, box in matches if np.array_equal(f, text)), None)
    assert match is not None, "text video is not the clean twin with one of TEXTS burned in"
    x0, y0, x1, y1 = match[1]
    changed = np.any(text != clean, axis=(0, 3))
    outside = changed.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any()
    assert changed[y0:y1, x0:x1].mean() > 0.2
    assert (x1 - x0) * (y1 - y0) < 0.5 * CONFIG.width * CONFIG.height


def test_truncated_file_cannot_be_decoded(corpora):
    d, _ = corpora["a"]
    with pytest.raises(av.FFmpegError):
        with av.open(str(d / "truncated_000.mp4")) as container:
            for _ in container.decode(video=0):
                pass
    with pytest.raises(ValueError, match="truncated_000.mp4"):
        probe(d / "truncated_000.mp4")


def test_remux_keeps_every_frame():
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 64, 3), dtype=np.uint8)
    mp4 = encode_mp4(frames, 6.0)
    assert np.array_equal(decode_frames(S.remux_moov_at_end(mp4)), decode_frames(mp4))


def test_bad_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="width = 2 \\* height"):
        S.generate_corpus(tmp_path, 0, {"width": 200, "height": 80})
    with pytest.raises(SystemExit):
        S.main(["--out", str(tmp_path), "--size", "wide"])
    assert not any(tmp_path.iterdir())
