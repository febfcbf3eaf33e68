"""The intra-frame LPIPS backbone is explicit and recorded; the text score is the largest view's."""
import cv2
import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, CurateConfig, IntraFrameFilterConfig, TextFilterConfig
from pipeline.filters.intra_frame import IntraFrameScores, load_lpips
from pipeline.filters.text import TextScores
from pipeline.thresholds import decide


@pytest.fixture(scope="module")
def alex_weights(tmp_path_factory):
    """torchvision's AlexNet `features.*` tensors in its own file format (a fresh random init: no
    download here), standing in for alexnet-owt-7be5be79.pth."""
    import torchvision

    torch.manual_seed(123)
    state = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path = tmp_path_factory.mktemp("w") / "alexnet-features.pth"
    torch.save(state, path)
    return path, state


def test_weights_path_is_loaded_recorded_and_hashed(alex_weights, tmp_path):
    path, state = alex_weights
    model, backbone = load_lpips("alex", seed=0, weights=str(path))
    assert backbone == "pretrained"
    first_conv = model.net.slice1[0].weight
    assert torch.equal(first_conv, state["features.0.weight"])
    random_model, name = load_lpips("alex", seed=0, weights="random")
    assert name == "random" and not torch.equal(random_model.net.slice1[0].weight, first_conv)
    frames = np.random.default_rng(0).integers(0, 255, (2, 128, 256, 3), np.uint8)
    batch = {"frames": [frames], "error": np.array([""], object)}
    out = IntraFrameScores(IntraFrameFilterConfig(net="alex", weights=str(path), num_frames=2, size=64))(batch)
    assert out["error"][0] == "" and out["lpips_backbone"].tolist() == ["pretrained"]
    assert np.isfinite(out["lpips_lr"][0])
    a = CurateConfig.from_dict({"filters": {"intra_frame": {"net": "alex", "weights": str(path)}}})
    b = CurateConfig.from_dict({"filters": {"intra_frame": {"net": "alex", "weights": "random"}}})
    assert a.config_hash() != b.config_hash()
    with pytest.raises(ConfigError, match="filters.intra_frame.weights.*no such file"):
        CurateConfig.from_dict({"filters": {"intra_frame": {"weights": str(tmp_path / "missing.pth")}}})


def test_thresholds_apply_to_their_own_backbone():
    rules = {"video": {"intra_frame": [
        {"reason": "left_right_duplicate", "backbone": "random", "reject_if": {"lpips_lr": {"below": 0.003}}},
        {"reason": "left_right_duplicate", "backbone": "pretrained", "reject_if": {"lpips_lr": {"below": 0.05}}}]}}
    assert decide(dict(lpips_lr=0.01, lpips_backbone="random"), rules, "video")[0] == "accepted"
    assert decide(dict(lpips_lr=0.01, lpips_backbone="pretrained"), rules, "video")[0] == "rejected"


def title_equirect() -> np.ndarray:
    """A textured 1024x512 equirect with a large burned-in title in the middle of the front view."""
    rng = np.random.default_rng(0)
    noise = cv2.resize(rng.integers(40, 200, (32, 64, 3), dtype=np.uint8), (1024, 512), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(noise, (0, 0), 3)
    for i, line in enumerate(["SUBSCRIBE NOW", "NEW VIDEO"]):
        cv2.putText(img, line, (400, 240 + 40 * i), cv2.FONT_HERSHEY_DUPLEX, 1.2, (255, 255, 255), 3, cv2.LINE_AA)
    return img


def test_text_score_is_the_largest_view_not_the_mean():
    scorer = TextScores(TextFilterConfig(num_frames=1, view_size=256))
    frame = title_equirect()
    score = scorer.scores(frame[None])["text_area_frac"]
    assert score > 0.1  # the title fills a large share of the front view: rejected at 0.1
    assert score / 6 < 0.05  # as a mean over the six views it would have passed 0.05


def test_backbone_rules_skip_rows_that_record_no_backbone():
    rules = {"video": {"intra_frame": [
        {"reason": "left_right_duplicate", "backbone": "pretrained", "reject_if": {"lpips_lr": {"below": 0.05}}}]}}
    assert decide(dict(lpips_lr=0.01), rules, "video")[0] == "accepted"
