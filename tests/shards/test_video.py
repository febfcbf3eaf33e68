import io
import os
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from shards.video import (VideoInfo, decode_frames, encode_mp4, ffmpeg_exe, probe,
                          sample_indices, write_mp4)

# the team's shared sample media sit beside the repository (../shared), never inside it
SAMPLE = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "samples" / "testRoom1_1920Mono.mp4")


def test_ffmpeg_exe_runs():
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True)
    assert out.returncode == 0 and "ffmpeg version" in out.stdout


def test_encode_probe_decode_round_trip(frames):
    data = encode_mp4(frames, fps=12)
    info = probe(data)
    assert info == VideoInfo(width=64, height=32, fps=12.0, num_frames=24, duration_s=2.0)
    decoded = decode_frames(data)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames).mean() < 8  # lossy, but the same picture
    # faststart: the index (moov) comes before the media data (mdat)
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_indices_match_full_decode_across_keyframes(frames):
    data = encode_mp4(frames, fps=12, keyint_s=0.5)  # a keyframe every 6 frames: seeks happen
    full = decode_frames(data)
    for indices in ([0], [23], [17, 2, 2, 9], [6, 7, 8], list(range(0, 24, 5))):
        np.testing.assert_array_equal(decode_frames(data, indices=indices), full[indices])


def test_fps_and_count_sampling(frames):
    data = encode_mp4(frames, fps=12)
    full = decode_frames(data)
    np.testing.assert_array_equal(decode_frames(data, fps=4, num_frames=5), full[0:15:3])
    assert decode_frames(data, fps=4).shape[0] == 8
    assert decode_frames(data, num_frames=3).shape[0] == 3
    with pytest.raises(ValueError, match="asked for 9 frames"):
        decode_frames(data, fps=4, num_frames=9)


def test_sample_indices_upsampling_repeats():
    np.testing.assert_array_equal(sample_indices(3, src_fps=10, fps=20), [0, 0, 1, 1, 2])


def test_resize_in_reformat(frames):
    data = encode_mp4(frames, fps=12)
    out = decode_frames(data, indices=[3, 4], size=(32, 16))
    assert out.shape == (2, 16, 32, 3)
    # area resize of the horizontal ramp keeps it a ramp
    assert out[0, 8, 0, 0] < out[0, 8, -1, 0]


def test_one_reformatter_per_video_gives_pyav_own_conversion(frames, tmp_path):
    """decode_frames and the cuts stage convert through one swscale context per video (to_ndarray
    builds one per frame); the pixels must be exactly PyAV's own, resized or not."""
    from pipeline.filters.cuts import INPUT_HW, small_frames

    data = encode_mp4(frames, fps=12)
    with av.open(io.BytesIO(data)) as c:
        reference = [(f.to_ndarray(format="rgb24"),
                      f.to_ndarray(format="rgb24", width=40, height=20, interpolation="AREA"),
                      f.to_ndarray(format="rgb24", width=INPUT_HW[1], height=INPUT_HW[0], interpolation="AREA"))
                     for f in c.decode(video=0)]
    assert np.array_equal(decode_frames(data), np.stack([r[0] for r in reference]))
    assert np.array_equal(decode_frames(data, size=(40, 20)), np.stack([r[1] for r in reference]))
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    assert np.array_equal(np.stack(list(small_frames(path))), np.stack([r[2] for r in reference]))


def test_bad_indices_and_arguments(frames):
    data = encode_mp4(frames, fps=12)
    with pytest.raises(ValueError, match=r"out of range \[0, 24\)"):
        decode_frames(data, indices=[24])
    with pytest.raises(ValueError, match="either indices or fps"):
        decode_frames(data, indices=[0], fps=2)


@pytest.mark.parametrize("shape,dtype,match", [
    ((4, 31, 64, 3), np.uint8, "even"),
    ((4, 32, 63, 3), np.uint8, "even"),
    ((4, 32, 64), np.uint8, r"\(T, H, W, 3\)"),
    ((4, 32, 64, 3), np.float32, "uint8"),
])
def test_encode_rejects_bad_frames(shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        encode_mp4(np.zeros(shape, dtype), fps=10)


def test_bit_exact_encodes_give_one_output_however_often_run(frames):
    """x264's own assembly and its threads gave the same frames different bytes from one encode to
    the next on an AVX-512 machine (up to 6 outputs in 20 encodes of these frames); bit_exact (x264's
    C code, one thread) gives one. The heap is churned between encodes, as in a long process."""
    rng = np.random.default_rng(0)
    larger = np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2)  # 128×256: x264's threads get rows to split
    noisy = np.clip(larger.astype(np.int16) + rng.integers(-20, 20, larger.shape), 0, 255).astype(np.uint8)
    for clip in (frames, noisy):
        churn, outputs = [], set()
        for k in range(12):
            churn.append(os.urandom(1 << (10 + k % 12)))
            outputs.add(encode_mp4(clip, fps=12, bit_exact=True))
        assert len(outputs) == 1, f"{clip.shape}: {len(outputs)} different outputs in 12 bit-exact encodes"
    assert decode_frames(outputs.pop()).shape == noisy.shape


def test_write_mp4_path(tmp_path, frames):
    path = write_mp4(tmp_path / "sub" / "clip.mp4", frames, fps=8)
    assert probe(path).num_frames == 24
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.mp4"]  # no temporary left


def test_probe_errors_name_the_source(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4.*zero bytes"):
        probe(empty)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 50)
    with pytest.raises(ValueError, match="garbage.mp4.*cannot be read"):
        probe(garbage)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="mp4 bytes.*zero bytes"):
        decode_frames(b"")

    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = (np.sin(np.arange(800) / 5) * 1000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(ValueError, match="tone.wav.*no video stream.*audio"):
        probe(audio)


@pytest.mark.skipif(not __import__("os").path.exists(SAMPLE), reason=f"sample video absent: {SAMPLE}")
def test_sample_video_seek_equals_sequential():
    info = probe(SAMPLE)
    assert (info.width, info.height) == (1920, 960) and info.num_frames > 300
    picked = decode_frames(SAMPLE, indices=[info.num_frames - 1, 1], size=(128, 64))
    sequential = decode_frames(SAMPLE, num_frames=2, size=(128, 64))
    np.testing.assert_array_equal(picked[1], sequential[1])
    assert picked.shape == (2, 64, 128, 3)
