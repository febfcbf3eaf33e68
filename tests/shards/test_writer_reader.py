import json
import shutil
import tarfile

import numpy as np
import pytest
import torch

from shards.reader import ShardReadError, iter_samples, list_shards, shard_index
from shards.schema import validate_meta
from shards.video import decode_frames
from shards.writer import ShardWriter


def test_round_trip_metadata_and_frames(tmp_path, mp4_bytes, make_meta):
    written = {}
    with ShardWriter(tmp_path, max_bytes=60_000) as writer:
        for i in range(5):
            meta = make_meta("abc", i, extra_note=f"n{i}")
            writer.write(f"abc_{i:04d}", mp4_bytes, meta)  # jpg made from the middle frame
            written[f"abc_{i:04d}"] = validate_meta(meta).model_dump(mode="json")
    samples = list(iter_samples(tmp_path))
    assert [s.key for s in samples] == sorted(written)
    full = decode_frames(mp4_bytes)
    for s in samples:
        assert s.meta == written[s.key]
        assert s.mp4 == mp4_bytes and s.jpg[:2] == b"\xff\xd8"  # a JPEG thumbnail
        indices = [0, 13, 5, 23]
        np.testing.assert_array_equal(decode_frames(s.mp4, indices=indices), full[indices])
    # the byte target splits the clips over several shards, each under it
    shards = sorted(tmp_path.glob("clips-*.tar"))
    assert len(shards) > 1 and all(p.stat().st_size <= 60_000 for p in shards)


def test_on_shard_complete_reports_renamed_shards(tmp_path, mp4_bytes, make_meta):
    done = []
    with ShardWriter(tmp_path, max_samples=2, on_shard_complete=lambda p, keys: done.append(
            (p.name, keys, p.exists(), list(tmp_path.glob("*.tmp"))))) as writer:
        for i in range(5):
            writer.write(f"vid_{i:04d}", mp4_bytes, make_meta(clip_index=i), jpg=b"j")
    assert [d[0] for d in done] == ["clips-000000.tar", "clips-000001.tar", "clips-000002.tar"]
    assert [d[1] for d in done] == [["vid_0000", "vid_0001"], ["vid_0002", "vid_0003"], ["vid_0004"]]
    assert all(d[2] for d in done)
    assert done[-1][3] == []  # the final shard was renamed before the callback


def test_resume_numbering_never_overwrites(tmp_path, write_shards, mp4_bytes, make_meta):
    write_shards(tmp_path, 3, per_shard=2)  # clips-000000, clips-000001
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.tar")}
    (tmp_path / "clips-000002.tar.tmp").write_bytes(b"partial shard of a killed run")
    with ShardWriter(tmp_path) as writer:
        writer.write("new_0000", mp4_bytes, make_meta("new", 0), jpg=b"j")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["clips-000000.tar", "clips-000001.tar", "clips-000002.tar"]
    assert all((tmp_path / n).read_bytes() == b for n, b in before.items())
    assert set(shard_index(tmp_path)) == {"vid_0000", "vid_0001", "vid_0002", "new_0000"}


def test_writer_rejects_bad_input_and_drops_shard_on_error(tmp_path, mp4_bytes, make_meta):
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(tmp_path) as writer:
            with pytest.raises(ValueError, match="does not match its metadata"):
                writer.write("vid_0001", mp4_bytes, make_meta(clip_index=0), jpg=b"j")
            with pytest.raises(ValueError, match=r"A-Za-z0-9_-"):
                writer.write("bad key", mp4_bytes, make_meta(), jpg=b"j")
            with pytest.raises(ValueError, match="invalid clip metadata: field 'fps'"):
                writer.write("vid_0000", mp4_bytes, make_meta(fps=-1), jpg=b"j")
            writer.write("vid_0000", mp4_bytes, make_meta(), jpg=b"j")
            with pytest.raises(ValueError, match="already written"):
                writer.write("vid_0000", mp4_bytes, make_meta(), jpg=b"j")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # nothing reported complete, nothing left behind


def test_write_members_copies_member_bytes_as_they_are(tmp_path, write_shards, mp4_bytes, jpg_bytes, make_meta):
    """Samples copied out of one shard into another (`--rethreshold --apply`): the same member bytes,
    json included, and the same checks as the reader before anything is written."""
    write_shards(tmp_path / "a", 3, per_shard=2)
    with tarfile.open(tmp_path / "a" / "clips-000000.tar") as tar:
        original = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    spaced = json.dumps(make_meta("vid", 1), indent=3).encode()  # json bytes unlike the writer's own
    with ShardWriter(tmp_path / "b", max_samples=1) as w:
        w.write_members("vid_0000", {e: original[f"vid_0000.{e}"] for e in ("mp4", "json", "jpg")})
        w.write_members("vid_0001", {"mp4": original["vid_0001.mp4"], "json": spaced})  # jpg is optional
        for key, members, why in [
            ("vid_0000", {"mp4": mp4_bytes, "json": original["vid_0000.json"]}, "already written"),
            ("vid_0002", {"mp4": mp4_bytes, "json": original["vid_0000.json"]}, "not the sample key"),
            ("vid_0002", {"mp4": mp4_bytes}, "missing member"),
            ("vid_0002", {"mp4": mp4_bytes, "json": b"{", "jpg": jpg_bytes}, "not valid JSON"),
            ("vid_0002", {"mp4": mp4_bytes, "json": original["vid_0000.json"], "txt": b"x"}, "unexpected member"),
            ("../vid_0002", {"mp4": mp4_bytes, "json": original["vid_0000.json"]}, "sample key"),
        ]:
            with pytest.raises(ValueError, match=why):
                w.write_members(key, members)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["clips-000000.tar", "clips-000001.tar"]
    with tarfile.open(tmp_path / "b" / "clips-000000.tar") as tar:
        assert {m.name: tar.extractfile(m).read() for m in tar.getmembers()} == {
            k: v for k, v in original.items() if k.startswith("vid_0000.")}
    with tarfile.open(tmp_path / "b" / "clips-000001.tar") as tar:
        assert tar.extractfile("vid_0001.json").read() == spaced and tar.getnames() == ["vid_0001.mp4", "vid_0001.json"]
    assert [s.key for s in iter_samples(tmp_path / "b", strict=True)] == ["vid_0000", "vid_0001"]


def test_reader_never_reads_tmp(tmp_path, write_shards):
    write_shards(tmp_path, 2, per_shard=2)
    complete = tmp_path / "clips-000000.tar"
    partial = tmp_path / "clips-000001.tar.tmp"
    shutil.copy(complete, partial)  # a valid but unfinished shard
    for spec in (tmp_path, str(tmp_path / "*"), str(tmp_path / "clips-*.tar*")):
        assert list_shards(spec) == [str(complete)]
        assert [s.url for s in iter_samples(spec)] == [str(complete)] * 2
    with pytest.warns(UserWarning, match=r"partial shard \(.tmp\) skipped"):
        assert list_shards([complete, partial]) == [str(complete)]
    assert shard_index(tmp_path) == {"vid_0000": ["clips-000000.tar"], "vid_0001": ["clips-000000.tar"]}


def test_brace_and_pipe_urls(tmp_path, write_shards):
    write_shards(tmp_path, 4, per_shard=2)
    braces = str(tmp_path / "clips-{000000..000001}.tar")
    assert len(list_shards(braces)) == 2
    pipe = f"pipe:cat {tmp_path / 'clips-000001.tar'}"
    with pytest.raises(ValueError, match="pipe: URL runs a shell command; refused"):
        iter_samples([pipe])  # a shell command from data needs the explicit opt-in
    assert [s.key for s in iter_samples([pipe], allow_pipe=True)] == ["vid_0002", "vid_0003"]
    assert [s.key for s in iter_samples(f"file://{tmp_path}/clips-000000.tar")] == ["vid_0000", "vid_0001"]
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        list_shards(tmp_path / "nothing-here")


def test_reader_skips_and_counts_bad_samples_strict_raises(tmp_path, write_shards, raw_tar, mp4_bytes, make_meta):
    import json

    write_shards(tmp_path, 2, per_shard=2)  # clips-000000.tar: 2 good samples
    good = json.dumps(make_meta("bad", 2)).encode()
    raw_tar(tmp_path / "clips-000001.tar", {
        "bad_0000.mp4": mp4_bytes,                                      # no json
        "bad_0001.mp4": mp4_bytes, "bad_0001.json": b"{oops",           # invalid json
        "bad_0002.mp4": mp4_bytes, "bad_0002.json": good,               # fine (no jpg is allowed)
        "bad_0003.mp4": mp4_bytes,
        "bad_0003.json": json.dumps(make_meta("bad", 3, schema_version=7)).encode(),
    })
    samples = iter_samples(tmp_path)
    assert [s.key for s in samples] == ["vid_0000", "vid_0001", "bad_0002"]
    assert samples.stats.samples == 3 and samples.stats.skipped == 3 and samples.stats.shards == 2
    problems = {key: what for _, key, what in samples.stats.problems}
    assert problems["bad_0000"].startswith("missing member(s): json")
    assert "not valid JSON" in problems["bad_0001"]
    assert "schema_version 7 is not supported" in problems["bad_0003"]
    with pytest.raises(ShardReadError, match="clips-000001.tar\tbad_0000\tmissing member"):
        list(iter_samples(tmp_path, strict=True))


def test_reader_survives_truncated_shard(tmp_path, write_shards):
    write_shards(tmp_path, 4, per_shard=2)
    shard = tmp_path / "clips-000000.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 5])  # cut inside the first sample's mp4
    samples = iter_samples(tmp_path)
    assert [s.key for s in samples] == ["vid_0002", "vid_0003"]
    assert samples.stats.skipped >= 1
    assert all(shard_url.endswith("clips-000000.tar") for shard_url, _, _ in samples.stats.problems)


class _Keys(torch.utils.data.IterableDataset):
    def __init__(self, root, rank, world_size):
        self.root, self.rank, self.world_size = root, rank, world_size

    def __iter__(self):
        for s in iter_samples(self.root, split_by_worker=True, rank=self.rank, world_size=self.world_size):
            yield s.key


def test_split_by_rank_and_worker_covers_each_sample_once(tmp_path, write_shards):
    keys = write_shards(tmp_path, 10, per_shard=2)  # 5 shards over 2 ranks × 2 workers
    seen = []
    for rank in range(2):
        loader = torch.utils.data.DataLoader(_Keys(tmp_path, rank, 2), batch_size=None, num_workers=2)
        seen.extend(loader)
    assert sorted(seen) == sorted(keys)  # every sample, none twice


def test_shuffle_is_a_seeded_permutation(tmp_path, write_shards):
    keys = write_shards(tmp_path, 8, per_shard=2)
    a = [s.key for s in iter_samples(tmp_path, shuffle=4, seed=1)]
    b = [s.key for s in iter_samples(tmp_path, shuffle=4, seed=1)]
    c = [s.key for s in iter_samples(tmp_path, shuffle=4, seed=2)]
    assert a == b and sorted(a) == sorted(keys) and a != keys and c != a


def test_shard_index_names_an_unreadable_shard(tmp_path, write_shards):
    """A resume reads which clips are already committed: a damaged shard is neither skipped (its
    clips would be written again) nor taken as done; one error names it."""
    write_shards(tmp_path, 2, per_shard=2)
    assert shard_index(tmp_path) == {"vid_0000": ["clips-000000.tar"], "vid_0001": ["clips-000000.tar"]}
    (tmp_path / "clips-000001.tar").write_bytes(b"\x00" * 100 + b"not a tar at all" * 40)
    with pytest.raises(ShardReadError, match=r"clips-000001.tar: unreadable shard") as e:
        shard_index(tmp_path)
    assert "\n" not in str(e.value)
    assert shard_index(tmp_path / "absent") == {}
