"""Run directories are safe (no Ray): the lock, resume with a changed config, ids read back from
files, reports that delete only their own files, transient failures redone, declared projections."""
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from pipeline import decisions as dec
from pipeline.config import CurateConfig
from pipeline.curate import ConfigChanged, check_resume_config, main
from pipeline.report import write_report
from pipeline.thresholds import decide

from .conftest import REPO

LOCAL = REPO / "configs" / "curate" / "local.yaml"


def test_second_run_on_a_locked_directory_exits_2_naming_the_holder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; sys.path.insert(0, %r)\n"
        "from pipeline.curate import lock_run_dir\n"
        "f = lock_run_dir(Path(%r)); print('locked', flush=True); time.sleep(60)") % (str(REPO), str(run_dir))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        tmp = run_dir / "shards"
        tmp.mkdir()
        (tmp / "clips-000000.tar.tmp").write_bytes(b"the first run's partial shard")
        code = main(["--config", str(LOCAL), "--input", str(tmp_path), "--output", str(run_dir)])
        err = capsys.readouterr().err
        assert code == 2 and f"pid {holder.pid}" in err and "in use" in err
        assert (tmp / "clips-000000.tar.tmp").exists()  # the holder's partial shard is left alone
    finally:
        holder.kill()
        holder.wait()


def test_resume_with_a_changed_config_stops_naming_the_keys(tmp_path):
    data = yaml.safe_load(LOCAL.read_text())
    old = CurateConfig.from_dict(data)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old.to_dict()))
    dec.write_part(tmp_path, "v1", [dict(video_id="v1", clip_index=None, status="accepted")])
    check_resume_config(tmp_path, old, allow_change=False)  # same config: fine
    data["clips"]["duration_s"] = 7.0
    data["thresholds"]["clip"]["text"][0]["reject_if"]["text_area_frac"]["above"] = 0.2
    data["ray"]["num_cpus"] = 1  # where it runs: not a change of what is decided
    new = CurateConfig.from_dict(data)
    with pytest.raises(ConfigChanged) as e:
        check_resume_config(tmp_path, new, allow_change=False)
    assert "clips.duration_s" in str(e.value) and "thresholds.clip.text" in str(e.value)
    assert "ray" not in str(e.value).split("changed:")[1].split(".")[0]
    check_resume_config(tmp_path, new, allow_change=True)  # the explicit override


def test_rethreshold_refuses_ids_that_would_build_paths_outside(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    df = pd.DataFrame([dict(video_id="../../evil", clip_index=None, status="accepted", stage="", reason="",
                            detail="", seam_ratio=1.0)])
    df["clip_index"] = df["clip_index"].astype("Int64")
    df.to_parquet(run_dir / "decisions.parquet")
    code = main(["--config", str(LOCAL), "--output", str(run_dir), "--rethreshold"])
    assert code == 2 and "../../evil" in capsys.readouterr().err
    assert not (tmp_path / "evil.parquet").exists() and not list(tmp_path.rglob("evil*"))


def test_report_deletes_only_the_files_it_wrote(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "hist_mine.png").write_bytes(b"a user's own plot")
    df = pd.DataFrame([dict(video_id="a", clip_index=None, status="accepted", stage="", reason="", seam_ratio=1.0,
                            lpips_lr=0.2)])
    df["clip_index"] = df["clip_index"].astype("Int64")
    write_report(tmp_path, df, {})
    assert (report / "hist_lpips_lr.png").exists()
    write_report(tmp_path, df.drop(columns="lpips_lr"), {})
    assert not (report / "hist_lpips_lr.png").exists()  # ours, no longer written: removed
    assert (report / "hist_mine.png").read_bytes() == b"a user's own plot"


def test_transient_failures_are_redone_by_the_next_run(tmp_path):
    dec.write_part(tmp_path, "ok", [dict(video_id="ok", clip_index=None, status="rejected")])
    dec.write_part(tmp_path, "flaky", [dict(video_id="flaky", clip_index=None, status="error")], retry=True)
    assert dec.done_videos(tmp_path) == {"ok"}
    dec.write_part(tmp_path, "flaky", [dict(video_id="flaky", clip_index=None, status="accepted")])
    assert dec.done_videos(tmp_path) == {"ok", "flaky"}
    with pytest.raises(ValueError, match="refusing"):
        dec.write_part(tmp_path, "../x", [])


def test_declared_layouts_and_permanent_download_failures_are_rejections():
    rules = {"video": {"black": [{"reason": "black_pixels", "reject_if": {"video_black_frac": {"above": 0.5}}}]}}
    row = dict(video_black_frac=0.9, projection="cubemap", stereo_mode="mono")
    assert decide(row, rules, "video")[:3] == ("rejected", "format", "projection_cubemap")  # before pixels
    assert decide(dict(row, projection="mesh"), rules, "video")[2] == "projection_mesh"
    assert decide(dict(row, projection="equirectangular", stereo_mode="top-bottom"), rules, "video")[2] == \
        "stereo_top-bottom"
    assert decide(dict(row, projection="equirectangular"), rules, "video")[2] == "black_pixels"
    assert decide(dict(row, projection=None, stereo_mode=None), rules, "video")[2] == "black_pixels"
    err = dict(error="DownloadError: private", error_stage="download", error_reason="private_video")
    assert decide(dict(err, error_kind="permanent"), rules, "video")[:3] == ("rejected", "download", "private_video")
    assert decide(dict(err, error_kind="transient"), rules, "video")[0] == "error"


def test_report_of_a_run_without_any_clip(tmp_path):
    """Every video failed at download (the bot check): no clip columns, still a report."""
    df = pd.DataFrame([dict(video_id="a", clip_index=None, status="error", stage="download", reason="bot_check",
                            duration_s=None, t_download=1.5, t_text=0.0)])
    df["clip_index"] = df["clip_index"].astype("Int64")
    write_report(tmp_path, df, {})
    tp = pd.read_csv(tmp_path / "report" / "throughput.csv").set_index("stage")
    assert tp.loc["download", "rows"] == 1


def small_run(run_dir, samples: dict[str, tuple[bytes, float]]) -> None:
    """A run directory by hand: one shard holding `samples` (key → (json bytes, motion score)) and
    decisions with one video row and one clip row per key (the clip's motion score decides it)."""
    import io
    import tarfile

    import numpy as np

    from shards.video import encode_mp4

    mp4 = encode_mp4(np.zeros((4, 32, 64, 3), np.uint8), fps=8)
    (run_dir / "shards").mkdir(parents=True)
    with tarfile.open(run_dir / "shards" / "clips-000000.tar", "w") as tar:
        for key, (meta, _) in samples.items():
            for ext, data in (("mp4", mp4), ("json", meta)):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    rows = [dict(video_id=v, clip_index=None, key=None, status="accepted", stage="", reason="", detail="",
                 motion_deg_s=None)
            for v in sorted({k[:-5] for k in samples})]
    rows += [dict(video_id=k[:-5], clip_index=int(k[-4:]), key=k, status="accepted", stage="", reason="", detail="",
                  motion_deg_s=m, shard="clips-000000.tar") for k, (_, m) in samples.items()]
    df = pd.DataFrame(rows)
    df["clip_index"] = df["clip_index"].astype("Int64")
    df.to_parquet(run_dir / "decisions.parquet", index=False)


def clip_json(key: str) -> bytes:
    from shards.schema import ClipMeta

    return ClipMeta(video_id=key[:-5], clip_index=int(key[-4:]), source="hand", start_s=0.0, end_s=0.5, fps=8.0,
                    num_frames=4, width=64, height=32, config_hash="hand").to_json()


def test_apply_on_a_hand_made_run_leftovers_and_a_bad_source_sample(tmp_path, capsys):
    """No Ray: --rethreshold --apply keeps the clip that passes local.yaml's motion rule, drops the
    other, removes a `.partial` left by a killed apply; a source sample that the reader rejects stops
    apply with one line naming shard and key (exit 2), leaving no new directory behind."""
    run_dir = tmp_path / "run"
    small_run(run_dir, {"a_0000": (clip_json("a_0000"), 10.0), "a_0001": (clip_json("a_0001"), 0.1)})
    out = run_dir / f"shards_{CurateConfig.from_dict(yaml.safe_load(LOCAL.read_text())).config_hash()}"
    leftover = run_dir / f".{out.name}.partial"
    leftover.mkdir()
    (leftover / "clips-000000.tar").write_bytes(b"half a shard of a killed apply")
    assert main(["--config", str(LOCAL), "--output", str(run_dir), "--rethreshold", "--apply"]) == 0
    assert "apply: 1 clips kept in 1 shards" in capsys.readouterr().out and not leftover.exists()
    from shards.reader import iter_samples

    assert [s.key for s in iter_samples(str(out), strict=True)] == ["a_0000"]

    bad = tmp_path / "bad"
    small_run(bad, {"b_0000": (clip_json("b_0000"), 10.0), "b_0001": (b'{"video_id": "b"', 10.0)})
    assert main(["--config", str(LOCAL), "--output", str(bad), "--rethreshold", "--apply"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clips-000000.tar: sample b_0001: json: not valid JSON" in err[0], err
    assert sorted(p.name for p in bad.iterdir() if "shards_" in p.name) == []
    with pytest.raises(SystemExit) as e:  # --apply alone: a usage error
        main(["--config", str(LOCAL), "--output", str(bad), "--apply"])
    assert e.value.code == 2 and "go with --rethreshold" in capsys.readouterr().err


def test_resume_over_an_unreadable_shard_exits_2_naming_it(tmp_path, capsys):
    """Before Ray starts: the run cannot tell which clips that shard holds, so it stops (exit 2, one
    line naming the shard) and changes nothing in the run directory."""
    from pipeline.synthetic import main as synthetic

    corpus = tmp_path / "corpus"
    synthetic(["--out", str(corpus), "--count", "1", "--size", "64x32", "--seconds", "1"])
    capsys.readouterr()
    shards = tmp_path / "run" / "shards"
    shards.mkdir(parents=True)
    (shards / "clips-0123.tar").write_bytes(b"\x00" * 100 + b"damaged" * 100)
    code = main(["--config", str(LOCAL), "--input", str(corpus), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "clips-0123.tar: unreadable shard" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in shards.iterdir()) == ["clips-0123.tar"]
    assert not (tmp_path / "run" / "decisions.parquet").exists()
