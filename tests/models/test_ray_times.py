"""The model picks each ray's frame from its time, and refuses rays without one instead of drawing frame 0."""

from types import SimpleNamespace

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle

from avatarpose_ns.models.avatarpose_model import AvatarPoseModel


def _bundle(times):
    n = 4
    return RayBundle(origins=torch.zeros(n, 3), directions=torch.ones(n, 3), pixel_area=torch.ones(n, 1),
                     times=times)


def test_times_select_the_nearest_frame():
    model = SimpleNamespace(num_frames=5)  # times 0, .25, .5, .75, 1
    positions = AvatarPoseModel.frame_positions(model, _bundle(torch.tensor([[0.0], [0.3], [0.6], [1.0]])))
    assert positions.tolist() == [0, 1, 2, 4]


def test_rays_without_time_are_refused_with_the_way_out():
    with pytest.raises(ValueError, match="carry no time.*avatarpose-render orbit.*render_time"):
        AvatarPoseModel.frame_positions(SimpleNamespace(num_frames=5), _bundle(None))


def test_a_single_frame_needs_no_time():
    assert AvatarPoseModel.frame_positions(SimpleNamespace(num_frames=1), _bundle(None)).tolist() == [0, 0, 0, 0]
