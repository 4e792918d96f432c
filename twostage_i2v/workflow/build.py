"""The shipped workflows, described in code and written in the UI format the
ComfyUI frontend saves (``version`` 0.4: nodes, links, groups, extra).

Widget values are given by input name and laid out by the node definitions of
``/object_info`` (``workflow.convert.widget_layout``), so a widget added to a
node upstream cannot silently shift the values: the build fails on an unknown
name, and the validator checks the files against a live ComfyUI.

``scripts/build-workflows.py`` writes the files; ``WORKFLOWS`` lists them.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field

from .. import __version__
from ..bridge.geometry import CLIPS, stage1_size, target_size
from ..sampling.expert_split import BOUNDARIES, BOUNDARY_CHOICES, simple_schedule_switch
from .convert import FRONTEND_ONLY, input_specs, widget_layout, widget_values_by_name

PACKAGE_CNR_ID = "comfyui-twostage-i2v"
PACKAGE_PREFIX = "TwoStageI2V_"
# The ComfyUI whose node definitions lay the widgets out (the primary target).
CORE_VER = "0.30.0"
STAGE_GROUP_COLOR = {"stage1": "#3f789e", "bridge": "#8a6d3b", "stage2": "#4f7d52"}
POSITIVE_COLORS = {"color": "#232", "bgcolor": "#353"}
NEGATIVE_COLORS = {"color": "#223", "bgcolor": "#335"}
NOTE_COLORS = {"color": "#432", "bgcolor": "#653"}


@dataclass(frozen=True)
class ModelFile:
    name: str
    url: str
    directory: str  # ComfyUI models/ folder

    def as_property(self) -> dict:
        return {"name": self.name, "url": self.url, "directory": self.directory}


_HF = "https://huggingface.co"
_REPACK = f"{_HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
_REPACK22 = f"{_HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
_QS = f"{_HF}/QuantStack"
MODEL_FILES = {
    "sdxl": ModelFile("sd_xl_base_1.0.safetensors",
                      f"{_HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
                      "checkpoints"),
    "wan_480p": ModelFile("wan2.1-i2v-14b-480p-Q4_K_M.gguf",
                          f"{_HF}/city96/Wan2.1-I2V-14B-480P-gguf/resolve/main/wan2.1-i2v-14b-480p-Q4_K_M.gguf",
                          "diffusion_models"),
    "wan_720p": ModelFile("wan2.1-i2v-14b-720p-Q4_K_M.gguf",
                          f"{_HF}/city96/Wan2.1-I2V-14B-720P-gguf/resolve/main/wan2.1-i2v-14b-720p-Q4_K_M.gguf",
                          "diffusion_models"),
    "umt5": ModelFile("umt5-xxl-encoder-Q8_0.gguf",
                      f"{_HF}/city96/umt5-xxl-encoder-gguf/resolve/main/umt5-xxl-encoder-Q8_0.gguf", "text_encoders"),
    "clip_vision": ModelFile("clip_vision_h.safetensors", f"{_REPACK}/clip_vision/clip_vision_h.safetensors",
                             "clip_vision"),
    "vae": ModelFile("wan_2.1_vae.safetensors", f"{_REPACK}/vae/wan_2.1_vae.safetensors", "vae"),
    # Wan 2.2: the I2V A14B experts (one file each), the TI2V 5B and its VAE, the lightx2v 4-step LoRAs.
    "wan22_high": ModelFile("Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf",
                            f"{_QS}/Wan2.2-I2V-A14B-GGUF/resolve/main/HighNoise/Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf",
                            "diffusion_models"),
    "wan22_low": ModelFile("Wan2.2-I2V-A14B-LowNoise-Q4_K_M.gguf",
                           f"{_QS}/Wan2.2-I2V-A14B-GGUF/resolve/main/LowNoise/Wan2.2-I2V-A14B-LowNoise-Q4_K_M.gguf",
                           "diffusion_models"),
    "wan22_5b": ModelFile("Wan2.2-TI2V-5B-Q4_K_M.gguf",
                          f"{_QS}/Wan2.2-TI2V-5B-GGUF/resolve/main/Wan2.2-TI2V-5B-Q4_K_M.gguf", "diffusion_models"),
    "vae22": ModelFile("wan2.2_vae.safetensors", f"{_REPACK22}/vae/wan2.2_vae.safetensors", "vae"),
    "lora21_4step": ModelFile(
        "Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors",
        f"{_HF}/lightx2v/Wan2.1-I2V-14B-480P-StepDistill-CfgDistill-Lightx2v/resolve/main/loras/"
        "Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors", "loras"),
    "lora22_high": ModelFile("wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors",
                             f"{_REPACK22}/loras/wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors", "loras"),
    "lora22_low": ModelFile("wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors",
                            f"{_REPACK22}/loras/wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors", "loras"),
}
LORA_PLACEHOLDER = "your_character_lora.safetensors"
START_IMAGE = "start_image.png"

STAGE1_POSITIVE = ("masterpiece, best quality, 1girl, solo, long silver hair, blue eyes, white sundress, "
                   "standing in a flower field, upper body, looking at viewer, soft sunlight, detailed background")
STAGE1_NEGATIVE = ("worst quality, low quality, lowres, bad anatomy, bad hands, extra fingers, watermark, "
                   "signature, text, blurry, jpeg artifacts")
# The Wan I2V side describes motion only: the still already fixes the look.
MOTION = ("Her hair and dress sway gently in the breeze, she blinks and smiles softly, "
          "petals drift past, soft ambient lighting, anime illustration style")

# Wan 2.1's official I2V setup (wan/configs, generate.py): 81 frames at 16 fps,
# 40 steps, guidance 5.0, flow shift 3.0 at 480p and 5.0 at 720p, UniPC solver.
WAN_FRAMES, WAN_FPS, WAN_STEPS, WAN_CFG = 81, 16.0, 40, 5.0
WAN_SHIFT = {"480p": 3.0, "720p": 5.0}
WAN_SAMPLER, WAN_SCHEDULER = "uni_pc", "simple"
# Wan 2.2 I2V A14B (wan/configs/wan_i2v_A14B.py): 40 steps, shift 5.0, guidance 3.5 for both experts, the
# experts switching at boundary 0.900 (the Expert Split node finds that step). Two KSamplerAdvanced share
# one schedule; euler calls the model once per step and keeps no history, so handing over between the two
# samplers is exact (a multistep solver such as uni_pc restarts its history at the switch).
A14B_STEPS, A14B_CFG, A14B_SHIFT, A14B_SAMPLER, A14B_SCHEDULER = 40, 3.5, 5.0, "euler", "simple"
# Wan 2.2 TI2V 5B (wan/configs/wan_ti2v_5B.py): 121 frames at 24 fps, 50 steps, shift 5.0, guidance 5.0.
TI2V_FRAMES, TI2V_FPS = CLIPS["wan2.2-ti2v-5b"]
TI2V_STEPS, TI2V_CFG, TI2V_SHIFT = 50, 5.0, 5.0
# The lightx2v step/CFG-distilled LoRAs: 4 steps at cfg 1 (2 + 2 on the A14B pair), shift 5.0, strength 1.0.
FAST_STEPS, FAST_CFG, FAST_SHIFT, FAST_SAMPLER, FAST_SCHEDULER, FAST_LORA_STRENGTH = 4, 1.0, 5.0, "euler", "simple", 1.0
# Stage 1: what SDXL anime checkpoints (Illustrious XL and kin) recommend.
SDXL_STEPS, SDXL_CFG, SDXL_SAMPLER, SDXL_SCHEDULER = 28, 6.0, "euler_ancestral", "normal"
STAGE1_SEED, STAGE2_SEED = 123456789, 42


class BuildError(ValueError):
    pass


@dataclass
class _Node:
    id: int
    type: str
    pos: tuple
    widgets: dict
    title: str | None = None
    mode: int = 0
    size: tuple | None = None
    colors: dict = field(default_factory=dict)
    models: list = field(default_factory=list)
    note_text: str | None = None
    linked_widgets: dict = field(default_factory=dict)  # widget name -> link id
    socket_links: dict = field(default_factory=dict)  # input name -> link id
    out_links: dict = field(default_factory=dict)  # output slot -> [link ids]


class GraphBuilder:
    """Nodes, links and groups by name; ``build()`` lays them out in the frontend's format."""

    def __init__(self, object_info: dict, name: str):
        self.object_info = object_info
        self.name = name
        self.nodes: dict[int, _Node] = {}
        self.links: list[list] = []
        self.groups: list[tuple] = []
        self.stacks: list[tuple] = []

    def _def(self, node_type: str) -> dict:
        try:
            return self.object_info[node_type]
        except KeyError:
            raise BuildError(f"{self.name}: node type {node_type!r} is not in this ComfyUI's node definitions") from None

    def add(self, node_type: str, pos, *, title=None, mode=0, size=None, colors=None, models=(), **widgets) -> int:
        node_def = self._def(node_type)
        known = {s.name for s in widget_layout(node_def)}
        unknown = set(widgets) - known
        if unknown:
            raise BuildError(f"{self.name}: {node_type} has no widget(s) {sorted(unknown)}; it has {sorted(known)}")
        nid = len(self.nodes) + 1
        self.nodes[nid] = _Node(nid, node_type, tuple(pos), dict(widgets), title, mode, size, dict(colors or {}),
                                [m.as_property() for m in models])
        return nid

    def note(self, text: str, pos, size, *, title: str, markdown: bool = False) -> int:
        nid = len(self.nodes) + 1
        self.nodes[nid] = _Node(nid, "MarkdownNote" if markdown else "Note", tuple(pos), {}, title, 0, tuple(size),
                                dict(NOTE_COLORS), note_text=text)
        return nid

    def connect(self, src: int, output, dst: int, input_name: str) -> int:
        src_node, dst_node = self.nodes[src], self.nodes[dst]
        src_def, dst_def = self._def(src_node.type), self._def(dst_node.type)
        names = list(src_def.get("output_name") or src_def.get("output") or [])
        slot = output if isinstance(output, int) else names.index(output)
        out_type = src_def["output"][slot]
        spec = next((s for s in input_specs(dst_def) if s.name == input_name), None)
        if spec is None:
            raise BuildError(f"{self.name}: {dst_node.type} has no input {input_name!r}")
        if spec.type != out_type and "*" not in (spec.type, out_type):
            raise BuildError(f"{self.name}: {src_node.type}.{names[slot]} is {out_type}, "
                             f"{dst_node.type}.{input_name} wants {spec.type}")
        lid = len(self.links) + 1
        if spec.is_widget:
            dst_node.linked_widgets[input_name] = lid
        else:
            dst_node.socket_links[input_name] = lid
        src_node.out_links.setdefault(slot, []).append(lid)
        self.links.append([lid, src, slot, dst, None, out_type])  # target slot filled in build()
        return lid

    def group(self, title: str, node_ids, color: str) -> None:
        self.groups.append((title, list(node_ids), color))

    def stack(self, x: float, node_ids, y: float = 60, gap: float = 50) -> None:
        """Place nodes in a column at ``x``, top to bottom, spaced by their computed sizes."""
        self.stacks.append((x, y, gap, list(node_ids)))

    # -- layout ----------------------------------------------------------------

    def _widget_values(self, node: _Node) -> list:
        values = []
        for slot in widget_layout(self._def(node.type)):
            spec = slot.spec
            if slot.kind == "control":
                values.append(node.widgets.get(slot.name, "fixed"))
            elif slot.kind == "upload":
                values.append("image")  # the upload button's value, as the frontend saves it
            elif slot.name in node.widgets:
                values.append(node.widgets[slot.name])
            elif "default" in spec.options:
                values.append(spec.options["default"])
            elif spec.choices:
                values.append(spec.choices[0])
            else:
                raise BuildError(f"{self.name}: {node.type}.{slot.name} has no default; give it a value")
        return values

    def _size(self, node: _Node, n_inputs: int, n_outputs: int, n_widgets: int) -> list:
        if node.size:
            return list(node.size)
        width = 340 if node.type.startswith(PACKAGE_PREFIX) else 315
        height = 30 + 22 * max(n_inputs, n_outputs) + 26 * n_widgets
        spec_multiline = [s for s in input_specs(self._def(node.type)) if s.options.get("multiline")]
        height += 90 * len(spec_multiline)
        if node.type in ("PreviewImage", "SaveImage", "SaveVideo"):
            width, height = 320, max(height, 300)
        return [width, height]

    def _order(self) -> dict[int, int]:
        deps = {nid: set() for nid in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            deps[dst].add(src)
        order, done = {}, set()
        while len(done) < len(deps):
            ready = sorted(n for n in deps if n not in done and deps[n] <= done)
            if not ready:
                raise BuildError(f"{self.name}: the graph has a cycle")
            for n in ready:
                order[n] = len(order)
                done.add(n)
        return order

    def build(self, *, ds_scale: float = 0.55, ds_offset=(520, 120)) -> dict:
        order = self._order()
        nodes_out = []
        for nid, node in self.nodes.items():
            if node.type in FRONTEND_ONLY:
                entry = {"id": nid, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                         "order": order[nid], "mode": 0, "inputs": [], "outputs": [], "title": node.title,
                         "properties": {}, "widgets_values": [node.note_text], **node.colors}
                nodes_out.append(entry)
                continue
            node_def = self._def(node.type)
            inputs = []
            for spec in input_specs(node_def):
                if spec.is_widget:
                    continue
                item = {"name": spec.name, "type": spec.type, "link": node.socket_links.get(spec.name)}
                if spec.optional:
                    item["shape"] = 7  # the frontend's mark for an optional socket
                inputs.append(item)
            for spec in input_specs(node_def):
                if spec.is_widget and spec.name in node.linked_widgets:
                    inputs.append({"name": spec.name, "type": spec.type, "widget": {"name": spec.name},
                                   "link": node.linked_widgets[spec.name]})
            for slot_index, item in enumerate(inputs):
                if item["link"] is not None:
                    self.links[item["link"] - 1][4] = slot_index
            names = list(node_def.get("output_name") or node_def.get("output") or [])
            outputs = []
            for i, out_type in enumerate(node_def.get("output") or []):
                outputs.append({"name": names[i] if i < len(names) else out_type, "type": out_type,
                                "slot_index": i, "links": node.out_links.get(i) or None})
            widgets_values = self._widget_values(node)
            props = {"Node name for S&R": node.type}
            if node.type.startswith(PACKAGE_PREFIX):
                props.update({"cnr_id": PACKAGE_CNR_ID, "ver": __version__})
            else:
                props.update({"cnr_id": "comfy-core", "ver": CORE_VER})
            if node.models:
                props["models"] = node.models
            entry = {"id": nid, "type": node.type, "pos": list(node.pos),
                     "size": self._size(node, len(inputs), len(outputs), len(widgets_values)),
                     "flags": {}, "order": order[nid], "mode": node.mode, "inputs": inputs, "outputs": outputs}
            if node.title:
                entry["title"] = node.title
            entry["properties"] = props
            entry["widgets_values"] = widgets_values
            entry.update(node.colors)
            nodes_out.append(entry)
        by_id = {n["id"]: n for n in nodes_out}
        for x, y, gap, members in self.stacks:
            for nid in members:
                by_id[nid]["pos"] = [x, y]
                y += by_id[nid]["size"][1] + 30 + gap  # 30: the title bar above pos
        groups = []
        for gid, (title, members, color) in enumerate(self.groups, start=1):
            xs0 = [by_id[m]["pos"][0] for m in members]
            ys0 = [by_id[m]["pos"][1] for m in members]
            xs1 = [by_id[m]["pos"][0] + by_id[m]["size"][0] for m in members]
            ys1 = [by_id[m]["pos"][1] + by_id[m]["size"][1] for m in members]
            # A node's title bar sits 30 px above its pos; the group's own title needs about 50 more.
            left, top = min(xs0) - 20, min(ys0) - 30 - 56
            groups.append({"id": gid, "title": title, "bounding": [left, top, max(xs1) + 20 - left, max(ys1) + 20 - top],
                           "color": color, "font_size": 24, "flags": {}})
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PACKAGE_CNR_ID}/{self.name}")),
            "revision": 0,
            "last_node_id": max(self.nodes),
            "last_link_id": len(self.links),
            "nodes": nodes_out,
            "links": [list(link) for link in self.links],
            "groups": groups,
            "config": {},
            "extra": {"ds": {"scale": ds_scale, "offset": list(ds_offset)}},
            "version": 0.4,
        }


# -- the notes -----------------------------------------------------------------

WAN21_QUANTS = ("Other quantizations work the same way: Q3_K_S (7.9 GB) fits 8 GB cards, Q5_K_M / Q6_K / Q8_0 "
                "(18.1 GB) look closer to the original.")


def model_note(models: list[ModelFile], stage1: bool, quants: str = WAN21_QUANTS) -> str:
    lines = ["Put each file in the folder shown (under `ComfyUI/models/`):", ""]
    for m in models:
        lines.append(f"- **{m.directory}/** [{m.name}]({m.url})")
    lines += [
        "",
        "The Wan model may also go in `models/unet/`, the text encoder in `models/clip/`.",
        quants,
    ]
    if stage1:
        lines += [
            "",
            "Stage 1 takes any SDXL-family checkpoint in `models/checkpoints/`: SDXL base as linked, or an "
            "anime one such as Illustrious XL or Animagine XL. A character or style LoRA goes in "
            "`models/loras/`: pick it in the *Character LoRA* node and un-bypass that node (Ctrl+B).",
        ]
    return "\n".join(lines)


def speed_note(resolution: str) -> str:
    shift = WAN_SHIFT[resolution]
    return "\n".join([
        "Defaults = Wan 2.1's official image-to-video setup: "
        f"{WAN_FRAMES} frames at {WAN_FPS:g} fps (about 5 s), {WAN_STEPS} steps, CFG {WAN_CFG:g}, "
        f"shift {shift:g}, UniPC sampler (uni_pc) with the simple scheduler.",
        "",
        "Faster, at some cost in quality:",
        "- Steps 20 to 30 on the Wan KSampler (uni_pc holds up well at 25).",
        "- Fewer frames on the Stage Bridge: 49 (3 s) or 33 (2 s). Keep 4n+1.",
        "- A smaller quantization (Q3_K_S) when the model does not fit in VRAM: offloading costs more than the "
        "quality you lose.",
        "- Text encoder device 'cpu' frees VRAM for the video model.",
        "- Seeds are fixed: once the still is right, changing only the motion re-runs stage 2 alone.",
        "- Stage 1 at 20 steps while you look for a composition.",
        "",
        "CreateVideo's fps and the Stage Bridge's fps should match (16 for Wan 2.1).",
    ])


def fast_note(spec: "WorkflowSpec") -> str:
    """The 4-step workflows' note: what the lightx2v LoRAs change and what to keep."""
    pair = spec.model == "wan2.2-a14b"
    lines = [
        f"4 steps with the lightx2v step/CFG-distilled LoRA{' pair (high noise on the high-noise expert, low on the low)' if pair else ''}: "
        f"{FAST_STEPS} steps, CFG {FAST_CFG:g}, shift {FAST_SHIFT:g}, {FAST_SAMPLER} / {FAST_SCHEDULER}, LoRA strength "
        f"{FAST_LORA_STRENGTH:g}; a clip takes minutes instead of tens of minutes.",
        "",
        "Keep CFG at 1: the LoRA has the guidance distilled in, a higher CFG burns the image; the negative prompt "
        "then has no effect.",
    ]
    if pair:
        lines += ["- The Expert Split node puts the switch where the noise falls below 0.900: 2 + 2 steps here. "
                  "Change steps on the split node only: it feeds both samplers."]
    else:
        lines += ["- 6 to 8 steps add a little detail; more gains nothing with the LoRA."]
    lines += [
        "- Fewer frames on the Stage Bridge: 49 (3 s) or 33 (2 s). Keep 4n+1.",
        "- Character and style LoRAs for the video go after the speed LoRA, at their usual strength.",
        "",
        f"CreateVideo's fps and the Stage Bridge's fps should match ({WAN_FPS:g} for Wan 2.1 and 2.2 A14B).",
    ]
    return "\n".join(lines)


def a14b_note() -> str:
    return "\n".join([
        "Defaults = Wan 2.2's official image-to-video A14B setup: "
        f"{WAN_FRAMES} frames at {WAN_FPS:g} fps, {A14B_STEPS} steps, CFG {A14B_CFG:g} on both experts, shift "
        f"{A14B_SHIFT:g} on both; {A14B_SAMPLER} / {A14B_SCHEDULER} (one model call per step, so the hand-over "
        "between the two samplers is exact).",
        "",
        "The high-noise expert lays out motion and composition, the low-noise expert the detail. They hand over "
        "where the noise falls below the boundary 0.900 (Wan2.2's rule): the Expert Split node computes that step "
        "from the model's own schedule (15 of 40 here; ComfyUI's template fixes 10 of 20, which is not it) and "
        "feeds end_at_step / start_at_step and steps of both samplers.",
        "",
        "The two experts never need to be in VRAM together: each sampler uses one, and ComfyUI loads a sampler's "
        "model when that sampler starts, moving the other out when both do not fit.",
        "",
        "Faster, at some cost in quality:",
        "- The 4-step workflow (two_stage_wan22_i2v_a14b_480p_4step) with the lightx2v LoRA pair.",
        "- 20 to 30 steps here: change steps on the Expert Split node only.",
        "- Fewer frames on the Stage Bridge: 49 (3 s) or 33 (2 s). Keep 4n+1.",
        "- Q3_K_S experts when one expert does not fit in VRAM.",
        "- Text encoder device 'cpu' frees VRAM for the video model.",
        "",
        f"CreateVideo's fps and the Stage Bridge's fps should match ({WAN_FPS:g} for Wan 2.2 A14B).",
    ])


def ti2v_note() -> str:
    return "\n".join([
        "Defaults = Wan 2.2's official TI2V 5B setup: "
        f"{TI2V_FRAMES} frames at {TI2V_FPS:g} fps (about 5 s), 1280x704, {TI2V_STEPS} steps, CFG {TI2V_CFG:g}, "
        f"shift {TI2V_SHIFT:g}, {WAN_SAMPLER} / {WAN_SCHEDULER}. One 5B model does both text-to-video and "
        "image-to-video: Wan22ImageToVideoLatent encodes the start frame with the Wan 2.2 VAE (48 latent channels, "
        "16x16 pixels per latent, so sizes are multiples of 32).",
        "",
        "Faster, at some cost in quality:",
        "- 20 to 30 steps (ComfyUI's template: 20 steps, shift 8).",
        "- Fewer frames on the Stage Bridge: 73 (3 s) or 49 (2 s) at 24 fps. Keep 4n+1.",
        "- Q8_0 (about 5.4 GB) looks closer to the original, Q3_K_M is smaller.",
        "- Text encoder device 'cpu' frees VRAM for the video model.",
        "",
        f"CreateVideo's fps and the Stage Bridge's fps should match ({TI2V_FPS:g} for the 5B).",
    ])


A14B_QUANTS = ("Each expert is about 9.7 GB at Q4_K_M (Q3_K_S about 7 GB, Q8_0 about 15 GB); the two experts "
               "must be the same pair (Wan 2.2 I2V A14B high noise + low noise).")
TI2V_QUANTS = "The 5B is about 3.4 GB at Q4_K_M; Q5_K_M, Q6_K and Q8_0 (about 5.4 GB) look closer to the original."


# -- the workflows -------------------------------------------------------------

@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    title: str
    stage1: bool
    target: str
    resolution: str  # "480p" or "720p"
    model: str = "wan2.1"  # "wan2.1", "wan2.2-a14b" (two experts) or "wan2.2-ti2v-5b"
    fast: bool = False  # the lightx2v 4-step LoRA(s), cfg 1


WORKFLOWS = (
    WorkflowSpec("two_stage_i2v_480p", "Two-stage: SDXL still -> Wan 2.1 I2V 480p", True, "832x480 (480p)", "480p"),
    WorkflowSpec("two_stage_i2v_480p_portrait", "Two-stage portrait: SDXL still -> Wan 2.1 I2V 480x832", True,
                 "480x832 (480p portrait)", "480p"),
    WorkflowSpec("i2v_from_image_480p", "Your image -> Wan 2.1 I2V 480p", False, "832x480 (480p)", "480p"),
    WorkflowSpec("two_stage_i2v_720p", "Two-stage: SDXL still -> Wan 2.1 I2V 720p", True, "1280x720 (720p)", "720p"),
    WorkflowSpec("two_stage_wan22_i2v_a14b_480p", "Two-stage: SDXL still -> Wan 2.2 I2V A14B 480p (two experts)",
                 True, "832x480 (480p)", "480p", model="wan2.2-a14b"),
    WorkflowSpec("two_stage_wan22_ti2v_5b_720p", "Two-stage: SDXL still -> Wan 2.2 TI2V 5B, 1280x704 at 24 fps",
                 True, "1280x704 (5B)", "720p", model="wan2.2-ti2v-5b"),
    WorkflowSpec("two_stage_i2v_480p_4step", "Two-stage, 4 steps: SDXL still -> Wan 2.1 I2V 480p + lightx2v LoRA",
                 True, "832x480 (480p)", "480p", fast=True),
    WorkflowSpec("two_stage_wan22_i2v_a14b_480p_4step",
                 "Two-stage, 4 steps: SDXL still -> Wan 2.2 I2V A14B 480p + lightx2v LoRA pair", True,
                 "832x480 (480p)", "480p", model="wan2.2-a14b", fast=True),
)
SPEC_BY_NAME = {s.name: s for s in WORKFLOWS}


def _still_and_bridge(g: GraphBuilder, spec: "WorkflowSpec", tw: int, th: int, frames: int = WAN_FRAMES,
                      fps: float = WAN_FPS):
    """Stage 1 (SDXL still, Stage Plan) and the Stage Bridge, or LoadImage and the bridge; returns
    (bridge, stage-1 nodes, bridge group nodes, stage-2 x, stage-2 y)."""
    P = (0, 0)  # placed by the column stacks
    stage1_nodes: list = []
    x = 0
    if spec.stage1:
        ckpt = g.add("CheckpointLoaderSimple", P, title="Load SDXL / Illustrious XL checkpoint",
                     models=[MODEL_FILES["sdxl"]], ckpt_name=MODEL_FILES["sdxl"].name)
        lora = g.add("LoraLoader", P, title="Character LoRA (optional: pick it, then Ctrl+B to enable)",
                     mode=4, lora_name=LORA_PLACEHOLDER, strength_model=0.8, strength_clip=0.8)
        plan = g.add("TwoStageI2V_StagePlan", P, title="Stage Plan (pick the video size here)",
                     target=spec.target, width=tw, height=th)
        pos = g.add("CLIPTextEncode", P, title="Still: positive prompt", size=(420, 200),
                    colors=POSITIVE_COLORS, text=STAGE1_POSITIVE)
        neg = g.add("CLIPTextEncode", P, title="Still: negative prompt", size=(420, 150),
                    colors=NEGATIVE_COLORS, text=STAGE1_NEGATIVE)
        # Shown on the linked EmptyLatentImage widgets: what the Stage Plan node computes at run time.
        s1w, s1h = stage1_size(tw, th)
        latent = g.add("EmptyLatentImage", P, title="Still size (from Stage Plan)", width=s1w, height=s1h,
                       batch_size=1)
        ks1 = g.add("KSampler", P, title="KSampler (still)", seed=STAGE1_SEED, steps=SDXL_STEPS,
                    cfg=SDXL_CFG, sampler_name=SDXL_SAMPLER, scheduler=SDXL_SCHEDULER, denoise=1.0)
        dec1 = g.add("VAEDecode", P)
        preview = g.add("PreviewImage", P, title="The still", size=(320, 320))
        g.connect(ckpt, "MODEL", lora, "model")
        g.connect(ckpt, "CLIP", lora, "clip")
        g.connect(lora, "MODEL", ks1, "model")
        g.connect(lora, "CLIP", pos, "clip")
        g.connect(lora, "CLIP", neg, "clip")
        g.connect(plan, "stage1_width", latent, "width")
        g.connect(plan, "stage1_height", latent, "height")
        g.connect(pos, 0, ks1, "positive")
        g.connect(neg, 0, ks1, "negative")
        g.connect(latent, 0, ks1, "latent_image")
        g.connect(ks1, 0, dec1, "samples")
        g.connect(ckpt, "VAE", dec1, "vae")
        g.connect(dec1, 0, preview, "images")
        g.stack(x, [ckpt, lora, plan])
        g.stack(x + 380, [pos, neg, latent])
        g.stack(x + 840, [ks1, dec1])
        g.stack(x + 1195, [preview])
        stage1_nodes = [ckpt, lora, plan, pos, neg, latent, ks1, dec1, preview]
        x += 1600
        bridge = g.add("TwoStageI2V_StageBridge", P, title="Stage Bridge (still → Wan frame)",
                       target="custom", width=tw, height=th, fit="crop", frames=frames, fps=fps)
        g.connect(dec1, 0, bridge, "image")
        g.connect(plan, "width", bridge, "width")
        g.connect(plan, "height", bridge, "height")
        g.stack(x, [bridge])
        bridge_group = [bridge]
        x, y2 = 0, 1000  # stage 2 on a second row: the whole graph fits a screen (and a thumbnail)
    else:
        load = g.add("LoadImage", P, title="Your start image", size=(320, 360), image=START_IMAGE)
        bridge = g.add("TwoStageI2V_StageBridge", P, title="Stage Bridge (image → Wan frame)",
                       target=spec.target, fit="crop", frames=frames, fps=fps)
        g.connect(load, "IMAGE", bridge, "image")
        g.stack(x, [load])
        g.stack(x + 360, [bridge])
        bridge_group = [load, bridge]
        x, y2 = 800, 60
    return bridge, stage1_nodes, bridge_group, x, y2


def build_workflow(spec: WorkflowSpec, object_info: dict) -> dict:
    if spec.model != "wan2.1":
        return _build_wan22(spec, object_info)
    g = GraphBuilder(object_info, spec.name)
    wan_model = MODEL_FILES["wan_720p" if spec.resolution == "720p" else "wan_480p"]
    tw, th = target_size(spec.target)
    P = (0, 0)  # placed by the column stacks below
    models = [MODEL_FILES["sdxl"]] if spec.stage1 else []
    models += [wan_model, MODEL_FILES["umt5"], MODEL_FILES["clip_vision"], MODEL_FILES["vae"]]
    models += [MODEL_FILES["lora21_4step"]] if spec.fast else []

    bridge, stage1_nodes, bridge_group, x, y2 = _still_and_bridge(g, spec, tw, th)

    unet = g.add("TwoStageI2V_WanI2VLoaderGGUF", P, models=[wan_model], unet_name=wan_model.name)
    speed_lora = _speed_lora(g, MODEL_FILES["lora21_4step"], "lightx2v 4-step LoRA") if spec.fast else None
    te = g.add("TwoStageI2V_TextEncoderGGUF", P, models=[MODEL_FILES["umt5"]],
               clip_name=MODEL_FILES["umt5"].name, device="default")
    cvl = g.add("CLIPVisionLoader", P, models=[MODEL_FILES["clip_vision"]], clip_name=MODEL_FILES["clip_vision"].name)
    vae = g.add("VAELoader", P, title="Load Wan VAE", models=[MODEL_FILES["vae"]], vae_name=MODEL_FILES["vae"].name)
    cve = g.add("CLIPVisionEncode", P, crop="none")
    motion = g.add("TwoStageI2V_MotionPrompt", P, size=(420, 440), colors=POSITIVE_COLORS, motion=MOTION,
                   camera="none", pace="natural", lint="warn")
    i2v = g.add("WanImageToVideo", P, width=tw, height=th, length=WAN_FRAMES, batch_size=1)
    if spec.fast:
        sampling = dict(steps=FAST_STEPS, cfg=FAST_CFG, sampler_name=FAST_SAMPLER, scheduler=FAST_SCHEDULER)
    else:
        sampling = dict(steps=WAN_STEPS, cfg=WAN_CFG, sampler_name=WAN_SAMPLER, scheduler=WAN_SCHEDULER)
    msd3 = g.add("ModelSamplingSD3", P, title="ModelSamplingSD3 (Wan shift)",
                 shift=FAST_SHIFT if spec.fast else WAN_SHIFT[spec.resolution])
    ks2 = g.add("KSampler", P, title="KSampler (Wan I2V)", seed=STAGE2_SEED, **sampling, denoise=1.0)
    dec2 = g.add("VAEDecode", P, title="VAE Decode (video)")
    video = g.add("CreateVideo", P, fps=WAN_FPS)
    save = g.add("SaveVideo", P, title="Save Video (MP4 carries the workflow)", size=(360, 400),
                 filename_prefix=f"video/{spec.name}", format="mp4", codec="auto")
    first = g.add("ImageFromBatch", P, title="First frame", batch_index=0, length=1)
    save_png = g.add("SaveImage", P, title="First frame PNG (carries the workflow too)", size=(360, 300),
                     filename_prefix=f"video/{spec.name}_first_frame")
    g.connect(te, 0, motion, "clip")
    g.connect(cvl, 0, cve, "clip_vision")
    g.connect(bridge, "image", cve, "image")
    g.connect(motion, "positive", i2v, "positive")
    g.connect(motion, "negative", i2v, "negative")
    g.connect(vae, 0, i2v, "vae")
    g.connect(cve, 0, i2v, "clip_vision_output")
    g.connect(bridge, "image", i2v, "start_image")
    g.connect(bridge, "width", i2v, "width")
    g.connect(bridge, "height", i2v, "height")
    g.connect(bridge, "length", i2v, "length")
    if speed_lora:
        g.connect(unet, 0, speed_lora, "model")
        g.connect(speed_lora, 0, msd3, "model")
    else:
        g.connect(unet, 0, msd3, "model")
    g.connect(msd3, 0, ks2, "model")
    g.connect(i2v, "positive", ks2, "positive")
    g.connect(i2v, "negative", ks2, "negative")
    g.connect(i2v, "latent", ks2, "latent_image")
    g.connect(ks2, 0, dec2, "samples")
    g.connect(vae, 0, dec2, "vae")
    g.connect(dec2, 0, video, "images")
    g.connect(video, 0, save, "video")
    g.connect(dec2, 0, first, "image")
    g.connect(first, 0, save_png, "images")
    loaders = [unet, speed_lora] if speed_lora else [unet]
    g.stack(x, [*loaders, te, cvl, vae, cve], y=y2)
    g.stack(x + 380, [motion], y=y2)
    g.stack(x + 840, [i2v, msd3, ks2], y=y2)
    g.stack(x + 1200, [dec2, video, save], y=y2)
    g.stack(x + 1600, [first, save_png], y=y2)
    stage2_nodes = [*loaders, te, cvl, vae, cve, motion, i2v, msd3, ks2, dec2, video, save, first, save_png]

    notes = [g.note(model_note(models, spec.stage1), P, (440, 400), title="Model files", markdown=True),
             g.note(fast_note(spec) if spec.fast else speed_note(spec.resolution), P, (440, 400),
                    title="Defaults and faster settings")]
    g.stack(-500, notes)

    if spec.stage1:
        g.group("Stage 1: image", stage1_nodes, STAGE_GROUP_COLOR["stage1"])
        g.group("Bridge", bridge_group, STAGE_GROUP_COLOR["bridge"])
    else:
        g.group("Start image and bridge", bridge_group, STAGE_GROUP_COLOR["bridge"])
    g.group("Stage 2: motion", stage2_nodes, STAGE_GROUP_COLOR["stage2"])
    return g.build()


def _speed_lora(g: GraphBuilder, lora: ModelFile, title: str) -> int:
    return g.add("LoraLoaderModelOnly", (0, 0), title=title, models=[lora], lora_name=lora.name,
                 strength_model=FAST_LORA_STRENGTH)


def _build_wan22(spec: WorkflowSpec, object_info: dict) -> dict:
    """Wan 2.2: the I2V A14B pair (two loaders, two ModelSamplingSD3, the Expert Split and two
    KSamplerAdvanced; WanImageToVideo without CLIP vision), or the TI2V 5B (Wan22ImageToVideoLatent and
    the Wan 2.2 VAE)."""
    g = GraphBuilder(object_info, spec.name)
    P = (0, 0)  # placed by the column stacks below
    tw, th = target_size(spec.target)
    a14b = spec.model == "wan2.2-a14b"
    frames, fps = CLIPS[spec.model]
    experts = [MODEL_FILES["wan22_high"], MODEL_FILES["wan22_low"]] if a14b else [MODEL_FILES["wan22_5b"]]
    speed_loras = [MODEL_FILES["lora22_high"], MODEL_FILES["lora22_low"]] if spec.fast else []
    vae_file = MODEL_FILES["vae"] if a14b else MODEL_FILES["vae22"]
    models = [MODEL_FILES["sdxl"]] if spec.stage1 else []
    models += [*experts, MODEL_FILES["umt5"], vae_file, *speed_loras]

    bridge, stage1_nodes, bridge_group, x, y2 = _still_and_bridge(g, spec, tw, th, frames, fps)

    te = g.add("TwoStageI2V_TextEncoderGGUF", P, models=[MODEL_FILES["umt5"]],
               clip_name=MODEL_FILES["umt5"].name, device="default")
    vae = g.add("VAELoader", P, title="Load Wan 2.1 VAE" if a14b else "Load Wan 2.2 VAE", models=[vae_file],
                vae_name=vae_file.name)
    motion = g.add("TwoStageI2V_MotionPrompt", P, size=(420, 440), colors=POSITIVE_COLORS, motion=MOTION,
                   camera="none", pace="natural", lint="warn")
    g.connect(te, 0, motion, "clip")
    if spec.fast:
        sampling = dict(steps=FAST_STEPS, cfg=FAST_CFG, sampler_name=FAST_SAMPLER, scheduler=FAST_SCHEDULER)
        shift = FAST_SHIFT
    elif a14b:
        sampling = dict(steps=A14B_STEPS, cfg=A14B_CFG, sampler_name=A14B_SAMPLER, scheduler=A14B_SCHEDULER)
        shift = A14B_SHIFT
    else:
        sampling = dict(steps=TI2V_STEPS, cfg=TI2V_CFG, sampler_name=WAN_SAMPLER, scheduler=WAN_SCHEDULER)
        shift = TI2V_SHIFT

    loaders, shifted = [], []
    sides = ("high noise", "low noise") if a14b else ("5B",)
    for i, (side, model_file) in enumerate(zip(sides, experts)):
        title = f"Load Wan 2.2 {side} expert (GGUF)" if a14b else "Load Wan 2.2 TI2V 5B (GGUF)"
        unet = g.add("TwoStageI2V_WanI2VLoaderGGUF", P, title=title, models=[model_file], unet_name=model_file.name)
        loaders.append(unet)
        last = unet
        if spec.fast:
            lora = _speed_lora(g, speed_loras[i], f"lightx2v 4-step LoRA ({side})")
            g.connect(unet, 0, lora, "model")
            loaders.append(lora)
            last = lora
        msd3 = g.add("ModelSamplingSD3", P, title=f"ModelSamplingSD3 ({side}, Wan shift)" if a14b
                     else "ModelSamplingSD3 (Wan shift)", shift=shift)
        g.connect(last, 0, msd3, "model")
        shifted.append(msd3)

    if a14b:
        i2v = g.add("WanImageToVideo", P, title="WanImageToVideo (no CLIP vision for 2.2)", width=tw, height=th,
                    length=frames, batch_size=1)
        switch = simple_schedule_switch(shift, sampling["steps"], BOUNDARIES["i2v"])  # shown on linked widgets
        split = g.add("TwoStageI2V_WanExpertSplit", P, steps=sampling["steps"],
                      sampler_name=sampling["sampler_name"], scheduler=sampling["scheduler"],
                      boundary=next(iter(BOUNDARY_CHOICES)), custom_boundary=BOUNDARIES["i2v"])
        common = dict(noise_seed=STAGE2_SEED, **sampling)
        ks_high = g.add("KSamplerAdvanced", P, title="KSamplerAdvanced (high-noise expert)", add_noise="enable",
                        **common, start_at_step=0, end_at_step=switch, return_with_leftover_noise="enable")
        ks_low = g.add("KSamplerAdvanced", P, title="KSamplerAdvanced (low-noise expert)", add_noise="disable",
                       **common, start_at_step=switch, end_at_step=10000, return_with_leftover_noise="disable")
        g.connect(motion, "positive", i2v, "positive")
        g.connect(motion, "negative", i2v, "negative")
        g.connect(vae, 0, i2v, "vae")
        g.connect(bridge, "image", i2v, "start_image")
        g.connect(bridge, "width", i2v, "width")
        g.connect(bridge, "height", i2v, "height")
        g.connect(bridge, "length", i2v, "length")
        g.connect(shifted[0], 0, split, "model")
        g.connect(shifted[1], 0, split, "low_noise_model")
        for ks, model in ((ks_high, shifted[0]), (ks_low, shifted[1])):
            g.connect(model, 0, ks, "model")
            g.connect(i2v, "positive", ks, "positive")
            g.connect(i2v, "negative", ks, "negative")
            g.connect(split, "steps", ks, "steps")
        g.connect(i2v, "latent", ks_high, "latent_image")
        g.connect(ks_high, 0, ks_low, "latent_image")
        g.connect(split, "switch_step", ks_high, "end_at_step")
        g.connect(split, "switch_step", ks_low, "start_at_step")
        conditioning, samplers, last_sampler = [i2v, *shifted, split], [ks_high, ks_low], ks_low
    else:
        latent = g.add("Wan22ImageToVideoLatent", P, width=tw, height=th, length=frames, batch_size=1)
        ks = g.add("KSampler", P, title="KSampler (Wan 2.2 TI2V 5B)", seed=STAGE2_SEED, **sampling, denoise=1.0)
        g.connect(vae, 0, latent, "vae")
        g.connect(bridge, "image", latent, "start_image")
        g.connect(bridge, "width", latent, "width")
        g.connect(bridge, "height", latent, "height")
        g.connect(bridge, "length", latent, "length")
        g.connect(shifted[0], 0, ks, "model")
        g.connect(motion, "positive", ks, "positive")
        g.connect(motion, "negative", ks, "negative")
        g.connect(latent, 0, ks, "latent_image")
        conditioning, samplers, last_sampler = [latent, *shifted], [ks], ks

    dec2 = g.add("VAEDecode", P, title="VAE Decode (video)")
    video = g.add("CreateVideo", P, fps=fps)
    save = g.add("SaveVideo", P, title="Save Video (MP4 carries the workflow)", size=(360, 400),
                 filename_prefix=f"video/{spec.name}", format="mp4", codec="auto")
    first = g.add("ImageFromBatch", P, title="First frame", batch_index=0, length=1)
    save_png = g.add("SaveImage", P, title="First frame PNG (carries the workflow too)", size=(360, 300),
                     filename_prefix=f"video/{spec.name}_first_frame")
    g.connect(last_sampler, 0, dec2, "samples")
    g.connect(vae, 0, dec2, "vae")
    g.connect(dec2, 0, video, "images")
    g.connect(video, 0, save, "video")
    g.connect(dec2, 0, first, "image")
    g.connect(first, 0, save_png, "images")
    g.stack(x, [*loaders, te, vae], y=y2)
    g.stack(x + 380, [motion], y=y2)
    g.stack(x + 840, conditioning, y=y2)
    g.stack(x + 1200, samplers, y=y2)
    g.stack(x + 1560, [dec2, video, save], y=y2)
    g.stack(x + 1960, [first, save_png], y=y2)
    stage2_nodes = [*loaders, te, vae, motion, *conditioning, *samplers, dec2, video, save, first, save_png]

    quants = A14B_QUANTS if a14b else TI2V_QUANTS
    speed = fast_note(spec) if spec.fast else (a14b_note() if a14b else ti2v_note())
    notes = [g.note(model_note(models, spec.stage1, quants), P, (440, 440), title="Model files", markdown=True),
             g.note(speed, P, (440, 440), title="Defaults and faster settings")]
    g.stack(-500, notes)
    if spec.stage1:
        g.group("Stage 1: image", stage1_nodes, STAGE_GROUP_COLOR["stage1"])
        g.group("Bridge", bridge_group, STAGE_GROUP_COLOR["bridge"])
    else:
        g.group("Start image and bridge", bridge_group, STAGE_GROUP_COLOR["bridge"])
    g.group("Stage 2: motion", stage2_nodes, STAGE_GROUP_COLOR["stage2"])
    return g.build()


def build_all(object_info: dict) -> dict[str, dict]:
    return {spec.name: build_workflow(spec, object_info) for spec in WORKFLOWS}


# -- variants (the demo and the tests run the shipped workflows small) ----------

def find_nodes(workflow: dict, node_type: str) -> list[dict]:
    return [n for n in workflow["nodes"] if n["type"] == node_type]


def set_widget(workflow: dict, node: dict, name: str, value, object_info: dict) -> None:
    """Set one widget value by input name, unlinking the widget if something fed it."""
    layout = widget_layout(object_info[node["type"]], node.get("widgets_values"))
    index = next((i for i, s in enumerate(layout) if s.name == name), None)
    if index is None:
        raise BuildError(f"{node['type']} has no widget {name!r}")
    node["widgets_values"][index] = value
    for pos, inp in enumerate(list(node.get("inputs") or [])):
        if inp.get("name") == name and "widget" in inp:
            lid = inp.get("link")
            if lid is not None:
                _remove_link(workflow, lid)
            # A converted widget with no link is dropped from inputs, as a fresh node would have it.
            node["inputs"].pop(pos)
            _renumber_target_slots(workflow, node)
            break


def _remove_link(workflow: dict, lid: int) -> None:
    workflow["links"] = [link for link in workflow["links"] if link[0] != lid]
    for n in workflow["nodes"]:
        for out in n.get("outputs") or []:
            if out.get("links") and lid in out["links"]:
                out["links"] = [x for x in out["links"] if x != lid] or None


def _renumber_target_slots(workflow: dict, node: dict) -> None:
    slot_of = {inp["link"]: i for i, inp in enumerate(node.get("inputs") or []) if inp.get("link") is not None}
    for link in workflow["links"]:
        if link[3] == node["id"] and link[0] in slot_of:
            link[4] = slot_of[link[0]]


@dataclass(frozen=True)
class SmallRun:
    """Sizes a CPU can run in minutes instead of hours (832x480x81 at 40 steps is hours on a CPU)."""

    still: tuple = (128, 128)
    video: tuple = (64, 64)
    frames: int = 9
    steps: int = 2


# What a small run changes, node type by node type. A node type in none of these tables stops
# small_variant with a message: a workflow that cannot be run small is never run big by accident.
# (node type, widget) -> the MODEL_FILES key a loader falls back to when the file it names is not one
# the caller gave a stand-in for (None: no fallback, the file's own key must have one).
SMALL_RUN_MODELS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "sdxl",
    ("TwoStageI2V_WanI2VLoaderGGUF", "unet_name"): "wan_480p",
    ("TwoStageI2V_TextEncoderGGUF", "clip_name"): "umt5",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoaderModelOnly", "lora_name"): None,
    ("LoraLoader", "lora_name"): None,
}
# Node types whose sizes or steps the small run sets (see small_variant).
SMALL_RUN_SIZED = ("EmptyLatentImage", "TwoStageI2V_StagePlan", "TwoStageI2V_StageBridge", "KSampler",
                   "KSamplerAdvanced", "TwoStageI2V_WanExpertSplit", "WanImageToVideo", "Wan22ImageToVideoLatent")
# Node types that cost the same at any size, or take their size from a node above.
SMALL_RUN_AS_IS = ("CLIPTextEncode", "VAEDecode", "PreviewImage", "CLIPVisionEncode", "TwoStageI2V_MotionPrompt",
                   "ModelSamplingSD3", "CreateVideo", "SaveVideo", "ImageFromBatch", "SaveImage", "LoadImage")


def _linked(node: dict, name: str) -> bool:
    return any(i.get("name") == name and i.get("link") is not None for i in node.get("inputs") or [])


def small_variant(workflow: dict, object_info: dict, model_names: dict, run: SmallRun = SmallRun(),
                  name: str = "the workflow") -> dict:
    """A shipped workflow with model file names swapped and CPU-size overrides, still a UI workflow.

    ``model_names``: keys of ``MODEL_FILES`` -> file name. A loader naming a ``MODEL_FILES`` file gets that
    key's replacement; one whose key is not given falls back to its node type's key ("sdxl", "wan_480p",
    "umt5", "clip_vision", "vae"), so workflow 1's five keys also serve the other Wan 2.1 workflows.
    Raises ``BuildError`` for a node the small run does not know how to shrink, or a model with no stand-in.
    """
    wf = copy.deepcopy(workflow)
    known = {t for t, _ in SMALL_RUN_MODELS} | set(SMALL_RUN_SIZED) | set(SMALL_RUN_AS_IS) | set(FRONTEND_ONLY)
    active = [n for n in wf["nodes"] if n.get("mode", 0) == 0]
    unknown = sorted({n["type"] for n in active} - known)
    if unknown:
        raise BuildError(f"{name}: cannot run small: node type(s) {unknown} are not in workflow.build's "
                         "SMALL_RUN_MODELS, SMALL_RUN_SIZED or SMALL_RUN_AS_IS; say there how a small run treats them")
    key_of_file = {m.name: key for key, m in MODEL_FILES.items()}
    for (node_type, widget), fallback in SMALL_RUN_MODELS.items():
        for node in find_nodes(wf, node_type):
            if node.get("mode", 0) != 0:
                continue  # bypassed or muted: it loads nothing
            current = widget_values_by_name(object_info[node_type], node["widgets_values"]).get(widget)
            key = key_of_file.get(current)
            key = key if key in model_names else fallback
            if key not in model_names:
                raise BuildError(f"{name}: cannot run small: node {node['id']} ({node_type}) loads {current!r} "
                                 f"and the small run has no stand-in for it (given: {sorted(model_names)})")
            set_widget(wf, node, widget, model_names[key], object_info)
            node["properties"].pop("models", None)  # the downloads list names the real files
    for node in find_nodes(wf, "EmptyLatentImage"):
        set_widget(wf, node, "width", run.still[0], object_info)
        set_widget(wf, node, "height", run.still[1], object_info)
    for node in find_nodes(wf, "TwoStageI2V_StagePlan"):
        set_widget(wf, node, "target", "custom", object_info)
        set_widget(wf, node, "width", run.video[0], object_info)
        set_widget(wf, node, "height", run.video[1], object_info)
    for node in find_nodes(wf, "TwoStageI2V_StageBridge"):
        set_widget(wf, node, "frames", run.frames, object_info)
        if not _linked(node, "width"):
            set_widget(wf, node, "target", "custom", object_info)
            set_widget(wf, node, "width", run.video[0], object_info)
            set_widget(wf, node, "height", run.video[1], object_info)
    for node in find_nodes(wf, "WanImageToVideo") + find_nodes(wf, "Wan22ImageToVideoLatent"):
        for widget, value in (("width", run.video[0]), ("height", run.video[1]), ("length", run.frames)):
            if not _linked(node, widget):
                set_widget(wf, node, widget, value, object_info)
    for node in find_nodes(wf, "KSampler"):
        set_widget(wf, node, "steps", run.steps, object_info)
    # Wan 2.2 A14B: the Expert Split's steps feed both KSamplerAdvanced nodes.
    for node in find_nodes(wf, "TwoStageI2V_WanExpertSplit") + find_nodes(wf, "KSamplerAdvanced"):
        if not _linked(node, "steps"):
            set_widget(wf, node, "steps", run.steps, object_info)
    return wf


def dump_json(data) -> str:
    """The text the workflow files are written with (stable, readable diffs)."""
    import json

    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
