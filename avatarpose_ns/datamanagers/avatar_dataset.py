"""nerfstudio's InputDataset, with each image's background plate beside its pixels.

nerfstudio's pixel samplers pick every per-pixel entry of an image's data at the sampled pixels,
so a plate stored as an (H, W, 4) "background" entry reaches the model as (R, 4) per-ray plate
colours and known flags in the batch, like the mask.
"""

from __future__ import annotations

import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset


class AvatarDataset(InputDataset):
    """Adds ``background`` (H, W, 4): the image's camera's plate (RGB and a known flag), when the
    dataparser estimated plates (``metadata["background_plates"]``)."""

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0) -> None:
        super().__init__(dataparser_outputs, scale_factor)
        plates = self.metadata.pop("background_plates", None) or {}
        self._plates = {name: torch.from_numpy(plate) for name, plate in plates.items()}
        self._camera_names: list[str] = list(self.metadata.get("image_camera_names") or [])

    def get_metadata(self, data: dict) -> dict[str, torch.Tensor]:
        if not self._plates:
            return {}
        name = self._camera_names[int(data["image_idx"])]
        plate = self._plates[name]
        if plate.shape[:2] != data["image"].shape[:2]:
            raise ValueError(f"camera {name}: background plate is {tuple(plate.shape[:2])}, the image "
                             f"{tuple(data['image'].shape[:2])} (a camera_res_scale_factor other than 1?)")
        return {"background": plate}
