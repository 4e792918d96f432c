"""The Wan 2.2 A14B expert switch: the official rule on a list of sigmas.

Wan2.2's ``generate`` code (``wan/image2video.py``, ``wan/text2video.py``) runs
the high-noise expert while the timestep ``t >= boundary * 1000`` and the
low-noise expert from the first step with ``t < boundary * 1000``. On ComfyUI's
flow scale the timestep is ``sigma * 1000``, so the switch is the first step
whose sigma is below the boundary (compared as the timesteps the model gets). The boundary is 0.900 for I2V A14B and 0.875
for T2V A14B (``wan/configs``).

A step ``i`` of ComfyUI's samplers starts at ``sigmas[i]`` (the list has
``steps + 1`` values, the last one 0); ``KSamplerAdvanced`` with
``end_at_step = switch`` runs steps ``0 .. switch - 1`` and, from
``start_at_step = switch``, the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BOUNDARIES = {"i2v": 0.900, "t2v": 0.875}
NUM_TRAIN_TIMESTEPS = 1000  # wan/configs/shared_config.py
# The choices the node offers, in order: its default first.
BOUNDARY_CHOICES = {
    "0.900 (I2V A14B)": BOUNDARIES["i2v"],
    "0.875 (T2V A14B)": BOUNDARIES["t2v"],
    "custom": None,
}


def boundary_value(choice: str, custom: float) -> float:
    """The boundary a node choice stands for (``custom``: the given value, checked)."""
    if choice not in BOUNDARY_CHOICES:
        raise ValueError(f"unknown boundary {choice!r}: pick one of {', '.join(BOUNDARY_CHOICES)}")
    value = BOUNDARY_CHOICES[choice]
    if value is None:
        value = custom
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"boundary {value!r} must lie strictly between 0 and 1 (Wan 2.2: 0.900 I2V, 0.875 T2V)")
    return float(value)


def switch_step(timesteps, boundary: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> int:
    """The first step whose timestep is below ``boundary * num_train_timesteps`` (whose sigma is below
    the boundary); ``len(timesteps) - 1`` (all steps high-noise) when none is.

    ``timesteps``: for each of the sampler's ``steps + 1`` sigmas, highest first, the timestep the
    model is called with (ComfyUI: ``model_sampling.timestep(sigma)``, sigma x 1000). Comparing those,
    not the sigmas, keeps a sigma that is the boundary up to float rounding (shift 1, 20 steps: 0.9)
    on the high-noise side, as ``t >= boundary`` puts it in Wan2.2's code."""
    timesteps = [float(t) for t in timesteps]
    if len(timesteps) < 2:
        raise ValueError(f"a schedule needs at least 2 sigmas (1 step), got {len(timesteps)}")
    steps = len(timesteps) - 1
    limit = boundary * num_train_timesteps
    return next((i for i in range(steps) if timesteps[i] < limit), steps)


@dataclass(frozen=True)
class Split:
    steps: int
    switch: int  # the first low-noise step; the high-noise expert runs steps 0 .. switch - 1
    boundary: float
    sigmas: tuple  # the steps + 1 sigmas

    @property
    def sigma_at_switch(self) -> float:
        """The sigma the low-noise expert starts from (0.0 when it has no steps)."""
        return self.sigmas[self.switch]

    def describe(self, shift: float | None = None, sampler: str | None = None, scheduler: str | None = None) -> str:
        """The node's report: where the switch falls and why, plus a warning when an expert gets no step."""
        how = ", ".join(x for x in (f"shift {shift:g}" if shift is not None else None, sampler, scheduler) if x)
        s, n, b = self.switch, self.steps, self.boundary
        lines = [f"switch at step {s} of {n} (boundary {b:.3f}{'; ' + how if how else ''})"]
        if 0 < s < n:
            lines.append(f"high noise: steps 0-{s - 1}, sigma {self.sigmas[0]:.4f} to {self.sigmas[s - 1]:.4f}")
            lines.append(f"low noise: steps {s}-{n - 1}, from sigma {self.sigmas[s]:.4f} (first below {b:.3f})")
        elif s == 0:
            lines.append(f"WARNING: the first sigma {self.sigmas[0]:.4f} is already below {b:.3f}: the high-noise "
                         "expert gets no step; raise the shift or check the model's sampling")
        else:
            lines.append(f"WARNING: no sigma falls below {b:.3f} before the last step: the low-noise expert gets "
                         "no step; lower the shift or add steps")
        return "\n".join(lines)


def split(sigmas, timesteps, boundary: float) -> Split:
    """The split of a schedule: ``sigmas`` and the ``timesteps`` they stand for (see ``switch_step``)."""
    sigmas = tuple(float(x) for x in sigmas)
    if len(sigmas) != len(timesteps):
        raise ValueError(f"{len(sigmas)} sigmas but {len(timesteps)} timesteps")
    return Split(len(sigmas) - 1, switch_step(timesteps, boundary), float(boundary), sigmas)


def simple_schedule_switch(shift: float, steps: int, boundary: float) -> int:
    """The switch for ComfyUI's ``simple`` schedule with a one-pass sampler (euler), from the flow
    shift's closed form: step ``i`` starts at ``t = 1 - i / steps`` shifted to
    ``shift * t / (1 + (shift - 1) * t)``. What a workflow file shows on the linked step widgets before
    the Expert Split node, which asks the model's own schedule, has run."""
    sigmas = []
    for i in range(steps + 1):
        t = 1 - i / steps
        sigmas.append(shift * t / (1 + (shift - 1) * t))
    return switch_step([s * NUM_TRAIN_TIMESTEPS for s in sigmas], boundary)
