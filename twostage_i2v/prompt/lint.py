"""Deterministic, offline lint of Wan 2.1 image-to-video motion prompts.

In I2V the start image fixes how things look, so the prompt should say how
they move. ``lint_prompt`` reports appearance words (hair and eye colour,
clothing, body and face descriptors, character and quality tags), conflicting
camera moves, too many main actions, an empty prompt and a prompt longer than
umt5's 512 tokens. ``strip_appearance`` removes what the appearance rule flags.

All word lists and patterns live in ``rules.json`` (the single source
of truth, also served to the frontend through ``frontend_rules``); this module
is the algorithm that applies them:

1. The prompt is cut into segments (tags of a tag soup, clauses of a sentence).
2. A segment holding a motion verb or a camera move is a *motion clause*; any
   other segment is *descriptive*.
3. A descriptive segment with an appearance hit is flagged whole ("blonde
   hair", "(masterpiece:1.2)"), unless it also carries a lighting/style word,
   in which case only the hits are flagged. In a motion clause only modifiers
   ("blonde" in "her blonde hair sways") and tags are flagged: the hair, dress
   or tail that moves is the point of the clause.

Matching runs on a per-character NFKC fold of the text (full-width letters
become ASCII, lengths are unchanged), so every reported span is an exact
substring of the prompt.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

RULES_PATH = Path(__file__).with_name("rules.json")
CATEGORIES = ("empty", "appearance", "camera", "actions", "length")

_ALNUM = "A-Za-z0-9"
_SEP = r"[\s_-]+"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"


@functools.lru_cache(maxsize=1)
def load_rules() -> dict:
    """The rules file as data (cached; treat it as read-only)."""
    try:
        return json.loads(RULES_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the prompt lint rules {RULES_PATH}: {exc}; restore the file from the package") from exc


# ------------------------------------------------------------------ compiling the rules


def _is_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def term_regex(term: str) -> str:
    """Regex source of one term: words joined by any space/underscore/hyphen run,
    Latin word edges guarded (see "matching" in the rules file)."""
    words = [re.escape(w) for w in re.split(r"[\s_-]+", term.strip()) if w]
    body = _SEP.join(words)
    if _is_alnum(term.strip()[0]):
        body = f"(?<![{_ALNUM}])" + body
    if _is_alnum(term.strip()[-1]):
        body += f"(?![{_ALNUM}])"
    return body


def _alternation(sources: list[str]) -> str:
    return "|".join(f"(?:{s})" for s in sources)


def verb_forms(lemma: str) -> list[str]:
    """The lemma and its inflected forms (first word of a phrasal verb only)."""
    if not lemma.isascii():
        return [lemma]
    head, _, rest = lemma.partition(" ")
    forms = {head, head + "s", head + "es", head + "ed", head + "ing"}
    if head.endswith("e"):
        forms |= {head + "d", head[:-1] + "ing"}
    if head.endswith("ie"):
        forms.add(head[:-2] + "ying")
    if len(head) > 1 and head.endswith("y") and head[-2] not in "aeiou":
        forms |= {head[:-1] + "ies", head[:-1] + "ied"}
    if len(head) >= 3 and head[-1] not in "aeiouwxy" and head[-2] in "aeiou" and head[-3] not in "aeiou":
        forms |= {head + head[-1] + "ing", head + head[-1] + "ed"}
    return sorted((f"{f} {rest}" if rest else f) for f in forms)


def _norm_word(s: str) -> str:
    return re.sub(r"[\s_-]+", " ", s.lower()).strip()


@dataclass(frozen=True)
class _Group:
    id: str
    label: str
    kind: str  # "tag" | "modifier" | "noun"
    message: str
    patterns: tuple  # compiled regexes; a modifier's English regex captures its head noun as group 1


class _Compiled:
    def __init__(self, rules: dict):
        m = rules["matching"]
        self.split = re.compile(m["segment_split"])
        self.determiners = frozenset(m["not_a_verb_after"]["words"])
        vocab = {k: v for k, v in rules["vocabularies"].items() if isinstance(v, list)}

        def expand(words):
            out = []
            for w in words:
                out.extend(vocab[w[1:]] if w.startswith("@") else [w])
            return sorted(set(out), key=lambda w: (-len(w), w))

        self.sources: dict[str, list[str]] = {}
        groups = []
        for g in rules["appearance"]:
            sources = []
            if g["kind"] == "modifier":
                mods = _alternation([term_regex(w) for w in expand(g["modifiers"])])
                heads = _alternation([term_regex(w) for w in expand(g["heads"])])
                # Modifier words only; the head noun is captured inside the lookahead so that
                # callers know what the modifier belongs to without removing it.
                sources.append(f"(?:{mods})(?:{_SEP}(?:{mods}))*(?={_SEP}({heads}))")
            elif g.get("terms"):
                sources.append(_alternation([term_regex(w) for w in expand(g["terms"])]))
            sources.extend(g.get("patterns", []))
            self.sources[g["id"]] = sources
            groups.append(_Group(g["id"], g["label"], g["kind"], g["message"],
                                 tuple(re.compile(s, re.IGNORECASE) for s in sources)))
        self.groups = tuple(groups)

        self.verb_lemma: dict[str, tuple[str, bool]] = {}
        verb_sources = {}
        for main, key in ((True, "main"), (False, "minor")):
            sec = rules["motion"][key]
            words = []
            for lang in ("en", "zh", "ja"):
                for lemma in sec.get(lang, []):
                    for form in verb_forms(lemma):
                        words.append(form)
                        self.verb_lemma.setdefault(_norm_word(form), (lemma.split(" ")[0], main))
            for form in sec.get("en_irregular", []):
                words.append(form)
                self.verb_lemma.setdefault(_norm_word(form), (form.split(" ")[0], main))
            words = sorted(set(words), key=lambda w: (-len(w), w))
            verb_sources[key] = _alternation([term_regex(w) for w in words])
        self.sources["motion.main"] = [verb_sources["main"]]
        self.sources["motion.minor"] = [verb_sources["minor"]]
        # Longest form first across both lists, so "raise an eyebrow" beats "raise".
        all_verbs = sorted(set(self.verb_lemma), key=lambda w: (-len(w), w))
        self.verbs = re.compile(_alternation([term_regex(w) for w in all_verbs]), re.IGNORECASE)

        allowed = sorted({w for lang in ("en", "zh", "ja") for w in rules["allowed"].get(lang, [])}, key=lambda w: (-len(w), w))
        self.sources["allowed"] = [_alternation([term_regex(w) for w in allowed])]
        self.allowed = re.compile(self.sources["allowed"][0], re.IGNORECASE)

        cam = rules["camera"]
        self.camera_moves = {name: tuple(re.compile(p, re.IGNORECASE) for p in pats) for name, pats in cam["moves"].items()}


@functools.lru_cache(maxsize=1)
def _compiled() -> _Compiled:
    return _Compiled(load_rules())


def frontend_rules() -> dict:
    """The rules for the browser: the data of rules.json plus every group
    compiled to regular-expression sources that JavaScript accepts with flags "gi"
    (apply them per segment, as described under "matching")."""
    rules, c = load_rules(), _compiled()
    return {
        "version": rules["version"],
        "flags": "gi",
        "segment_split": rules["matching"]["segment_split"],
        "not_a_verb_after": sorted(c.determiners),
        "appearance": [{"id": g.id, "label": g.label, "kind": g.kind, "message": g.message, "patterns": c.sources[g.id]}
                       for g in c.groups],
        "motion": {"main": c.sources["motion.main"], "minor": c.sources["motion.minor"]},
        "allowed": c.sources["allowed"],
        "camera": {k: v for k, v in rules["camera"].items() if k != "why"},
        "actions": {k: v for k, v in rules["actions"].items() if k != "why"},
        "empty": {"message": rules["empty"]["message"]},
        "length": {k: v for k, v in rules["length"].items() if k not in ("why", "estimate")},
    }


# ------------------------------------------------------------------ analysis


def _fold(text: str) -> str:
    """NFKC per character where it keeps one character (full-width Ａ -> A), so
    offsets into the fold are offsets into the text."""
    out = []
    for ch in text:
        n = unicodedata.normalize("NFKC", ch)
        out.append(n if len(n) == 1 else ch)
    return "".join(out)


def _segments(view: str, split: re.Pattern) -> list[tuple[int, int]]:
    segs, start = [], 0
    for m in split.finditer(view):
        segs.append((start, m.start()))
        start = m.end()
    segs.append((start, len(view)))
    out = []
    for a, b in segs:
        while a < b and view[a].isspace():
            a += 1
        while b > a and view[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
    return out


@dataclass
class _Hit:
    start: int
    end: int
    group: _Group | None = None
    reach: int = 0  # end of the modifier's head noun; end otherwise
    name: str = ""  # verb lemma or camera move
    main: bool = False


def _overlaps(a: _Hit, b: _Hit) -> bool:
    return a.start < max(b.end, b.reach) and b.start < max(a.end, a.reach)


def _find(pattern: re.Pattern, seg: str, offset: int) -> list[tuple[int, int, re.Match]]:
    return [(offset + m.start(), offset + m.end(), m) for m in pattern.finditer(seg) if m.end() > m.start()]


@dataclass
class _Segment:
    start: int
    end: int
    appearance: list
    camera: list
    verbs: list
    allowed: bool

    @property
    def motion(self) -> bool:
        return bool(self.verbs or self.camera)

    def flagged(self) -> list[_Hit]:
        """The appearance spans this segment reports (see the module docstring)."""
        if not self.appearance:
            return []
        if not self.motion and not self.allowed:
            return [_Hit(self.start, self.end, self.appearance[0].group)]
        keep = ("tag", "modifier") if self.motion else ("tag", "modifier", "noun")
        return [h for h in self.appearance if h.group.kind in keep]


def _analyse(text: str) -> list[_Segment]:
    c = _compiled()
    view = _fold(text)
    out = []
    for a, b in _segments(view, c.split):
        seg = view[a:b]
        hits = []
        for g in c.groups:
            for pat in g.patterns:
                for s, e, m in _find(pat, seg, a):
                    head_end = a + m.end(1) if m.re.groups and m.group(1) is not None else e
                    hits.append(_Hit(s, e, g, reach=max(e, head_end)))
        # Earliest first, then longest: one span per place in the text.
        hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
        appearance: list[_Hit] = []
        for h in hits:
            if not any(_overlaps(h, k) for k in appearance):
                appearance.append(h)

        camera = []
        for name, pats in c.camera_moves.items():
            for pat in pats:
                for s, e, _ in _find(pat, seg, a):
                    camera.append(_Hit(s, e, reach=e, name=name))
        camera.sort(key=lambda h: (h.start, -(h.end - h.start)))

        verbs = []
        for s, e, m in _find(c.verbs, seg, a):
            h = _Hit(s, e, reach=e)
            before = re.search(r"([A-Za-z]+)[\s_-]*$", view[a:s])
            if before and before.group(1).lower() in c.determiners:
                continue  # "the waves", "her smile": nouns
            if any(_overlaps(h, k) for k in appearance) or any(_overlaps(h, k) for k in camera):
                continue  # "red bow" is a garment, "pulls back" in a camera move is not an action
            h.name, h.main = c.verb_lemma.get(_norm_word(m.group(0)), (_norm_word(m.group(0)), False))
            verbs.append(h)

        allowed = any(not any(_overlaps(_Hit(s, e, reach=e), k) for k in appearance) for s, e, _ in _find(c.allowed, seg, a))
        out.append(_Segment(a, b, appearance, camera, verbs, allowed))
    return out


# ------------------------------------------------------------------ length


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate of umt5's token count (the rule is in rules.json)."""
    per = int(load_rules()["length"]["estimate"]["letters_per_extra_token"])
    count = 1  # the end token
    for m in re.finditer(rf"([{_CJK}])|((?:(?![{_CJK}])[^\W_])+)|(\S)", _fold(text)):
        count += 1 + (len(m.group(2)) - 1) // per if m.group(2) else 1
    return count


def count_tokens(text: str, tokenizer: Callable | None = None) -> tuple[int, bool]:
    """(token count, exact?). ``tokenizer`` is a callable text -> count (or -> a
    sequence of tokens); without one the count is ``estimate_tokens``."""
    if tokenizer is None:
        return estimate_tokens(text), False
    n = tokenizer(text)
    return (n if isinstance(n, int) else len(n)), True


def clip_token_counter(clip) -> Callable[[str], int] | None:
    """A ``tokenizer`` for lint_prompt from a ComfyUI CLIP object (duck-typed, no
    ComfyUI import): the tokens ``clip.tokenize`` gives the encoder, padding not
    counted, the end token counted. None when the CLIP does not look like one."""
    tok = getattr(clip, "tokenizer", None)
    sub = getattr(tok, str(getattr(tok, "clip", "")), None)
    key = getattr(tok, "clip_name", None)
    pad = getattr(sub, "pad_token", None)
    if sub is None or key is None or pad is None or not hasattr(clip, "tokenize"):
        return None

    def count(text: str) -> int:
        total = 0
        for batch in clip.tokenize(text).get(key, []):
            n = len(batch)
            while n and isinstance(batch[n - 1][0], int) and batch[n - 1][0] == pad:
                n -= 1
            total += n
        return total

    return count


# ------------------------------------------------------------------ public API


def _warning(category: str, span: str, message: str) -> dict:
    return {"category": category, "span": span, "message": message}


def _is_empty(view: str) -> bool:
    # Weight syntax alone, "(:1.2)", says nothing either.
    return not re.search(r"[^\W\d_]", re.sub(r":\s*-?\d+(?:\.\d+)?", "", view))


def lint_prompt(text: str, tokenizer: Callable | None = None) -> list[dict]:
    """Warnings for a motion prompt, each {"category", "span", "message"}.

    Categories, in this order: empty, appearance, camera, actions, length.
    ``span`` is the exact text the warning is about ("" for warnings about the
    whole prompt: empty, length). ``tokenizer``: see ``count_tokens``. An
    empty list means a clean prompt.
    """
    if not isinstance(text, str):
        raise TypeError(f"lint_prompt wants the prompt as a str, got {type(text).__name__}")
    rules = load_rules()
    if _is_empty(_fold(text)):
        return [_warning("empty", "", rules["empty"]["message"])]
    segments = _analyse(text)
    warnings = []

    for seg in segments:
        for h in seg.flagged():
            span = text[h.start:h.end]
            warnings.append(_warning("appearance", span, h.group.message.format(span=span)))

    cam = rules["camera"]
    moves = [h for seg in segments for h in seg.camera]
    first: dict[str, _Hit] = {}
    for h in moves:
        first.setdefault(h.name, h)
    pairs = [tuple(p) for p in cam["opposites"] if p[0] in first and p[1] in first]
    still = cam["still"]
    if still in first:
        pairs += [(still, name) for name in first if name != still]
    conflicts = []
    for x, y in pairs:
        a, b = sorted((first[x], first[y]), key=lambda h: h.start)
        template = cam["message_static"] if still in (x, y) else cam["message_opposite"]
        if template is cam["message_static"] and a.name != still:
            # The message names the still camera first.
            msg = template.format(first=text[b.start:b.end], second=text[a.start:a.end])
        else:
            msg = template.format(first=text[a.start:a.end], second=text[b.start:b.end])
        conflicts.append((b.start, _warning("camera", text[b.start:b.end], msg)))
    warnings += [w for _, w in sorted(conflicts, key=lambda c: c[0])]

    act = rules["actions"]
    seen: dict[str, tuple[_Hit, _Segment]] = {}
    for seg in segments:
        for h in seg.verbs:
            if h.main and h.name not in seen:
                seen[h.name] = (h, seg)
    limit = int(act["max_main"])
    if len(seen) > limit:
        ordered = list(seen.values())
        over = ordered[limit][1]
        names = ", ".join(text[h.start:h.end] for h, _ in ordered)
        warnings.append(_warning("actions", text[over.start:over.end],
                                 act["message"].format(count=len(ordered), actions=names)))

    length = rules["length"]
    count, exact = count_tokens(text, tokenizer)
    if count > int(length["max_tokens"]):
        template = length["message_counted" if exact else "message_estimated"]
        warnings.append(_warning("length", "", template.format(count=count, limit=length["max_tokens"])))
    return warnings


def lint_result(text: str, tokenizer: Callable | None = None) -> dict:
    """What the CLI prints and the lint route returns: {"prompt", "warnings"}."""
    return {"prompt": text, "warnings": lint_prompt(text, tokenizer)}


_CLEANUP = (
    # empty weight groups left behind: "( )", "(:1.2)", "[]", "{}"
    (re.compile(r"\(\s*(?::\s*-?\d*\.?\d*)?\s*\)|\[\s*\]|\{\s*\}"), ""),
    # a run of separators collapses to its first one
    (re.compile(r"([,;，、；])(?:\s*[,;，、；])+"), r"\1"),
    # "and"/"with" left hanging before a separator or the end
    (re.compile(r"[ \t]+(?:and|with|or)[ \t]*(?=[,;.!?，、；。！？]|$)", re.IGNORECASE | re.MULTILINE), ""),
    # a separator right before a sentence end: "waves, ." -> "waves."
    (re.compile(r"[ \t]*[,;，、；]+[ \t]*(?=[.!?。！？](?:\s|$))"), ""),
    (re.compile(r"[ \t]+(?=[,;.!?，、；。！？])"), ""),
    (re.compile(r"[ \t]{2,}"), " "),
    (re.compile(r"^[ \t,;.，、；。]+", re.MULTILINE), ""),
    (re.compile(r"[ \t,;，、；]+$", re.MULTILINE), ""),
)


def strip_appearance(text: str) -> tuple[str, list[str]]:
    """(text without the spans the appearance rule flags, the removed spans in text order).

    Whole flagged segments go with their separator; modifiers leave their noun
    ("her long blonde hair sways" -> "her hair sways"). A text without
    appearance warnings comes back unchanged.
    """
    if _is_empty(_fold(text)):
        return text, []
    spans = [h for seg in _analyse(text) for h in seg.flagged()]
    if not spans:
        return text, []
    removed, parts, pos = [], [], 0
    for h in spans:
        removed.append(text[h.start:h.end])
        parts.append(text[pos:h.start])
        pos = h.end
    parts.append(text[pos:])
    out = "".join(parts)
    for _ in range(3):  # each pass can expose work for the previous rules
        for pattern, repl in _CLEANUP:
            out = pattern.sub(repl, out)
    return out.strip(), removed


def format_report(prompt: str, warnings: list[dict], *, mode: str = "warn", removed: list[str] = (),
                  tokens: tuple[int, bool] | None = None) -> str:
    """The node's report: lint status, each warning, what strip removed, token count, final prompt."""
    if mode == "off":
        lines = ["lint: off"]
    elif not warnings:
        lines = ["lint: clean, no warnings"]
    else:
        lines = [f"lint: {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"]
        lines += [f"- {w['category']}: {w['message']}" for w in warnings]
    if removed:
        lines.append("removed (lint=strip): " + ", ".join(f'"{r}"' for r in removed))
    if tokens is not None:
        count, exact = tokens
        limit = load_rules()["length"]["max_tokens"]
        lines.append(f"tokens: {'' if exact else 'about '}{count} umt5 (limit {limit})")
    lines.append(f"prompt: {prompt}")
    return "\n".join(lines)
