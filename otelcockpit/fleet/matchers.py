"""Prometheus Alertmanager matchers, as Grafana Fleet Management uses them.

Syntax: ``name OP value`` with OP one of ``=``, ``!=``, ``=~``, ``!~``. Names and values are
unquoted literals (any UTF-8 except white space and ``{ } ! = ~ " ' \\``; a name or value may
not contain ``,`` either when several matchers are written on one line) or double-quoted
strings with Go's escapes (``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\xhh``, ``\\u00e9`` ...), read as
Alertmanager reads them with ``strconv.Unquote``. Regular expressions are fully anchored
(``^(?:re)$``, as Alertmanager compiles them: ``.`` does not match a newline) and limited to what
RE2 accepts: back-references, look-around, conditional, atomic and possessive constructs are
refused. A missing attribute is the empty string. Several matchers are ANDed. A matcher is at
most 200 characters long.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

OPS = ("=~", "!~", "!=", "=")
RESERVED = set('{}!=~"\'\\')
MAX_MATCHER_LENGTH = 200


class MatcherError(ValueError):
    """A matcher that cannot be parsed; the message names the position (1-based column)."""

    def __init__(self, text: str, position: int, reason: str) -> None:
        self.text = text
        self.position = position
        # One line, always: the CLI prints it as the whole error.
        self.reason = reason.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(f"bad matcher {text!r} at column {position + 1}: {self.reason}")


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Matcher("env", "=~", "prod.*") built directly compiles too; Matcher.make is the checked way.
        if self.op not in OPS:
            raise MatcherError(f"{self.name}{self.op}{quote(self.value)}", len(self.name), f"unknown operator {self.op!r}")
        if self._regex is None and self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", Matcher.make(self.name, self.op, self.value)._regex)

    @classmethod
    def make(cls, name: str, op: str, value: str) -> Matcher:
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = compile_regex(value)
            except ValueError as exc:
                raise MatcherError(f"{name}{op}{quote(value)}", len(name) + len(op), f"bad regex: {exc}") from None
        return cls(name, op, value, regex)

    def matches_value(self, actual: str) -> bool:
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self._regex.fullmatch(actual) is not None  # type: ignore[union-attr]
        return hit if self.op == "=~" else not hit

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self.matches_value(attributes.get(self.name, ""))

    def __str__(self) -> str:
        """The canonical text; ``parse_matcher(str(m)) == m`` and ``parse_matchers`` reads a ``,``-join."""
        name = self.name if _is_plain(self.name) else quote(self.name)
        return f"{name}{self.op}{quote(self.value)}"


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}


def _is_plain(text: str) -> bool:
    """True when ``text`` reads back unchanged as an unquoted literal (also inside a list)."""
    return text != "" and not any(ch.isspace() or ch in RESERVED or ch == "," for ch in text)


# Constructs Python's re accepts but RE2 (and so Alertmanager and Fleet Management) refuses.
_NOT_RE2 = {
    "GROUPREF": "back-references",
    "GROUPREF_IGNORE": "back-references",
    "GROUPREF_UNI_IGNORE": "back-references",
    "GROUPREF_LOC_IGNORE": "back-references",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "look-around assertions",
    "ASSERT_NOT": "look-around assertions",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}


def _refuse_non_re2(tree: object) -> None:
    stack = [tree]
    while stack:
        node = stack.pop()
        data = getattr(node, "data", None)
        if isinstance(data, list):  # a re._parser.SubPattern
            for op, av in data:
                what = _NOT_RE2.get(str(op))
                if what is not None:
                    raise ValueError(f"{what} are not supported (RE2 syntax)")
                stack.append(av)
        elif isinstance(node, tuple | list):
            stack.extend(node)


def compile_regex(value: str) -> re.Pattern[str]:
    """Compile a matcher's regex; ``fullmatch`` anchors it at both ends. Raises ValueError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and friends must not reach stderr
            pattern = re.compile(value)
            try:
                from re import _parser  # type: ignore[attr-defined]
            except ImportError:  # pragma: no cover - the check is best effort
                _parser = None
            if _parser is not None:
                _refuse_non_re2(_parser.parse(value))
    except re.error as exc:
        raise ValueError(str(exc)) from None
    except (OverflowError, RecursionError, MemoryError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    return pattern


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, reason: str, pos: int | None = None) -> MatcherError:
        return MatcherError(self.text, self.pos if pos is None else pos, reason)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def token(self, what: str, stop_comma: bool) -> str:
        self.skip_ws()
        if self.at_end():
            raise self.error(f"expected {what}, found end of input")
        ch = self.text[self.pos]
        if ch == '"':
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch.isspace() or ch in RESERVED or (stop_comma and ch == ","):
                break
            self.pos += 1
        if self.pos == start:
            if ch == "'":
                raise self.error("single quotes are not allowed; use double quotes")
            raise self.error(f"expected {what}, found {ch!r}")
        return self.text[start : self.pos]

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.error("unterminated quoted string", start)
            ch = self.text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.error("unterminated escape")
                out.append(self.escape())
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1

    def escape(self) -> str:
        """One escape in a quoted string, as Go's strconv.Unquote reads it (Alertmanager's parser)."""
        at = self.pos
        nxt = self.text[at + 1]
        simple = _SIMPLE_ESCAPES.get(nxt)
        if simple is not None:
            self.pos += 2
            return simple
        width = {"x": 2, "u": 4, "U": 8}.get(nxt)
        digits, base = (self.text[at + 2 : at + 2 + width], 16) if width else (self.text[at + 1 : at + 4], 8)
        if nxt in "01234567" or width:
            valid = "0123456789abcdefABCDEF" if base == 16 else "01234567"
            size = width or 3
            if len(digits) == size and all(d in valid for d in digits):
                code = int(digits, base)
                if code <= (0xFF if nxt == "x" or base == 8 else 0x10FFFF) and not 0xD800 <= code <= 0xDFFF:
                    self.pos = at + 1 + size + (1 if width else 0)
                    return chr(code)
            raise self.error(f"bad escape \\{self.text[at + 1 : at + 1 + size + (1 if width else 0)]}", at)
        raise self.error(f"unknown escape \\{nxt}", at)

    def op(self) -> str:
        self.skip_ws()
        for op in OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        if self.at_end():
            raise self.error("expected an operator (=, !=, =~, !~), found end of input")
        raise self.error(f"expected an operator (=, !=, =~, !~), found {self.text[self.pos]!r}")

    def matcher(self, stop_comma: bool) -> Matcher:
        name_pos = self.pos
        name = self.token("a label name", stop_comma)
        if name == "":
            raise self.error("empty label name", name_pos)
        op = self.op()
        self.skip_ws()
        value_pos = self.pos
        value = self.token("a value", stop_comma) if not self._value_empty(stop_comma) else ""
        try:
            return Matcher.make(name, op, value)
        except MatcherError as exc:
            raise MatcherError(self.text, value_pos, exc.reason) from None

    def _value_empty(self, stop_comma: bool) -> bool:
        # `foo=` followed by the end, a comma or a brace is the empty value.
        self.skip_ws()
        if self.at_end():
            return True
        ch = self.text[self.pos]
        return (stop_comma and ch == ",") or ch == "}"


def parse_matcher(text: str) -> Matcher:
    """Parse exactly one matcher (as stored in a pipeline's ``matchers`` list)."""
    if len(text) > MAX_MATCHER_LENGTH:
        raise MatcherError(text, MAX_MATCHER_LENGTH, f"longer than {MAX_MATCHER_LENGTH} characters")
    p = _Parser(text)
    m = p.matcher(stop_comma=False)
    p.skip_ws()
    if not p.at_end():
        raise p.error(f"unexpected {p.text[p.pos]!r} after the matcher")
    return m


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """Parse a comma-separated list, optionally wrapped in ``{...}``: ``env="prod",team=~"pay.*"``."""
    p = _Parser(text)
    p.skip_ws()
    braced = False
    if not p.at_end() and p.text[p.pos] == "{":
        braced = True
        p.pos += 1
    out: list[Matcher] = []
    while True:
        p.skip_ws()
        if p.at_end() or (braced and p.text[p.pos] == "}"):
            break
        start = p.pos
        out.append(p.matcher(stop_comma=True))
        if p.pos - start > MAX_MATCHER_LENGTH:
            raise p.error(f"matcher longer than {MAX_MATCHER_LENGTH} characters", start + MAX_MATCHER_LENGTH)
        p.skip_ws()
        if p.at_end():
            break
        ch = p.text[p.pos]
        if ch == ",":
            p.pos += 1
            continue
        if braced and ch == "}":
            break
        raise p.error(f"expected ',' between matchers, found {ch!r}")
    if braced:
        if p.at_end():
            raise p.error("missing closing '}'")
        p.pos += 1
        p.skip_ws()
        if not p.at_end():
            raise p.error(f"unexpected {p.text[p.pos]!r} after '}}'")
    if not out:
        raise MatcherError(text, 0, "no matcher given")
    return tuple(out)


@lru_cache(maxsize=4096)
def compile_matchers(matchers: tuple[str, ...]) -> tuple[Matcher, ...]:
    """Compile a pipeline's stored matcher strings (each one matcher)."""
    return tuple(parse_matcher(m) for m in matchers)


def matches(matchers: Sequence[Matcher], attributes: Mapping[str, str]) -> bool:
    return all(m.matches(attributes) for m in matchers)


def matches_getter(matchers: Sequence[Matcher], get: Callable[[str], str]) -> bool:
    """Evaluate against a lookup function (``Collector.attr``), avoiding a merged dict."""
    return all(m.matches_value(get(m.name)) for m in matchers)


def keys_of(matchers: Iterable[Matcher]) -> tuple[str, ...]:
    return tuple(sorted({m.name for m in matchers}))


def cached_predicate(matchers: Sequence[Matcher]) -> Callable[[Callable[[str], str]], bool]:
    """A predicate over an attribute lookup, memoised on the values of the keys the matchers read.

    Over a large fleet the values repeat (env, region, ...), so each distinct combination is
    evaluated once, however many collectors share it.
    """
    keys = keys_of(matchers)
    cache: dict[tuple[str, ...], bool] = {}
    if len(keys) == 1:
        (key,) = keys
        single: dict[str, bool] = {}

        def one(get: Callable[[str], str]) -> bool:
            value = get(key)
            hit = single.get(value)
            if hit is None:
                hit = single[value] = all(m.matches_value(value) for m in matchers)
            return hit

        return one

    def predicate(get: Callable[[str], str]) -> bool:
        values = tuple(get(k) for k in keys)
        hit = cache.get(values)
        if hit is None:
            lookup = dict(zip(keys, values, strict=True))
            hit = cache[values] = all(m.matches_value(lookup[m.name]) for m in matchers)
        return hit

    return predicate
