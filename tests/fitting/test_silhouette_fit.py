"""Silhouette fit: mask geometry against brute force, and a wrong shape pulled back by the masks."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from avatarpose_ns.dataparsers.masks import frame_file, read_mask, union_mask_file
from avatarpose_ns.eval.shape_error import shape_only_error
from avatarpose_ns.fitting.silhouette_fit import (
    ARM_JOINTS,
    LEG_JOINTS,
    SilhouetteFitConfig,
    exchange_limb_positions,
    fit_shape_to_silhouettes,
    keep_swap,
    keypoint_reprojection_loss,
    mask_distance_to_foreground,
    mask_outline,
    motion_from_neighbours,
    nearest_cover_distance,
    person_mask_trusted,
    pose_from_neighbours,
    swap_limbs,
    view_weights,
    _MaskEvidence,
    _pose,
)
from avatarpose_ns.fitting.smpl_fit_2d import project_points_torch
from avatarpose_ns.io.cameras import read_cameras
from avatarpose_ns.io.easymocap import read_smpl_npz


def test_distance_to_foreground_matches_brute_force():
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:9, 4:12] = True
    mask[rng.integers(0, 20, 6), rng.integers(0, 30, 6)] = True
    fg = np.argwhere(mask)
    rows, cols = np.mgrid[:20, :30]
    brute = np.sqrt(((np.stack([rows, cols], -1)[:, :, None, :] - fg[None, None]) ** 2).sum(-1)).min(-1)
    np.testing.assert_allclose(mask_distance_to_foreground(mask), brute, atol=1e-3)
    assert np.all(mask_distance_to_foreground(np.zeros((4, 4), bool)) > 4)  # empty mask: far everywhere


def test_outline_of_a_rectangle_is_its_border():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:6, 3:9] = True  # rows 2..5, columns 3..8
    outline = {tuple(p) for p in mask_outline(mask).astype(int)}
    border = {(u, v) for v in range(2, 6) for u in range(3, 9) if v in (2, 5) or u in (3, 8)}
    assert outline == border


def _tiny_inputs(sequence):
    cams = read_cameras(sequence)
    names = sorted(cams)
    gt = read_smpl_npz(sequence / "smpl_gt" / "smpl.npz")
    frames = list(next(iter(gt.values())).frames)
    masks = np.stack([[read_mask(union_mask_file(sequence / "mask", n, int(f))) for f in frames] for n in names])
    return [cams[n] for n in names], masks, gt


def test_masks_pull_a_wrong_shape_back(tiny_sequence, body_model):
    """Exact poses, betas pushed off by one standard deviation: the fit brings the shape back."""
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    offset = np.zeros(10)
    offset[:2] = (1.0, -1.0)
    wrong = {p: dataclasses.replace(s, betas=s.betas + offset) for p, s in gt.items()}
    before = shape_only_error(body_model, wrong, gt)["mean"]
    fitted = fit_shape_to_silhouettes(body_model, cameras, masks, wrong,
                                      SilhouetteFitConfig(iterations=100, lr=0.03, pose_weight=100.0))
    after = shape_only_error(body_model, fitted, gt)["mean"]
    assert before > 0.01
    assert after < 0.5 * before, (before, after)
    for p, seq in fitted.items():
        assert seq.body_pose.shape == gt[p].body_pose.shape and np.all(np.isfinite(seq.body_pose))
        np.testing.assert_array_equal(seq.frames, gt[p].frames)


def test_bad_inputs_are_refused(tiny_sequence, body_model):
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    with pytest.raises(ValueError, match="masks must be"):
        fit_shape_to_silhouettes(body_model, cameras[:2], masks, gt)
    with pytest.raises(ValueError, match="frames"):
        fit_shape_to_silhouettes(body_model, cameras, masks[:, :2], gt)
    broken = {p: dataclasses.replace(s, transl=s.transl * np.nan) for p, s in gt.items()}
    with pytest.raises(ValueError, match="'transl' of the initialisation is not finite"):
        fit_shape_to_silhouettes(body_model, cameras, masks, broken)


def test_nearest_cover_distance_matches_brute_force_and_pulls_only_the_nearest():
    rng = np.random.default_rng(1)
    outline = torch.tensor(rng.uniform(0, 50, (2, 6, 2)), dtype=torch.float64)
    covering = torch.tensor(rng.uniform(0, 50, (2, 9, 2)), dtype=torch.float64, requires_grad=True)
    distance = nearest_cover_distance(outline, covering)
    pairwise = (outline[:, :, None] - covering[:, None].detach()).norm(dim=-1)  # (2, 6, 9)
    torch.testing.assert_close(distance, pairwise.min(dim=-1).values)
    distance.sum().backward()
    pulled = covering.grad.abs().sum(-1) > 0  # (2, 9)
    nearest = torch.zeros_like(pulled)
    for batch in range(2):
        nearest[batch, pairwise[batch].argmin(dim=-1)] = True
    assert torch.equal(pulled, nearest)


def test_motion_from_neighbours_matches_a_loop():
    generator = torch.Generator().manual_seed(0)
    vertices = torch.randn(2, 5, 7, 3, generator=generator, dtype=torch.float64)
    neighbours = torch.randn(2, 5, 7, 3, generator=generator, dtype=torch.float64)
    expected = torch.zeros(2, 5, dtype=torch.float64)
    for p in range(2):
        for t in range(5):
            near = [neighbours[p, u] for u in (t - 1, t + 1) if 0 <= u < 5]
            target = sum(near) / len(near)
            expected[p, t] = torch.stack([(vertices[p, t, v] - target[v]).norm() for v in range(7)]).mean()
    assert torch.allclose(motion_from_neighbours(vertices, neighbours), expected)
    assert torch.equal(motion_from_neighbours(vertices[:, :1], neighbours[:, :1]), torch.zeros(2, 1, dtype=torch.float64))


def test_keep_swap_lets_the_masks_decide_and_the_neighbours_break_ties():
    fitted_loss = torch.tensor([0.10, 0.10, 0.10, 0.10, 0.10])
    loss = torch.tensor([0.09, 0.101, 0.101, 0.104, 0.101])  # clear gain, three ties, one loss
    motion = torch.tensor([0.30, 0.05, 0.095, 0.05, 0.05])
    fitted_motion = torch.full((5,), 0.10)
    swapped = torch.tensor([False, False, False, False, True])
    kept = keep_swap(loss, fitted_loss, fitted_loss, motion, fitted_motion, swapped, margin=0.002, motion_margin=0.01)
    # 0: the masks prefer it (however far it moves); 1: a tie, 5 cm nearer the neighbours; 2: a tie,
    # only 5 mm nearer; 3: the masks prefer the fitted pose; 4: a tie, but another swap was taken
    assert kept.tolist() == [True, True, False, False, False]
    kept = keep_swap(loss, fitted_loss, fitted_loss, motion, fitted_motion, swapped, margin=0.002, motion_margin=0.0)
    assert kept.tolist() == [True, False, False, False, False]


def test_swap_limbs_mirrors_the_legs_and_undoes_itself(body_model):
    """Legs posed, everything else at rest: swapping the legs mirrors the body's joints (x -> -x)."""
    from avatarpose_ns.body.skeleton import SMPL_JOINT_NAMES

    rng = np.random.default_rng(2)
    pose = torch.zeros(1, 69, dtype=body_model.dtype)
    for left, right in LEG_JOINTS:
        for joint in (left, right):
            pose[0, 3 * (joint - 1):3 * joint] = torch.tensor(rng.normal(0, 0.4, 3), dtype=body_model.dtype)
    swapped = swap_limbs(pose, LEG_JOINTS)
    torch.testing.assert_close(swap_limbs(swapped, LEG_JOINTS), pose)
    zeros = torch.zeros(1, 3, dtype=body_model.dtype)
    betas = torch.zeros(1, 10, dtype=body_model.dtype)
    joints = body_model.joints_only(betas, pose, zeros, zeros)[0, :24]
    joints_swapped = body_model.joints_only(betas, swapped, zeros, zeros)[0, :24]
    partner = [SMPL_JOINT_NAMES.index(n.replace("left_", "R").replace("right_", "left_").replace("R", "right_"))
               for n in SMPL_JOINT_NAMES]
    mirrored = joints[partner] * torch.tensor([-1.0, 1.0, 1.0], dtype=joints.dtype)
    assert (joints_swapped - joints).abs().max() > 0.05  # the legs did move
    torch.testing.assert_close(joints_swapped, mirrored, atol=2e-3, rtol=0)


def test_exchanging_crossed_legs_puts_each_leg_where_the_other_was(body_model):
    """Legs crossed (each thigh swung across the body): mirroring keeps them crossed, the exchange
    moves each knee, ankle and foot onto its partner's place and leaves the rest alone."""
    pose = torch.zeros(1, 1, 69, dtype=body_model.dtype)
    pose[0, 0, 2] = -0.5  # left hip turned towards the right
    pose[0, 0, 5] = 0.4  # right hip towards the left
    pose[0, 0, 3 * 3 + 0] = 0.3  # a bent left knee, so the legs differ
    params = {"betas": torch.zeros(1, 1, 10, dtype=body_model.dtype), "body_pose": pose,
              "global_orient": torch.zeros(1, 1, 3, dtype=body_model.dtype),
              "transl": torch.zeros(1, 1, 3, dtype=body_model.dtype)}
    zeros = torch.zeros(1, 3, dtype=body_model.dtype)
    betas = torch.zeros(1, 10, dtype=body_model.dtype)
    before = body_model.joints_only(betas, pose[0], zeros, zeros)[0, :24]
    exchanged = exchange_limb_positions(body_model, params, LEG_JOINTS, steps=200)
    after = body_model.joints_only(betas, exchanged[0], zeros, zeros)[0, :24]
    for left, right in LEG_JOINTS[1:]:
        # the two were 14 to 51 cm apart; a knee cannot reach its partner's place exactly, since the
        # hips it hangs from are 12 cm apart, but it comes within a few centimetres
        assert (before[left] - before[right]).norm() > 0.1
        assert (after[left] - before[right]).norm() < 0.05
        assert (after[right] - before[left]).norm() < 0.05
    untouched = [j for j in range(24) if j not in {k for pair in LEG_JOINTS for k in pair}]
    torch.testing.assert_close(after[untouched], before[untouched])
    mirrored = body_model.joints_only(betas, swap_limbs(pose[0], LEG_JOINTS), zeros, zeros)[0, :24]
    assert (mirrored[4] - before[5]).norm() > 0.05  # mirroring is not the exchange


def test_each_person_outline_is_covered_by_that_person(tiny_sequence, body_model):
    """Exact poses and per-person masks with the two people's labels exchanged: with the masks'
    union nothing is wrong and nobody moves; with the labels each person is pulled to the other."""
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    names = sorted(read_cameras(tiny_sequence))
    frames = [int(f) for f in next(iter(gt.values())).frames]
    person = np.stack([[[read_mask(frame_file(tiny_sequence / "mask" / n / str(p), f)) for p in sorted(gt)]
                        for f in frames] for n in names])
    config = SilhouetteFitConfig(iterations=30, pose_weight=100.0, swap_iterations=0)

    def moved(person_masks):
        fitted = fit_shape_to_silhouettes(body_model, cameras, masks, gt, config, person_masks=person_masks)
        return max(np.linalg.norm(fitted[p].transl - gt[p].transl, axis=-1).mean() for p in gt)

    assert moved(None) < 0.02
    assert moved(person[:, :, ::-1]) > 0.1
    with pytest.raises(ValueError, match="person masks must be"):
        fit_shape_to_silhouettes(body_model, cameras, masks, gt, config, person_masks=person[:, :, :1])


def test_a_swapped_arm_is_swapped_back(tiny_sequence, body_model):
    """Exact poses but one person's arms exchanged in one frame (as after a detector's left/right
    swap).  A strong pose prior keeps the main fit from moving the arms; the swap stage's
    hypothesis is then the exact pose, and the masks must prefer it."""
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    wrong = {p: dataclasses.replace(s, body_pose=s.body_pose.copy()) for p, s in gt.items()}
    wrong[0].body_pose[1] = swap_limbs(torch.tensor(gt[0].body_pose[1:2]), ARM_JOINTS)[0].numpy()
    arm_slots = [3 * (j - 1) + c for pair in ARM_JOINTS for j in pair for c in range(3)]

    def arm_error(person_pose):
        return np.abs(person_pose[1, arm_slots] - gt[0].body_pose[1, arm_slots]).max()

    def fitted_arm_error(swap_iterations):
        config = SilhouetteFitConfig(iterations=20, lr=0.003, pose_weight=100.0, swap_iterations=swap_iterations)
        return arm_error(fit_shape_to_silhouettes(body_model, cameras, masks, wrong, config)[0].body_pose)

    assert arm_error(wrong[0].body_pose) > 0.3
    assert fitted_arm_error(swap_iterations=0) > 0.3
    assert fitted_arm_error(swap_iterations=10) < 0.05


def test_pose_from_neighbours_is_the_halfway_rotation_of_each_joint():
    """Against scipy's Slerp, pair by pair in float64; the shortest arc even across 180 degrees."""
    generator = torch.Generator().manual_seed(0)
    params = {"body_pose": torch.randn(2, 4, 69, generator=generator, dtype=torch.float64),
              "global_orient": torch.randn(2, 4, 3, generator=generator, dtype=torch.float64),
              "transl": torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)}
    restart = pose_from_neighbours(params)
    for name in ("body_pose", "global_orient"):
        value = params[name].reshape(2, 4, -1, 3).numpy()
        expected = np.zeros_like(value)
        for p in range(2):
            for t in range(4):
                before, after = (t - 1 if t > 0 else 1), (t + 1 if t < 3 else 2)
                for j in range(value.shape[2]):
                    keys = Rotation.from_rotvec([value[p, before, j], value[p, after, j]])
                    expected[p, t, j] = Slerp([0.0, 1.0], keys)(0.5).as_rotvec()
        got = Rotation.from_rotvec(restart[name].reshape(-1, 3).numpy())
        angle = (got.inv() * Rotation.from_rotvec(expected.reshape(-1, 3))).magnitude()
        assert angle.max() < 1e-9
    transl = params["transl"]
    torch.testing.assert_close(restart["transl"][:, 1], 0.5 * (transl[:, 0] + transl[:, 2]))
    torch.testing.assert_close(restart["transl"][:, 0], transl[:, 1])  # the ends copy their one neighbour
    torch.testing.assert_close(restart["transl"][:, 3], transl[:, 2])
    # turned +172 and -172 degrees about z: halfway is 180 degrees about z, not the rest pose
    turn = torch.zeros(1, 3, 3, dtype=torch.float64)
    turn[0, 0, 2], turn[0, 2, 2] = 3.0, -3.0
    halfway = pose_from_neighbours({"body_pose": torch.zeros(1, 3, 69, dtype=torch.float64),
                                    "global_orient": turn, "transl": torch.zeros(1, 3, 3, dtype=torch.float64)})
    assert abs(halfway["global_orient"][0, 1].norm().item() - np.pi) < 1e-9


def test_a_garbage_frame_is_restarted_from_its_neighbours(tiny_sequence, body_model):
    """One person's right arm thrown far off in the last frame (as after garbage detections), all
    else exact. The tiny hug moves too fast for one frame to stand in for the next, so its last
    frame is made a still repeat of the middle one (masks and poses). A strong pose prior keeps the
    main fit from mending the arm; the restart from the neighbouring frame is the truth, and the
    masks must prefer it."""
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    masks = masks[:, [0, 1, 1]]
    still = {p: dataclasses.replace(s, body_pose=s.body_pose[[0, 1, 1]], global_orient=s.global_orient[[0, 1, 1]],
                                    transl=s.transl[[0, 1, 1]]) for p, s in gt.items()}
    wrong = {p: dataclasses.replace(s, body_pose=s.body_pose.copy()) for p, s in still.items()}
    wrong[0].body_pose[2, 3 * 16:3 * 17] += [0.0, 0.0, 1.2]  # right shoulder (joint 17) swung up
    wrong[0].body_pose[2, 3 * 18:3 * 19] += [0.0, -1.5, 0.0]  # right elbow (joint 19) bent hard
    arm_slots = [3 * (j - 1) + c for j in (17, 19) for c in range(3)]

    def fitted_arm_error(swap_iterations):
        config = SilhouetteFitConfig(iterations=20, lr=0.003, pose_weight=100.0, swap_iterations=swap_iterations)
        fitted = fit_shape_to_silhouettes(body_model, cameras, masks, wrong, config)[0].body_pose
        return np.abs(fitted[2, arm_slots] - still[0].body_pose[2, arm_slots]).max()

    assert fitted_arm_error(swap_iterations=0) > 1.0
    assert fitted_arm_error(swap_iterations=10) < 0.05


def _clothed_masks(sequence, cameras, gt, body_model, thickness_m: float) -> np.ndarray:
    """(C, F, H, W) union masks of the ground-truth bodies wearing a uniform `thickness_m` garment."""
    from avatarpose_ns.synth.clothing import Outfit
    from avatarpose_ns.synth.render import MeshLayer, render_view

    faces = body_model.faces_np
    people = sorted(gt)
    frames = len(gt[people[0]].frames)
    with torch.no_grad():
        posed = {p: body_model(torch.tensor(gt[p].betas[None], dtype=torch.float32),
                               torch.tensor(gt[p].body_pose, dtype=torch.float32),
                               torch.tensor(gt[p].global_orient, dtype=torch.float32),
                               torch.tensor(gt[p].transl, dtype=torch.float32)) for p in people}
    outfit = Outfit(np.full(body_model.num_vertices, thickness_m))
    colours = np.full((body_model.num_vertices, 3), 0.5)
    masks = np.zeros((len(cameras), frames, cameras[0].height, cameras[0].width), bool)
    for f in range(frames):
        layers = []
        for p in people:
            v, j = posed[p].vertices[f].double().numpy(), posed[p].joints[f].double().numpy()
            layers.append(MeshLayer(*outfit.dress(v, faces, colours, j)))
        for c, cam in enumerate(cameras):
            masks[c, f] = render_view(layers, cam).person_index >= 0
    return masks


def test_a_clothing_allowance_keeps_a_bare_body_from_growing_into_its_clothes(tiny_sequence, body_model):
    """Masks of the true bodies in a 4 cm garment, fitted from the exact poses and shapes: without an
    allowance the betas grow to fill the clothes; with one, the shape stays nearer the truth."""
    cameras, _, gt = _tiny_inputs(tiny_sequence)
    masks = _clothed_masks(tiny_sequence, cameras, gt, body_model, thickness_m=0.04)

    def shape_error(allowance: float) -> float:
        config = SilhouetteFitConfig(iterations=60, lr=0.03, pose_weight=100.0, swap_iterations=0,
                                     use_person_masks=False, clothing_allowance_m=allowance)
        fitted = fit_shape_to_silhouettes(body_model, cameras, masks, gt, config)
        return shape_only_error(body_model, fitted, gt)["mean"]

    bare, allowed = shape_error(0.0), shape_error(0.04)
    assert allowed < 0.6 * bare, (bare, allowed)


def test_the_shape_tie_holds_the_betas_at_the_initialisation(tiny_sequence, body_model):
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    offset = np.zeros(10)
    offset[:2] = (1.0, -1.0)
    wrong = {p: dataclasses.replace(s, betas=s.betas + offset) for p, s in gt.items()}

    def betas_moved(weight: float) -> float:
        config = SilhouetteFitConfig(iterations=60, lr=0.03, pose_weight=100.0, swap_iterations=0,
                                     shape_init_weight=weight)
        fitted = fit_shape_to_silhouettes(body_model, cameras, masks, wrong, config)
        return max(np.abs(fitted[p].betas - wrong[p].betas).max() for p in gt)

    free, tied = betas_moved(0.0), betas_moved(100.0)
    assert free > 0.3 and tied < 0.1 * free, (free, tied)


def test_keypoint_reprojection_loss_matches_a_hand_computed_case():
    """One camera, one person, one frame, two joints: 3 px off at confidence 0.5 and 40 px off at 0.9,
    a third detection missed (confidence 0) and a fourth behind the camera."""
    sigma, scale = torch.tensor([2.0], dtype=torch.float64), 5.0
    uv = torch.zeros(1, 1, 1, 4, 2, dtype=torch.float64)
    detected = torch.tensor([[[[[3.0, 0.0, 0.5], [0.0, 40.0, 0.9], [100.0, 0.0, 0.0], [50.0, 50.0, 1.0]]]]],
                            dtype=torch.float64)
    depth = torch.tensor([[[[2.0, 2.0, 2.0, -1.0]]]], dtype=torch.float64)
    loss = keypoint_reprojection_loss(uv, depth, detected, sigma, scale)

    def gm(x: float) -> float:
        return x * scale**2 / (x + scale**2)

    expected = (0.5 * gm(9.0 / 4.0) + 0.9 * gm(1600.0 / 4.0)) / 1.4
    assert loss.shape == (1,) and loss.item() == pytest.approx(expected, rel=1e-12)
    assert keypoint_reprojection_loss(uv, depth, detected * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64),
                                      sigma, scale).item() == 0.0  # nothing detected: no cost


def test_keypoints_hold_a_bare_body_that_clothes_would_pull(tiny_sequence, body_model):
    """Masks of the true bodies in a 5 cm garment, fitted from the exact poses and shapes with a weak
    pose prior: the masks alone move the joints (the body stretches into its clothes); the 2D keypoints
    (the true joints' projections) keep them much nearer the truth."""
    from avatarpose_ns.io.cameras import project_points

    cameras, _, gt = _tiny_inputs(tiny_sequence)
    masks = _clothed_masks(tiny_sequence, cameras, gt, body_model, thickness_m=0.05)
    people = sorted(gt)
    as_t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731

    def joints(people_seqs) -> np.ndarray:
        with torch.no_grad():
            return np.stack([body_model(as_t(np.repeat(people_seqs[p].betas[None], len(people_seqs[p].frames), 0)),
                                        as_t(people_seqs[p].body_pose), as_t(people_seqs[p].global_orient),
                                        as_t(people_seqs[p].transl)).joints.double().numpy() for p in people])

    truth = joints(gt)  # (P, F, 24, 3)
    keypoints = np.stack([np.stack([np.stack([np.concatenate([project_points(truth[i, f], cam), np.ones((24, 1))],
                                                               axis=-1) for i in range(len(people))])
                                    for f in range(truth.shape[1])]) for cam in cameras])  # (C, F, P, 24, 3)

    def joint_error(weight: float) -> float:
        config = SilhouetteFitConfig(iterations=80, lr=0.03, pose_weight=1e-4, swap_iterations=0,
                                     use_person_masks=False, keypoint_weight=weight)
        fitted = fit_shape_to_silhouettes(body_model, cameras, masks, gt, config, keypoints2d=keypoints)
        return float(np.linalg.norm(joints(fitted) - truth, axis=-1).mean())

    masks_alone, with_keypoints = joint_error(0.0), joint_error(1.0)
    assert masks_alone > 0.01 and with_keypoints < 0.5 * masks_alone, (masks_alone, with_keypoints)


def test_keypoints_of_the_wrong_shape_are_refused(tiny_sequence, body_model):
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    config = SilhouetteFitConfig(iterations=1, swap_iterations=0, keypoint_weight=1.0)
    wrong = np.zeros((len(cameras), masks.shape[1], len(gt), 25, 3))
    with pytest.raises(ValueError, match="2D keypoints must be"):
        fit_shape_to_silhouettes(body_model, cameras, masks, gt, config, keypoints2d=wrong)
    bad = np.zeros((len(cameras), masks.shape[1], len(gt), 24, 3))
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_shape_to_silhouettes(body_model, cameras, masks, gt, config, keypoints2d=bad)


def test_vertex_normals_point_out_of_a_cube_and_edges_are_unique():
    from avatarpose_ns.fitting.silhouette_fit import mesh_edges, vertex_normals
    import trimesh

    cube = trimesh.creation.box()
    vertices = torch.tensor(cube.vertices[None], dtype=torch.float64)
    faces = torch.tensor(cube.faces, dtype=torch.long)
    normals = vertex_normals(vertices, faces)[0].numpy()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-12)
    assert np.all((normals * cube.vertices).sum(-1) > 0)  # outwards: along the corner's direction
    loop = np.zeros_like(cube.vertices)  # area-weighted: the sum of the adjacent faces' cross products
    for a, b, c in cube.faces:
        cross = np.cross(cube.vertices[b] - cube.vertices[a], cube.vertices[c] - cube.vertices[a])
        loop[[a, b, c]] += cross
    np.testing.assert_allclose(normals, loop / np.linalg.norm(loop, axis=-1, keepdims=True), atol=1e-12)
    assert len(mesh_edges(faces)) == len(cube.edges_unique)


def test_a_clothing_layer_keeps_a_bare_body_from_growing_into_its_clothes(tiny_sequence, body_model):
    """Masks of the true bodies in a 4 cm garment, fitted from the exact poses and shapes: the bare
    body grows to fill the clothes; with a clothing layer the layer takes the clothes and the shape
    stays nearer the truth."""
    cameras, _, gt = _tiny_inputs(tiny_sequence)
    masks = _clothed_masks(tiny_sequence, cameras, gt, body_model, thickness_m=0.04)

    def shape_error(layer: bool) -> float:
        config = SilhouetteFitConfig(iterations=60, lr=0.03, pose_weight=100.0, swap_iterations=0,
                                     use_person_masks=False, clothing_layer=layer, layer_lr=0.004)
        fitted = fit_shape_to_silhouettes(body_model, cameras, masks, gt, config)
        return shape_only_error(body_model, fitted, gt)["mean"]

    bare, layered = shape_error(False), shape_error(True)
    assert layered < 0.9 * bare, (bare, layered)  # 28 -> 23 mm when measured


def test_person_mask_trust_counts_the_outline_nearer_someone_else():
    """Hand-computed: a mask is distrusted where more than `share` of its valid outline points lie
    nearer another body than their own by more than `margin`; invalid points do not count."""
    own = torch.tensor([[[5.0, 5.0, 0.5, 9.0], [0.2, 0.3, 4.0, 4.0]]])  # (N=1, G=2, K=4)
    anyone = torch.tensor([[[1.0, 1.0, 0.5, 9.0], [0.2, 0.3, 1.0, 1.0]]])
    valid = torch.tensor([[[True, True, True, True], [True, True, True, False]]])
    # group 0: 2 of 4 points nearer someone else (share 0.5); group 1: 1 of 3 valid (share 1/3)
    assert person_mask_trusted(own, anyone, valid, margin=1.0, share=0.5).tolist() == [[True, True]]
    assert person_mask_trusted(own, anyone, valid, margin=1.0, share=0.3).tolist() == [[False, False]]
    assert person_mask_trusted(own, anyone, valid, margin=1.0, share=0.4).tolist() == [[False, True]]
    assert person_mask_trusted(own, anyone, valid, margin=4.5, share=0.0).tolist() == [[True, True]]
    empty = torch.zeros_like(valid)
    assert person_mask_trusted(own, anyone, empty, margin=1.0, share=0.0).all()


def test_view_weights_are_a_cauchy_weight_of_the_loss_over_the_median_view():
    """Hand-computed: losses (1, 1, 4) over three views, scale 2: raw weights 1/(1 + (l / 2)^2) =
    (0.8, 0.8, 0.2), scaled to sum to 3."""
    weights = view_weights(torch.tensor([[1.0], [1.0], [4.0]], dtype=torch.float64), scale=2.0)
    expected = np.array([0.8, 0.8, 0.2]) * 3.0 / 1.8
    np.testing.assert_allclose(weights[:, 0].numpy(), expected, rtol=1e-12)


def _person_masks(sequence, gt) -> np.ndarray:
    names = sorted(read_cameras(sequence))
    frames = [int(f) for f in next(iter(gt.values())).frames]
    return np.stack([[[read_mask(frame_file(sequence / "mask" / n / str(p), f)) for p in sorted(gt)]
                      for f in frames] for n in names])


def test_a_swapped_view_loses_the_person_mask_trust(tiny_sequence, body_model):
    """Exact bodies, the two people's labels exchanged in one view and frame only: exactly that
    view and frame's person masks are distrusted, and the fit then barely moves anyone, where with
    every view's labels exchanged and no trust each person is pulled to the other."""
    cameras, masks, gt = _tiny_inputs(tiny_sequence)
    person = _person_masks(tiny_sequence, gt)
    swapped = person.copy()
    swapped[1, 2] = person[1, 2, ::-1]
    config = SilhouetteFitConfig(person_mask_trust=True)
    evidence = _MaskEvidence(cameras, masks, swapped, config, body_model)
    people = sorted(gt)
    params = {name: torch.stack([torch.tensor(np.asarray(getattr(gt[p], name)), dtype=evidence.dtype)
                                 .reshape(evidence.num_frames if name != "betas" else 1, -1) for p in people])
              for name in ("betas", "body_pose", "global_orient", "transl")}
    vertices, _ = _pose(body_model, params, config.vertex_stride)
    frames = torch.arange(evidence.num_frames)
    uv, _ = project_points_torch(vertices, evidence.rig)
    uv_people = uv.permute(0, 2, 1, 3, 4)  # (C, N, P, Vs, 2)
    outline, valid = evidence.outline, evidence.outline_valid
    scale = evidence.sigma[:, None, None, None]
    own = nearest_cover_distance(outline, uv_people) / scale
    anyone = nearest_cover_distance(outline, uv_people.reshape(*uv_people.shape[:2], 1, -1, 2)
                                    .expand(-1, -1, outline.shape[2], -1, -1)) / scale
    trusted = person_mask_trusted(own, anyone, valid, config.person_mask_trust_margin, config.person_mask_trust_share)
    expected = torch.ones_like(trusted)
    expected[1, 2] = False
    assert torch.equal(trusted, expected), trusted
    # the mask loss at the exact bodies: with trust the swapped view costs what the union would
    with_trust = evidence.frame_losses(vertices, frames)
    without = _MaskEvidence(cameras, masks, swapped, SilhouetteFitConfig(), body_model).frame_losses(vertices, frames)
    assert with_trust[2] < 0.5 * without[2], (with_trust, without)
    np.testing.assert_allclose(with_trust[:2].numpy(), without[:2].numpy(), rtol=1e-9)

    fit = SilhouetteFitConfig(iterations=30, pose_weight=100.0, swap_iterations=0, person_mask_trust=True)
    fitted = fit_shape_to_silhouettes(body_model, cameras, masks, gt, fit, person_masks=person[:, :, ::-1])
    assert max(np.linalg.norm(fitted[p].transl - gt[p].transl, axis=-1).mean() for p in gt) < 0.05  # without trust: > 0.1 (test_each_person_outline_is_covered_by_that_person)
