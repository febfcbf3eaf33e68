from pathlib import Path

import pytest

from pipeline.config import ConfigError, CurateConfig, apply_overrides

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["local.yaml", "360-1m.yaml"])
def test_shipped_configs_load(name):
    cfg = CurateConfig.from_yaml(REPO / "configs" / "curate" / name)
    assert cfg.clips.height % 2 == 0
    assert cfg.thresholds["video"] and cfg.thresholds["clip"]
    # model stages load once per actor: every shipped config gives them a pool ([min, max] actors)
    for stage in ("intra_frame", "cuts", "text"):
        lo, hi = cfg.stage(stage).size()
        assert 1 <= lo <= hi
    assert cfg.clips.split == "fixed"  # the paper's clips by default


def test_concurrency_must_be_min_max():
    data = {"ray": {"stages": {"cuts": {"concurrency": [4, 2]}}}}
    with pytest.raises(ConfigError, match="ray.stages.cuts.concurrency"):
        CurateConfig.from_dict(data)
    with pytest.raises(ConfigError, match="clips.split"):
        CurateConfig.from_dict({"clips": {"split": "scenes"}})
    assert CurateConfig.from_dict({"ray": {"stages": {"cuts": {"concurrency": [1, 8]}}}}).stage("cuts").size() == (1, 8)


def test_local_config_shares_cpus_fractionally():
    cfg = CurateConfig.from_yaml(REPO / "configs" / "curate" / "local.yaml")
    models = sum(cfg.stage(s).num_cpus * cfg.stage(s).size()[1] for s in ("intra_frame", "cuts", "text"))
    assert models < cfg.ray.num_cpus, "the model actors alone must not hold every core"
    assert all(cfg.stage(s).num_cpus < 1 for s in ("intra_frame", "cuts", "text"))


def test_360_config_follows_the_paper():
    cfg = CurateConfig.from_yaml(REPO / "configs" / "curate" / "360-1m.yaml")
    assert cfg.input.min_likes == 50 and cfg.clips.duration_s == 10.0
    assert (2 * cfg.clips.height, cfg.clips.height) == (1024, 512)
    assert cfg.stage("cuts").num_gpus > 0


def test_unknown_key_names_its_path():
    with pytest.raises(ConfigError, match=r"config\.clips: unknown key\(s\) duraton_s"):
        CurateConfig.from_dict({"clips": {"duraton_s": 4}})
    with pytest.raises(ConfigError, match="expected int"):
        CurateConfig.from_dict({"sample": {"num_frames": "eight"}})
    with pytest.raises(ConfigError, match="W = 2H"):
        CurateConfig.from_dict({"clips": {"height": 127}})


def test_missing_file_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        CurateConfig.from_yaml(tmp_path / "nope.yaml")
    data = apply_overrides({"clips": {"duration_s": 10}}, ["clips.duration_s=4", "ray.num_cpus=2"])
    cfg = CurateConfig.from_dict(data)
    assert cfg.clips.duration_s == 4.0 and cfg.ray.num_cpus == 2


def test_config_hash_ignores_paths_but_not_thresholds():
    a = CurateConfig.from_dict({"output": "/a", "input": {"path": "/x"}})
    b = CurateConfig.from_dict({"output": "/b", "input": {"path": "/y"}})
    c = CurateConfig.from_dict({"thresholds": {"clip": {"motion": [
        {"reason": "low_flow", "reject_if": {"motion_deg_s": {"below": 1.0}}}]}}})
    assert a.config_hash() == b.config_hash() != c.config_hash()


@pytest.mark.parametrize("name", ["local.yaml", "360-1m.yaml"])
def test_shipped_configs_fuse_the_clip_frame_stages(name):
    """cut → motion → pixels (→ keep_text_frames, which takes pixels' arguments) must reach Ray Data
    with equal arguments, the condition for fusing them into one task: otherwise every clip's
    analysis frames cross the object store between them (docs/curation.md, Operators and fusion)."""
    from pipeline.curate import _resources

    cfg = CurateConfig.from_yaml(REPO / "configs" / "curate" / name)
    args = {s: _resources(s, cfg, False) for s in ("cut", "motion", "pixels")}
    assert args["cut"] == args["motion"] == args["pixels"], args
    assert cfg.stage("motion").batch_size == cfg.stage("pixels").batch_size
