"""Curation on a Ray cluster of three nodes on this machine (`ray.cluster_utils.Cluster`: a head
that only runs the driver, two worker nodes of two logical CPUs each (with one each, Ray Data starves: the three model actor pools and the task stages do not all fit)): the workers write the shards, from
both nodes; then a worker node is removed mid-run and the run restarted on the same run directory:
every accepted clip is in the shards exactly once and the decisions are the uninterrupted run's."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest
import yaml

from shards.reader import iter_samples, list_shards

from .conftest import REPO, VENV_BIN
from .test_curate import SCORE_COLS, local_config

# the accepted scene under four names (four videos, 8 clips) and one video rejected at the video level
VIDEOS = {"equirect_000.mp4": ("a.mp4", "b.mp4", "c.mp4", "d.mp4"), "poster_000.mp4": ("poster.mp4",)}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths have a length limit
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "OMP_NUM_THREADS", "RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    # the raylets (and so every worker) inherit these: the repository importable, one thread each
    os.environ.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    c = Cluster(initialize_head=True, connect=False, shutdown_at_exit=True,
                head_node_args=dict(num_cpus=0, temp_dir=temp, include_dashboard=False,
                                    object_store_memory=150 * 2**20))
    workers = [c.add_node(num_cpus=2, object_store_memory=150 * 2**20) for _ in range(2)]
    try:
        yield c, workers
    finally:
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp, ignore_errors=True)


def curate(c, cfg, out, **kw) -> subprocess.Popen:
    env = dict(os.environ, RAY_ADDRESS=c.address)
    return subprocess.Popen([sys.executable, str(REPO / "pipeline" / "curate.py"), "--config", str(cfg),
                             "--output", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def check_exactly_once(out) -> pd.DataFrame:
    r = subprocess.run([str(VENV_BIN / "shards"), "verify", str(out / "shards")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    keys = [s.key for s in iter_samples(list_shards(str(out / "shards")))]
    got = pd.read_parquet(out / "decisions.parquet")
    accepted = got.loc[got["status"].eq("accepted") & got["clip_index"].notna()]
    assert len(keys) == len(set(keys)) and set(keys) == set(accepted["key"]) and keys
    assert not list((out / "shards").glob("*.tmp"))
    return got


@pytest.mark.slow
def test_shards_from_both_nodes_then_a_lost_node_and_a_restart(corpus, cluster, tmp_path):
    c, workers = cluster
    src, _ = corpus
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, copies in VIDEOS.items():
        for copy in copies:
            shutil.copy(src / name, inputs / copy)
    # a shard and a write task per clip, so that writes spread over the two nodes
    data = local_config(None, input__path=str(inputs), shards__max_bytes=1)
    data["ray"].pop("address")
    data["ray"]["stages"]["write"] = {"num_cpus": 0.1, "batch_size": 1}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))

    ref_dir = tmp_path / "ref"
    p = curate(c, cfg, ref_dir)
    log = p.communicate(timeout=300)[0]
    assert p.returncode == 0, log[-3000:]
    ref = check_exactly_once(ref_dir)
    assert set(ref["video_id"]) == {n[:-4] for names in VIDEOS.values() for n in names}  # every video decided
    nodes = set(ref.loc[ref["status"].eq("accepted") & ref["clip_index"].notna(), "writer_node"])
    assert nodes == {w.node_id for w in workers}, nodes  # shards written on both worker nodes

    # the same run, a worker node lost as soon as the first shard is committed
    out = tmp_path / "run"
    p = curate(c, cfg, out)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None and not list((out / "shards").glob("*.tar")):
        time.sleep(0.2)
    c.remove_node(workers[1], allow_graceful=False)
    try:
        first = p.communicate(timeout=240)[0]  # Ray Data retries on the node left, or gives up
    except subprocess.TimeoutExpired:
        p.kill()
        first = p.communicate()[0]
    workers[1] = c.add_node(num_cpus=2, object_store_memory=150 * 2**20)
    p = curate(c, cfg, out)
    log = p.communicate(timeout=300)[0]
    assert p.returncode == 0, first[-2000:] + log[-3000:]
    got = check_exactly_once(out)
    cols = ["video_id", "clip_index", "key", "status", "stage", "reason"] + SCORE_COLS
    pd.testing.assert_frame_equal(got[cols], ref[cols], check_exact=False, rtol=1e-5)
