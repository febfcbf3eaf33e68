"""The one place where scores become verdicts.

Filters only compute scores (pipeline/filters). This module reads the `thresholds` section of the
config and decides, per decisions row, `status` (accepted / rejected / error), `stage`, `reason`
and a human `detail`. The same function runs inside the pipeline and in `--rethreshold`, so a run
can be re-decided from decisions.parquet without decoding any video.

Config shape (order matters: the first stage whose rule fires is the stage of the rejection)::

    thresholds:
      video:                       # rules for the one row per source video
        format:
          - reason: seam_discontinuity
            reject_if: {seam_ratio: {above: 3.0}}
          - reason: horizontal_line_mid_height          # all conditions of a rule must hold
            reject_if: {hline_mid: {above: 0.5}, mid_rows_detail: {below: 0.3}}
      clip:                        # rules for each clip row
        motion:
          - reason: low_flow
            reject_if: {motion_deg_s: {below: 2.0}}

A condition on a score that is missing (NaN: not computed) never fires. A rule with `backbone:
random | pretrained` applies only to rows whose `lpips_backbone` is that one (the intra-frame
scores of the two LPIPS backbones are on different scales).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

LEVELS = ("video", "clip")
VIDEO_STAGES = ("black", "flat", "format", "intra_frame", "inter_frame")
CLIP_STAGES = ("motion", "cuts", "text", "black", "flat")
COMPARATORS = ("above", "below")
DECISION_COLUMNS = ("status", "stage", "reason", "detail")


class ThresholdError(ValueError):
    pass


def check_rules(thresholds: Mapping, where: str = "thresholds") -> None:
    """Raise ThresholdError naming the bad entry when `thresholds` does not have the shape above."""
    if not isinstance(thresholds, Mapping):
        raise ThresholdError(f"{where}: must be a mapping of levels (video, clip)")
    for level, stages in thresholds.items():
        if level not in LEVELS:
            raise ThresholdError(f"{where}.{level}: unknown level (known: {', '.join(LEVELS)})")
        known = VIDEO_STAGES if level == "video" else CLIP_STAGES
        if not isinstance(stages, Mapping):
            raise ThresholdError(f"{where}.{level}: must map stage names to lists of rules")
        for stage, rules in stages.items():
            at = f"{where}.{level}.{stage}"
            if stage not in known:
                raise ThresholdError(f"{at}: unknown stage (known at {level} level: {', '.join(known)})")
            if not isinstance(rules, list):
                raise ThresholdError(f"{at}: must be a list of rules")
            for i, rule in enumerate(rules):
                r_at = f"{at}[{i}]"
                if not isinstance(rule, Mapping) or set(rule) - {"reason", "reject_if", "note", "backbone"}:
                    raise ThresholdError(f"{r_at}: a rule has keys reason, reject_if (and optional note, backbone)")
                if "backbone" in rule and rule["backbone"] not in ("random", "pretrained"):
                    raise ThresholdError(f"{r_at}.backbone: random or pretrained, got {rule['backbone']!r}")
                if not isinstance(rule.get("reason"), str) or not rule["reason"]:
                    raise ThresholdError(f"{r_at}: reason must be a non-empty string")
                conds = rule.get("reject_if")
                if not isinstance(conds, Mapping) or not conds:
                    raise ThresholdError(f"{r_at}: reject_if must map score names to {{above|below: number}}")
                for score, cond in conds.items():
                    if not isinstance(cond, Mapping) or not cond or set(cond) - set(COMPARATORS):
                        raise ThresholdError(f"{r_at}.reject_if.{score}: use above: X and/or below: X")
                    for op, value in cond.items():
                        if not isinstance(value, (int, float)) or isinstance(value, bool):
                            raise ThresholdError(f"{r_at}.reject_if.{score}.{op}: must be a number, got {value!r}")


def stage_rules(thresholds: Mapping, level: str) -> list[tuple[str, dict]]:
    """[(stage, rule), …] for one level, in config order."""
    return [(stage, rule) for stage, rules in (thresholds.get(level) or {}).items() for rule in rules]


def _fires(value: Any, op: str, limit: float) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False  # not computed: cannot reject on it
    return value > limit if op == "above" else value < limit


def declared_format(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) when the file itself declares a layout that is not mono equirect: a cube
    map / mesh projection or a stereo mode (shards.spherical). Decided before any pixel score."""
    projection, stereo = row.get("projection"), row.get("stereo_mode")
    if isinstance(projection, str) and projection not in ("equirectangular", ""):
        return f"projection_{projection}", f"the file declares projection {projection}"
    if isinstance(stereo, str) and stereo not in ("mono", ""):
        return f"stereo_{stereo}", f"the file declares stereo mode {stereo}"
    return None


def decide(row: Mapping[str, Any], thresholds: Mapping, level: str) -> tuple[str, str, str, str]:
    """(status, stage, reason, detail) of one row of scores. Error rows stay errors, except
    permanent facts about the source (private, removed, a bad manifest value: `error_kind`
    permanent), which are rejections at their stage."""
    error = row.get("error")
    if isinstance(error, str) and error:
        status = "rejected" if row.get("error_kind") == "permanent" else "error"
        return status, str(row.get("error_stage") or ""), str(row.get("error_reason") or "error"), error
    declared = declared_format(row) if level == "video" else None
    if declared:
        return "rejected", "format", declared[0], declared[1]
    backbone = row.get("lpips_backbone")
    for stage, rule in stage_rules(thresholds, level):
        if "backbone" in rule and rule["backbone"] != backbone:
            continue  # a rule for another LPIPS backbone (or a row that records none)
        conds = rule["reject_if"]
        hits = []
        for score, cond in conds.items():
            for op, limit in cond.items():
                value = row.get(score)
                if not _fires(value, op, limit):
                    break
                hits.append(f"{score} {float(value):.4g} {'>' if op == 'above' else '<'} {limit:g}")
            else:
                continue
            break
        else:
            return "rejected", stage, rule["reason"], "; ".join(hits)
    return "accepted", "", "", ""


def decide_frame(df: pd.DataFrame, thresholds: Mapping, level: str | None = None) -> pd.DataFrame:
    """The decision columns for every row of df. The level of a row is `video` when clip_index is
    null, else `clip`, unless `level` is given."""
    out = []
    is_clip = (df["clip_index"].notna().to_numpy() if "clip_index" in df else np.zeros(len(df), bool))
    for i, row in enumerate(df.to_dict("records")):
        lvl = level or ("clip" if is_clip[i] else "video")
        out.append(decide(row, thresholds, lvl))
    return pd.DataFrame(out, columns=list(DECISION_COLUMNS), index=df.index)


def threshold_marks(thresholds: Mapping) -> dict[str, list[tuple[str, float]]]:
    """Score name → [(label, limit)] of every condition, for drawing on histograms."""
    marks: dict[str, list[tuple[str, float]]] = {}
    for level in LEVELS:
        for stage, rule in stage_rules(thresholds, level):
            for score, cond in rule["reject_if"].items():
                for op, limit in cond.items():
                    marks.setdefault(score, []).append((f"{rule['reason']} ({op})", float(limit)))
    return marks


def scores_used(thresholds: Mapping) -> Iterable[str]:
    return sorted(threshold_marks(thresholds))
