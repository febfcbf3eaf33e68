"""Shared fixtures: one small synthetic corpus and one Ray head node (`ray start --head`) per session.

Ray start-up is the slow part on two cores, so every end-to-end test connects to the one head
node; it is stopped at the end by killing its process group (and, to be sure, any process whose
command line names its private temp dir) — never `ray stop`, which would stop every Ray on the
machine, other people's included.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "data" / "samples"
VENV_BIN = Path(sys.executable).parent
# the test corpus: 3 s at 8 fps (24 frames, the hard cut at frame 12 = 1.5 s), at 512x256 — the size
# local.yaml samples frames at and was calibrated on (smaller sources are upsampled, which blurs the
# top-bottom mid-height line below the Hough threshold)
CORPUS = dict(width=512, height=256, seconds=3.0, fps=8.0, count=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The synthetic corpus (pipeline.synthetic, seed 0) at the small CORPUS size."""
    from pipeline.synthetic import generate_corpus

    out = tmp_path_factory.mktemp("corpus")
    labels = generate_corpus(out, seed=0, config=dict(CORPUS), progress=False)
    return out, labels


def _pids_naming(text: str) -> list[int]:
    """Our own processes whose command line contains `text` (the cluster's private temp dir)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if d.stat().st_uid == os.getuid() and text.encode() in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def stop_cluster(proc: subprocess.Popen, temp: str) -> None:
    """Stop a `ray start --head --block` started in its own session: SIGTERM to its process
    group, SIGKILL after 3 s (it rarely finishes within 20 s: nothing is worth keeping), then
    SIGKILL any straggler naming the cluster's temp dir."""
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the `ray start` process
    except ProcessLookupError:
        pass
    for pid in _pids_naming(temp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def ray_cluster():
    """A head node started with `ray start --head --block` on free ports; stopped at the end."""
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths have a length limit
    port, dash = free_port(), free_port()
    # auth mode explicit, for the cluster and every client (this process included): left unset,
    # `ray start` turns token auth on whenever ~/.ray/auth_token exists while some clients do not
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           f"--port={port}", "--num-cpus=2",
           f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
           f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={temp}",
           f"--ray-client-server-port={free_port()}", "--object-store-memory=300000000",
           "--disable-usage-stats"]
    log = open(Path(temp) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=REPO)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 180
    ready = False
    try:
        while time.time() < deadline and proc.poll() is None:
            # `ray start --block` logs this line once every process it starts is up (cheaper to poll
            # than `ray status`, a Python start-up per try on two loaded cores)
            if "block forever" in (Path(temp) / "ray-start.log").read_text():
                ready = True
                break
            time.sleep(1)
        if not ready:
            pytest.fail(f"ray start --head did not come up: {(Path(temp) / 'ray-start.log').read_text()[-2000:]}")
        yield dict(address=address, dashboard=f"http://127.0.0.1:{dash}", env=env, temp=temp)
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
        stop_cluster(proc, temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
