"""What can be measured on a real capture without ground truth, for a trained run.

1. The held-out view(s) (the run's eval split): PSNR and SSIM of the render (the model's own
   metrics: the image is compared where the mask or the background plate says what it shows),
   and the IoU of the rendered silhouette (accumulation >= 0.5) with the prepared union mask,
   over every frame and over the frames where the detector found every person in that view (in
   the others the mask lacks a person, whom the avatars still render).
2. Every camera, held-out ones included: the reprojection error (px, full resolution) of the SMPL
   joints against the 2D detections (``annots/``: hips, knees, ankles, shoulders, elbows and
   wrists at confidence >= 0.3), for the initialisation and for the trained poses. SMPL joints
   are not BlazePose's keypoints, so the figures carry a bias of a few pixels; their change
   is what the training did to the poses in the image.
3. Renders: a held-out view beside its image and mask, and a novel view (a held-out camera
   turned about the vertical axis through the scene centre).

    .venv/bin/python benchmarks/eval_real_capture.py --load-config outputs/.../config.yml \
        --poses export/smpl.npz --json eval_real.json --render-dir docs --render-prefix pose2sim
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from nerfstudio.utils.eval_utils import eval_setup

from avatarpose_ns.body.body_model import BodyModel
from avatarpose_ns.io.cameras import CameraCalib, project_points, read_cameras
from avatarpose_ns.io.easymocap import SmplSequence, read_annots_folder, read_smpl_npz

LIMB_JOINTS = [1, 2, 4, 5, 7, 8, 16, 17, 18, 19, 20, 21]  # SMPL hips, knees, ankles, shoulders, elbows, wrists
MIN_CONFIDENCE = 0.3


def mask_iou(predicted: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean images (1.0 when both are empty)."""
    union = np.logical_or(predicted, target).sum()
    return float(np.logical_and(predicted, target).sum() / union) if union else 1.0


def joints_per_frame(body: BodyModel, people: dict[int, SmplSequence]) -> dict[int, dict[int, np.ndarray]]:
    """person id -> frame -> (24, 3) posed joints."""
    out: dict[int, dict[int, np.ndarray]] = {}
    for pid, seq in people.items():
        with torch.no_grad():
            joints = body.joints_only(torch.as_tensor(seq.betas, dtype=torch.float32)[None].expand(seq.num_frames, -1),
                                      torch.as_tensor(seq.body_pose, dtype=torch.float32),
                                      torch.as_tensor(seq.global_orient, dtype=torch.float32),
                                      torch.as_tensor(seq.transl, dtype=torch.float32)).numpy()
        out[pid] = {int(f): j for f, j in zip(seq.frames, joints)}
    return out


def reprojection_errors(joints: dict[int, dict[int, np.ndarray]], annots: dict[int, np.ndarray],
                        cams: list[CameraCalib], frames: list[int]) -> dict[str, float]:
    """Mean pixel distance per camera between projected SMPL joints and confident detections."""
    result = {}
    for c, cam in enumerate(cams):
        errors = []
        for pid, kp in annots.items():
            for fi, frame in enumerate(frames):
                if pid not in joints or frame not in joints[pid]:
                    continue
                detected = kp[c, fi, LIMB_JOINTS]
                seen = detected[:, 2] >= MIN_CONFIDENCE
                if seen.any():
                    uv = project_points(joints[pid][frame][LIMB_JOINTS], cam)
                    errors += np.linalg.norm(uv[seen] - detected[seen, :2], axis=-1).tolist()
        result[cam.name] = float(np.mean(errors)) if errors else float("nan")
    return result


def turned_camera(cameras, index: int, degrees: float):
    """Camera ``index`` turned by ``degrees`` about the scene's vertical (+z) axis through its origin."""
    camera = cameras[index:index + 1]
    a = math.radians(degrees)
    rz = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    c2w = camera.camera_to_worlds.clone()
    c2w[..., :3, :3] = rz @ c2w[..., :3, :3]
    c2w[..., :3, 3] = (rz @ c2w[..., :3, 3, None])[..., 0]
    camera.camera_to_worlds = c2w
    return camera


def to_bgr8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)[..., ::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-config", type=Path, required=True)
    parser.add_argument("--poses", type=Path, required=True, help="the run's exported smpl.npz (avatarpose-export poses)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--render-dir", type=Path, default=None)
    parser.add_argument("--render-prefix", default="real_capture")
    parser.add_argument("--render-view", type=int, default=None, help="eval-split index to render (default: middle)")
    parser.add_argument("--novel-degrees", type=float, default=40.0)
    args = parser.parse_args()

    config, pipeline, _, _ = eval_setup(args.load_config, test_mode="test")
    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    data_root = Path(config.pipeline.datamanager.dataparser.data)
    eval_names = list(dataset.metadata["image_camera_names"])
    eval_frames = [int(f) for f in dataset.metadata["image_frame_indices"]]  # frame numbers, as in the files

    views = []
    for index in range(len(dataset)):
        data = dataset[index]
        with torch.no_grad():
            outputs = model.get_outputs_for_camera(dataset.cameras[index:index + 1])
        metrics, _ = model.get_image_metrics_and_images(outputs, {k: data[k] for k in ("image", "mask", "background")
                                                                  if k in data})
        rendered = outputs["accumulation"][..., 0].cpu().numpy() >= 0.5
        target = data["mask"][..., 0].cpu().numpy().astype(bool)
        views.append({"file": str(dataset.image_filenames[index].name), "camera": eval_names[index],
                      "frame": eval_frames[index], "psnr": metrics["psnr"],
                      "ssim": metrics["ssim"], "mask_iou": mask_iou(rendered, target)})
        print(f"eval view {index} {views[-1]['camera']} frame {views[-1]['frame']}: psnr {metrics['psnr']:.2f} "
              f"ssim {metrics['ssim']:.3f} mask IoU {views[-1]['mask_iou']:.3f}")

    cams = read_cameras(data_root)
    names = list(cams)
    init_people = read_smpl_npz(data_root / "smpl_init" / "smpl.npz")
    frames = sorted({int(f) for seq in init_people.values() for f in seq.frames})
    annots = read_annots_folder(data_root / "annots", names, frames)
    complete = {(cam, frame) for c, cam in enumerate(names) for fi, frame in enumerate(frames)
                if all((kp[c, fi, :, 2] > 0).any() for kp in annots.values())}
    for view in views:
        view["all_people_detected"] = (view["camera"], view["frame"]) in complete
    body = BodyModel(config.pipeline.datamanager.dataparser.body_model_path)
    calibs = [cams[n] for n in names]
    reprojection = {name: reprojection_errors(joints_per_frame(body, people), annots, calibs, frames)
                    for name, people in (("init", init_people), ("trained", read_smpl_npz(args.poses)))}
    full = [v for v in views if v["all_people_detected"]]
    summary = {
        "eval_cameras": sorted({v["camera"] for v in views}),
        "psnr": float(np.mean([v["psnr"] for v in views])), "ssim": float(np.mean([v["ssim"] for v in views])),
        "mask_iou": float(np.mean([v["mask_iou"] for v in views])),
        "mask_iou_all_people_detected": float(np.mean([v["mask_iou"] for v in full])) if full else None,
        "views_all_people_detected": len(full), "views": views,
        "reprojection_px": reprojection,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "views"}, indent=2))

    if args.render_dir is not None:
        index = len(dataset) // 2 if args.render_view is None else args.render_view
        data = dataset[index]
        with torch.no_grad():
            held = model.get_outputs_for_camera(dataset.cameras[index:index + 1])
            novel = model.get_outputs_for_camera(turned_camera(dataset.cameras, index, args.novel_degrees))
        mask = data["mask"].float().expand(-1, -1, 3)
        row = torch.cat([data["image"][..., :3], held["rgb"], mask, held["accumulation"].expand(-1, -1, 3)], dim=1)
        args.render_dir.mkdir(parents=True, exist_ok=True)
        held_path = args.render_dir / f"{args.render_prefix}_heldout.png"
        novel_path = args.render_dir / f"{args.render_prefix}_novel.png"
        cv2.imwrite(str(held_path), to_bgr8(row), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        cv2.imwrite(str(novel_path), to_bgr8(novel["rgb"]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"wrote {held_path} (image, render, mask, accumulation of {views[index]['file']}) and {novel_path} "
              f"(turned {args.novel_degrees:g} degrees)")


if __name__ == "__main__":
    main()
