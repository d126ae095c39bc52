"""The pixel sampler: one frame per batch, and the shares of rays inside the mask and in its edge band."""

import pytest
import torch

from avatarpose_ns.datamanagers.frame_pixel_sampler import FramePixelSampler, FramePixelSamplerConfig, edge_band


def _masks() -> torch.Tensor:
    """Three 24x32 masks, each a rectangle at a different place. (3, H, W) bool"""
    masks = torch.zeros(3, 24, 32, dtype=torch.bool)
    masks[0, 5:12, 6:15] = True
    masks[1, 8:20, 10:18] = True
    masks[2, 2:9, 20:30] = True
    return masks


def test_edge_band_is_the_pixels_within_width_outside_the_mask():
    masks = _masks()
    for width in (1, 3):
        band = edge_band(masks, width)
        # brute force: a pixel is in the band if it is outside and some mask pixel is within
        # `width` of it along both axes (the square neighbourhood the max-pool uses)
        expected = torch.zeros_like(band)
        for n, y, x in torch.nonzero(masks).tolist():
            expected[n, max(y - width, 0):y + width + 1, max(x - width, 0):x + width + 1] = True
        expected &= ~masks
        assert torch.equal(band, expected)


def _batch(masks: torch.Tensor) -> dict:
    num_images, height, width = masks.shape
    return {
        "image": torch.rand(num_images, height, width, 3),
        "mask": masks[..., None],
        "image_idx": torch.arange(num_images),
    }


def test_a_batch_comes_from_one_frame_with_the_configured_shares():
    masks = torch.cat([_masks(), _masks()])  # images 0-2: frame 0, images 3-5: frame 1
    config = FramePixelSamplerConfig(inside_fraction=0.5, edge_fraction=0.25, edge_band_px=2)
    sampler = FramePixelSampler(config, num_rays_per_batch=400, image_frames=torch.tensor([0, 0, 0, 1, 1, 1]))
    band = edge_band(masks, 2)
    torch.manual_seed(0)
    for _ in range(5):
        batch = sampler.collate_image_dataset_batch(_batch(masks), 400)
        image, y, x = batch["indices"].unbind(-1)
        assert batch["indices"].shape == (400, 3)
        assert len(set((image // 3).tolist())) == 1  # one frame
        in_mask, in_band = masks[image, y, x], band[image, y, x]
        assert in_mask[:200].all()  # the first share is drawn inside the mask
        assert in_band[200:300].all()  # the next in the band around it
        assert torch.equal(batch["mask"][:, 0], in_mask)  # the batch's values are the picked pixels'

    sampler.set_fractions(0.0, 1.0)
    batch = sampler.collate_image_dataset_batch(_batch(masks), 400)
    image, y, x = batch["indices"].unbind(-1)
    assert band[image, y, x].all()


def test_shares_must_be_a_split_of_the_batch():
    sampler = FramePixelSampler(FramePixelSamplerConfig(), num_rays_per_batch=64)
    with pytest.raises(ValueError, match="fractions"):
        sampler.set_fractions(0.8, 0.3)
    with pytest.raises(ValueError, match="fractions"):
        sampler.set_fractions(-0.1, 0.5)
