import json

import pytest

from shards.schema import SCHEMA_VERSION, ClipMeta, SchemaError, clip_key, validate_meta


def test_clip_key_format_and_charset():
    assert clip_key("dQw4w9WgXcQ", 7) == "dQw4w9WgXcQ_0007"
    assert clip_key("a-b", 12345) == "a-b_12345"
    for bad_id in ("has space", "dot.ted", "slash/x"):
        with pytest.raises(ValueError, match="A-Za-z0-9_-"):
            clip_key(bad_id, 0)
    with pytest.raises(ValueError, match="clip_index must be an int >= 0"):
        clip_key("vid", -1)


def test_json_round_trip_keeps_every_field(make_meta):
    meta = validate_meta(make_meta("abc", 3, extra_field="kept"))
    back = ClipMeta.from_json(meta.to_json())
    assert back == meta and back.key == "abc_0003"
    assert back.model_dump()["extra_field"] == "kept"
    assert back.schema_version == SCHEMA_VERSION
    assert json.loads(meta.to_json())["scores"] == {"flow": 3.5, "text_area": None}


def test_nan_score_becomes_null_and_inf_is_rejected(make_meta):
    assert validate_meta(make_meta(scores={"a": float("nan")})).scores == {"a": None}
    with pytest.raises(SchemaError, match="infinite: a"):
        validate_meta(make_meta(scores={"a": float("inf")}))


def test_each_bad_field_is_named(make_meta):
    bad = make_meta(fps=0, width=63, likes=-1)
    del bad["config_hash"]
    with pytest.raises(SchemaError) as info:
        validate_meta(bad, where="clips-000001.tar:vid_0000")
    message = str(info.value)
    assert message.startswith("clips-000001.tar:vid_0000: invalid clip metadata")
    for field in ("'fps'", "'width'", "'likes'", "'config_hash'"):
        assert field in message


def test_wrong_schema_version_and_interval(make_meta):
    with pytest.raises(SchemaError, match=f"schema_version 99 is not supported .*reads {SCHEMA_VERSION}"):
        validate_meta(make_meta(schema_version=99))
    with pytest.raises(SchemaError, match="end_s .* must be after start_s"):
        validate_meta(make_meta(start_s=5.0, end_s=4.0))
    with pytest.raises(SchemaError, match="not valid JSON"):
        ClipMeta.from_json(b"{not json")
    with pytest.raises(SchemaError, match="must be a JSON object"):
        validate_meta([1, 2])
