"""Node "Wan 2.2 Expert Split": the step at which the high-noise A14B expert hands over."""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..twostage_i2v.sampling.expert_split import BOUNDARY_CHOICES, boundary_value, split


class WanExpertSplit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TwoStageI2V_WanExpertSplit",
            display_name="Wan 2.2 Expert Split (A14B high → low noise)",
            category="TwoStage I2V",
            description=(
                "Where Wan 2.2 A14B switches from the high-noise to the low-noise expert, by the official rule: "
                "the first step whose sigma is below the boundary (0.900 I2V, 0.875 T2V), computed from the "
                "model's own sampling (after ModelSamplingSD3) for this sampler, scheduler and step count. Wire "
                "switch_step into end_at_step of the high-noise KSamplerAdvanced and start_at_step of the "
                "low-noise one, and steps into both. Shows the sigma at the switch on the node."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The high-noise expert after ModelSamplingSD3: its shift sets "
                                                "the sigmas."),
                io.Int.Input("steps", default=40, min=1, max=10000,
                             tooltip="Total steps of both samplers together (official I2V A14B: 40)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="The same sampler as on both KSamplerAdvanced nodes (uni_pc and dpm_2 "
                                       "space their sigmas differently)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple",
                               tooltip="The same scheduler as on both KSamplerAdvanced nodes."),
                io.Combo.Input("boundary", options=list(BOUNDARY_CHOICES), default=next(iter(BOUNDARY_CHOICES)),
                               tooltip="Wan 2.2's switch point as a fraction of the noise: 0.900 for I2V A14B, "
                                       "0.875 for T2V A14B, or custom_boundary."),
                io.Float.Input("custom_boundary", default=0.9, min=0.001, max=0.999, step=0.001,
                               tooltip="Used when boundary = custom."),
                io.Model.Input("low_noise_model", optional=True,
                               tooltip="Optional: the low-noise expert after its ModelSamplingSD3, to check that "
                                       "both samplers use the same sigmas (same shift)."),
            ],
            # Display names only: 0.3.75 refuses output ids that repeat an input id ("steps").
            outputs=[
                io.Int.Output(display_name="switch_step",
                              tooltip="end_at_step of the high-noise sampler, start_at_step of the low-noise one."),
                io.Int.Output(display_name="steps", tooltip="steps of both KSamplerAdvanced nodes."),
                io.Float.Output(display_name="sigma", tooltip="The sigma the low-noise expert starts from."),
            ],
        )

    @classmethod
    def execute(cls, model, steps, sampler_name, scheduler, boundary, custom_boundary,
                low_noise_model=None) -> io.NodeOutput:
        from ..twostage_i2v.comfy.schedule import sampler_sigmas

        value = boundary_value(boundary, custom_boundary)
        sigmas, timesteps, shift = sampler_sigmas(model, steps, sampler_name, scheduler, "the high-noise model")
        if low_noise_model is not None:
            low, _, low_shift = sampler_sigmas(low_noise_model, steps, sampler_name, scheduler, "the low-noise model")
            if max(abs(a - b) for a, b in zip(sigmas, low)) > 1e-6:
                raise ValueError(
                    f"Wan 2.2 Expert Split: the two experts sample different sigmas (shift {shift:g} on the high-noise "
                    f"model, {low_shift:g} on the low-noise one): give both ModelSamplingSD3 nodes the same shift"
                )
        result = split(sigmas, timesteps, value)
        text = result.describe(shift, sampler_name, scheduler)
        if result.steps != steps:  # ddim_uniform spaces its sigmas by whole strides
            text += f"\n{scheduler} makes {result.steps} steps of {steps}: both samplers run the same {result.steps}"
        ui = {"text": [text], "expert_split": [{"switch": result.switch, "steps": steps,
                                                "sigma": result.sigma_at_switch, "boundary": value}]}
        # steps as given: each KSamplerAdvanced builds the same schedule from it.
        return io.NodeOutput(result.switch, steps, result.sigma_at_switch, ui=ui)


NODES = [WanExpertSplit]
