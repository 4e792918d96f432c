"""Check a UI- or API-format workflow against a ComfyUI's node definitions.

Static checks only: nothing from the file is executed. Reports unknown node
types, widget values of the wrong count, type, range or choice, dangling or
mistyped links and unconnected required inputs, and lists the model files the
workflow needs with their folders and whether that ComfyUI has them. A missing
model file is not an error (the workflow is still well formed), it is a need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import shape
from .convert import (CONTROL_VALUES, DYNAMIC_COMBO, FRONTEND_ONLY, MODE_ALWAYS, ConversionError, InputSpec,
                      input_specs, link_table, types_overlap, ui_to_api, widget_layout)
from .shape import short

MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin", ".pt2", ".onnx")
# (node type, input) -> folder, for combos whose choices are files.
FILE_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("VAELoader", "vae_name"): "vae",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("TwoStageI2V_WanI2VLoaderGGUF", "unet_name"): "diffusion_models",
    ("TwoStageI2V_TextEncoderGGUF", "clip_name"): "text_encoders",
    ("LoadImage", "image"): "input",
}


@dataclass
class Finding:
    level: str  # "error" or "warning"
    message: str
    node: str | None = None

    def __str__(self):
        return f"node {self.node}: {self.message}" if self.node is not None else self.message


@dataclass
class FileNeed:
    folder: str
    name: str
    present: bool
    node: str
    node_type: str
    required: bool = True  # False when the node is muted or bypassed
    url: str | None = None


@dataclass
class Report:
    format: str  # "ui" or "api"
    nodes: int = 0
    links: int = 0
    findings: list = field(default_factory=list)
    files: list = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def missing_files(self) -> list[FileNeed]:
        return [f for f in self.files if f.required and not f.present]

    def error(self, message, node=None):
        self.findings.append(Finding("error", message, None if node is None else str(node)))

    def warning(self, message, node=None):
        self.findings.append(Finding("warning", message, None if node is None else str(node)))

    def as_dict(self) -> dict:
        return {
            "format": self.format, "valid": self.ok, "nodes": self.nodes, "links": self.links,
            "errors": [str(f) for f in self.errors], "warnings": [str(f) for f in self.warnings],
            "files": [f.__dict__ for f in self.files],
        }


# -- values ----------------------------------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_value(spec: InputSpec, value) -> str | None:
    """Why ``value`` does not fit the widget, or None."""
    opts = spec.options
    if spec.type == "INT":
        if not _is_number(value) or (isinstance(value, float) and not value.is_integer()):
            return f"{spec.name}: {short(value)} is not an integer"
    elif spec.type == "FLOAT":
        if not _is_number(value):
            return f"{spec.name}: {short(value)} is not a number"
    elif spec.type == "STRING":
        if not isinstance(value, str):
            return f"{spec.name}: {short(value)} is not a string"
        return None
    elif spec.type == "BOOLEAN":
        if not isinstance(value, bool):
            return f"{spec.name}: {short(value)} is not true/false"
        return None
    elif spec.type in ("COMBO", DYNAMIC_COMBO):
        if opts.get("multiselect") and isinstance(value, list):
            bad = [v for v in value if v not in (spec.choices or [])]
            return f"{spec.name}: {short(bad)} not among the choices" if bad else None
        if value not in (spec.choices or []):
            shown = ", ".join(repr(c) for c in (spec.choices or [])[:12])
            more = "" if len(spec.choices or []) <= 12 else f", ... ({len(spec.choices)} in all)"
            return f"{spec.name}: {short(value)} is not one of the choices [{shown}{more}]"
        return None
    else:
        return None
    if "min" in opts and value < opts["min"]:
        return f"{spec.name}: {value} is below the minimum {opts['min']}"
    if "max" in opts and value > opts["max"]:
        return f"{spec.name}: {value} is above the maximum {opts['max']}"
    return None


def _file_folder(node_type: str, spec: InputSpec, value, properties: dict | None) -> str | None:
    """The models/ (or input/) folder when this combo picks a file, else None."""
    if (node_type, spec.name) in FILE_INPUTS:
        return FILE_INPUTS[(node_type, spec.name)]
    for m in (properties or {}).get("models") or []:
        if isinstance(m, dict) and m.get("name") == value:
            directory = m.get("directory")
            return directory if isinstance(directory, str) and directory else "?"
    if isinstance(value, str) and PurePosixPath(value).suffix.lower() in MODEL_EXTENSIONS:
        return "?"
    return None


def _check_widget(report: Report, node_id, node_type, spec, value, properties, required: bool) -> None:
    folder = _file_folder(node_type, spec, value, properties) if spec.type == "COMBO" else None
    if folder is not None and isinstance(value, str):
        present = value in (spec.choices or [])
        url = next((m.get("url") for m in (properties or {}).get("models") or []
                    if isinstance(m, dict) and m.get("name") == value and isinstance(m.get("url"), str)), None)
        report.files.append(FileNeed(folder, value, present, str(node_id), node_type, required, url))
        return
    problem = check_value(spec, value)
    if problem:
        report.error(f"{node_type}: {problem}", node_id)


# -- UI format -------------------------------------------------------------------

def _validate_ui(wf: dict, object_info: dict, report: Report) -> None:
    nodes = wf.get("nodes") or []
    report.nodes, report.links = len(nodes), len(wf.get("links") or [])
    subgraphs = {s.get("id") for s in ((wf.get("definitions") or {}).get("subgraphs") or [])}
    by_id = {}
    for node in nodes:
        if node.get("id") in by_id:
            report.error(f"duplicate node id {node.get('id')}")
        by_id[node.get("id")] = node
    links = link_table(wf)
    for node in nodes:
        nid, ntype = node.get("id"), node.get("type")
        mode = node.get("mode", MODE_ALWAYS)
        if ntype in FRONTEND_ONLY:
            continue
        if ntype in subgraphs:
            report.warning(f"subgraph node {ntype}: its inside is not checked", nid)
            continue
        node_def = object_info.get(ntype)
        if node_def is None:
            report.error(f"unknown node type {short(ntype)}: not in this ComfyUI (is its custom-node package installed?)",
                         nid)
            continue
        specs = {s.name: s for s in input_specs(node_def)}
        linked_widgets = {i.get("name") for i in node.get("inputs") or [] if "widget" in i and i.get("link") is not None}
        values = node.get("widgets_values")
        if isinstance(values, dict):
            values = None  # name -> value form: checked below by name
            for name, v in node["widgets_values"].items():
                if name in specs and specs[name].is_widget and name not in linked_widgets:
                    _check_widget(report, nid, ntype, specs[name], v, node.get("properties"), mode == MODE_ALWAYS)
        else:
            values = list(values or [])
            layout = widget_layout(node_def, values)
            for i, slot in enumerate(layout):
                if i >= len(values):
                    if slot.kind == "value" and not slot.spec.optional and slot.name not in linked_widgets:
                        report.error(f"{ntype}: expected {len(layout)} widget values, found {len(values)} "
                                     f"(no value for {slot.name!r}); was it saved by another version of this node?", nid)
                        break
                    continue
                v = values[i]
                if slot.kind == "control":
                    if v not in CONTROL_VALUES:
                        report.error(f"{ntype}: {slot.name} {short(v)} is not one of {list(CONTROL_VALUES)}; "
                                     "the widget values look shifted", nid)
                elif slot.kind == "value" and slot.name not in linked_widgets:
                    _check_widget(report, nid, ntype, slot.spec, v, node.get("properties"), mode == MODE_ALWAYS)
            if len(values) > len(layout):
                report.warning(f"{ntype}: {len(values) - len(layout)} extra widget value(s) at the end are ignored "
                               "(saved by a newer version of this node?)", nid)
        for slot_index, inp in enumerate(node.get("inputs") or []):
            name = inp.get("name")
            if name not in specs:
                report.error(f"{ntype}: input {short(name)} does not exist in this ComfyUI's definition", nid)
                continue
            if "widget" in inp and not specs[name].is_widget:
                report.error(f"{ntype}: input {name!r} is marked as a converted widget but is a socket", nid)
            lid = inp.get("link")
            if lid is None:
                continue
            link = links.get(lid)
            if link is None:
                report.error(f"{ntype}: input {name!r} refers to link {lid}, which does not exist (dangling)", nid)
                continue
            if link["target_id"] != nid or link["target_slot"] != slot_index:
                report.error(f"link {lid} says it ends at node {link['target_id']} slot {link['target_slot']}, "
                             f"but node {nid} slot {slot_index} ({name}) uses it", nid)
    for lid, link in links.items():
        src, dst = by_id.get(link["origin_id"]), by_id.get(link["target_id"])
        if src is None or dst is None:
            missing = link["origin_id"] if src is None else link["target_id"]
            report.error(f"link {lid} connects node {missing}, which is not in the workflow (dangling)")
            continue
        outs = src.get("outputs") or []
        if not isinstance(link["origin_slot"], int) or not 0 <= link["origin_slot"] < len(outs):
            report.error(f"link {lid} leaves output slot {link['origin_slot']} of node {src['id']} ({src['type']}), "
                         f"which has {len(outs)} outputs")
            continue
        ins = dst.get("inputs") or []
        if not isinstance(link["target_slot"], int) or not 0 <= link["target_slot"] < len(ins):
            report.error(f"link {lid} enters input slot {link['target_slot']} of node {dst['id']} ({dst['type']}), "
                         f"which has {len(ins)} inputs")
            continue
        if ins[link["target_slot"]].get("link") != lid:
            report.error(f"link {lid} is not the link that node {dst['id']} input "
                         f"{ins[link['target_slot']].get('name')!r} holds (dangling)")
        out_type = _output_type(src, link["origin_slot"], object_info)
        in_type = _input_type(dst, ins[link["target_slot"]].get("name"), object_info)
        if not _compatible(out_type, in_type):
            report.error(f"link {lid}: {src['type']} output {link['origin_slot']} is {out_type}, "
                         f"{dst['type']} input {ins[link['target_slot']].get('name')!r} wants {in_type} (mistyped)")
    if report.errors:
        return
    # What actually runs: bypassed and muted nodes resolved as the frontend does.
    try:
        prompt = ui_to_api(wf, object_info)
    except ConversionError as exc:
        report.error(str(exc))
        return
    _validate_api_graph(prompt, object_info, report, check_widgets=False)


def _output_type(node: dict, slot: int, object_info: dict):
    if node.get("type") in FRONTEND_ONLY:
        return "*"
    node_def = object_info.get(node.get("type"))
    if node_def is None:
        return (node.get("outputs") or [{}])[slot].get("type")
    outs = node_def.get("output") or []
    return outs[slot] if slot < len(outs) else None


def _input_type(node: dict, name, object_info: dict):
    if node.get("type") in FRONTEND_ONLY:
        return "*"
    node_def = object_info.get(node.get("type"))
    if node_def is None:
        return "*"
    spec = next((s for s in input_specs(node_def) if s.name == name), None)
    return spec.type if spec else None


def _compatible(out_type, in_type) -> bool:
    if out_type is None or in_type is None:
        return False
    if isinstance(out_type, list):  # a combo output feeding a combo widget
        out_type = "COMBO"
    return types_overlap(out_type, in_type)


# -- API format ------------------------------------------------------------------

def _validate_api_graph(prompt: dict, object_info: dict, report: Report, check_widgets: bool = True) -> None:
    for nid, entry in prompt.items():
        ctype = entry.get("class_type")
        node_def = object_info.get(ctype)
        if node_def is None:
            report.error(f"unknown node type {short(ctype)}: not in this ComfyUI (is its custom-node package installed?)",
                         nid)
            continue
        inputs = entry.get("inputs") or {}
        specs = input_specs(node_def)
        for spec in specs:
            if spec.name not in inputs:
                if not spec.optional:
                    what = "widget value" if spec.is_widget else "connection"
                    report.error(f"{ctype}: required input {spec.name!r} has no {what}", nid)
                continue
            value = inputs[spec.name]
            if _is_link(value):
                src = prompt.get(str(value[0]))
                if src is None:
                    report.error(f"{ctype}: input {spec.name!r} comes from node {str(value[0])[:60]}, which is not in the "
                                 "prompt", nid)
                    continue
                src_def = object_info.get(src.get("class_type"))
                if src_def is None:
                    continue
                outs = src_def.get("output") or []
                if not 0 <= value[1] < len(outs):
                    report.error(f"{ctype}: input {spec.name!r} uses output {value[1]} of node {value[0]} "
                                 f"({src.get('class_type')}), which has {len(outs)} outputs", nid)
                elif not _compatible(outs[value[1]], spec.type):
                    report.error(f"{ctype}: input {spec.name!r} wants {spec.type}, node {value[0]} "
                                 f"({src.get('class_type')}) output {value[1]} is {outs[value[1]]}", nid)
            elif not spec.is_widget:
                report.error(f"{ctype}: input {spec.name!r} needs a connection, the prompt gives a value", nid)
            elif check_widgets:
                _check_widget(report, nid, ctype, spec, value, None, True)
        if check_widgets:
            known = {s.name for s in specs} | {s.name for s in widget_layout(node_def, None)}
            for name in inputs:
                if name not in known and "." not in name:
                    report.warning(f"{ctype}: input {short(name)} is not in this ComfyUI's definition (ignored)", nid)


def _is_link(value) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def validate(data, object_info: dict) -> Report:
    """Check a parsed workflow (UI format or API prompt) against ``object_info``.

    Any JSON is accepted: a field of the wrong type is an error of the report (see ``shape``)."""
    if isinstance(data, dict) and shape.looks_like_api(data.get("prompt")):
        data = data["prompt"]  # a POST /prompt body
    fmt = shape.format_of(data)
    if fmt == "ui":
        report = Report("ui")
        problems = shape.ui_problems(data)
        if problems:
            report.nodes = len(data["nodes"]) if isinstance(data["nodes"], list) else 0
            for problem in problems:
                report.error(problem)
            return report
        _validate_ui(data, object_info, report)
        return report
    if fmt == "api":
        report = Report("api", nodes=len(data))
        problems = shape.api_problems(data)
        if problems:
            for problem in problems:
                report.error(problem)
            return report
        report.links = sum(1 for e in data.values() for v in (e.get("inputs") or {}).values() if _is_link(v))
        _validate_api_graph(data, object_info, report)
        return report
    report = Report("unknown")
    report.error("not a ComfyUI workflow: expected a UI workflow (with 'nodes' and 'links') or an API prompt "
                 "(node id -> {'class_type', 'inputs'})")
    return report


def _printable(text: str) -> str:
    """File names from a workflow, with control characters (terminal escapes, newlines) shown escaped."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_report(report: Report, source: str) -> str:
    kind = {"ui": "UI workflow", "api": "API prompt"}.get(report.format, "file")
    lines = [f"{source}: {kind}, {report.nodes} nodes, {report.links} links"]
    for f in report.errors:
        lines.append(f"  error: {f}")
    for f in report.warnings:
        lines.append(f"  warning: {f}")
    if report.files:
        lines.append("  files it uses (folder/name: status):")
        for f in report.files:
            status = "present" if f.present else ("MISSING" if f.required else "missing (node is bypassed/muted)")
            line = f"    {_printable(f.folder)}/{_printable(f.name)}: {status}  [node {_printable(f.node)} {f.node_type}]"
            if f.url and not f.present:
                line += f"  download: {_printable(f.url)}"
            lines.append(line)
    if report.ok:
        missing = report.missing_files
        tail = f"; needs {len(missing)} file(s) this ComfyUI does not have" if missing else ""
        lines.append(f"  result: valid{tail}")
    else:
        lines.append(f"  result: INVALID ({len(report.errors)} error(s))")
    return "\n".join(lines)
