"""Fitting SMPL to observations (3D keypoints, 2D keypoints, masks) to initialise the avatars' poses."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-1 of this package's Python sources.

    Part of the on-disk cache key of every fit's result, so that a change to the fitting code
    (a new hypothesis, a changed loss) is never answered with a result the old code computed.
    The pose priors the fits use live in ``avatarpose_ns/body/priors.py`` and count too.
    """
    digest = hashlib.sha1()
    here = Path(__file__).parent
    for path in [*sorted(here.glob("*.py")), here.parent / "body" / "priors.py"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
