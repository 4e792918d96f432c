"""The JSON shape of UI workflows and API prompts: what the converter and the validator assume.

A workflow from a file may have any JSON in any field. Before anything walks the
graph, every field that code reads is checked for its type here (nodes and links
lists of the right kinds, ids and slots integers, names strings ...), and the
counts are bounded, so a string where an object belongs, or a million nodes,
gives a message naming the node and field instead of a crash or a long wait.
"""

from __future__ import annotations

import reprlib

from .json_text import BadWorkflowFile

MAX_NODES = 10_000  # real workflows have tens to a few hundred nodes
MAX_LINKS = 50_000
MAX_SOCKETS = 1_000  # inputs or outputs of one node
MAX_PROBLEMS = 20

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlist = _short.maxdict = 4


def short(value) -> str:
    """A bounded repr of a value from a file, for messages."""
    return _short.repr(value)


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_id(v) -> bool:
    return _is_int(v) or isinstance(v, str)


class _Problems(list):
    def add(self, where: str, message: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(f"{where}: {message}")


def _expect(problems: _Problems, where: str, field: str, value, ok: bool, wanted: str) -> bool:
    if not ok:
        problems.add(where, f"'{field}' is {_kind(value)} ({short(value)}), expected {wanted}")
    return ok


def _check_sockets(problems: _Problems, where: str, node: dict, field: str) -> None:
    items = node.get(field)
    if items is None:
        return
    if not _expect(problems, where, field, items, isinstance(items, list), "a list"):
        return
    if len(items) > MAX_SOCKETS:
        problems.add(where, f"'{field}' has {len(items)} entries, more than {MAX_SOCKETS}")
        return
    for i, item in enumerate(items):
        here = f"{where} {field}[{i}]"
        if not isinstance(item, dict):
            problems.add(here, f"is {_kind(item)} ({short(item)}), expected an object")
            continue
        if "name" in item:
            _expect(problems, here, "name", item["name"], isinstance(item["name"], str), "a string")
        if field == "inputs":
            link = item.get("link")
            _expect(problems, here, "link", link, link is None or _is_int(link), "a link id (integer) or null")
        else:
            links = item.get("links")
            if _expect(problems, here, "links", links, links is None or isinstance(links, list), "a list or null"):
                bad = [x for x in links or [] if not _is_int(x)]
                if bad:
                    problems.add(here, f"'links' holds {short(bad[0])}, expected link ids (integers)")
            slot = item.get("slot_index")
            _expect(problems, here, "slot_index", slot, slot is None or _is_int(slot), "an integer")


def _check_node(problems: _Problems, i: int, node) -> None:
    if not isinstance(node, dict):
        problems.add(f"nodes[{i}]", f"is {_kind(node)} ({short(node)}), expected a node object")
        return
    nid = node.get("id")
    where = f"node {short(nid)}" if _is_id(nid) else f"nodes[{i}]"
    _expect(problems, where, "id", nid, _is_id(nid), "an integer or string")
    ntype = node.get("type")
    _expect(problems, where, "type", ntype, isinstance(ntype, str), "a node type name (string)")
    for field in ("mode", "order"):
        if field in node:
            _expect(problems, where, field, node[field], _is_int(node[field]), "an integer")
    if node.get("title") is not None:
        _expect(problems, where, "title", node["title"], isinstance(node["title"], str), "a string")
    values = node.get("widgets_values")
    _expect(problems, where, "widgets_values", values, values is None or isinstance(values, (list, dict)),
            "a list of widget values")
    props = node.get("properties")
    if _expect(problems, where, "properties", props, props is None or isinstance(props, dict), "an object") and props:
        models = props.get("models")
        _expect(problems, where, "properties.models", models, models is None or isinstance(models, list), "a list")
    _check_sockets(problems, where, node, "inputs")
    _check_sockets(problems, where, node, "outputs")


_LINK_FIELDS = ("id", "origin_id", "origin_slot", "target_id", "target_slot")


def _check_link(problems: _Problems, i: int, link) -> None:
    where = f"links[{i}]"
    if isinstance(link, dict):
        values = [link.get(k) for k in _LINK_FIELDS]
    elif isinstance(link, list) and len(link) >= 5:
        values = link[:5]
    else:
        problems.add(where, f"is {_kind(link)} ({short(link)}), expected [id, from node, from slot, to node, "
                            "to slot, type]")
        return
    for name, value in zip(_LINK_FIELDS, values):
        if name in ("origin_id", "target_id"):
            ok, wanted = _is_id(value), "a node id"
        elif name.endswith("_slot"):
            ok, wanted = _is_int(value) and value >= 0, "a slot number (0 or more)"
        else:
            ok, wanted = _is_int(value), "an integer"
        if not ok:
            problems.add(where, f"its {name} is {_kind(value)} ({short(value)}), expected {wanted}")
            return


def ui_problems(wf: dict) -> list[str]:
    """Why this UI workflow cannot be walked (at most MAX_PROBLEMS reasons), or []."""
    problems = _Problems()
    nodes, links = wf.get("nodes"), wf.get("links")
    if "links" not in wf:
        problems.add("the workflow", "has 'nodes' but no 'links': not a UI workflow the frontend saves")
        return problems
    if not _expect(problems, "the workflow", "nodes", nodes, isinstance(nodes, list), "a list of nodes"):
        return problems
    if not _expect(problems, "the workflow", "links", links, links is None or isinstance(links, list),
                   "a list of links"):
        return problems
    defs = wf.get("definitions")
    subgraphs = []
    if _expect(problems, "the workflow", "definitions", defs, defs is None or isinstance(defs, dict), "an object"):
        subgraphs = (defs or {}).get("subgraphs") or []
        if _expect(problems, "the workflow", "definitions.subgraphs", subgraphs, isinstance(subgraphs, list), "a list"):
            for j, sub in enumerate(subgraphs):
                if not isinstance(sub, dict) or not isinstance(sub.get("id"), str):
                    problems.add(f"definitions.subgraphs[{j}]", "expected an object with a string 'id'")
    inner = sum(len(s["nodes"]) for s in subgraphs if isinstance(s, dict) and isinstance(s.get("nodes"), list))
    if len(nodes) + inner > MAX_NODES:
        problems.add("the workflow", f"has {len(nodes) + inner} nodes, more than the {MAX_NODES} this tool "
                                     "reads (a damaged or generated file?)")
    if len(links or []) > MAX_LINKS:
        problems.add("the workflow", f"has {len(links)} links, more than the {MAX_LINKS} this tool reads")
    if problems:
        return problems
    for i, node in enumerate(nodes):
        _check_node(problems, i, node)
    for i, link in enumerate(links or []):
        _check_link(problems, i, link)
    return problems


def api_problems(prompt: dict) -> list[str]:
    """Why this API prompt (node id -> {"class_type", "inputs"}) cannot be walked, or []."""
    problems = _Problems()
    if len(prompt) > MAX_NODES:
        problems.add("the prompt", f"has {len(prompt)} nodes, more than the {MAX_NODES} this tool reads")
        return problems
    for nid, entry in prompt.items():
        where = f"node {short(nid)}"
        if not isinstance(entry, dict):
            problems.add(where, f"is {_kind(entry)} ({short(entry)}), expected {{'class_type', 'inputs'}}")
            continue
        _expect(problems, where, "class_type", entry.get("class_type"), isinstance(entry.get("class_type"), str),
                "a node type name (string)")
        inputs = entry.get("inputs")
        _expect(problems, where, "inputs", inputs, inputs is None or isinstance(inputs, dict),
                "an object (input name -> value)")
    return problems


def describe(problems: list[str]) -> str:
    """One line: the first problem, and how many more there are."""
    more = len(problems) - 1
    tail = "" if not more else f" (and {more}{'+' if len(problems) >= MAX_PROBLEMS else ''} more)"
    return problems[0] + tail


def looks_like_api(data) -> bool:
    """An API prompt, or a damaged one: an object some of whose entries are nodes with a ``class_type``."""
    return isinstance(data, dict) and any(isinstance(v, dict) and "class_type" in v for v in data.values())


def format_of(data) -> str | None:
    """"ui", "api" or None, by the fields present (their types are checked by ui_problems/api_problems)."""
    if isinstance(data, dict) and "nodes" in data:
        return "ui"
    if looks_like_api(data):
        return "api"
    return None


def _top_level(data) -> str:
    kinds = {list: "a JSON list", str: "a JSON string", bool: "true/false", type(None): "null", int: "a number",
             float: "a number"}
    what = kinds.get(type(data), "a JSON object without 'nodes' and 'links' or nodes with a 'class_type'")
    return (f"not a ComfyUI workflow: the top level is {what}; a workflow is an object with 'nodes' and "
            "'links' (UI format) or node id -> {'class_type', 'inputs'} (API format)")


def check_shape(data, source) -> str:
    """"ui" or "api" when ``data`` has the shape of a workflow, else ``BadWorkflowFile`` (one line)."""
    if isinstance(data, dict) and looks_like_api(data.get("prompt")):
        data = data["prompt"]  # a POST /prompt body
    fmt = format_of(data)
    if fmt is None:
        raise BadWorkflowFile(f"{source}: {_top_level(data)}")
    problems = ui_problems(data) if fmt == "ui" else api_problems(data)
    if problems:
        what = "UI workflow" if fmt == "ui" else "API prompt"
        raise BadWorkflowFile(f"{source}: malformed {what}: {describe(problems)}")
    return fmt
