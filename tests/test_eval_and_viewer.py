"""Pose metrics in nerfstudio's evaluation (ns-eval), on a tiny run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dataparser_fixtures import write_easymocap_sequence

POSE_KEYS = ("mpjpe", "pcp", "pck50", "ap50", "ap100", "recall500")


def _train(root: Path, data: Path):
    """avatarpose-lite for 2 steps (avatar, pose) without the viewer; returns the trainer."""
    from avatarpose_ns.method_configs import avatarpose_trainer

    config = avatarpose_trainer(lite=True)
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = 128
    config.pipeline.schedule = ("avatar:1", "pose:1")
    config.pipeline.model.num_samples = 8
    config.pipeline.model.body_prior_steps = 2
    config.output_dir = root / "outputs"
    config.max_num_iterations = 2
    config.steps_per_eval_batch = 1000
    config.steps_per_eval_image = 1000
    config.vis = "tensorboard"
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory, body_model):
    """Two tiny trained runs: the sequence with smpl_gt/ and a copy without it."""
    root = tmp_path_factory.mktemp("evalviewer")
    write_easymocap_sequence(root / "gt", body_model, num_cameras=2, num_frames=2, seed=4)
    shutil.copytree(root / "gt", root / "nogt")
    shutil.rmtree(root / "nogt" / "smpl_gt")
    return {"gt": _train(root / "run_gt", root / "gt"), "nogt": _train(root / "run_nogt", root / "nogt")}


def _ns_eval(trainer, tmp_path: Path) -> dict:
    """nerfstudio's own ns-eval entry on the run's config.yml."""
    from nerfstudio.scripts.eval import ComputePSNR

    output = tmp_path / "eval.json"
    ComputePSNR(load_config=trainer.config.get_base_dir() / "config.yml", output_path=output).main()
    return json.loads(output.read_text())["results"]


def test_ns_eval_reports_pose_metrics_with_ground_truth(runs, tmp_path):
    results = _ns_eval(runs["gt"], tmp_path)
    assert {"psnr", "ssim", "psnr_std"} <= set(results)
    for key in POSE_KEYS:
        assert key in results and math.isfinite(results[key]), key
    # the init is ground truth plus small noise and the run is 2 steps long: close to it
    assert 0 < results["mpjpe"] < 150 and results["recall500"] == 100.0
    assert "lpips" not in results or math.isfinite(results["lpips"])  # only with locally present weights


def test_pose_metrics_absent_without_ground_truth(runs, tmp_path):
    results = _ns_eval(runs["nogt"], tmp_path)
    assert "psnr" in results
    assert not set(POSE_KEYS) & set(results)


def test_pose_metrics_match_the_export_and_eval_path(runs, body_model):
    """The pipeline's numbers equal avatarpose-eval's on the exported poses and the GT file."""
    from avatarpose_ns.eval.loading import smpl_sequences_to_joints
    from avatarpose_ns.eval.metrics import evaluate_sequence
    from avatarpose_ns.export.poses import smpl_sequences
    from avatarpose_ns.io.easymocap import read_smpl_npz

    pipeline = runs["gt"].pipeline
    data = Path(pipeline.datamanager.config.data)
    gt = smpl_sequences_to_joints(read_smpl_npz(data / "smpl_gt" / "smpl.npz"), body_model)
    pred = smpl_sequences_to_joints(smpl_sequences(pipeline.model), body_model)
    expected = evaluate_sequence(pred, gt)
    got = pipeline.get_pose_metrics()
    assert got["mpjpe"] == pytest.approx(expected.mpjpe, rel=1e-5)
    assert got["ap50"] == pytest.approx(expected.ap[50], rel=1e-5)
