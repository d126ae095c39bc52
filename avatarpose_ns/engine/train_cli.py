"""avatarpose-train: ns-train with the project's warning filters and one-line errors (`avatarpose_ns.commands`).

The filters are installed before nerfstudio is imported, so its import-time deprecation warnings stay
quiet too (plain ``ns-train`` imports nerfstudio before it loads the plugin that installs them).
"""

from __future__ import annotations

from avatarpose_ns.commands import run_command


def entrypoint() -> None:
    from nerfstudio.scripts.train import entrypoint as ns_train

    run_command(ns_train)


if __name__ == "__main__":
    entrypoint()
