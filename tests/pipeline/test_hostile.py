"""End to end on Ray: a manifest of hostile entries, duplicates and videos whose files declare a
projection. Every hostile entry is one `error` row, nothing outside the run directory and the
cache is touched, the run exits 0; declared cube map / mesh / stereo files are rejected at
`format` with the projection as the reason."""
from __future__ import annotations

import shutil
import socket
import subprocess

import pandas as pd
import pytest
import yaml

from pipeline.curate import main
from pipeline.decisions import video_verdicts
from shards.spherical import read_projection, tag_file
from shards.video import ffmpeg_exe

from .test_curate import local_config


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(root, skip) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and not any(s in p.parents for s in skip)}


@pytest.mark.slow
def test_hostile_manifest_and_declared_projections(corpus, ray_cluster, tmp_path, capsys):
    src, _ = corpus
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = inputs / "equirect.mp4"
    shutil.copy(src / "equirect_000.mp4", good)
    tagged = {}  # file → expected (status, stage, reason)
    for name, projection, stereo, version in [("tagged_equirect.mp4", "equirectangular", "mono", 1),
                                              ("cube.mp4", "cubemap", "mono", 2),
                                              ("stereo_tb.mp4", "equirectangular", "top-bottom", 1)]:
        shutil.copy(good, inputs / name)
        tag_file(inputs / name, projection, stereo, version=version)
        tagged[name] = ("accepted", "", "") if projection == "equirectangular" and stereo == "mono" else \
            ("rejected", "format", f"projection_{projection}" if projection != "equirectangular" else f"stereo_{stereo}")
    webm = inputs / "mesh.webm"
    r = subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(good), "-c:v", "libvpx-vp9", "-b:v", "300k",
                        "-deadline", "realtime", str(webm)], capture_output=True, text=True)
    if r.returncode == 0:
        tag_file(webm, "mesh", "mono")
        assert read_projection(webm)["projection"] == "mesh"
        tagged["mesh.webm"] = ("rejected", "format", "projection_mesh")

    canary_dir = tmp_path / "canary"
    canary_dir.mkdir()
    canary = canary_dir / "canary.txt"
    canary.write_text("untouched")
    hostile = [f"; rm -rf {canary_dir}", f"$(touch {canary_dir}/pwned)", "-y", "-i /etc/passwd",
               "../" * 12 + "etc/passwd", "/dev/zero", "/dev/stdin", "pipe:0", "concat:/etc/passwd|/etc/hostname",
               "subfile,,start,0,end,100,,:/etc/passwd", f"http://127.0.0.1:{closed_port()}/v.mp4",
               "memory://bucket/v.mp4", "data:video/mp4;base64,AAAA"]
    paths = [str(good), str(good)] + [str(inputs / n) for n in tagged] + hostile  # `good` listed twice
    manifest = inputs / "manifest.csv"
    pd.DataFrame({"path": paths, "like_count": [10] * len(paths)}).to_csv(manifest, index=False)
    out = tmp_path / "run"
    data = local_config(ray_cluster["address"], input__path=str(manifest))
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    before = snapshot(tmp_path, skip=[out])

    code = main(["--config", str(cfg_path), "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert canary.read_text() == "untouched" and sorted(p.name for p in canary_dir.iterdir()) == ["canary.txt"]
    after = snapshot(tmp_path, skip=[out])
    assert after == before, set(after) ^ set(before)  # nothing written or changed outside the run dir

    df = pd.read_parquet(out / "decisions.parquet")
    videos = df[df["clip_index"].isna()]
    by_source = videos.set_index("source")
    assert len(videos) == len(set(paths))  # duplicates curated once
    assert "1 duplicate" in printed
    for entry in hostile:
        remote, absolute = ":" in entry.split("/")[0] and not entry.startswith("subfile"), entry.startswith("/")
        source = entry if remote or absolute else str(inputs / entry)  # relative to the manifest
        rows = videos[videos["source"] == source]
        assert len(rows) == 1, entry
        assert rows.iloc[0]["status"] == "error", (entry, rows.iloc[0][["status", "stage", "reason"]].tolist())
    verdicts = video_verdicts(df).merge(videos[["video_id", "source"]], on="video_id").set_index("source")
    assert verdicts.loc[str(good), "status"] == "accepted"
    for name, (status, stage, reason) in tagged.items():
        got = verdicts.loc[str(inputs / name)]
        assert (got["status"], got["stage"], got["reason"]) == (status, stage, reason), name
        row = by_source.loc[str(inputs / name)]
        assert row["projection"] == read_projection(inputs / name)["projection"]
    assert (by_source.loc[str(inputs / "cube.mp4"), "detail"]).startswith("the file declares projection cubemap")


@pytest.mark.slow
def test_breaker_stops_downloads_exits_3_and_the_next_run_retries(ray_cluster, tmp_path, capsys):
    urls = [f"http://127.0.0.1:{closed_port()}/v{i}.mp4" for i in range(4)]
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"url": urls}).to_csv(manifest, index=False)
    data = local_config(ray_cluster["address"], input__path=str(manifest))
    data["download"].update(breaker_after=2, max_concurrent_per_node=1, retries=0)
    data["ray"]["stages"]["download"] = {"num_cpus": 0.05, "batch_size": 4}  # one task: in order
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    assert main(["--config", str(cfg_path), "--output", str(out)]) == 3
    err = capsys.readouterr().err
    assert "downloads stopped" in err and f"--output {out}" in err and "bot check" in err
    videos = pd.read_parquet(out / "decisions.parquet")
    assert videos["status"].eq("error").all() and videos["error_kind"].eq("transient").all()
    reasons = videos["reason"].value_counts().to_dict()
    assert reasons.get("network", 0) >= 2 and reasons.get("breaker_open", 0) >= 1 and len(videos) == 4
    # the next run retries every one of them (here they fail again: the same rows, nothing lost)
    assert main(["--config", str(cfg_path), "--output", str(out)]) == 3
    again = pd.read_parquet(out / "decisions.parquet")
    assert sorted(again["video_id"]) == sorted(videos["video_id"])
