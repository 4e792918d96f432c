"""'Wan 2.2 Expert Split': the step at which the high-noise A14B expert hands over.

Oracles: the official rule of Wan2.2's generate code (the high-noise expert runs while the timestep
t >= boundary * 1000, wan/image2video.py), applied here to sigmas computed independently with
ComfyUI's ``comfy.samplers.calculate_sigmas`` for every scheduler the tree has; the closed form of
the flow shift for ComfyUI's ``simple`` schedule; and the timesteps each expert's model is actually
called with inside two core KSamplerAdvanced nodes wired with the node's output.
"""

from __future__ import annotations

import math

import pytest
import torch

from twostage_i2v.sampling.expert_split import BOUNDARIES, boundary_value, split, switch_step

NODE = "TwoStageI2V_WanExpertSplit"
NUM_TRAIN_TIMESTEPS = 1000  # wan/configs/shared_config.py


# ---------------------------------------------------------------- the pure rule


@pytest.mark.core
def test_switch_step_rule():
    assert switch_step([1000, 950, 910, 900, 500, 0], 0.9) == 4  # t = 900 is not below 900
    assert switch_step([1000, 950, 890, 500, 0], 0.9) == 2
    assert switch_step([800, 500, 0], 0.9) == 0
    assert switch_step([1000, 990, 0], 0.9) == 2  # the last sigma (0) is no step's start
    assert switch_step([1000, 880, 870, 0], 0.875) == 2
    with pytest.raises(ValueError, match="at least 2 sigmas"):
        switch_step([1000], 0.9)


@pytest.mark.core
def test_boundary_choices():
    assert BOUNDARIES == {"i2v": 0.900, "t2v": 0.875}  # wan/configs: wan_i2v_A14B.py, wan_t2v_A14B.py
    assert boundary_value("0.900 (I2V A14B)", 0.5) == 0.9
    assert boundary_value("0.875 (T2V A14B)", 0.5) == 0.875
    assert boundary_value("custom", 0.8) == 0.8
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            boundary_value("custom", bad)
    with pytest.raises(ValueError, match="unknown boundary 'half'"):
        boundary_value("half", 0.5)


@pytest.mark.core
def test_report_text():
    s = split([1.0, 0.9375, 0.8333, 0.625, 0.0], [1000, 937.5, 833.3, 625, 0], 0.9)
    assert (s.switch, s.steps, s.sigma_at_switch) == (2, 4, 0.8333)
    assert s.describe(5.0, "euler", "simple").split("\n") == [
        "switch at step 2 of 4 (boundary 0.900; shift 5, euler, simple)",
        "high noise: steps 0-1, sigma 1.0000 to 0.9375",
        "low noise: steps 2-3, from sigma 0.8333 (first below 0.900)",
    ]
    none_low = split([1.0, 0.95, 0.0], [1000, 950, 0], 0.9)
    assert none_low.switch == 2 and none_low.sigma_at_switch == 0.0
    assert "WARNING: no sigma falls below 0.900 before the last step" in none_low.describe()
    assert "WARNING: the first sigma 0.5000 is already below 0.900" in split([0.5, 0.0], [500, 0], 0.9).describe()
    with pytest.raises(ValueError, match="3 sigmas but 2 timesteps"):
        split([1.0, 0.5, 0.0], [1000, 0], 0.9)


# ---------------------------------------------------------------- against ComfyUI


@pytest.fixture(scope="module")
def expert(comfy, tiny_models):
    return comfy.nodes.UNETLoader().load_unet(tiny_models["wan22_i2v_high"].name, "default")[0]


def shifted(comfy, model, shift):
    return comfy.node_class("ModelSamplingSD3")().patch(model, shift)[0]


def run_split(comfy, model, steps, sampler, scheduler, boundary="0.900 (I2V A14B)", custom=0.9, low=None):
    out = comfy.node_class(NODE).execute(model, steps, sampler, scheduler, boundary, custom, low)
    return out.result, out.ui


def official_switch(comfy, model, steps, sampler, scheduler, boundary):
    """The oracle: ComfyUI's sigma function for the scheduler (as KSampler uses it, with the extra
    sigma uni_pc and dpm_2 drop), then Wan2.2's rule on timesteps t = model_sampling.timestep(sigma)."""
    import comfy.samplers as samplers

    ms = model.get_model_object("model_sampling")
    discard = sampler in samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    sigmas = samplers.calculate_sigmas(ms, scheduler, steps + 1 if discard else steps)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    t = ms.timestep(sigmas[:-1])  # the timestep each step starts at
    below = [i for i in range(len(t)) if t[i] < boundary * NUM_TRAIN_TIMESTEPS]
    return (below[0] if below else len(t)), float(sigmas[below[0]] if below else 0.0)


@pytest.mark.comfy
def test_table_of_cases_matches_the_official_rule(comfy, expert):
    import comfy.samplers as samplers

    schedulers = list(samplers.KSampler.SCHEDULERS)
    assert {"simple", "normal", "karras", "exponential", "sgm_uniform", "beta"} <= set(schedulers)
    checked, switches = 0, set()
    for shift in (1.0, 3.0, 5.0, 8.0, 12.0):
        model = shifted(comfy, expert, shift)
        for scheduler in schedulers:
            for steps in (2, 4, 8, 20, 30, 40, 50):
                for sampler in ("euler", "uni_pc"):
                    for name, value in (("0.900 (I2V A14B)", 0.9), ("0.875 (T2V A14B)", 0.875)):
                        (switch, total, sigma), ui = run_split(comfy, model, steps, sampler, scheduler, name)
                        expected, expected_sigma = official_switch(comfy, model, steps, sampler, scheduler, value)
                        case = (shift, scheduler, steps, sampler, value)
                        assert (switch, total) == (expected, steps), case
                        assert sigma == pytest.approx(expected_sigma, abs=1e-6), case
                        assert ui["expert_split"][0]["switch"] == switch
                        switches.add(switch / steps)
                        checked += 1
    assert checked == 5 * len(schedulers) * 7 * 2 * 2
    assert len(switches) > 10  # the cases do land on many different steps


@pytest.mark.comfy
@pytest.mark.parametrize("shift,steps,expected", [(5.0, 40, 15), (5.0, 20, 8), (5.0, 4, 2), (3.0, 40, 11),
                                                  (8.0, 40, 19), (12.0, 20, 12)])
def test_simple_schedule_matches_the_closed_form(comfy, expert, shift, steps, expected):
    """ComfyUI's simple schedule at step i is t = 1 - i/steps shifted to sigma = s*t / (1 + (s-1)*t);
    the switch is the first i with sigma < 0.9, by hand."""
    by_hand = next(i for i in range(steps) if shift * (1 - i / steps) / (1 + (shift - 1) * (1 - i / steps)) < 0.9)
    assert by_hand == expected
    (switch, _, sigma), ui = run_split(comfy, shifted(comfy, expert, shift), steps, "euler", "simple")
    assert switch == expected
    t = 1 - expected / steps
    assert sigma == pytest.approx(shift * t / (1 + (shift - 1) * t), abs=1e-3)
    assert ui["text"][0].startswith(f"switch at step {expected} of {steps} (boundary 0.900; shift {shift:g}, euler, simple)")


@pytest.mark.comfy
@pytest.mark.parametrize("sampler", ["euler", "uni_pc"])
def test_two_ksampler_advanced_call_each_expert_on_its_side_of_the_boundary(comfy, tiny_models, sampler):
    """High noise 0..switch with leftover noise, low noise switch..end, as the A14B workflow wires them:
    every timestep the high-noise model is called with is >= 900, every one the low-noise model gets < 900."""
    import nodes as core_nodes

    load = comfy.nodes.UNETLoader().load_unet
    high = shifted(comfy, load(tiny_models["wan22_i2v_high"].name, "default")[0], 5.0).clone()
    low = shifted(comfy, load(tiny_models["wan22_i2v_low"].name, "default")[0], 5.0).clone()
    seen = {"high": [], "low": []}

    def spy(side):
        # The wrapper gets the sigma; the model itself is called with the timestep it stands for.
        timestep = high.get_model_object("model_sampling").timestep

        def wrapper(apply, args):
            seen[side].extend(float(t) for t in timestep(args["timestep"]).flatten())
            return apply(args["input"], args["timestep"], **args["c"])
        return wrapper

    high.set_model_unet_function_wrapper(spy("high"))
    low.set_model_unet_function_wrapper(spy("low"))
    steps = 8
    (switch, total, _), _ = run_split(comfy, high, steps, sampler, "simple", low=low)
    assert 0 < switch < steps
    g = torch.Generator().manual_seed(0)
    cond = [[torch.randn(1, 16, 4096, generator=g),
             {"concat_latent_image": torch.randn(1, 16, 2, 8, 8, generator=g), "concat_mask": torch.ones(1, 4, 2, 8, 8)}]]
    latent = {"samples": torch.zeros(1, 16, 2, 8, 8)}
    adv = core_nodes.KSamplerAdvanced()
    mid = adv.sample(high, "enable", 1, total, 1.0, sampler, "simple", cond, cond, latent, 0, switch, "enable")[0]
    adv.sample(low, "disable", 1, total, 1.0, sampler, "simple", cond, cond, mid, switch, 10000, "disable")
    assert seen["high"] and seen["low"]
    assert min(seen["high"]) >= 0.9 * NUM_TRAIN_TIMESTEPS > max(seen["low"]), seen
    assert len(set(seen["high"])) == switch and len(set(seen["low"])) == steps - switch


@pytest.mark.comfy
def test_refuses_different_shifts_and_non_flow_models(comfy, expert):
    import comfy.model_sampling as model_sampling

    with pytest.raises(ValueError, match=r"shift 5 on the high-noise model, 3 on the low-noise one"):
        run_split(comfy, shifted(comfy, expert, 5.0), 20, "euler", "simple", low=shifted(comfy, expert, 3.0))

    class NotWan:
        model_options: dict = {}

        def get_model_object(self, name):
            return model_sampling.ModelSamplingDiscrete()

    with pytest.raises(ValueError, match="not the flow-matching schedule of a Wan model"):
        run_split(comfy, NotWan(), 20, "euler", "simple")


@pytest.mark.comfy
def test_custom_boundary_and_the_no_low_noise_warning(comfy, expert):
    model = shifted(comfy, expert, 5.0)
    (switch, steps, sigma), ui = run_split(comfy, model, 4, "euler", "simple", "custom", 0.001)
    assert (switch, steps, sigma) == (4, 4, 0.0)
    assert "WARNING: no sigma falls below 0.001" in ui["text"][0]
    (switch, _, _), _ = run_split(comfy, model, 40, "euler", "simple", "custom", 0.5)
    t = next(i for i in range(40) if 5 * (1 - i / 40) / (1 + 4 * (1 - i / 40)) < 0.5)
    assert switch == t and not math.isnan(switch)
