"""Lookahead as airbench trains with it: the weights are pulled to a running average of
themselves every few steps, and the run ends on that average.

Every `every` optimizer steps, the average moves toward the weights, average ← ρ·average +
(1-ρ)·weights, and the weights are set to it. ρ = decay^every · (step / steps)^3 warms up
from 0 (the average follows the weights at first) to decay^every at the end (airbench94:
decay 0.95, every 5 steps). At the run's last step the weights become the average, which is
what is evaluated and saved. Every floating-point tensor of the model's state is averaged,
batch norm's running statistics included, as airbench does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Lookahead:
    """The running average of `model`'s state over a run of `total_steps` optimizer steps."""

    def __init__(self, model: nn.Module, decay: float, every: int, total_steps: int) -> None:
        self.model, self.decay, self.every, self.total_steps = model, decay, every, total_steps
        self.average = {
            name: value.detach().clone()
            for name, value in model.state_dict().items()
            if value.is_floating_point()
        }

    def rho(self, step: int) -> float:
        """The average's share kept at `step` (1-based count of optimizer steps)."""
        return self.decay**self.every * (step / self.total_steps) ** 3

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """After optimizer step `step`: an update every `every` steps; the last step ends on
        the average."""
        if step >= self.total_steps:
            self.update(1.0)
        elif step % self.every == 0:
            self.update(self.rho(step))

    @torch.no_grad()
    def update(self, rho: float) -> None:
        state = self.model.state_dict()
        for name, average in self.average.items():
            average.lerp_(state[name], 1 - rho)
            state[name].copy_(average)

    def state_dict(self) -> dict[str, Any]:
        return {name: value.clone() for name, value in self.average.items()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for name, value in saved.items():
            self.average[name].copy_(value)
