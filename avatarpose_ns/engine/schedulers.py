"""Learning-rate schedulers whose state holds plain Python floats.

nerfstudio's ExponentialDecayScheduler computes rates with numpy, so its
`_last_lr` holds numpy scalars, and torch >= 2.6's default
`torch.load(weights_only=True)` then refuses the checkpoint (resume, ns-eval,
ns-render, the viewer). Casting the factor to float keeps checkpoints loadable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig
from torch.optim import Optimizer, lr_scheduler


@dataclass
class FloatExponentialDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    _target: Type = field(default_factory=lambda: FloatExponentialDecayScheduler)


class FloatExponentialDecayScheduler(ExponentialDecayScheduler):
    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        factor = super().get_scheduler(optimizer, lr_init).lr_lambdas[0]
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda step: float(factor(step)))
