"""UI-format workflows (what the ComfyUI frontend saves) to API-format prompts
(what ``POST /prompt`` runs), using the node definitions of ``/object_info``.

The frontend keeps widget values as a positional list (``widgets_values``);
which value belongs to which input follows from the node definition: the
widget inputs in definition order (required, then optional), each followed by
the frontend's extra values: the ``control_after_generate`` combo after a seed,
the upload button after an ``image_upload`` combo, and the inputs of the
selected option after a dynamic combo. This module is the one place that walks
that layout; the builder and the validator use it too.

Frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode) never reach the
API prompt: a Reroute passes its input through, a PrimitiveNode's value becomes
the widget value of what it feeds. Muted nodes (mode 2) are dropped with their
outputs; bypassed ones (mode 4) connect each output to the input of the same
type, as the frontend does. Groups are layout only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .shape import describe, ui_problems

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
FRONTEND_ONLY = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "mesh_upload")
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4


class ConversionError(ValueError):
    pass


@dataclass
class InputSpec:
    name: str
    type: str  # "INT", "COMBO", "IMAGE", ...
    options: dict = field(default_factory=dict)
    optional: bool = False
    choices: list | None = None  # combo values
    dynamic: list | None = None  # dynamic combo: [{"key": ..., "inputs": {...}}]

    @property
    def is_widget(self) -> bool:
        if self.options.get("forceInput"):
            return False
        return self.type in WIDGET_TYPES or self.type == DYNAMIC_COMBO


@dataclass
class WidgetSlot:
    """One entry of ``widgets_values``: an input's value or a frontend extra."""

    name: str  # API input name ("seed", "codec.encoding") or "<name>:control" / "<name>:upload"
    kind: str  # "value", "control" or "upload"
    spec: InputSpec


def _parse_input(name: str, raw, optional: bool) -> InputSpec:
    if not isinstance(raw, (list, tuple)) or not raw:
        return InputSpec(name, str(raw), {}, optional)
    head = raw[0]
    opts = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
    if isinstance(head, (list, tuple)):  # classic combo: [[choices], {...}]
        return InputSpec(name, "COMBO", opts, optional, choices=list(head))
    if head == "COMBO":
        return InputSpec(name, "COMBO", opts, optional, choices=list(opts.get("options", [])))
    if head == DYNAMIC_COMBO:
        return InputSpec(name, DYNAMIC_COMBO, opts, optional, choices=[o["key"] for o in opts.get("options", [])],
                         dynamic=list(opts.get("options", [])))
    return InputSpec(name, str(head), opts, optional)


def _section_specs(inputs: dict, order: dict | None, prefix: str = "") -> list[InputSpec]:
    specs = []
    for section, optional in (("required", False), ("optional", True)):
        entries = inputs.get(section) or {}
        names = (order or {}).get(section) or list(entries)
        for name in names:
            if name in entries:
                specs.append(_parse_input(prefix + name, entries[name], optional))
    return specs


def input_specs(node_def: dict) -> list[InputSpec]:
    """The node's inputs in definition order (required, then optional)."""
    return _section_specs(node_def.get("input") or {}, node_def.get("input_order"))


def widget_layout(node_def: dict, values: list | None = None) -> list[WidgetSlot]:
    """The meaning of each ``widgets_values`` position for this definition.

    ``values`` picks the option of a dynamic combo (its nested widgets follow it);
    without values, each dynamic combo's default (or first) option is assumed.
    """
    layout: list[WidgetSlot] = []

    def walk(specs: list[InputSpec]):
        for spec in specs:
            if not spec.is_widget:
                continue
            pos = len(layout)
            layout.append(WidgetSlot(spec.name, "value", spec))
            if spec.options.get("control_after_generate"):
                layout.append(WidgetSlot(spec.name + ":control", "control", spec))
            if any(spec.options.get(flag) for flag in UPLOAD_FLAGS):
                layout.append(WidgetSlot(spec.name + ":upload", "upload", spec))
            if spec.dynamic is not None:
                chosen = values[pos] if values is not None and pos < len(values) else spec.options.get("default")
                option = next((o for o in spec.dynamic if o.get("key") == chosen), None)
                if option is None and values is None and spec.dynamic:
                    option = spec.dynamic[0]
                if option is not None:
                    walk(_section_specs(option.get("inputs") or {}, None, prefix=spec.name + "."))

    walk(input_specs(node_def))
    return layout


def widget_values_by_name(node_def: dict, values: list) -> dict:
    """API input name -> value for the widget values of one UI node (extras dropped)."""
    out = {}
    for slot, value in zip(widget_layout(node_def, values), values):
        if slot.kind == "value":
            out[slot.name] = value
    return out


def is_ui_workflow(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def is_api_prompt(data) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def link_table(workflow: dict) -> dict[int, dict]:
    """Link id -> {origin_id, origin_slot, target_id, target_slot, type}; accepts both link encodings."""
    table = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            lid = link["id"]
            table[lid] = {"origin_id": link["origin_id"], "origin_slot": link["origin_slot"],
                          "target_id": link["target_id"], "target_slot": link["target_slot"], "type": link.get("type")}
        else:
            lid, oid, oslot, tid, tslot, ltype = (list(link) + [None] * 6)[:6]
            table[lid] = {"origin_id": oid, "origin_slot": oslot, "target_id": tid, "target_slot": tslot, "type": ltype}
    return table


def types_overlap(a, b) -> bool:
    """Whether an output of type ``a`` may feed an input of type ``b``: "*" takes anything,
    and "A,B" is either."""
    if "*" in (a, b):
        return True
    return bool(set(str(a).split(",")) & set(str(b).split(",")))


def _types_match(a, b) -> bool:
    # A saved socket without a type matches anything (the frontend leaves some untyped).
    return a in (None, "") or b in (None, "") or types_overlap(a, b)


class _Resolver:
    """Follows a link back to the API node output (or literal value) that feeds an input."""

    def __init__(self, workflow: dict):
        self.nodes = {n["id"]: n for n in workflow.get("nodes") or []}
        self.links = link_table(workflow)

    def source(self, link_id, depth: int = 0):
        """("link", [node_id_str, slot]) or ("value", v) or (None, None) when nothing arrives."""
        if depth > 256:
            raise ConversionError(f"link {link_id}: reroute/bypass chain too long (a cycle?)")
        link = self.links.get(link_id)
        if link is None:
            raise ConversionError(f"link {link_id} is referenced by a node but missing from the workflow's links")
        node = self.nodes.get(link["origin_id"])
        if node is None:
            raise ConversionError(f"link {link_id} comes from node {link['origin_id']}, which is not in the workflow")
        mode = node.get("mode", MODE_ALWAYS)
        ntype = node.get("type")
        if ntype == "Reroute":
            upstream = (node.get("inputs") or [{}])[0].get("link")
            return (None, None) if upstream is None else self.source(upstream, depth + 1)
        if ntype == "PrimitiveNode":
            vals = node.get("widgets_values") or []
            return ("value", vals[0]) if vals else (None, None)
        if mode == MODE_NEVER:
            return None, None
        if mode == MODE_BYPASS:
            return self._through_bypass(node, link, depth)
        return "link", [str(node["id"]), link["origin_slot"]]

    def _through_bypass(self, node: dict, link: dict, depth: int):
        # The frontend's rule: the input at the same index if its type fits, else the first input of that type.
        outputs = node.get("outputs") or []
        slot = link["origin_slot"]
        out_type = outputs[slot].get("type") if slot < len(outputs) else link.get("type")
        inputs = node.get("inputs") or []
        candidates = []
        if slot < len(inputs):
            candidates.append(inputs[slot])
        candidates += inputs
        for inp in candidates:
            if inp.get("link") is not None and _types_match(inp.get("type"), out_type) and "widget" not in inp:
                return self.source(inp["link"], depth + 1)
        return None, None


def ui_to_api(workflow: dict, object_info: dict, *, meta_titles: bool = True) -> dict:
    """The API prompt the frontend would queue for this UI workflow."""
    if not is_ui_workflow(workflow):
        raise ConversionError("not a UI-format workflow (no 'nodes' and 'links'); is it already an API prompt?")
    problems = ui_problems(workflow)
    if problems:
        raise ConversionError(f"malformed UI workflow: {describe(problems)}")
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise ConversionError("workflows with subgraphs are not supported by this converter; unpack them in the frontend")
    resolver = _Resolver(workflow)
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: n.get("order", 0)):
        ntype = node.get("type")
        if ntype in FRONTEND_ONLY or node.get("mode", MODE_ALWAYS) in (MODE_NEVER, MODE_BYPASS):
            continue
        node_def = object_info.get(ntype)
        if node_def is None:
            raise ConversionError(f"node {node['id']}: unknown node type {ntype!r} (not in this ComfyUI's /object_info; "
                                  "is its custom-node package installed?)")
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):  # some custom frontends save a name -> value dict
            inputs = dict(node["widgets_values"])
        else:
            inputs = widget_values_by_name(node_def, values)
        for inp in node.get("inputs") or []:
            name = inp.get("name")
            if inp.get("link") is None:
                continue
            kind, value = resolver.source(inp["link"])
            if kind is None:
                if "widget" not in inp:
                    inputs.pop(name, None)
                continue
            inputs[name] = value
        entry = {"inputs": inputs, "class_type": ntype}
        if meta_titles:
            entry["_meta"] = {"title": node.get("title") or node_def.get("display_name") or ntype}
        prompt[str(node["id"])] = entry
    return prompt
