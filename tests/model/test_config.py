"""Train configs: strict loading, overrides, and the shipped YAMLs."""

from pathlib import Path

import pytest
import yaml

from model.config import TrainConfig, apply_override

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"


def write(tmp_path, d):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_overrides_and_types(tmp_path):
    p = write(tmp_path, {"shards": ["x"], "train": {"steps": 3}})
    cfg = TrainConfig.load(p, ["train.steps=7", "optim.lr=2e-4", "data.num_frames=4", "model.pretrained=null",
                               "edm.p_mean_start=1"])
    assert cfg.train.steps == 7 and cfg.optim.lr == pytest.approx(2e-4) and cfg.data.num_frames == 4
    assert isinstance(cfg.edm.p_mean_start, float) and cfg.edm.p_mean_start == 1.0
    assert cfg.fps_id == cfg.data.fps
    d = {}
    apply_override(d, "a.b.c=[1, 2]")
    assert d == {"a": {"b": {"c": [1, 2]}}}


@pytest.mark.parametrize("bad, match", [
    ({"train": {"stepz": 3}}, r"unknown key\(s\) \['stepz'\]"),
    ({"data": {"heigth": 32}}, r"unknown key\(s\) \['heigth'\]"),
    ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
    ({"train": {"steps": "ten"}}, r"train.steps: expected int, got str"),
    ({"optim": {"lr": "fast"}}, r"optim.lr: expected float"),
    ({"train": {"steps": 2.5}}, r"train.steps: expected int"),
    ({"model": {"gradient_checkpointing": "yes"}}, r"gradient_checkpointing: expected bool"),
    ({"data": {"num_frames": "x"}}, r"data.num_frames: expected int"),
    ({"train": 5}, r"expected a mapping"),
    ({"train": {"precision": "fp16"}}, r"precision"),
])
def test_bad_config_is_one_clear_error(tmp_path, bad, match):
    d = {"shards": ["x"], **bad}
    p = write(tmp_path, d)
    with pytest.raises(ValueError, match=match) as e:
        TrainConfig.load(p)
    assert str(p) in str(e.value)  # the error names the file


def test_missing_shards_and_file(tmp_path):
    with pytest.raises(ValueError, match="shards"):
        TrainConfig.load(write(tmp_path, {"train": {"steps": 3}}))
    with pytest.raises(FileNotFoundError, match="no such train config"):
        TrainConfig.load(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig.load(write(tmp_path, {"shards": ["x"]}), ["train.steps"])


def test_shipped_configs_follow_the_paper():
    tiny = TrainConfig.load(CONFIGS / "tiny.yaml")
    s1 = TrainConfig.load(CONFIGS / "stage1.yaml")
    s2 = TrainConfig.load(CONFIGS / "stage2.yaml")
    assert tiny.model.pretrained is None and tiny.data.height <= 64 and tiny.train.steps <= 100
    for s in (s1, s2):  # supplement §3.2: AdamW, lr 1e-5, batch 16, T = 25, S = 5
        assert s.optim.lr == pytest.approx(1e-5) and s.train.batch_size == 16
        assert s.data.num_frames == 25 and s.data.context_frames == 5
        assert s.model.pretrained is not None
    assert (s1.data.height, s1.data.width, s1.train.steps) == (384, 768, 100_000)
    assert (s1.edm.p_mean_start, s1.edm.p_mean_end, s1.edm.p_std) == (-1.0, 0.0, 1.0)
    assert (s2.data.height, s2.data.width, s2.train.steps) == (512, 1024, 20_000)
    assert (s2.edm.p_mean_start, s2.edm.p_mean_end) == (1.0, 1.0) and s2.data.context_prob > 0
    assert s2.model.unet is not None  # initialised from stage 1
    assert s1.data.context_prob == 0.0
