"""The sigmas ComfyUI's samplers will use for a MODEL, asked of ComfyUI itself.

``KSamplerAdvanced`` builds ``comfy.samplers.KSampler(model, steps, ..., sampler,
scheduler)`` and samples over its ``sigmas``; building the same object here
(without sampling) gives exactly that list for the MODEL as wired, shift from
``ModelSamplingSD3`` included, and with the samplers that compute one extra
sigma and drop the penultimate one (``uni_pc``, ``dpm_2``, ...) handled as
ComfyUI handles them. Import only inside ComfyUI.
"""

from __future__ import annotations

import comfy.model_sampling
import comfy.samplers


def _flow_sampling(model, what: str):
    ms = model.get_model_object("model_sampling")
    if not isinstance(ms, comfy.model_sampling.ModelSamplingDiscreteFlow):
        raise ValueError(
            f"{what}'s sampling is {type(ms).__name__}, not the flow-matching schedule of a Wan model: connect a "
            "Wan 2.2 model (through ModelSamplingSD3) here"
        )
    return ms


def sampler_sigmas(model, steps: int, sampler_name: str, scheduler: str,
                   what: str = "the model") -> tuple[list, list, float]:
    """(the ``steps + 1`` sigmas, the timestep the model is called with at each, the model's shift) for
    ``model`` under ``sampler_name`` and ``scheduler``."""
    ms = _flow_sampling(model, what)
    if scheduler not in comfy.samplers.KSampler.SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}: pick one of {', '.join(comfy.samplers.KSampler.SCHEDULERS)}")
    if sampler_name not in comfy.samplers.KSampler.SAMPLERS:
        raise ValueError(f"unknown sampler {sampler_name!r}: pick one of {', '.join(comfy.samplers.KSampler.SAMPLERS)}")
    sampler = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                      denoise=1.0, model_options=model.model_options)
    sigmas = sampler.sigmas.cpu()
    timesteps = ms.timestep(sigmas)
    return [float(s) for s in sigmas], [float(t) for t in timesteps], float(getattr(ms, "shift", float("nan")))
