"""shape_only_error: the joint error an estimated shape keeps under the exact pose."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avatarpose_ns.eval.shape_error import shape_only_error


def _person(betas, body_pose, orient, transl):
    return SimpleNamespace(betas=np.asarray(betas, float), body_pose=np.asarray(body_pose, float),
                           global_orient=np.asarray(orient, float), transl=np.asarray(transl, float))


def test_shape_only_error_against_rest_joints(body_model):
    rng = np.random.default_rng(0)
    frames = 3
    betas_gt, betas_est = rng.normal(size=10), rng.normal(size=10)
    rest_pose = _person(betas_gt, np.zeros((frames, 69)), np.zeros((frames, 3)), rng.normal(size=(frames, 3)))
    # the estimate's own pose and translation must not matter: only its betas are used
    estimate = {0: _person(betas_est, rng.normal(size=(frames, 69)), rng.normal(size=(frames, 3)),
                           rng.normal(size=(frames, 3))),
                1: _person(betas_gt, rng.normal(size=(frames, 69)), np.zeros((frames, 3)), np.zeros((frames, 3)))}
    truth = {0: rest_pose, 1: rest_pose, 2: rest_pose}  # id 2 has no estimate: skipped
    result = shape_only_error(body_model, estimate, truth)

    # hand computation: in the rest pose the joints are the rest joints; compare pelvis-relative
    rest = lambda b: body_model.rest_joints(torch.as_tensor(b, dtype=torch.float64)[None])[0].numpy()  # noqa: E731
    j_gt, j_est = rest(betas_gt), rest(betas_est)
    expected = np.linalg.norm((j_est - j_est[:1]) - (j_gt - j_gt[:1]), axis=-1).mean()
    assert result["per_person"][0] == pytest.approx(expected, rel=1e-6)
    assert expected > 0.005  # different shapes: a real error
    assert result["per_person"][1] == pytest.approx(0.0, abs=1e-9)
    assert set(result["per_person"]) == {0, 1}
    assert result["mean"] == pytest.approx(expected / 2, rel=1e-6)
    with pytest.raises(ValueError, match="no person id"):
        shape_only_error(body_model, {5: estimate[0]}, truth)
