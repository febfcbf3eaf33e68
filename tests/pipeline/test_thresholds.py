import math

import pandas as pd
import pytest

from pipeline.thresholds import ThresholdError, check_rules, decide, decide_frame, threshold_marks

RULES = {
    "video": {
        "format": [
            {"reason": "seam_discontinuity", "reject_if": {"seam_ratio": {"above": 3.0}}},
            {"reason": "horizontal_line_mid_height",
             "reject_if": {"hline_mid": {"above": 0.5}, "mid_rows_detail": {"below": 0.8}}},
        ],
        "inter_frame": [{"reason": "static_frames", "reject_if": {"interframe_var": {"below": 3.0}}}],
    },
    "clip": {"motion": [{"reason": "low_flow", "reject_if": {"motion_deg_s": {"below": 1.0}}}]},
}


def test_first_firing_stage_in_config_order_wins():
    row = {"seam_ratio": 5.0, "interframe_var": 0.1}
    status, stage, reason, detail = decide(row, RULES, "video")
    assert (status, stage, reason) == ("rejected", "format", "seam_discontinuity")
    assert "seam_ratio 5 > 3" in detail


def test_compound_rule_needs_every_condition():
    horizon = {"seam_ratio": 1.0, "hline_mid": 0.7, "mid_rows_detail": 2.0, "interframe_var": 50.0}
    assert decide(horizon, RULES, "video")[0] == "accepted"
    stereo = dict(horizon, mid_rows_detail=0.4)
    assert decide(stereo, RULES, "video")[:3] == ("rejected", "format", "horizontal_line_mid_height")


def test_missing_score_never_rejects_and_errors_stay_errors():
    assert decide({"seam_ratio": math.nan, "interframe_var": None}, RULES, "video")[0] == "accepted"
    err = {"error": "ValueError: broken", "error_stage": "decode", "error_reason": "not_a_video", "seam_ratio": 9.0}
    assert decide(err, RULES, "video") == ("error", "decode", "not_a_video", "ValueError: broken")


def test_levels_are_separate_and_frame_uses_clip_index():
    df = pd.DataFrame({"clip_index": [None, 0], "motion_deg_s": [0.1, 0.1], "seam_ratio": [1.0, 9.0],
                       "interframe_var": [10.0, 10.0]})
    out = decide_frame(df, RULES)
    assert out["status"].tolist() == ["accepted", "rejected"]
    assert out["stage"].tolist() == ["", "motion"]


@pytest.mark.parametrize("bad, words", [
    ({"videos": {}}, "unknown level"),
    ({"video": {"colour": []}}, "unknown stage"),
    ({"clip": {"motion": [{"reason": "x", "reject_if": {"m": {"over": 1}}}]}}, "above: X"),
    ({"clip": {"motion": [{"reason": "x", "reject_if": {"m": {"above": "high"}}}]}}, "must be a number"),
    ({"clip": {"motion": [{"reject_if": {"m": {"above": 1}}}]}}, "reason"),
])
def test_bad_rules_are_named(bad, words):
    with pytest.raises(ThresholdError, match=words):
        check_rules(bad)


def test_marks_list_every_limit_per_score():
    marks = threshold_marks(RULES)
    assert marks["hline_mid"] == [("horizontal_line_mid_height (above)", 0.5)]
    assert [m[1] for m in marks["motion_deg_s"]] == [1.0]
