"""Safe YAML reading that remembers where every value came from.

`parse_yaml(text)` turns a YAML document into plain Python data (dicts, lists,
str, int, float, bool, None) plus a tree of `YNode`s carrying the 1-based
line and column of every key and value, so that later checks can say
`FILE:LINE:COL: field.path: message`.

It is built straight from the parser's event stream, without PyYAML's
recursive composer and constructor, because configs are untrusted input:
- only the plain YAML types are built; any explicit tag other than the core
  ones (`!!python/object`, `!!binary`, `!foo`, ...) is a problem, never code;
- a key given twice in one mapping is a problem (YAML silently keeps the last);
- anchors and aliases work (and `<<` merge keys), but the expanded document is
  capped in size and depth, so an alias bomb costs a few integer additions,
  not gigabytes; an alias cannot refer to the collection it is inside;
- nesting is capped, and the builder keeps its own stack, so deep input never
  reaches Python's recursion limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from netprobe.yamltree import Mark, YNode

try:  # libyaml's event parser is ~25x faster than the pure-Python one; the events are the same
    from yaml._yaml import CParser as _EventParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _EventParser

# A config of a few hundred endpoints has a few thousand values and a nesting
# depth under ten; these caps are far above that and far below harm.
MAX_DEPTH = 64
MAX_VALUES = 250_000

_CORE = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_CORE + t for t in ("str", "int", "float", "bool", "null"))
TIMESTAMP, MERGE, VALUE = _CORE + "timestamp", _CORE + "merge", _CORE + "value"
SEQ, MAP = _CORE + "seq", _CORE + "map"

_resolver = Resolver()
_constructor = SafeConstructor()


def _typed_patterns() -> dict[str, re.Pattern[str] | None] | None:
    """PyYAML's implicit resolvers as one alternation per first character.

    `Resolver.resolve` tries each of a character's regexes in a Python loop;
    a name or an address (most of a config) matches none of them. One regex
    call says so. None: the resolver has rules this cannot mirror (none in
    PyYAML's own), so every scalar goes to it; a None entry: that character's
    rules differ in flags, ask the resolver.
    """
    rules = _resolver.yaml_implicit_resolvers
    if rules.get(None) or _resolver.yaml_path_resolvers:
        return None
    table: dict[str, re.Pattern[str] | None] = {}
    for first, pairs in rules.items():
        flags = {regexp.flags for _, regexp in pairs}
        if len(flags) != 1:
            table[first] = None
            continue
        flag = flags.pop()
        # in verbose mode a pattern may end in a comment: a line break closes it
        end = "\n" if flag & re.X else ""
        table[first] = re.compile("|".join(f"(?:{regexp.pattern}{end})" for _, regexp in pairs),
                                  flag)
    return table


_TYPED = _typed_patterns()
_NO_RULE = re.compile("(?!)")  # a first character no implicit type starts with: never matches


def plain_tag(value: str, implicit: tuple[bool, bool]) -> str:
    """The tag of an untagged scalar, exactly as `_resolver.resolve` gives it."""
    if _TYPED is not None and implicit[0]:
        typed = _TYPED.get(value[:1], _NO_RULE)
        if typed is not None and typed.match(value) is None:
            return STR
    return _resolver.resolve(ScalarNode, value, implicit)


# the non-text core types: tag -> text -> value
def _yaml_int(text: str) -> int:
    # plain decimals (no sign, no leading 0: YAML 1.1 reads 010 as octal)
    # skip PyYAML's general constructor, 4x slower on a long list of them
    if text.isascii() and text.isdigit() and (text[0] != "0" or text == "0") and len(text) <= 1000:
        return int(text)
    return _constructor.construct_yaml_int(ScalarNode(INT, text))


_CONVERT = {
    NULL: lambda text: None,
    BOOL: lambda text: _constructor.construct_yaml_bool(ScalarNode(BOOL, text)),
    INT: _yaml_int,
    FLOAT: lambda text: _constructor.construct_yaml_float(ScalarNode(FLOAT, text)),
}
# Python refuses to turn a number with thousands of digits into an int;
# an explicit `!!int abc` or `!!bool maybe` is not one either
_NOT_CONVERTIBLE = (ValueError, KeyError, OverflowError, ArithmeticError)


def _mark(yaml_mark: Any) -> Mark:
    if yaml_mark is None:
        return Mark(1, 1)
    return Mark(yaml_mark.line + 1, yaml_mark.column + 1)


@dataclass(frozen=True)
class YamlProblem:
    mark: Mark
    path: tuple[Any, ...]  # where in the data, () for the document
    message: str
    replaced: bool = False  # the value at `path` was dropped or kept as raw text


class YamlError(Exception):
    """The text is not a YAML document we can use at all (syntax, a bomb)."""

    def __init__(self, mark: Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


@dataclass
class ParsedYaml:
    data: Any
    root: YNode | None  # None for an empty document
    problems: list[YamlProblem]  # duplicate keys, unknown tags: reported, value kept


def show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def one_line(text: str, limit: int = 60) -> str:
    """A value quoted for a one-line message: escapes newlines, cuts long text."""
    shown = repr(text)
    if len(shown) > limit:
        shown = shown[: limit - 4] + "...'"
    return shown


class _Frame:
    """A collection being built, on the builder's own stack."""

    __slots__ = ("node", "data", "anchor", "path", "pending_key", "merges", "explicit")

    def __init__(self, node: YNode, data: Any, anchor: str | None, path: tuple[Any, ...]) -> None:
        self.node = node
        self.data = data
        self.anchor = anchor
        self.path = path
        self.pending_key: tuple[Any, YNode, bool] | None = None  # (key, its node, is a << key)
        self.merges: list[tuple[YNode, Any]] = []  # << values, in order
        self.explicit: dict[Any, tuple[Mark, YNode, Any]] = {}  # key -> (key mark, node, data)


NOT_PLAIN = object()  # parse_plain's answer for a document it leaves to parse_yaml


class _NotPlain(Exception):
    pass


def parse_plain(text: str, texts: list[str] | None = None) -> Any:
    """The data of a document written in plain YAML, about 3x faster than `parse_yaml`.

    Plain: mappings, lists and scalars, one document, no anchors, aliases,
    merge keys or explicit tags, no duplicate or complex keys, every value
    convertible, within MAX_DEPTH and MAX_VALUES. That is nearly every config,
    and for it the data equals `parse_yaml(text).data`; no positions are kept,
    as they are needed only to report a problem. Anything else, a syntax
    error included, returns NOT_PLAIN without a word: `parse_yaml` then reads
    the text with positions and says what is wrong. So the safety rules live
    in one place; this function only declines what it does not handle.

    `texts`, when given, receives every string key and value as it is read,
    so a check of all the text needs no second walk over the data.
    """
    parser = _EventParser(text)
    try:
        return _plain(parser.get_event, [] if texts is None else texts)
    except (_NotPlain, yaml.YAMLError, RecursionError):
        return NOT_PLAIN
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose:
            dispose()


_NO_KEY = object()


def _plain(get_event: Any, texts: list[str]) -> Any:
    tags: dict[str, str] = {}  # a plain scalar's tag depends on its text alone
    stack: list[Any] = []  # the dicts and lists being built
    keys: list[Any] = []  # per entry of `stack`: a dict's pending key, or _NO_KEY
    result: Any = NOT_PLAIN
    values = documents = 0
    while True:
        event = get_event()
        kind = type(event)
        is_key_able = True
        if kind is ScalarEvent:
            if event.anchor is not None:
                raise _NotPlain
            tag, value = event.tag, event.value
            if tag is None or tag == "!":
                if event.implicit[0]:
                    tag = tags.get(value)
                    if tag is None:
                        tag = tags[value] = plain_tag(value, event.implicit)
                else:
                    tag = STR
            if tag == STR:
                texts.append(value)
            else:
                value = _plain_scalar(tag, value)
                if type(value) is str:  # a date, '=': kept as text
                    texts.append(value)
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            is_map = kind is MappingStartEvent
            if event.anchor is not None or event.tag not in (None, "!", MAP if is_map else SEQ) \
                    or len(stack) >= MAX_DEPTH:
                raise _NotPlain
            stack.append({} if is_map else [])
            keys.append(_NO_KEY)
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            value = stack.pop()
            keys.pop()
            is_key_able = False
        elif kind is StreamEndEvent:
            return result
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _NotPlain
            continue
        elif kind is AliasEvent:
            raise _NotPlain
        else:  # stream start, document end
            continue
        values += 1
        if values > MAX_VALUES:
            raise _NotPlain
        if not stack:
            result = value
            continue
        top = stack[-1]
        if type(top) is list:
            top.append(value)
            continue
        key = keys[-1]
        if key is _NO_KEY:  # this value is a key
            if not is_key_able or value in top:
                raise _NotPlain  # a complex or a duplicate key
            keys[-1] = value
        else:
            top[key] = value
            keys[-1] = _NO_KEY


def _plain_scalar(tag: str, text: str) -> Any:
    """A resolved scalar's value as `_Builder._scalar` makes it; _NotPlain where it would
    report a problem (or a merge key)."""
    if tag in (TIMESTAMP, VALUE):  # dates and '=' stay text: no field wants them
        return text
    convert = _CONVERT.get(tag)
    if convert is None:  # `<<`, or a tag that is a problem
        raise _NotPlain
    try:
        return convert(text)
    except _NOT_CONVERTIBLE:
        raise _NotPlain from None


def parse_yaml(text: str) -> ParsedYaml:
    """Parse one YAML document; raise YamlError when it cannot be used at all."""
    try:
        return _Builder(text).run()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if "nesting depth" in what:  # PyYAML >= 6.0.3 caps flow nesting itself, below our cap's reach
            raise YamlError(_mark(mark) if mark else None, f"nested deeper than {MAX_DEPTH} levels") from None
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise YamlError(_mark(mark) if mark else None, f"not valid YAML: {what}{context}") from None
    except yaml.reader.ReaderError as exc:
        raise YamlError(_index_mark(text, exc.position),
                        f"not valid YAML: character {exc.character!r} is not allowed") from None
    except yaml.YAMLError as exc:
        raise YamlError(None, f"not valid YAML: {' '.join(str(exc).split())}") from None


def _index_mark(text: str, index: int) -> Mark:
    line = text.count("\n", 0, index) + 1
    return Mark(line, index - (text.rfind("\n", 0, index) + 1) + 1)


class _Builder:
    def __init__(self, text: str) -> None:
        self.parser = _EventParser(text)
        self.anchors: dict[str, tuple[YNode, Any]] = {}
        self.open_anchors: set[str] = set()
        self.problems: list[YamlProblem] = []
        self.stack: list[_Frame] = []
        # Values built so far, aliases counted at their expanded size: the cap
        # is enforced as the document grows, so a 2 MB flow sequence of a
        # million items stops at the cap instead of building them all first.
        self.values = 0
        self.plain_tags: dict[str, str] = {}

    def _count(self, n: int, mark: Mark) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise YamlError(mark, f"the document expands to more than {MAX_VALUES} values "
                                  "(an alias counts as often as it is used; 10,000 endpoints "
                                  "are about 100,000)")

    def run(self) -> ParsedYaml:
        try:
            return self._run()
        finally:
            dispose = getattr(self.parser, "dispose", None)
            if dispose:
                dispose()

    def _run(self) -> ParsedYaml:
        documents = 0
        result: tuple[YNode, Any] | None = None
        get_event, feed = self.parser.get_event, self._feed
        while True:
            event = get_event()
            kind = type(event)
            if kind is StreamEndEvent:
                break
            if kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise YamlError(_mark(event.start_mark),
                                    "only one YAML document per file (a second one starts here)")
                self.anchors.clear()
                continue
            done = feed(event, kind)
            if done is not None:
                result = done
        if result is None:
            return ParsedYaml(None, None, self.problems)
        node, data = result
        return ParsedYaml(data, node, self.problems)

    # -- events -> values -------------------------------------------------

    def _path_here(self) -> tuple[Any, ...]:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.node.kind == "seq":
            return (*top.path, len(top.node.items))
        if top.pending_key is not None:
            return (*top.path, top.pending_key[0])
        return (*top.path, "<key>")

    def _feed(self, event: Any, kind: type) -> tuple[YNode, Any] | None:
        """Handle one event; return the document's (node, data) when it completes."""
        if kind is ScalarEvent:
            tag = self._scalar_tag(event)
            node, data = self._scalar(event, tag)
            self._count(1, node.mark)
            if event.anchor:
                self.anchors[event.anchor] = (node, data)
            return self._add(node, data, tag == MERGE)
        if kind is AliasEvent:
            mark = _mark(event.start_mark)
            if event.anchor in self.open_anchors:
                raise YamlError(mark, f"alias *{event.anchor} refers to a collection that contains it")
            if event.anchor not in self.anchors:
                raise YamlError(mark, f"alias *{event.anchor} has no anchor &{event.anchor} before it")
            node, data = self.anchors[event.anchor]
            if len(self.stack) + node.height > MAX_DEPTH:
                raise YamlError(mark, f"alias *{event.anchor} nests the document deeper than {MAX_DEPTH} levels")
            self._count(node.size, mark)
            return self._add(node, data, False)
        if kind is SequenceStartEvent or kind is MappingStartEvent:
            mark = _mark(event.start_mark)
            if len(self.stack) >= MAX_DEPTH:
                raise YamlError(mark, f"nested deeper than {MAX_DEPTH} levels")
            is_map = kind is MappingStartEvent
            self._count(1, mark)
            path = self._path_here()
            self._check_tag(event.tag, MAP if is_map else SEQ, mark, path)
            node = YNode("map" if is_map else "seq", mark)
            frame = _Frame(node, {} if is_map else [], event.anchor, path)
            if event.anchor:
                self.open_anchors.add(event.anchor)
            self.stack.append(frame)
            return None
        if kind is SequenceEndEvent or kind is MappingEndEvent:
            frame = self.stack.pop()
            node = frame.node
            if node.kind == "map":
                self._finish_mapping(frame)
            else:
                node.size = 1 + sum(n.size for n in node.items)
                node.height = 1 + max((n.height for n in node.items), default=0)
            if node.size > MAX_VALUES:
                raise YamlError(node.mark, f"the document expands to more than {MAX_VALUES} values "
                                           "(aliases repeated inside aliases?)")
            if frame.anchor:
                self.open_anchors.discard(frame.anchor)
                self._remember(frame.anchor, node, frame.data)
            return self._add(node, frame.data, False)
        return None  # stream/document ends carry nothing

    def _remember(self, anchor: str | None, node: YNode, data: Any) -> None:
        if anchor:
            self.anchors[anchor] = (node, data)

    def _add(self, node: YNode, data: Any, is_merge: bool) -> tuple[YNode, Any] | None:
        """Put a finished value into the collection being built; `is_merge`: a `<<` scalar."""
        if not self.stack:
            return node, data
        top = self.stack[-1]
        if top.node.kind == "seq":
            top.node.items.append(node)
            top.data.append(data)
            return None
        if top.pending_key is None:  # this value is a key
            if node.kind != "scalar":
                data = f"<complex key at {node.mark}>"
                self.problems.append(YamlProblem(node.mark, (*top.path, data),
                                                 "a key must be a plain value, not a list or mapping",
                                                 replaced=True))
            top.pending_key = (data, node, is_merge)
            return None
        key, key_node, is_merge = top.pending_key
        top.pending_key = None
        if is_merge:
            top.merges.append((node, data))
        elif key in top.explicit:
            first = top.explicit[key][0]
            self.problems.append(YamlProblem(
                key_node.mark, (*top.path, key),
                f"duplicate key {one_line(str(key))} (first at line {first.line}); "
                "YAML would silently keep only the last one"))
            top.explicit[key] = (key_node.mark, node, data)
        else:
            top.explicit[key] = (key_node.mark, node, data)
        return None

    def _finish_mapping(self, frame: _Frame) -> None:
        """Apply `<<` merges (explicit keys win, then earlier merges), set sizes."""
        entries: dict[Any, tuple[Mark, YNode]] = {}
        data: dict[Any, Any] = frame.data
        for merge_node, merge_data in frame.merges:
            sources = [(merge_node, merge_data)]
            if merge_node.kind == "seq":
                sources = list(zip(merge_node.items, merge_data, strict=True))
            for src_node, src_data in sources:
                if src_node.kind != "map":
                    self.problems.append(YamlProblem(src_node.mark, frame.path,
                                                     "a << merge key needs a mapping (or a list of mappings)"))
                    continue
                for k, (kmark, vnode) in src_node.entries.items():
                    if k not in entries:
                        entries[k] = (kmark, vnode)
                        data[k] = src_data[k]
        for k, (kmark, vnode, vdata) in frame.explicit.items():
            entries[k] = (kmark, vnode)
            data[k] = vdata
        node = frame.node
        node.entries = entries
        node.size = 1 + sum(1 + v.size for _, v in entries.values())
        node.height = 1 + max((v.height for _, v in entries.values()), default=0)

    # -- scalars ----------------------------------------------------------

    def _scalar_tag(self, event: ScalarEvent) -> str:
        if event.tag is None or event.tag == "!":
            if not event.implicit[0]:  # quoted or block text: what the resolver says too
                return STR
            # a plain scalar's tag depends on its text alone; keys and values like
            # `address` or `icmp` repeat thousands of times, and the regexes are slow
            value = event.value
            tag = self.plain_tags.get(value)
            if tag is None:
                tag = self.plain_tags[value] = plain_tag(value, event.implicit)
            return tag
        return event.tag

    def _check_tag(self, tag: str | None, default: str, mark: Mark, path: tuple[Any, ...]) -> None:
        if tag not in (None, "!", default):
            self.problems.append(YamlProblem(
                mark, path, f"unsupported YAML tag {one_line(show_tag(tag))}: "
                            "a config holds plain values only (strings, numbers, lists, mappings)",
                replaced=True))

    def _scalar(self, event: ScalarEvent, tag: str) -> tuple[YNode, Any]:
        mark = _mark(event.start_mark)
        text = event.value
        node = YNode("scalar", mark)
        try:
            if tag in (STR, TIMESTAMP, VALUE, MERGE):  # dates and '=' stay text: no field wants them
                return node, text
            convert = _CONVERT.get(tag)
            if convert is None:
                self._check_tag(tag, STR, mark, self._path_here())
                return node, text
            value = convert(text)
        except _NOT_CONVERTIBLE:
            problem = (f"number {one_line(text, 30)} is too long" if len(text) > 1000
                       else f"{one_line(text)} is not a valid {show_tag(tag)}")
            self.problems.append(YamlProblem(mark, self._path_here(), problem, replaced=True))
            return node, text
        if event.implicit[0] and not event.style:  # plain: None from PyYAML, '' from libyaml
            node.source = text
        return node, value

