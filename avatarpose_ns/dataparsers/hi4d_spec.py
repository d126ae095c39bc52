"""Entry point of ``hi4d-data`` (kept apart from the method configs to avoid a circular import)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from avatarpose_ns.dataparsers.hi4d_dataparser import Hi4DDataParserConfig

hi4d_dataparser = DataParserSpecification(
    config=Hi4DDataParserConfig(),
    description="Native Hi4D sequences (cameras/rgb_cameras.npz, images/, seg/img_seg_mask/; smpl/ is ground "
                "truth for evaluation only), initialisation from smpl_init/ or keypoints3d/ or --init-path",
)
