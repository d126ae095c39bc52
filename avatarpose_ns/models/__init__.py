"""The avatar model: per-person canonical fields, SMPL inverse skinning, layered volume rendering."""
