"""After training with the viewer open: the viewer says so, and the process waits on an event, not a poll."""

import contextlib
import threading
import time
from types import SimpleNamespace

from avatarpose_ns.engine.trainer import AvatarPoseTrainer


class FakeViewer:
    """The parts of nerfstudio 1.1.5's Viewer that the end of training touches."""

    def __init__(self):
        self.steps, self.markdown, self.completed = [], [], False
        self.pause_train, self.resume_train = SimpleNamespace(visible=True), SimpleNamespace(visible=False)
        self.stats_markdown = SimpleNamespace(order=2.0)
        gui = SimpleNamespace(add_markdown=lambda content, order=None: self.markdown.append((content, order)))
        self.viser_server = SimpleNamespace(gui=gui)

    def update_step(self, step):
        self.steps.append(step)

    def training_complete(self):
        self.completed = True


def _trainer(viewer):
    trainer = AvatarPoseTrainer.__new__(AvatarPoseTrainer)  # no pipeline needed for the end of training
    trainer.config = SimpleNamespace(is_viewer_enabled=lambda: True, is_viewer_legacy_enabled=lambda: False)
    trainer.viewer_state, trainer.step, trainer.training_state = viewer, 1200, "training"
    trainer.viewer_closed, trainer._finished = threading.Event(), False
    return trainer


def test_the_viewer_shows_the_end_and_the_wait_is_an_event():
    viewer = FakeViewer()
    trainer = _trainer(viewer)
    waiter = threading.Thread(target=trainer._train_complete_viewer, daemon=True)
    started = time.process_time()
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # it waits...
    assert time.process_time() - started < 0.2  # ...without spending CPU on it
    assert viewer.completed and viewer.steps == [1200] and trainer.training_state == "completed"
    assert not viewer.pause_train.visible and not viewer.resume_train.visible
    assert viewer.markdown == [("**Training finished** at step 1200", 2.25)]
    trainer.viewer_closed.set()
    waiter.join(timeout=5)
    assert not waiter.is_alive()


def test_ctrl_c_after_the_end_saves_no_second_checkpoint(monkeypatch):
    trainer = _trainer(FakeViewer())
    saved = []
    trainer.save_checkpoint = saved.append
    trainer.last_completed_step = 1199
    trainer.checkpoint_dir = "nerfstudio_models"

    def finished_then_interrupted(self):
        trainer._finished = True
        raise KeyboardInterrupt

    monkeypatch.setattr("nerfstudio.engine.trainer.Trainer.train", finished_then_interrupted)
    with contextlib.suppress(KeyboardInterrupt):
        trainer.train()
    assert saved == []
    trainer._finished = False
    monkeypatch.setattr("nerfstudio.engine.trainer.Trainer.train", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with contextlib.suppress(KeyboardInterrupt):
        trainer.train()
    assert saved == [1199]  # during training, Ctrl-C still saves the last completed step
