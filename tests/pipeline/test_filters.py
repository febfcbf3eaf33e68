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


def test_text_actor_scores_the_same_on_the_frames_the_pipeline_keeps_for_it():
    """The pipeline sends the text actors only the frames the score reads (keep_text_frames): the
    score must not change, whichever frame of the clip holds the text."""
    from pipeline.curate import keep_text_frames

    scorer = TextScores(TextFilterConfig(num_frames=2, view_size=256))
    blank = np.full_like(title_equirect(), 90)
    for holder in (0, 4, 6, 9):  # a 10-frame clip; frames 0 and 9 are read
        frames = np.stack([title_equirect() if i == holder else blank for i in range(10)])
        kept = keep_text_frames({"frames": [frames, None]}, num_frames=2)["frames"]
        assert kept[0].shape[0] == 2 and kept[1] is None
        assert scorer.scores(kept[0]) == scorer.scores(frames), holder
        assert (scorer.scores(frames)["text_area_frac"] > 0.1) == (holder in (0, 9))


def test_backbone_rules_skip_rows_that_record_no_backbone():
    rules = {"video": {"intra_frame": [
        {"reason": "left_right_duplicate", "backbone": "pretrained", "reject_if": {"lpips_lr": {"below": 0.05}}}]}}
    assert decide(dict(lpips_lr=0.01), rules, "video")[0] == "accepted"


def test_random_vgg_backbone_is_lpips_own_without_the_classifier_spike():
    """The LPIPS actor's VGG is drawn as lpips + torchvision draw it (so the random-backbone
    thresholds keep their calibration), but torchvision's classifier (124 M parameters, thrown away
    by lpips) is never allocated: it was a 0.5 GiB peak in every LPIPS actor."""
    import subprocess
    import sys

    import lpips

    model, _ = load_lpips("vgg", seed=3, weights="random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if not torch.equal(ours[k], theirs[k])] == []

    probe = ("import torch, lpips\n"
             "from pipeline.filters.intra_frame import load_lpips\n"
             "hwm = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
             "before = hwm(); load_lpips('vgg', 0, 'random'); print((hwm() - before) // 1024)\n")
    grew_mib = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                  cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2])).stdout)
    assert grew_mib < 300, f"building the LPIPS VGG raised the peak RSS by {grew_mib} MiB"
