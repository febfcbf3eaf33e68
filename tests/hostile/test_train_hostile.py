"""Trainer run directories: an existing run needs --resume or --overwrite; pruning keeps the newest
by step number and never the checkpoint just written."""
from pathlib import Path

import pytest

from model.train import checkpoints_to_prune
from tests.model.test_train import make_shards, tiny_config


@pytest.fixture
def single_process(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(port), DS_ACCELERATOR="cpu").items():
        monkeypatch.setenv(k, v)
    yield
    import deepspeed.comm
    import torch.distributed as dist
    if dist.is_initialized():  # through DeepSpeed, which then drops the groups it cached
        deepspeed.comm.destroy_process_group()


def _tags(ckpt: Path) -> list[str]:
    return sorted(p.name for p in ckpt.glob("step_*"))


def test_prune_by_step_number_keeps_the_one_just_written(tmp_path):
    for step in (99_999_999, 100_000_000, 10, 20):
        (tmp_path / f"step_{step:08d}").mkdir()
    (tmp_path / "step_notanumber").mkdir()  # not ours: never touched
    # by name, step_100000000 < step_99999999: name order would delete the newest
    pruned = checkpoints_to_prune(tmp_path, keep_last=2, just_written="step_100000000")
    assert sorted(p.name for p in pruned) == ["step_00000010", "step_00000020"]
    # resumed from step 10 and just wrote step 15: the later tags of the abandoned run go first
    (tmp_path / "step_00000015").mkdir()
    pruned = checkpoints_to_prune(tmp_path, keep_last=1, just_written="step_00000015")
    assert "step_00000015" not in {p.name for p in pruned} and len(pruned) == 4


def test_existing_run_dir_needs_resume_or_overwrite(tmp_path, single_process):
    from model.train import main

    shards = make_shards(tmp_path / "shards")
    cfg = tiny_config(tmp_path, shards, steps=4, keep_last=2, ckpt_every=2)
    run = tmp_path / "run"
    main(["--config", str(cfg), f"run_dir={run}"])
    ckpt = run / "checkpoints"
    assert _tags(ckpt) == ["step_00000002", "step_00000004"]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}

    with pytest.raises(ValueError, match=r"already holds a run .*--resume latest.*--overwrite"):
        main(["--config", str(cfg), f"run_dir={run}"])
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before  # nothing touched

    # resume from the older tag with keep_last 1: the checkpoint it writes is the one kept
    # (by name or by step, step_00000004 is newer than the step_00000003 just written)
    main(["--config", str(cfg), f"run_dir={run}", "train.steps=3", "train.keep_last=1", "--resume", "step_00000002"])
    assert _tags(ckpt) == ["step_00000003"]
    assert (ckpt / "latest").read_text().strip() == "step_00000003"

    # --overwrite starts over: the old checkpoints and UNets are gone, the new run's are there
    main(["--config", str(cfg), f"run_dir={run}", "train.steps=1", "--overwrite"])
    assert _tags(ckpt) == ["step_00000001"]
    assert (run / "unet" / "config.json").is_file()
