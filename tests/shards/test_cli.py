import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shards.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_counts_samples_and_bytes(tmp_path, write_shards, capsys):
    write_shards(tmp_path, 5, per_shard=2)
    code, out, _ = run(capsys, "ls", tmp_path)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 1 + 3 + 1
    assert [line.split()[1] for line in lines[1:4]] == ["2", "2", "1"]
    assert lines[-1].startswith("total: 3 shards") and lines[-1].split()[3] == "5"


def test_missing_and_empty_paths(tmp_path, capsys):
    code, _, err = run(capsys, "ls", tmp_path / "nope")
    assert code == 2 and "nope: no such shard" in err
    code, _, err = run(capsys, "verify", tmp_path)
    assert code == 1 and f"no shards (*.tar) found in {tmp_path}" in err


def test_stats_json_and_plot(tmp_path, write_shards, capsys):
    write_shards(tmp_path / "s", 4, per_shard=3)
    plot = tmp_path / "scores.png"
    code, out, _ = run(capsys, "stats", tmp_path / "s", "--json", "--plot", plot)
    stats = json.loads(out)
    assert code == 0 and stats["clips"] == 4 and stats["shards"] == 2
    assert stats["hours"] == pytest.approx(4 * 2.0 / 3600)
    assert stats["resolution"] == {"64x32": 4} and stats["category"] == {"Travel & Events": 4}
    flow = stats["scores"]["flow"]  # 0.5, 1.5, 2.5, 3.5
    assert (flow["min"], flow["median"], flow["max"], flow["count"]) == (0.5, 2.0, 3.5, 4)
    assert stats["scores"]["text_area"] == {"count": 0, "missing": 4}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(capsys, "stats", tmp_path / "s")
    assert "clips 4" in out and "flow" in out


def test_show_and_export(tmp_path, write_shards, mp4_bytes, capsys):
    pytest.importorskip("geometry.projection", reason="geometry.equirect_to_perspective not available")
    write_shards(tmp_path / "s", 3, per_shard=2)
    sheet = tmp_path / "sheet.png"
    code, out, _ = run(capsys, "show", tmp_path / "s", "vid_0002", "--out", sheet)
    assert code == 0 and '"clip_index": 2' in out
    import cv2

    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[1] > image.shape[0]
    clip = tmp_path / "clip.mp4"
    code, _, _ = run(capsys, "export", tmp_path / "s", "vid_0001", "--out", clip)
    assert code == 0 and clip.read_bytes() == mp4_bytes
    code, _, err = run(capsys, "export", tmp_path / "s", "vid_0009", "--out", clip)
    assert code == 1 and "key vid_0009 not found" in err


def test_verify_reports_each_problem_by_shard_and_key(tmp_path, write_shards, raw_tar, mp4_bytes,
                                                      make_meta, capsys):
    root = tmp_path / "s"
    write_shards(root, 4, per_shard=2)  # clips-000000 (vid_0000, vid_0001), clips-000001
    code, _, err = run(capsys, "verify", root)
    assert code == 0 and "4 sample(s): OK" in err

    def sample(key, **members):
        return {f"{key}.{ext}": data for ext, data in members.items()}

    meta = lambda i, **kw: json.dumps(make_meta("bad", i, **kw)).encode()  # noqa: E731
    jpg = (root / "clips-000000.tar")  # any JPEG will do: take one from a good shard
    import tarfile

    with tarfile.open(jpg) as tar:
        jpg = tar.extractfile("vid_0000.jpg").read()
    raw_tar(root / "clips-000002.tar", {
        **sample("bad_0000", mp4=mp4_bytes, json=meta(0)),                         # missing jpg
        **sample("bad_0001", mp4=mp4_bytes, json=b"[not json", jpg=jpg),            # invalid json
        **sample("bad_0002", mp4=mp4_bytes, json=meta(2, schema_version=2), jpg=jpg),  # old/new schema
        **sample("vid_0001", mp4=mp4_bytes, json=json.dumps(make_meta("vid", 1)).encode(), jpg=jpg),
        **sample("bad_0004", mp4=mp4_bytes[:300], json=meta(4), jpg=jpg),          # broken mp4
    })
    truncated = root / "clips-000001.tar"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 4])

    code, out, err = run(capsys, "verify", root)
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert code == 1 and all(len(r) == 3 for r in rows)
    found = {(Path(shard).name, key): what for shard, key, what in rows}
    bad = "clips-000002.tar"
    assert found[(bad, "bad_0000")] == "missing member jpg"
    assert "not valid JSON" in found[(bad, "bad_0001")]
    assert "schema_version 2 is not supported" in found[(bad, "bad_0002")]
    assert "duplicate key (also in" in found[(bad, "vid_0001")] and "clips-000000.tar" in found[(bad, "vid_0001")]
    assert "mp4 does not decode" in found[(bad, "bad_0004")]
    assert "unreadable tar" in found[("clips-000001.tar", "-")]
    assert not any(shard == "clips-000000.tar" for shard, _ in found)


def test_verify_catches_shard_cut_at_member_boundary(tmp_path, write_shards, capsys):
    write_shards(tmp_path, 2, per_shard=2)
    shard = tmp_path / "clips-000000.tar"
    import tarfile

    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    end_of_first_sample = members[3].offset  # header of the second sample: a clean cut
    shard.write_bytes(shard.read_bytes()[:end_of_first_sample])
    code, out, _ = run(capsys, "verify", tmp_path)
    assert code == 1 and "no end-of-archive marker" in out


def test_installed_console_script(tmp_path, write_shards):
    exe = shutil.which("shards", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("console script `shards` is not installed in this environment (pip install -e .)")
    write_shards(tmp_path, 3, per_shard=2)
    done = subprocess.run([exe, "verify", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "verified 2 shard(s), 3 sample(s): OK" in done.stderr
    helped = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and all(c in helped.stdout for c in ("ls", "stats", "show", "verify", "export"))


def write_decisions(path, rows):
    """A decisions.parquet with the columns `verify --decisions` reads (pipeline/decisions.py writes
    them; plus a score, as a real file has): one video row (key null), then the clip rows."""
    import pandas as pd

    video = dict(video_id="vid", clip_index=None, key=None, status="accepted", stage="", reason="", shard=None)
    clips = [dict(video_id=k.rsplit("_", 1)[0], clip_index=int(k.rsplit("_", 1)[1]), key=k, status=status,
                  stage=stage, reason=reason, shard=shard) for k, status, stage, reason, shard in rows]
    df = pd.DataFrame([video] + clips).assign(motion_deg_s=1.5)
    df["clip_index"] = df["clip_index"].astype("Int64")
    df.to_parquet(path, index=False)
    return path


def test_verify_against_decisions(tmp_path, write_shards, capsys):
    root = tmp_path / "s"
    write_shards(root, 4, per_shard=2)  # clips-000000 (vid_0000, vid_0001), clips-000001 (vid_0002, vid_0003)
    ok = [(f"vid_{i:04d}", "accepted", "", "", f"clips-00000{i // 2}.tar") for i in range(4)]
    decisions = write_decisions(tmp_path / "ok.parquet", ok)
    code, out, err = run(capsys, "verify", root, "--quick", "--decisions", decisions)
    assert (code, out) == (0, "") and "4 sample(s) against 4 accepted clip(s)" in err and err.rstrip().endswith("OK")

    write_shards(root, 1, prefix="more")  # a second vid_0000, in more-000000.tar (after clips-*)
    decisions = write_decisions(tmp_path / "decisions.parquet", [
        ok[0], ok[1],
        ("vid_0002", "rejected", "motion", "low_flow", None),  # dropped by a rethreshold, still in a shard
        # vid_0003: no row at all
        ("vid_0009", "accepted", "", "", "clips-000009.tar"),  # accepted, never written
    ])
    code, out, err = run(capsys, "verify", root, "--quick", "--decisions", decisions)
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert code == 1 and all(len(r) == 3 for r in rows)
    found = {(Path(shard).name, key): what for shard, key, what in rows}
    assert "duplicate key (also in" in found[("more-000000.tar", "vid_0000")]
    assert "decided rejected at motion/low_flow" in found[("clips-000001.tar", "vid_0002")]
    assert "no decision for this key" in found[("clips-000001.tar", "vid_0003")]
    assert found[("decisions.parquet", "vid_0009")] == "accepted in the decisions, in no shard"
    assert len(rows) == 4 and "4 problem(s)" in err

    # a decisions row whose shard is not where the key is; a key that is not a key
    bad = write_decisions(tmp_path / "bad.parquet", ok[:3] + [("vid_0003", "accepted", "", "", "clips-000000.tar"),
                                                             ("../x\tz_0001", "accepted", "", "", None)])
    code, out, _ = run(capsys, "verify", root / "clips-000001.tar", "--quick", "--decisions", bad)
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert code == 1 and all(len(r) == 3 for r in rows), out
    found = {(Path(shard).name, key): what for shard, key, what in rows}
    assert "puts it in shard clips-000000.tar" in found[("clips-000001.tar", "vid_0003")]
    assert "is not a sample key" in found[("bad.parquet", "-")]
    assert "in no shard" in found[("bad.parquet", "vid_0000")]


def test_verify_decisions_bad_file(tmp_path, write_shards, capsys):
    write_shards(tmp_path / "s", 1)
    code, _, err = run(capsys, "verify", tmp_path / "s", "--quick", "--decisions", tmp_path / "nope.parquet")
    assert code == 2 and "nope.parquet: no such file" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    code, _, err = run(capsys, "verify", tmp_path / "s", "--quick", "--decisions", tmp_path / "junk.parquet")
    assert code == 2 and "junk.parquet: not a parquet file" in err and len(err.strip().splitlines()) == 1
    import pandas as pd

    pd.DataFrame({"video_id": ["vid"]}).to_parquet(tmp_path / "other.parquet")
    code, _, err = run(capsys, "verify", tmp_path / "s", "--quick", "--decisions", tmp_path / "other.parquet")
    assert code == 2 and "no key, status column" in err
