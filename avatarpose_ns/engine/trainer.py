"""nerfstudio's Trainer, made so that an interrupt loses nothing that was done.

nerfstudio 1.1.5 writes ``step-<n>.ckpt`` in place with ``torch.save``: a run killed during the
write leaves a truncated file that ``--load-dir`` then picks as the latest and cannot read (and with
``save_only_latest_checkpoint`` the previous one is already gone when the same step is written again).
Ctrl-C ends ``ns-train`` with a stack trace and keeps only the last periodic checkpoint.

Here every checkpoint is written to a temporary file and renamed into place (``os.replace``, atomic
on one filesystem), so the folder only ever holds complete checkpoints; and Ctrl-C during training
first saves a checkpoint at the last completed step, which ``--load-dir`` resumes from.

The avatars' body prior (each field fitted to its canonical SMPL body, `models/body_prior.py`) runs in
``setup``, after a checkpoint is loaded and before step 0: inside step 0 it made nerfstudio's first
step take minutes and its ETA meaningless.

When training ends with the viewer open (``--viewer.quit-on-train-completion False``, nerfstudio's
default), nerfstudio leaves the viewer saying "Step: 0" (it only updates the step while a client
renders) and "Pause Training", and polls ``time.sleep(0.01)`` until Ctrl-C, which keeps a core busy.
Here the viewer shows the last step and "Training finished", the pause button goes, and the process
waits on an event (``viewer_closed``) instead.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread, check_viewer_enabled
from nerfstudio.utils.rich_utils import CONSOLE

from avatarpose_ns.io.atomic import write_atomically

BODY_PRIOR_SECONDS_PER_PERSON = 9.0  # 150 steps of 16384 points, lite field, 2 CPU cores (docs/usage.md)
CHECKPOINT_NAME = re.compile(r"step-(\d+)\.ckpt")


def latest_checkpoint_step(folder: Path) -> int | None:
    """The highest ``<n>`` of the ``step-<n>.ckpt`` files in ``folder`` (other files ignored), or None."""
    steps = [int(m.group(1)) for p in Path(folder).iterdir() if (m := CHECKPOINT_NAME.fullmatch(p.name))]
    return max(steps, default=None)


@dataclass
class AvatarPoseTrainerConfig(TrainerConfig):
    """nerfstudio's trainer settings; the trainer writes checkpoints atomically and saves on Ctrl-C."""

    _target: type = field(default_factory=lambda: AvatarPoseTrainer)


class AvatarPoseTrainer(Trainer):
    """Atomic checkpoints, and a checkpoint at the last completed step on KeyboardInterrupt."""

    config: AvatarPoseTrainerConfig

    def __init__(self, config: TrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        super().__init__(config, local_rank, world_size)
        self.last_completed_step: int | None = None  # None: no optimizer step yet in this process
        self.viewer_closed = threading.Event()  # set it to let a finished run with an open viewer end
        self._finished = False  # training done and saved: Ctrl-C from here on only closes the viewer

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        super().setup(test_mode)
        self.fit_body_prior()

    def fit_body_prior(self) -> None:
        """Fit every avatar's field to its canonical body now, as a named stage, unless a loaded
        checkpoint already holds the fitted fields (or the prior is off)."""
        scene = getattr(self.pipeline.model, "avatars", None)
        if scene is None or bool(scene.body_prior_fitted) or scene.config.body_prior_steps <= 0:
            return
        CONSOLE.print(f"[bold]body prior (one-off, before step 0): fitting {scene.num_people} avatars to their "
                      f"canonical bodies, {scene.config.body_prior_steps} steps each; about "
                      f"{BODY_PRIOR_SECONDS_PER_PERSON:.0f} s per person on 2 CPU cores")
        started = time.perf_counter()
        scene.fit_fields_to_bodies()
        CONSOLE.print(f"[bold]body prior done in {time.perf_counter() - started:.0f} s")

    def train_iteration(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        result = super().train_iteration(step)
        self.last_completed_step = step  # the optimizers have stepped: this step's state is complete
        return result

    def train(self) -> None:
        try:
            super().train()
        except KeyboardInterrupt:
            if not self._finished:
                self._save_on_interrupt()
            raise

    @check_viewer_enabled
    def _train_complete_viewer(self) -> None:
        """Show the end of training in the viewer and wait, without polling, for Ctrl-C (or `viewer_closed`)."""
        self._finished = True
        self.training_state = "completed"
        viewer = self.viewer_state
        try:
            viewer.training_complete()
            show_training_finished(viewer, self.step)
        except (RuntimeError, AttributeError) as err:  # a viewer convenience: the checkpoint is already saved
            CONSOLE.log(f"Viewer could not show the end of training ({err}).")
        CONSOLE.print("Training finished; the viewer stays open. Use ctrl+c to quit", justify="center")
        self.viewer_closed.wait()

    def _save_on_interrupt(self) -> None:
        step = self.last_completed_step
        if step is None:
            CONSOLE.print("[bold yellow]Interrupted before the first step completed: no checkpoint written")
            return
        CONSOLE.print(f"[bold yellow]Interrupted: saving a checkpoint at step {step} (resume with --load-dir "
                      f"{self.checkpoint_dir})")
        self.save_checkpoint(step)

    def _load_checkpoint(self) -> None:
        """nerfstudio's, except that the latest step in ``load_dir`` is found among ``step-<n>.ckpt`` files
        only (nerfstudio parses every name in the folder and stops at any other file)."""
        config = self.config
        if config.load_dir is None or config.load_step is not None or not Path(config.load_dir).is_dir():
            super()._load_checkpoint()
            return
        config.load_step = latest_checkpoint_step(config.load_dir)
        try:
            super()._load_checkpoint()
        finally:
            config.load_step = None

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint, written atomically: a write cut off half-way leaves the previous
        checkpoints as they were. The temporary file goes next to the checkpoint folder, not into it,
        so that a leftover from a killed process cannot confuse nerfstudio's own search for the
        latest step (ns-eval, ns-export)."""
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        state = {
            "step": step,
            "pipeline": self.pipeline.module.state_dict() if hasattr(self.pipeline, "module")  # type: ignore
            else self.pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda handle: torch.save(state, handle), tmp_dir=self.checkpoint_dir.parent)
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != path:
                    old.unlink()


def show_training_finished(viewer, step: int) -> None:
    """nerfstudio's viewer after training: the final step in its stats, the pause / resume buttons hidden
    and a "Training finished" line under the stats."""
    viewer.update_step(step)
    viewer.pause_train.visible = False
    viewer.resume_train.visible = False
    order = float(viewer.stats_markdown.order) + 0.25  # right under the stats, above the project's overlays
    viewer.viser_server.gui.add_markdown(f"**Training finished** at step {step}", order=order)
