"""Hostile files, built small: each fixture makes one file a hostile user could hand the tools.

`run_cli` runs a command in a subprocess and measures its peak RSS (os.wait4), so a test can
check both the exit code / message and that memory stayed bounded whatever the file declares.
"""
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
GiB = 2**30


@dataclass
class Ran:
    rc: int
    out: str
    err: str
    peak_rss: int  # bytes (VmHWM of the command's process; -1 when it could not report)

    def one_line_error(self) -> str:
        """The error line of a command that failed on bad input: exit 2, one line, no traceback."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert self.rc == 2, (self.rc, self.err[-2000:])
        assert "Traceback" not in self.err, self.err[-3000:]
        assert len(lines) == 1, lines
        return lines[0]


# Runs the command inside this launcher, which writes the process's VmHWM (peak RSS of its own
# address space, started fresh at exec) when it exits. getrusage / wait4's ru_maxrss would not do:
# Linux carries the forking parent's peak over into the child (a test process that built an
# 8192×8192 fixture would be measured, not the command).
_LAUNCHER = """
import atexit, os, runpy, sys
def _hwm():
    with open('/proc/self/status') as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    with open(os.environ['HOSTILE_RSS_FILE'], 'w') as f:
        f.write(str(kb * 1024))
atexit.register(_hwm)
args = sys.argv[1:]
if args[0] == '-m':
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name='__main__', alter_sys=True)
else:
    sys.argv = args
    sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
    runpy.run_path(args[0], run_name='__main__')
"""


def run_cli(args, tmp_path, timeout=180, env=None) -> Ran:
    """Run `python ARGS…` from the repository root; stdout/stderr go to files (no pipe deadlock).
    Killed after `timeout` s."""
    n = len(list(tmp_path.glob("run-*.out")))
    out, err, rss = (tmp_path / f"run-{n}.{ext}" for ext in ("out", "err", "rss"))
    full_env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HOSTILE_RSS_FILE=str(rss), **(env or {}))
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *map(str, args)], stdout=fo, stderr=fe,
                              cwd=REPO, env=full_env, timeout=timeout)
    peak = int(rss.read_text()) if rss.exists() else -1
    return Ran(proc.returncode, out.read_text(), err.read_text(), peak)


@pytest.fixture
def cli(tmp_path):
    def run(*args, **kw):
        return run_cli(args, tmp_path, **kw)
    return run


# ------------------------------------------------------------------------------------ builders
def clip_meta(video_id="vid", clip_index=0, **overrides) -> dict:
    meta = dict(video_id=video_id, clip_index=clip_index, source="synthetic", start_s=0.0, end_s=2.0,
                fps=12.0, num_frames=24, width=64, height=32, scores={}, config_hash="test")
    meta.update(overrides)
    return meta


def small_frames(num_frames=24, height=32, width=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height // 4, width // 4, 3)).astype(np.uint8).repeat(4, 0).repeat(4, 1)
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(num_frames)])


@pytest.fixture(scope="session")
def mp4_bytes():
    from shards.video import encode_mp4

    return encode_mp4(small_frames(), fps=12)


def write_tar(path: Path, members: list) -> Path:
    """members: (name, bytes) pairs or ready TarInfo header blocks (bytes of 512·k with data)."""
    with open(path, "wb") as f:
        for item in members:
            if isinstance(item, bytes):
                f.write(item)
                continue
            name, data = item
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            f.write(info.tobuf(tarfile.GNU_FORMAT))
            f.write(data + b"\0" * (-len(data) % 512))
        f.write(b"\0" * 1024)
    return path


def gnu_sparse_member(name: str, declared: int, stored: bytes = b"x" * 512) -> bytes:
    """A GNU sparse ('S') member: `stored` bytes on disk, `declared` bytes once the holes are filled
    (the data sits at the very end; everything before it is a hole of zeros)."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = tarfile.GNUTYPE_SPARSE, len(stored), 0
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    block[386:398] = tarfile.itn(declared - len(stored), 12, tarfile.GNU_FORMAT)  # sparse[0].offset
    block[398:410] = tarfile.itn(len(stored), 12, tarfile.GNU_FORMAT)             # sparse[0].numbytes
    block[482] = 0                                                               # no extension blocks
    block[483:495] = tarfile.itn(declared, 12, tarfile.GNU_FORMAT)               # realsize
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])
    return bytes(block) + stored + b"\0" * (-len(stored) % 512)


def extended_header(kind: bytes, declared: int) -> bytes:
    """A GNU long-name ('L') or PAX ('x') header block declaring `declared` bytes of name / records
    that follow it (tarfile reads those bytes whole before it sees the member they describe)."""
    info = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    info.type, info.size, info.mtime = kind, declared, 0
    return info.tobuf(tarfile.GNU_FORMAT if kind == tarfile.GNUTYPE_LONGNAME else tarfile.USTAR_FORMAT)


@pytest.fixture(params=[tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE], ids=["gnu-longname", "pax"])
def huge_header_tar(request, tmp_path, mp4_bytes):
    """A shard whose second sample starts with a long-name / PAX header declaring 2 GiB, the file made
    that long with a hole (a few KB on disk; reading the header whole would take 2 GiB of memory)."""
    d = tmp_path / "huge-header"
    d.mkdir()
    path = write_tar(d / "clips-000000.tar", [("vid_0000.mp4", mp4_bytes),
                                              ("vid_0000.json", json.dumps(clip_meta()).encode()),
                                              extended_header(request.param, 2 * GiB)])
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size + 2 * GiB + 1024)
    return path


@pytest.fixture
def sparse_tar(tmp_path, mp4_bytes):
    """A ~3 KB shard whose mp4 member is sparse and declares 1 TB."""
    d = tmp_path / "sparse"
    d.mkdir()
    return write_tar(d / "clips-000000.tar", [
        gnu_sparse_member("vid_0000.mp4", declared=2**40),
        ("vid_0000.json", json.dumps(clip_meta()).encode()),
    ])


@pytest.fixture
def deep_json_tar(tmp_path, mp4_bytes):
    """A shard whose sample JSON nests 100 000 levels deep (200 KB), next to one good sample."""
    d = tmp_path / "deep"
    d.mkdir()
    deep = dict(clip_meta(clip_index=1))
    text = json.dumps(deep)[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    return write_tar(d / "clips-000000.tar", [
        ("vid_0000.mp4", mp4_bytes), ("vid_0000.json", json.dumps(clip_meta()).encode()),
        ("vid_0001.mp4", mp4_bytes), ("vid_0001.json", text.encode()),
    ])


@pytest.fixture
def traversal_tar(tmp_path, mp4_bytes):
    """Members with `../`, a subfolder, an absolute path and a key with a newline, and one good sample."""
    d = tmp_path / "traversal"
    d.mkdir()
    meta = json.dumps(clip_meta(clip_index=9)).encode()
    return write_tar(d / "clips-000000.tar", [
        ("../vid_0001.mp4", mp4_bytes), ("../vid_0001.json", meta),
        ("sub/vid_0002.mp4", mp4_bytes), ("sub/vid_0002.json", meta),
        ("/etc/vid_0003.mp4", mp4_bytes),
        ("vid_0004\n.mp4", mp4_bytes),
        ("vid_0009.mp4", mp4_bytes), ("vid_0009.json", meta),
    ])


@pytest.fixture
def nonfinite_tar(tmp_path, mp4_bytes):
    """Samples whose metadata has fps = Infinity, fps = 1e-300 and start_s = NaN (Python's json reads them)."""
    d = tmp_path / "nonfinite"
    d.mkdir()
    members = []
    for i, (field, value) in enumerate((("fps", "Infinity"), ("fps", "1e-300"), ("start_s", "NaN"))):
        text = json.dumps(clip_meta(clip_index=i, **{field: 0.5}))
        text = text.replace(f'"{field}": 0.5', f'"{field}": {value}')
        members += [(f"vid_{i:04d}.mp4", mp4_bytes), (f"vid_{i:04d}.json", text.encode())]
    return write_tar(d / "clips-000000.tar", members)


@pytest.fixture(scope="session")
def huge_video(tmp_path_factory):
    """A 2-frame 8192×8192 H.264 file of a few KB (the decoder would allocate ~400 MB per RGB frame)."""
    import av

    path = tmp_path_factory.mktemp("huge") / "huge.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 8192
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        frame = av.VideoFrame(8192, 8192, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for _ in range(2):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def fake_ffmpeg(tmp_path):
    """A directory holding an `ffmpeg` that sleeps for a minute (put it first on PATH)."""
    d = tmp_path / "fakebin"
    d.mkdir()
    exe = d / "ffmpeg"
    exe.write_text("#!/bin/sh\nexec sleep 60\n")
    exe.chmod(0o755)
    return d
