"""Hostile shards: the reader skips and counts, `shards` commands print problem lines; nothing crashes,
nothing reads more than its limits (peak RSS measured in a subprocess)."""
import json
import tarfile

import pytest

from shards.reader import ReadLimits, ShardReadError, iter_samples, list_shards
from shards.schema import SchemaError, check_key, split_member_name, validate_meta

from .conftest import GiB, clip_meta, write_tar

SHARDS = ("-m", "shards.cli")


def read_all(path, **kw):
    samples = iter_samples(path, **kw)
    return [s.key for s in samples], samples.stats


def assert_bounded(ran):
    assert "Traceback" not in ran.err, ran.err[-3000:]
    assert 0 < ran.peak_rss < GiB, f"peak RSS {ran.peak_rss / 2**20:.0f} MiB"


# ------------------------------------------------------------------------------- sparse member
def test_sparse_member_is_a_counted_skip(sparse_tar):
    keys, stats = read_all(sparse_tar.parent)
    assert keys == [] and stats.skipped == 1 and stats.shards == 1
    assert "sparse file (declares 1099511627776 bytes)" in stats.problems[0][2]
    with pytest.raises(ShardReadError, match="sparse") as e:
        read_all(sparse_tar.parent, strict=True)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("command", [["verify"], ["stats"], ["stats", "--json"], ["ls"]])
def test_sparse_member_commands_stay_bounded(cli, sparse_tar, command):
    ran = cli(*SHARDS, *command, sparse_tar)
    assert_bounded(ran)
    if command == ["verify"]:
        assert ran.rc == 1 and "vid_0000\tmember vid_0000.mp4 is a sparse file" in ran.out
    elif command[0] == "stats":
        assert ran.rc == 0
        skipped = json.loads(ran.out)["skipped"] if "--json" in command else int(ran.out.split("skipped ")[1].split()[0])
        assert skipped == 1
    else:
        assert ran.rc == 0


# -------------------------------------------------------- long-name / PAX header declaring 2 GiB
def test_huge_extended_header_is_refused_before_it_is_read(huge_header_tar):
    keys, stats = read_all(huge_header_tar.parent)
    assert keys == [] and stats.shards == 1 and len(stats.problems) == 1  # as a truncated shard: the rest is lost
    assert "declares 2147483648 bytes, over the limit of 1048576" in stats.problems[0][2], stats.problems
    with pytest.raises(ShardReadError, match="declares 2147483648 bytes"):
        read_all(huge_header_tar.parent, strict=True)


@pytest.mark.parametrize("command", [["verify"], ["stats"], ["ls"]])
def test_huge_extended_header_commands_stay_bounded(cli, huge_header_tar, command):
    ran = cli(*SHARDS, *command, huge_header_tar)
    assert_bounded(ran)
    if command == ["verify"]:
        assert ran.rc == 1 and "declares 2147483648 bytes" in ran.out, ran.out


def test_chained_extended_headers_are_an_unreadable_shard_not_a_recursion_error(tmp_path, mp4_bytes):
    from .conftest import extended_header

    chain = b"".join(extended_header(tarfile.GNUTYPE_LONGNAME, 512) + b"a" * 511 + b"\0" for _ in range(5000))
    path = write_tar(tmp_path / "clips-000000.tar", [chain, ("vid_0000.mp4", mp4_bytes)])  # 5 MB, 5000 deep
    keys, stats = read_all(path)
    assert keys == [] and "more than 8 extended headers in a row" in stats.problems[0][2], stats.problems


# ---------------------------------------------------------------------------------- deep JSON
def test_deep_json_is_a_counted_skip(deep_json_tar):
    keys, stats = read_all(deep_json_tar.parent)
    assert keys == ["vid_0000"] and stats.skipped == 1
    assert stats.problems[0][1] == "vid_0001" and "nested" in stats.problems[0][2]
    with pytest.raises(ValueError, match="vid_0001\tjson: JSON nested"):
        read_all(deep_json_tar.parent, strict=True)


@pytest.mark.parametrize("command", [["verify"], ["stats"], ["stats", "--json"]])
def test_deep_json_commands(cli, deep_json_tar, command):
    ran = cli(*SHARDS, *command, deep_json_tar)
    assert_bounded(ran)
    if command == ["verify"]:
        assert ran.rc == 1 and "vid_0001\tjson: JSON nested" in ran.out
    else:
        assert ran.rc == 0
        if "--json" in command:
            assert json.loads(ran.out)["skipped"] == 1 and json.loads(ran.out)["clips"] == 1


def test_json_size_limit_and_depth_limit_from_config(tmp_path, mp4_bytes):
    big = json.dumps(clip_meta(notes="x" * (2 * 2**20))).encode()  # 2 MiB > the 1 MiB json limit
    write_tar(tmp_path / "clips-000000.tar", [("vid_0000.mp4", mp4_bytes), ("vid_0000.json", big)])
    keys, stats = read_all(tmp_path)
    assert keys == [] and "over the json limit of 1048576 bytes" in stats.problems[0][2]
    keys, _ = read_all(tmp_path, limits=ReadLimits.from_mb({"json": 4}))
    assert keys == ["vid_0000"]
    keys, stats = read_all(tmp_path, limits=ReadLimits.from_mb({"json": 4, "mp4": 0.001}))
    assert keys == [] and "vid_0000.mp4 is" in stats.problems[0][2] and "over the mp4 limit" in stats.problems[0][2]


# --------------------------------------------------------------------------- member names, keys
def test_traversal_names_reader_and_verify_agree(cli, traversal_tar):
    keys, stats = read_all(traversal_tar.parent)
    assert keys == ["vid_0009"]
    reader_bad = {key for _, key, _ in stats.problems}
    assert reader_bad == {repr(n) for n in ("../vid_0001.mp4", "../vid_0001.json", "sub/vid_0002.mp4",
                                            "sub/vid_0002.json", "/etc/vid_0003.mp4", "vid_0004\n.mp4")}
    ran = cli(*SHARDS, "verify", "--quick", traversal_tar)
    assert_bounded(ran)
    assert ran.rc == 1
    verify_bad = {line.split("\t")[1] for line in ran.out.splitlines()
                  if "must be KEY.EXT" in line or "key must be" in line}
    assert verify_bad == reader_bad  # one definition of a member name for both
    # the good sample's only problem is verify's own extra rule (a thumbnail is expected)
    assert [line.split("\t")[2] for line in ran.out.splitlines() if "\tvid_0009\t" in line] == ["missing member jpg"]
    ran = cli(*SHARDS, "ls", traversal_tar)  # counts what the reader would call a sample: 1 key, 8 members
    assert ran.rc == 0 and ran.out.splitlines()[1].split()[1] == "1", ran.out


def test_keys_are_full_matched():
    for bad in ("vid_0000\n", "vid 0000", "", "../x", "a" * 201, "vid\x00"):
        with pytest.raises(ValueError):
            check_key(bad)
    assert check_key("vid_0000") == "vid_0000"
    with pytest.raises(SchemaError, match="video_id"):
        validate_meta(clip_meta(video_id="vid\n"))
    assert split_member_name("vid_0000.MP4") == ("vid_0000", "mp4")
    for bad in ("../vid_0000.mp4", "a/vid_0000.mp4", "/vid_0000.mp4", "vid_0000", "vid_0000.", ".mp4",
                "vid_0000\n.mp4", "vid_0000.mp4\n"):
        with pytest.raises(ValueError, match="member name"):
            split_member_name(bad)


def test_non_regular_members_are_skipped(tmp_path, mp4_bytes):
    path = tmp_path / "clips-000000.tar"
    with tarfile.open(path, "w") as tar:
        link = tarfile.TarInfo("vid_0000.mp4")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        fifo = tarfile.TarInfo("vid_0001.mp4")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    keys, stats = read_all(tmp_path)
    assert keys == [] and stats.skipped == 2
    assert all("not a regular file" in what for _, _, what in stats.problems)


# ----------------------------------------------------------------------------- metadata numbers
def test_nonfinite_and_out_of_range_metadata(cli, nonfinite_tar):
    keys, stats = read_all(nonfinite_tar.parent)
    assert keys == [] and stats.skipped == 3
    ran = cli(*SHARDS, "verify", "--quick", nonfinite_tar)
    assert_bounded(ran)
    assert ran.rc == 1
    lines = ran.out.splitlines()
    assert any("vid_0000" in line and "field 'fps'" in line for line in lines)      # Infinity
    assert any("vid_0001" in line and "field 'fps'" in line for line in lines)      # 1e-300
    assert any("vid_0002" in line and "field 'start_s'" in line for line in lines)  # NaN


# ------------------------------------------------------------------------------------- pipe:
def test_pipe_urls_need_opt_in(cli, tmp_path, mp4_bytes):
    marker = tmp_path / "pwned"
    url = f"pipe:touch {marker}"
    for refused in (url, f"  {url}", f"PIPE:touch {marker}", f"pipe:{{touch,echo}} {marker}"):
        with pytest.raises(ValueError, match="pipe: URL runs a shell command"):
            list_shards([refused])
    ran = cli(*SHARDS, "ls", url)
    line = ran.one_line_error()
    assert url in line and "--allow-pipe" in line
    assert not marker.exists()
    shard = write_tar(tmp_path / "clips-000000.tar", [("vid_0000.mp4", mp4_bytes),
                                                      ("vid_0000.json", json.dumps(clip_meta()).encode())])
    ran = cli(*SHARDS, "stats", "--json", "--allow-pipe", f"pipe:cat {shard}")
    assert ran.rc == 0 and json.loads(ran.out)["clips"] == 1


# ------------------------------------------------------------------------------ stalled remote
def test_stalled_http_shard_is_a_counted_problem_within_the_timeout(tmp_path):
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept_and_stall():  # accepts connections, never answers
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_stall, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/clips-000000.tar"
        t0 = time.perf_counter()
        keys, stats = read_all([url], limits=ReadLimits(remote_timeout_s=1.0))
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
    assert keys == [] and stats.skipped == 1 and stats.problems[0][0] == url
    assert "cannot open" in stats.problems[0][2] or "unreadable" in stats.problems[0][2]
    assert accepted and elapsed < 30


# --------------------------------------------------------------------------- 8192×8192 clip in a shard
def test_huge_clip_in_a_shard(cli, tmp_path, huge_video):
    from shards.writer import ShardWriter

    with ShardWriter(tmp_path / "shards") as w:
        w.write("huge_0000", huge_video.read_bytes(), clip_meta("huge", 0, width=8192, height=8192, num_frames=2,
                                                                fps=10.0), jpg=b"\xff\xd8")
    ran = cli(*SHARDS, "show", tmp_path / "shards", "huge_0000", "--out", tmp_path / "sheet.png")
    assert "8192×8192 = 67108864 pixels, over the limit" in ran.one_line_error()
    assert_bounded(ran)
    ran = cli(*SHARDS, "verify", tmp_path / "shards")
    assert_bounded(ran)
    assert ran.rc == 1 and "huge_0000\tmp4 does not decode: " in ran.out and "over the limit" in ran.out
