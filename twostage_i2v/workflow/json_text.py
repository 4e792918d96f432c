"""Workflow JSON read strictly and within bounds: what every file a user hands over goes through.

People drag in whatever they downloaded. A workflow is a few levels of objects and
lists, at most a few MB of text; anything far outside that is refused here with a
one-line message naming the file and what is wrong, before the rest of the package
walks it: files over ``MAX_TEXT_BYTES``, nesting deeper than ``MAX_DEPTH`` (which
would also overflow Python's recursion in the JSON writer), NaN and Infinity (not
JSON; the frontend's ``JSON.parse`` refuses them), numbers out of float range or
too long to read, unpaired UTF-16 surrogates (not text: they cannot be printed or
saved as UTF-8), and text that is not UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

MAX_TEXT_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadWorkflowFile(ValueError):
    """A file that cannot be read as a workflow; the message names the file and what is wrong."""


class _BadNumber(Exception):
    pass


def _no_constant(name: str):
    raise _BadNumber(f"{name} (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text[:40]}, beyond the range of a float")
    return value


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _subject(source, what: str) -> str:
    return f"{source}: {what + ' ' if what else ''}"


def parse(text: str, source, what: str = ""):
    """The JSON value of ``text``; ``BadWorkflowFile`` naming ``source`` (and ``what`` in it) otherwise."""
    head = _subject(source, what)
    if len(text) > MAX_TEXT_BYTES:
        raise BadWorkflowFile(f"{head}is {mib(len(text))} of text, more than any workflow ({mib(MAX_TEXT_BYTES)})")
    if not text.strip():
        raise BadWorkflowFile(f"{head}is empty" if what else f"{source}: the file is empty")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _BadNumber as exc:
        raise BadWorkflowFile(f"{head}is not valid JSON: it contains {exc}") from None
    except RecursionError:
        raise BadWorkflowFile(f"{head}is nested more than {MAX_DEPTH} levels deep: not a workflow") from None
    except json.JSONDecodeError as exc:
        raise BadWorkflowFile(f"{head}is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}; "
                              "truncated or damaged?)") from None
    except ValueError:  # the only other one: an integer longer than Python reads (sys.get_int_max_str_digits)
        raise BadWorkflowFile(f"{head}is not a workflow: it holds a number thousands of digits long") from None
    check_value(value, head)
    if _SURROGATE_ESCAPE.search(text):
        _check_text(value, head)
    return value


def check_value(value, head: str) -> None:
    """Depth at most MAX_DEPTH, walked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadWorkflowFile(f"{head}is nested more than {MAX_DEPTH} levels deep: not a workflow")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _check_text(value, head: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        strings = []
        if isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            strings = [item]
        for s in strings:
            lone = _SURROGATE.search(s)
            if lone:
                raise BadWorkflowFile(f"{head}is not valid text: it holds an unpaired UTF-16 surrogate "
                                      f"(\\u{ord(lone.group()):04x})")


def check_regular_file(path: Path) -> int:
    """The size of ``path``; ``BadWorkflowFile`` when it is missing, a directory or not a plain file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadWorkflowFile(f"{path}: no such file") from None
    except OSError as exc:
        raise BadWorkflowFile(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise BadWorkflowFile(f"{path}: is a directory, not a workflow file")
    if not path.is_file():
        raise BadWorkflowFile(f"{path}: is not a regular file (a device, socket or pipe?)")
    return st.st_size


def read_json_file(path: Path):
    """The JSON value of a workflow file (UTF-8, an optional byte-order mark), read within the bounds above."""
    size = check_regular_file(path)
    if size > MAX_TEXT_BYTES:
        raise BadWorkflowFile(f"{path}: is {mib(size)}, more than any workflow file ({mib(MAX_TEXT_BYTES)})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadWorkflowFile(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadWorkflowFile(f"{path}: not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}), nor a PNG, "
                              "WEBP, MP4/MOV/M4V or WEBM file: not a workflow") from None
    return parse(text, path)
