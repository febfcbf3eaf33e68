"""Viewpoint control: camera paths of keyframes and perspective renders of equirect videos."""
import json

import numpy as np
import pytest

from model.render import Keyframe, keyframes_from_dict, load_keyframes, main, parse_key, parse_size, path_angles
from shards.video import decode_frames, probe, write_mp4


def marker_panorama(h: int, lon_deg: float, lat_deg: float = 0.0, radius_px: int = 3) -> np.ndarray:
    """A dark equirect (h, 2h, 3) with one bright square marker at (lon, lat)."""
    w = 2 * h
    img = np.full((h, w, 3), 20, np.uint8)
    col = int((lon_deg + 180) / 360 * w)
    row = int((90 - lat_deg) / 180 * h)
    img[row - radius_px:row + radius_px, col - radius_px:col + radius_px] = 250
    return img


def marker_column(frame: np.ndarray) -> float:
    """Column of the marker's centre of mass in a rendered view (bright pixels)."""
    bright = frame.mean(-1) > 128
    assert bright.any(), "marker not in view"
    return float(np.nonzero(bright)[1].mean())


def test_path_angles_interpolate_hold_and_fill_forward():
    keys = [Keyframe(0.0, yaw=0, pitch=0, roll=0, fov=90), Keyframe(1.0, yaw=90, fov=60), Keyframe(2.0, yaw=360)]
    a = path_angles(keys, num_frames=25, fps=10)
    assert a["yaw"][5] == pytest.approx(45.0)
    assert a["yaw"][15] == pytest.approx(90 + 0.5 * 270)  # 90 → 360 written out: a turn to the right
    assert a["fov"][5] == pytest.approx(75.0) and a["fov"][20] == pytest.approx(60.0)  # fov held after key 1
    assert np.all(a["pitch"] == 0)
    assert a["yaw"][24] == pytest.approx(360.0)  # held after the last keyframe


def test_path_errors_are_clear():
    with pytest.raises(ValueError, match="same time"):
        path_angles([Keyframe(1.0), Keyframe(1.0)], 3, 5)
    with pytest.raises(ValueError, match=r"\(0°, 180°\)"):
        path_angles([Keyframe(0.0, fov=180.0)], 3, 5)
    with pytest.raises(ValueError, match="unknown key"):
        keyframes_from_dict({"keyframes": [{"t": 0, "heading": 3}]}, 5)
    with pytest.raises(ValueError, match="exactly one of"):
        keyframes_from_dict({"keyframes": [{"t": 0, "frame": 3}]}, 5)
    with pytest.raises(ValueError, match="--key"):
        parse_key("1:2,3")
    with pytest.raises(ValueError, match="even"):
        parse_size("641x360")
    assert parse_size("640x360") == (360, 640)


def test_keyframes_by_frame_index_and_yaml(tmp_path):
    path = tmp_path / "path.yaml"
    path.write_text("keyframes:\n  - {frame: 0, yaw: 0}\n  - {frame: 10, yaw: 50, pitch: 5}\n")
    keys = load_keyframes(path, fps=5.0)
    assert [k.t for k in keys] == [0.0, 2.0]
    a = path_angles(keys, 11, 5.0)
    assert a["yaw"][4] == pytest.approx(20.0) and a["pitch"][10] == pytest.approx(5.0)


def test_cli_renders_the_view_the_path_asks_for(tmp_path):
    """A marker at longitude 60°: at the keyframe yaw = 60 it sits at the view centre; before, right of it."""
    frames = np.repeat(marker_panorama(64, lon_deg=60.0)[None], 7, axis=0)
    write_mp4(tmp_path / "pano.mp4", frames, fps=3, crf=10)
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"keyframes": [{"t": 0, "yaw": 30, "fov": 90}, {"t": 2, "yaw": 60}]}))
    out = tmp_path / "view.mp4"
    assert main(["--input", str(tmp_path / "pano.mp4"), "--output", str(out), "--path", str(path),
                 "--size", "96x64"]) == 0
    info = probe(out)
    assert (info.width, info.height, info.num_frames) == (96, 64, 7)
    views = decode_frames(out)
    # yaw 30 at t=0: the marker is 30° right of centre → x = 48 + 48·tan(30°) ≈ 75.7
    assert marker_column(views[0]) == pytest.approx(48 + 48 * np.tan(np.radians(30)), abs=2)
    assert marker_column(views[6]) == pytest.approx(48, abs=2)  # t = 2 s: looking straight at it
    cols = [marker_column(v) for v in views]
    assert all(b <= a + 0.5 for a, b in zip(cols, cols[1:]))  # turning right moves it left, steadily


def test_cli_rejects_a_non_equirect_video(tmp_path, capsys):
    write_mp4(tmp_path / "flat.mp4", np.zeros((2, 64, 64, 3), np.uint8), fps=5)
    assert main(["--input", str(tmp_path / "flat.mp4"), "--output", str(tmp_path / "v.mp4")]) == 2
    assert "not an equirect video" in capsys.readouterr().err
    assert not (tmp_path / "v.mp4").exists()
