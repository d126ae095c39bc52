"""Entry point of ``easymocap-data`` (kept apart from the method configs to avoid a circular import)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from avatarpose_ns.dataparsers.easymocap_dataparser import EasyMocapDataParserConfig

easymocap_dataparser = DataParserSpecification(
    config=EasyMocapDataParserConfig(),
    description="Multi-view, multi-person sequences in the EasyMocap/AvatarPose layout (intri.yml, extri.yml, "
                "images/, mask/, smpl_init/), frames as time, per-person SMPL initialisation",
)
