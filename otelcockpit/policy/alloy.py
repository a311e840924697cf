"""A block-level reader for Alloy configuration (the syntax formerly called River).

It finds components (``otelcol.processor.tail_sampling "name" {``), their arguments, nested
blocks and line numbers, and the references between components (``forward_to = [...]``,
``output { traces = [...] }``). It does not evaluate expressions. Syntax it cannot read is
reported as :class:`AlloySyntaxError` with the line, never guessed around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_LABEL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
# Blocks that hold components (the others hold arguments only).
CONTAINER_BLOCKS = ("declare",)
CONFIG_BLOCKS = (
    "logging",
    "tracing",
    "livedebugging",
    "http",
    "remotecfg",
    "argument",
    "export",
    "foreach",
    "declare",
)


class AlloySyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class Attribute:
    name: str
    value: str  # the expression's source text, unevaluated
    line: int


@dataclass
class Block:
    name: str  # e.g. "otelcol.processor.batch" or "endpoint"
    label: str | None
    line: int
    end_line: int = 0
    attributes: list[Attribute] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """How other components refer to it: ``otelcol.processor.batch.default``."""
        return f"{self.name}.{self.label}" if self.label is not None else self.name

    def walk_attributes(self) -> list[Attribute]:
        out = list(self.attributes)
        for b in self.blocks:
            out.extend(b.walk_attributes())
        return out

    def body_text(self) -> str:
        return "\n".join(a.value for a in self.walk_attributes())


@dataclass
class AlloyConfig:
    blocks: list[Block]
    components: list[Block]  # top level and inside declare blocks
    declared: set[str]  # names of custom components (declare "name")

    def edges(self) -> list[tuple[Block, Block]]:
        """Data flow (from, to) between components, read from references.

        ``x.input`` / ``x.receiver`` in A's body means A sends to x; any other export of x
        (``x.targets``, ``x.output``) in A's body means x feeds A.
        """
        by_ref = {c.ref: c for c in self.components if c.label is not None}
        out: list[tuple[Block, Block]] = []
        if not by_ref:
            return out
        rx = re.compile(
            r"\b(" + "|".join(re.escape(r) for r in sorted(by_ref, key=len, reverse=True)) + r")\.(\w+)"
        )
        for c in self.components:
            for m in rx.finditer(c.body_text()):
                other = by_ref[m.group(1)]
                if other is c:
                    continue
                if m.group(2) in ("input", "receiver"):
                    out.append((c, other))
                else:
                    out.append((other, c))
        return out

    def downstream(self, start: Block) -> list[Block]:
        edges = self.edges()
        seen: list[Block] = []
        todo = [start]
        while todo:
            cur = todo.pop()
            for a, b in edges:
                if a is cur and b not in seen and b is not start:
                    seen.append(b)
                    todo.append(b)
        return seen


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def error(self, message: str, line: int | None = None) -> AlloySyntaxError:
        return AlloySyntaxError(line or self.line, message)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self, n: int = 1) -> str:
        chunk = self.text[self.pos : self.pos + n]
        self.line += chunk.count("\n")
        self.pos += n
        return chunk

    def skip_space(self, newlines: bool = True) -> None:
        while self.pos < len(self.text):
            ch = self.peek()
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.advance()
            elif self.text.startswith("//", self.pos):
                end = self.text.find("\n", self.pos)
                self.advance((end if end != -1 else len(self.text)) - self.pos)
            elif self.text.startswith("/*", self.pos):
                end = self.text.find("*/", self.pos + 2)
                if end == -1:
                    raise self.error("unterminated /* comment")
                self.advance(end + 2 - self.pos)
            else:
                return

    def string(self) -> str:
        start_line = self.line
        quote = self.peek()
        buf = [self.advance()]
        while True:
            ch = self.peek()
            if ch == "":
                raise self.error("unterminated string", start_line)
            if quote == '"' and ch == "\n":
                raise self.error("newline in a string", start_line)
            if quote == '"' and ch == "\\":
                buf.append(self.advance(2))
                continue
            buf.append(self.advance())
            if ch == quote:
                return "".join(buf)

    def expression(self) -> str:
        """Source text of an expression: up to a newline (or '}') at bracket depth 0."""
        buf: list[str] = []
        depth: list[str] = []
        pairs = {"(": ")", "[": "]", "{": "}"}
        start_line = self.line
        while True:
            self.skip_space(newlines=bool(depth))
            ch = self.peek()
            if ch == "":
                if depth:
                    raise self.error(f"unclosed {depth[-1]!r} in an expression", start_line)
                break
            if ch in '"`':
                buf.append(self.string())
                continue
            if ch in pairs:
                depth.append(pairs[ch])
                buf.append(self.advance())
                continue
            if ch in ")]}":
                if not depth:
                    if ch == "}":
                        break
                    raise self.error(f"unexpected {ch!r}")
                if ch != depth[-1]:
                    raise self.error(f"expected {depth[-1]!r}, found {ch!r}")
                depth.pop()
                buf.append(self.advance())
                continue
            if ch == "\n":
                break
            buf.append(self.advance())
            if not depth and self.peek() in " \t":
                buf.append(" ")
        text = "".join(buf).strip()
        if not text:
            raise self.error("an attribute needs a value", start_line)
        return text

    def body(self, closing: bool) -> tuple[list[Attribute], list[Block]]:
        attrs: list[Attribute] = []
        blocks: list[Block] = []
        while True:
            self.skip_space()
            ch = self.peek()
            if ch == "":
                if closing:
                    raise self.error("missing '}' at the end of the file")
                return attrs, blocks
            if ch == "}":
                if not closing:
                    raise self.error("unexpected '}'")
                return attrs, blocks
            line = self.line
            m = _IDENT.match(self.text, self.pos)
            if not m:
                snippet = self.text[self.pos : self.pos + 20].split("\n")[0]
                raise self.error(f"cannot read {snippet!r}: expected an attribute or a block")
            name = m.group(0)
            self.advance(len(name))
            self.skip_space(newlines=False)
            ch = self.peek()
            if ch == "=" and not self.text.startswith("==", self.pos):
                if "." in name:
                    raise self.error(f"attribute name {name!r} cannot contain '.'", line)
                self.advance()
                attrs.append(Attribute(name, self.expression(), line))
                continue
            label = None
            if ch == '"':
                lm = _LABEL.match(self.text, self.pos)
                if not lm:
                    raise self.error("unterminated block label")
                label = lm.group(1)
                self.advance(len(lm.group(0)))
                self.skip_space(newlines=False)
                ch = self.peek()
            if ch != "{":
                raise self.error(f"expected '=' or '{{' after {name!r}", line)
            self.advance()
            a, b = self.body(closing=True)
            end = self.line
            self.advance()  # the closing brace
            blocks.append(Block(name, label, line, end, a, b))


def parse_alloy(text: str) -> AlloyConfig:
    reader = _Reader(text)
    attrs, blocks = reader.body(closing=False)
    if attrs:
        a = attrs[0]
        raise AlloySyntaxError(a.line, f"attribute {a.name!r} outside a block")
    components: list[Block] = []
    declared: set[str] = set()

    def collect(bs: list[Block]) -> None:
        for b in bs:
            if b.name == "declare":
                if b.label:
                    declared.add(b.label)
                collect(b.blocks)
            elif b.name not in CONFIG_BLOCKS:
                components.append(b)

    collect(blocks)
    return AlloyConfig(blocks, components, declared)
