"""Camera paths that carry time through the sequence, and the command that renders them (avatarpose-render)."""
