"""Batch job files: one job a line, each naming widget values to set in one UI workflow.

``JOBS.jsonl``::

    {"id": "girl-01", "set": {"KSampler (Wan I2V).seed": 7, "16.motion": "she waves"}}

A key is ``<node title or id>.<input>``: the title as the canvas shows it (the node's
own title, else its type's display name) or the node id, then a widget input of that
node. ``<node>.enabled`` (true / false) switches a bypassed node on or off. Everything a
file can get wrong (invalid JSON, a missing or duplicate id, an unknown node or input,
a value of the wrong type or out of range) is found before anything runs and reported
with its line number, all lines at once.

Pure library code: the node definitions (``/object_info``) come in as data.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .build import set_widget
from .convert import (DYNAMIC_COMBO, FRONTEND_ONLY, MODE_ALWAYS, MODE_BYPASS, UPLOAD_FLAGS, InputSpec,
                      widget_layout, widget_values_by_name)
from .validate import _file_folder, check_value

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ENABLED = "enabled"  # the pseudo-input that bypasses or enables a node
JOB_KEYS = ("id", "set")
PREFIX = "filename_prefix"


class JobsFileError(ValueError):
    """A job file that cannot run as written: every problem, each with its line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))


@dataclass
class Job:
    id: str
    values: dict  # "<node>.<input>" -> value, as written
    line: int


@dataclass
class Setting:
    node_id: int
    title: str
    input: str  # widget name, or ENABLED
    value: object
    key: str = ""  # as the job wrote it


@dataclass
class ResolvedJob:
    job: Job
    settings: list = field(default_factory=list)
    # ComfyUI input-folder name -> bytes of a local file a LoadImage-like widget names
    input_files: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.job.id

    def overrides(self, node_id) -> set[str]:
        return {s.input for s in self.settings if str(s.node_id) == str(node_id)}


def parse_jobs(text: str, source: str = "jobs") -> list[Job]:
    """The jobs of a JSONL text; raises ``JobsFileError`` naming every bad line."""
    problems = []
    jobs = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f"line {number}: a job is a JSON object {{\"id\": ..., \"set\": {{...}}}}, "
                            f"not {type(data).__name__}")
            continue
        unknown = [k for k in data if k not in JOB_KEYS]
        if unknown:
            problems.append(f"line {number}: unknown key(s) {', '.join(map(repr, unknown))}; a job has "
                            f"{' and '.join(map(repr, JOB_KEYS))}")
        job_id = data.get("id")
        if not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id):
            problems.append(f"line {number}: id {job_id!r} is not usable: it names the output files, so give a "
                            "string of letters, digits, '.', '_' or '-' (starting with a letter or digit, at most "
                            "128 characters)")
            continue
        values = data.get("set", {})
        if not isinstance(values, dict):
            problems.append(f"line {number}: 'set' must be an object of \"<node title or id>.<input>\": value, "
                            f"not {type(values).__name__}")
            continue
        folded = job_id.lower()  # ids name files, and some disks ignore case
        if folded in seen:
            problems.append(f"line {number}: duplicate id {job_id!r} (already used on line {seen[folded]}; ids "
                            "name the output files and may not repeat, even in another letter case)")
            continue
        seen[folded] = number
        jobs.append(Job(job_id, values, number))
    if problems:
        raise JobsFileError(source, problems)
    if not jobs:
        raise JobsFileError(source, ["no jobs: the file has no non-empty line"])
    return jobs


def read_jobs(path: Path) -> list[Job]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobsFileError(str(path), ["no such file"]) from None
    except UnicodeDecodeError as exc:
        raise JobsFileError(str(path), [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    return parse_jobs(text, str(path))


# -- resolving keys against a workflow ------------------------------------------------

def node_title(node: dict, object_info: dict) -> str:
    """The title the canvas shows: the node's own, else its type's display name."""
    return node.get("title") or (object_info.get(node.get("type")) or {}).get("display_name") or str(node.get("type"))


def _widget_specs(node: dict, object_info: dict) -> dict[str, InputSpec]:
    layout = widget_layout(object_info[node["type"]], node.get("widgets_values"))
    return {slot.name: slot.spec for slot in layout if slot.kind == "value"}


def _targets(workflow: dict, object_info: dict, key: str) -> tuple[list, list]:
    """(matches as (node, input), nodes whose title or id prefixes the key)."""
    matches, named = [], []
    for node in workflow.get("nodes") or []:
        if node.get("type") in FRONTEND_ONLY or node.get("type") not in object_info:
            continue
        for name in {str(node.get("id")), node_title(node, object_info)}:
            if not key.startswith(name + "."):
                continue
            named.append(node)
            rest = key[len(name) + 1:]
            if rest == ENABLED or rest in _widget_specs(node, object_info):
                matches.append((node, rest))
    return matches, named


def _is_input_file(node_type: str, spec: InputSpec, value) -> bool:
    if any(spec.options.get(flag) for flag in UPLOAD_FLAGS):
        return True
    return _file_folder(node_type, spec, value, None) == "input"


def _local_input_file(value, base: Path | None) -> Path | None:
    if not isinstance(value, str) or not value or base is None:
        return None
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    return path if path.is_file() else None


def input_file_name(data: bytes, original: str) -> str:
    """The name a shipped start image gets in a worker's input folder (same bytes, same name)."""
    suffix = PurePosixPath(original).suffix.lower() or ".png"
    return f"batch-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"


def resolve_job(job: Job, workflow: dict, object_info: dict, files_base: Path | None = None) -> ResolvedJob:
    """Match each key to a node widget and check its value; raises ``JobsFileError``.

    ``files_base``: where relative paths given to image inputs (LoadImage) are looked up;
    such a file travels with the job, so workers elsewhere need no copy of it.
    """
    problems = []
    resolved = ResolvedJob(job)
    where = f"line {job.line} (job {job.id!r})"
    for key, value in job.values.items():
        matches, named = _targets(workflow, object_info, key)
        nodes = {id(n): n for n, _ in matches}
        if not matches:
            if named:
                node = named[0]
                names = ", ".join(_widget_specs(node, object_info)) or "none"
                problems.append(f"{where}: {key!r}: node {node['id']} ({node_title(node, object_info)}) has no "
                                f"widget input {key[len(_prefix_of(key, node, object_info)) + 1:]!r} "
                                f"(its widget inputs: {names}, and {ENABLED!r})")
            else:
                problems.append(f"{where}: {key!r}: no node in the workflow has that title or id (keys are "
                                f"\"<node title or id>.<input>\"; titles: {_titles(workflow, object_info)})")
            continue
        if len(nodes) > 1:
            ids = ", ".join(str(n["id"]) for n in nodes.values())
            problems.append(f"{where}: {key!r}: nodes {ids} share that title; use the node id instead "
                            f"(e.g. \"{matches[0][0]['id']}.{matches[0][1]}\")")
            continue
        node, name = matches[0]
        title = node_title(node, object_info)
        if name == ENABLED:
            if not isinstance(value, bool):
                problems.append(f"{where}: {key!r}: {value!r} is not true/false")
                continue
            resolved.settings.append(Setting(node["id"], title, ENABLED, value, key))
            continue
        spec = _widget_specs(node, object_info)[name]
        if spec.type == DYNAMIC_COMBO:
            problems.append(f"{where}: {key!r}: {name} picks which other widgets the node has, so a job cannot "
                            "change it; save a workflow with the option you want")
            continue
        if _is_input_file(node["type"], spec, value):
            if not isinstance(value, str):
                problems.append(f"{where}: {key!r}: {value!r} is not a file name or path")
                continue
            local = _local_input_file(value, files_base)
            if local is not None:
                data = local.read_bytes()
                value = input_file_name(data, local.name)
                resolved.input_files[value] = data
        elif _file_folder(node["type"], spec, value, node.get("properties")) is not None:
            # A model file: only the worker knows its files, and ComfyUI names a missing one when the job runs.
            if not isinstance(value, str):
                problems.append(f"{where}: {key!r}: {value!r} is not a file name")
                continue
        else:
            problem = check_value(spec, value)
            if problem:
                problems.append(f"{where}: {key!r} ({node['type']}): {problem}")
                continue
            if spec.type == "INT":
                value = int(value)
        resolved.settings.append(Setting(node["id"], title, name, value, key))
    if problems:
        raise JobsFileError("jobs", problems)
    for setting in resolved.settings:
        node = _node(workflow, setting.node_id)
        enabling = any(s.input == ENABLED and s.value and s.node_id == setting.node_id for s in resolved.settings)
        if setting.input != ENABLED and node.get("mode", MODE_ALWAYS) != MODE_ALWAYS and not enabling:
            problems.append(f"{where}: {setting.key!r}: node {setting.node_id} "
                            f"({setting.title}) is bypassed or muted in the workflow, so the value would do "
                            f"nothing; add \"{setting.node_id}.{ENABLED}\": true to the job")
    if problems:
        raise JobsFileError("jobs", problems)
    return resolved


def _prefix_of(key: str, node: dict, object_info: dict) -> str:
    title = node_title(node, object_info)
    return title if key.startswith(title + ".") else str(node["id"])


def _titles(workflow: dict, object_info: dict) -> str:
    shown = [f"{n['id']} {node_title(n, object_info)!r}" for n in workflow.get("nodes") or []
             if n.get("type") not in FRONTEND_ONLY and n.get("type") in object_info]
    return "; ".join(shown)


def _node(workflow: dict, node_id) -> dict:
    return next(n for n in workflow["nodes"] if str(n["id"]) == str(node_id))


def resolve_jobs(jobs: list[Job], workflow: dict, object_info: dict, files_base: Path | None = None,
                 source: str = "jobs") -> list[ResolvedJob]:
    """Every job resolved; one ``JobsFileError`` with the problems of all lines."""
    problems, out = [], []
    for job in jobs:
        try:
            out.append(resolve_job(job, workflow, object_info, files_base))
        except JobsFileError as exc:
            problems += exc.problems
    if problems:
        raise JobsFileError(source, problems)
    return out


def apply_job(workflow: dict, object_info: dict, resolved: ResolvedJob) -> dict:
    """A copy of the UI workflow with the job's values set (still a UI workflow).

    Each output node's ``filename_prefix`` gets ``_<job id>`` appended unless the job sets
    it: the embedded workflow then names its files after the job, and no two jobs give an
    output node the same inputs, which ComfyUI would take from its cache without saving.
    """
    wf = copy.deepcopy(workflow)
    for setting in resolved.settings:
        node = _node(wf, setting.node_id)
        if setting.input == ENABLED:
            node["mode"] = MODE_ALWAYS if setting.value else MODE_BYPASS
        else:
            set_widget(wf, node, setting.input, setting.value, object_info)
    for node in wf.get("nodes") or []:
        node_def = object_info.get(node.get("type")) or {}
        if not node_def.get("output_node") or PREFIX in resolved.overrides(node["id"]):
            continue
        values = widget_values_by_name(node_def, list(node.get("widgets_values") or []))
        if isinstance(values.get(PREFIX), str):
            set_widget(wf, node, PREFIX, f"{values[PREFIX]}_{resolved.id}", object_info)
    return wf


def job_fingerprint(job: Job, workflow_bytes: bytes, variant: str, input_files: dict | None = None) -> str:
    """What decides a job's outputs, hashed: its values, the workflow file, the run variant
    (e.g. small models) and the bytes of the files it ships. Resume reruns a job whose
    fingerprint changed."""
    h = hashlib.sha256()
    h.update(json.dumps(job.values, sort_keys=True, ensure_ascii=False).encode())
    h.update(hashlib.sha256(workflow_bytes).digest())
    h.update(variant.encode())
    for name in sorted(input_files or {}):
        h.update(name.encode())
    return h.hexdigest()


def raw_input_files(job: Job, files_base: Path | None) -> dict[str, bytes]:
    """Bytes of every local file a job's values name (for the fingerprint, before node definitions are known)."""
    out = {}
    for value in job.values.values():
        local = _local_input_file(value, files_base)
        if local is not None:
            data = local.read_bytes()
            out[input_file_name(data, local.name)] = data
    return out
