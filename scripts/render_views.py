"""Render eval views of a trained run beside their ground truth, one row per view.

Columns: target (background set to the model's colour), render, accumulation,
then each person's layer. Prints PSNR/SSIM per view.

    .venv/bin/python scripts/render_views.py --load-config outputs/.../config.yml --output docs/render.png [--views 0 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from nerfstudio.utils.eval_utils import eval_setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-config", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--views", type=int, nargs="+", default=[0], help="indices into the eval split")
    args = parser.parse_args()
    _, pipeline, _, _ = eval_setup(args.load_config, test_mode="test")
    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    rows = []
    for index in args.views:
        camera, data = dataset.cameras[index:index + 1], dataset[index]
        with torch.no_grad():
            outputs = model.get_outputs_for_camera(camera)
        metrics, images = model.get_image_metrics_and_images(outputs, {k: data[k] for k in ("image", "mask") if k in data})
        print(f"view {index} ({dataset.image_filenames[index].name}): psnr {metrics['psnr']:.2f} ssim {metrics['ssim']:.3f}")
        layers = [outputs[f"rgb_person{pid}"] for pid in model.person_ids]
        row = [images["img"], outputs["accumulation"].repeat(1, 1, 3), *layers]
        rows.append(torch.cat(row, dim=1).clamp(0, 1).cpu().numpy())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), (np.concatenate(rows, axis=0) * 255).astype(np.uint8)[..., ::-1])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
