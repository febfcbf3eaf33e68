"""model.fit_vae: the canvas term keeps the demo VAE's latents local (fast, CPU)."""

import numpy as np
import torch

from model.fit_vae import canvas_check, fit_vae, window_masks


def tiny_vae():
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    return AutoencoderKLTemporalDecoder(down_block_types=("DownEncoderBlock2D",) * 2, block_out_channels=(32, 32),
                                        layers_per_block=1, latent_channels=4)


def test_window_masks_are_one_box_per_frame():
    m = window_masks(6, 16, 32, np.random.default_rng(0))
    assert m.shape == (6, 1, 16, 32) and set(m.unique().tolist()) == {0.0, 1.0}
    for frame in m[:, 0].bool():
        rows, cols = frame.any(1).nonzero()[:, 0], frame.any(0).nonzero()[:, 0]
        assert frame[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a filled box
        assert 4 <= len(rows) < 12 and 4 <= len(cols) < 11


def test_canvas_term_makes_a_canvas_encode_to_the_frames_own_latents(make_texture):
    """A canvas black outside a window must encode, inside it, to what the frame encodes to
    there: without the term a mostly black canvas shifts every latent (GroupNorm statistics)."""
    clips = [np.stack([np.roll(make_texture(16, 32, seed=s), 2 * t, axis=1) for t in range(4)]) for s in range(3)]
    relative = {}
    for weight in (0.0, 0.1):
        vae = tiny_vae()
        fit_vae(vae, clips, steps=40, lr=3e-3, T=2, canvas_weight=weight, log_every=1000)
        error, var = canvas_check(vae, clips, np.random.default_rng(5), 2)
        relative[weight] = error / var
    assert relative[0.1] < 0.5 * relative[0.0], relative
