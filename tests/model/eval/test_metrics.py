"""Metrics (model.eval.metrics) on constructed cases: masked PSNR against known noise, LPIPS with the
real `lpips` module (random trunk: no weights can be downloaded), the Fréchet distance against
closed forms, the motion-smoothness proxy, the four square views and the aesthetic scorer with a
tiny random CLIP loaded through `from_pretrained`."""
import math

import numpy as np
import pytest
import torch

from model.eval.metrics import (AestheticScorer, I3DFeatures, LPIPSMetric, frechet_distance, fvd, masked_mse,
                           motion_smoothness, psnr, square_views)


def textured_video(t=3, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((t, h, w, 3)) * 0.6 + 0.2).astype(np.float64)


# --------------------------------------------------------------------------------------- PSNR
def test_psnr_of_identical_videos_is_infinite():
    v = textured_video()
    assert psnr(v, v) == math.inf
    assert psnr((v * 255).astype(np.uint8), (v * 255).astype(np.uint8)) == math.inf


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.1])
def test_psnr_of_gaussian_noise_matches_sigma(sigma):
    """MSE of N(0, σ²) noise is σ², so PSNR = −20·log10 σ (peak 1); 0.5 ± 10σ never clips."""
    rng = np.random.default_rng(1)
    gt = np.full((4, 64, 64, 3), 0.5)
    pred = gt + rng.normal(0.0, sigma, gt.shape)
    assert psnr(pred, gt) == pytest.approx(-20 * math.log10(sigma), abs=0.05)


def test_psnr_counts_only_the_mask_and_pools_frames():
    rng = np.random.default_rng(2)
    gt = np.full((2, 16, 16, 3), 0.5)
    mask = np.zeros((16, 16), bool)
    mask[:, :8] = True
    pred = gt.copy()
    pred[..., 8:, :] += rng.normal(0, 0.2, pred[..., 8:, :].shape)  # noise outside the mask only
    assert psnr(pred, gt, mask) == math.inf
    assert psnr(pred, gt) < 20
    # per-frame masks pool over frames: an error of e in frame 0 only, frame 1 exact and seen twice as much
    pred = gt.copy()
    pred[0, :, :8] += 0.1
    m = np.zeros((2, 16, 16), bool)
    m[0, :, :8] = True           # 128 pixels of frame 0 with error 0.1
    m[1] = True                  # 256 exact pixels of frame 1
    assert masked_mse(pred, gt, m) == pytest.approx(0.01 * 128 / (128 + 256))


def test_psnr_rejects_bad_input():
    v = textured_video()
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(v, v[:2])
    with pytest.raises(ValueError, match="no visible pixel"):
        psnr(v, v, np.zeros(v.shape[1:3], bool))
    with pytest.raises(ValueError, match="mask: spatial size"):
        psnr(v, v, np.ones((5, 5), bool))


# -------------------------------------------------------------------------------------- LPIPS
@pytest.fixture(scope="module")
def lpips_metric():
    return LPIPSMetric(pnet_rand=True)


def test_lpips_of_identical_videos_is_zero(lpips_metric):
    v = textured_video(h=64, w=64)
    assert lpips_metric(v, v) == pytest.approx(0.0, abs=1e-7)


def test_lpips_grows_with_the_distortion(lpips_metric):
    rng = np.random.default_rng(3)
    gt = textured_video(h=64, w=64)
    small = np.clip(gt + rng.normal(0, 0.02, gt.shape), 0, 1)
    large = np.clip(gt + rng.normal(0, 0.3, gt.shape), 0, 1)
    assert 0 < lpips_metric(small, gt) < lpips_metric(large, gt)
    # the masked value is the mean of the distance map over the mask
    mask = np.zeros((64, 64), bool)
    mask[:, :20] = True
    d = lpips_metric.distance_map(large, gt)
    assert lpips_metric(large, gt, mask) == pytest.approx(d[:, :, :20].mean(), rel=1e-6)


def test_lpips_random_trunk_is_the_same_in_every_instance(lpips_metric):
    """Without AlexNet weights every run (and every method in one table) is scored by the same trunk,
    whatever the global RNG holds, and the caller's RNG is left as it was."""
    rng = np.random.default_rng(4)
    gt = textured_video(h=64, w=64)
    pred = np.clip(gt + rng.normal(0, 0.2, gt.shape), 0, 1)
    torch.manual_seed(12345)
    before = torch.random.get_rng_state()
    other = LPIPSMetric(pnet_rand=True)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert other(pred, gt) == lpips_metric(pred, gt)


def test_lpips_weights_path_must_be_a_torchvision_alexnet(tmp_path):
    with pytest.raises(FileNotFoundError, match="--lpips-weights"):
        LPIPSMetric(backbone_weights=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"classifier.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="features.0.weight"):
        LPIPSMetric(backbone_weights=bad)
    # a real torchvision AlexNet state dict (random init here) loads into the trunk
    import torchvision

    good = tmp_path / "alexnet.pth"
    net = torchvision.models.alexnet(weights=None)
    torch.save(net.state_dict(), good)
    metric = LPIPSMetric(backbone_weights=good)
    assert not metric.random_trunk
    assert torch.equal(metric.model.net.slice1[0].weight.cpu(), net.features[0].weight)


# ---------------------------------------------------------------------------------------- FVD
def test_frechet_distance_closed_forms():
    d = 5
    mu, cov = np.arange(d, dtype=float), np.eye(d)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    delta = np.array([1.0, -2.0, 0.0, 0.5, 0.0])
    assert frechet_distance(mu, cov, mu + delta, cov) == pytest.approx(delta @ delta)
    # N(0, a²I) vs N(0, b²I): d·(a − b)²
    assert frechet_distance(mu, 4 * cov, mu, 9 * cov) == pytest.approx(d * (2 - 3) ** 2)


def test_fvd_with_a_local_torchscript_detector(tmp_path):
    """The I3D plumbing with a stand-in TorchScript detector of the same call signature."""

    class Detector(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = True,
                    return_features: bool = True) -> torch.Tensor:
            return torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], 1)  # (B, 6)

    path = tmp_path / "i3d.pt"
    torch.jit.script(Detector()).save(str(path))
    features = I3DFeatures(path, num_frames=4)
    videos = [(textured_video(t=6, seed=s) * 255).astype(np.uint8) for s in range(4)]
    feats = np.stack([features(v) for v in videos])
    assert feats.shape == (4, 6)
    assert fvd(feats, feats) == pytest.approx(0.0, abs=1e-6)
    darker = np.stack([features((v * 0.5).astype(np.uint8)) for v in videos])
    assert fvd(darker, feats) > 0.1
    with pytest.raises(FileNotFoundError, match="--i3d"):
        I3DFeatures(tmp_path / "nope.pt")


# ------------------------------------------------------------------------- VBench-style scores
def test_motion_smoothness_proxy():
    static = np.repeat(textured_video(t=1), 7, 0)
    assert motion_smoothness(static) == pytest.approx(1.0)
    ramp = np.stack([np.full((8, 8, 3), 0.1 * k) for k in range(7)])  # linear in time: interpolation is exact
    assert motion_smoothness(ramp) == pytest.approx(1.0)
    flicker = textured_video(t=7, seed=4)
    expected = 1 - np.abs(0.5 * (flicker[[0, 2, 4]] + flicker[[2, 4, 6]]) - flicker[[1, 3, 5]]).mean()
    assert motion_smoothness(flicker) == pytest.approx(expected)
    assert motion_smoothness(flicker) < 0.9
    with pytest.raises(ValueError, match="≥ 3 frames"):
        motion_smoothness(static[:2])


def test_square_views_look_front_right_back_left():
    """A panorama coloured by longitude quadrant: each 90° view sees one colour."""
    h, w = 32, 64
    lon = (np.arange(w) + 0.5) / w * 360 - 180
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
    quadrant = ((lon + 225) // 90).astype(int) % 4   # back(−180..−135)=0, left=1, front=2, right=3, back=0
    pano = np.broadcast_to(colours[quadrant][None, None], (2, h, w, 3)).copy()
    views = square_views(pano, size=16, fov_deg=60.0)
    assert set(views) == {"front", "right", "back", "left"}
    for name, q in (("back", 0), ("left", 1), ("front", 2), ("right", 3)):
        assert views[name].shape == (2, 16, 16, 3)
        assert np.abs(views[name].astype(int) - colours[q]).max() <= 1, name


def test_aesthetic_scorer_with_a_tiny_clip(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, max_position_embeddings=16),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    head = torch.nn.Linear(8, 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")

    scorer = AestheticScorer(tmp_path / "clip", tmp_path / "head.pth")
    video = (textured_video(t=3, h=40, w=40) * 255).astype(np.uint8)
    score = scorer(video)
    # the same computation by hand: head(normalised CLIP image embedding) / 10, mean over frames
    with torch.no_grad():
        px = scorer.processor(images=list(video), return_tensors="pt")["pixel_values"]
        emb = scorer.model.visual_projection(scorer.model.vision_model(pixel_values=px).pooler_output)
        expected = float((head(emb / emb.norm(dim=-1, keepdim=True))[:, 0] / 10).mean())
    assert score == pytest.approx(expected, rel=1e-5)
    with pytest.raises(FileNotFoundError, match="--aesthetic-head"):
        AestheticScorer(tmp_path / "clip", tmp_path / "none.pth")


# ------------------------------------------------------------- imaging quality (MUSIQ, pyiqa)
def test_resize_longer_side_is_vbench_longer_mode():
    from model.eval.metrics import resize_longer_side

    big = torch.randint(0, 256, (1, 3, 300, 1000), dtype=torch.uint8)
    out = resize_longer_side(big)
    assert out.shape == (1, 3, 153, 512) and out.dtype == torch.uint8  # int(300·0.512), int(1000·0.512)
    small = big[..., :200, :512]
    assert resize_longer_side(small) is small  # never upsampled, untouched at exactly 512


@pytest.fixture(scope="module")
def musiq_checkpoint(tmp_path_factory):
    """pyiqa's MUSIQ with its default (VBench) architecture and random weights, saved as a state dict
    like `musiq_spaq_ckpt-358bb6af.pth`; returns (path, the network)."""
    musiq_arch = pytest.importorskip("pyiqa.archs.musiq_arch", reason="pyiqa not installed")
    torch.manual_seed(0)
    net = musiq_arch.MUSIQ(pretrained=False).eval()
    path = tmp_path_factory.mktemp("musiq") / "musiq_random.pth"
    torch.save(net.state_dict(), path)
    return path, net


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect fails the test (the machine has no internet)."""
    import socket

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_imaging_quality_loads_local_weights_offline_and_matches_vbench(musiq_checkpoint, no_network):
    """Loaded through the user's path (`--musiq PATH`) with the network blocked, the score is
    VBench's computation done by hand (`vbench/imaging_quality.py`): uint8 frame → torchvision
    Resize to longer side 512 → /255 → MUSIQ one frame at a time → mean / 100."""
    from torchvision import transforms

    from model.eval.metrics import ImagingQualityScorer

    path, net = musiq_checkpoint
    scorer = ImagingQualityScorer(path, batch_size=2)
    for name, value in net.state_dict().items():
        assert torch.equal(scorer.model.state_dict()[name], value), name  # the file's weights, not a re-init
    video = (textured_video(t=1, h=40, w=600, seed=5) * 255).astype(np.uint8)  # longer side 600 > 512
    score = scorer(video)

    images = torch.from_numpy(video).permute(0, 3, 1, 2)
    scale = 512.0 / 600
    images = transforms.Resize(size=(int(scale * 40), int(scale * 600)))(images) / 255.0
    with torch.no_grad():
        expected = np.mean([float(net(images[i].unsqueeze(0))) for i in range(len(images))]) / 100.0
    assert math.isfinite(score)
    assert score == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert no_network == []


def test_imaging_quality_is_deterministic_and_depends_on_content(musiq_checkpoint):
    """A random network judges nothing, but its score is a fixed function of the frames: a
    textured and a flat frame score differently, and scoring a frame alone or in a batch (whose
    other frame differs) gives the same value."""
    from model.eval.metrics import ImagingQualityScorer

    scorer = ImagingQualityScorer(musiq_checkpoint[0], batch_size=2)
    textured = (textured_video(t=1, h=48, w=48, seed=6) * 255).astype(np.uint8)
    flat = np.full_like(textured, 128)
    both = scorer.frame_scores(np.concatenate([textured, flat]))
    assert both.shape == (2,) and np.isfinite(both).all()
    assert abs(both[0] - both[1]) > 1e-2  # an input-blind network would tie
    alone = scorer(textured)
    assert alone == pytest.approx(both[0] / 100.0, rel=1e-5, abs=1e-7)


def test_imaging_quality_rejects_bad_weights(tmp_path):
    pytest.importorskip("pyiqa.archs.musiq_arch", reason="pyiqa not installed")
    from model.eval.metrics import ImagingQualityScorer

    with pytest.raises(FileNotFoundError, match="--musiq: .*missing.pth is not a file"):
        ImagingQualityScorer(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="--musiq"):
        ImagingQualityScorer("https://example.com/musiq_spaq_ckpt-358bb6af.pth")  # never a download
    wrong = tmp_path / "wrong.pth"
    torch.save({"head.weight": torch.zeros(10, 384), "head.bias": torch.zeros(10)}, wrong)
    with pytest.raises(ValueError, match="--musiq: .*wrong.pth is not a state dict of pyiqa's MUSIQ"):
        ImagingQualityScorer(wrong)
