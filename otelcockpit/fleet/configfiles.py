"""An OpAMP config version (named files) as one pipeline text, and back: the one codec the cockpit's
``opamp`` backend and ``otelcockpit serve`` share.

A config version is a map of file name -> (body, content type). As a pipeline (what the editor,
the diff and the policy checks see) it is one text: each file under a ``# file: NAME`` header, the
empty name written ``""``. A text without headers is the body of the only file of the version it
replaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from otelcockpit.errors import UsageError

FILE_HEADER = "# file: "
_HEADER_RE = re.compile(r"^# file: (.*)$", re.MULTILINE)
DEFAULT_CONTENT_TYPE = "text/yaml"


def _body(f: object) -> str:
    if isinstance(f, Mapping):
        return str(f.get("body", ""))
    if isinstance(f, tuple):
        return str(f[0])
    return str(f)


def render_files(files: Mapping[str, object]) -> str:
    """Files (name -> body, (body, content type) or {"body": ...}) as one text, sorted by name."""
    parts = []
    for name in sorted(files):
        parts.append(f"{FILE_HEADER}{name if name else chr(34) * 2}\n{_body(files[name]).rstrip()}\n")
    return "\n".join(parts)


def split_files(contents: str) -> dict[str, str] | None:
    """The inverse of :func:`render_files` (name -> body); None when the text has no headers."""
    heads = list(_HEADER_RE.finditer(contents))
    if not heads or contents[: heads[0].start()].strip():
        return None
    out: dict[str, str] = {}
    for i, m in enumerate(heads):
        name = m.group(1).strip()
        name = "" if name == '""' else name
        end = heads[i + 1].start() if i + 1 < len(heads) else len(contents)
        out[name] = contents[m.end() + 1 : end].rstrip("\n") + "\n"
    return out


def content_type_for(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".json"):
        return "application/json"
    if lower.endswith((".yaml", ".yml")):
        return "text/yaml"
    return "text/plain"


def files_from_text(contents: str, previous: Mapping[str, str], *, what: str = "") -> dict[str, tuple[str, str]]:
    """A pipeline text as files (name -> (body, content type)). ``previous``: the files of the version
    it replaces, name -> content type (kept for files that stay). Without headers the text is the
    body of the previous version's only file; a previous version with several files needs headers."""
    def ctype(name: str) -> str:
        return previous.get(name) or (content_type_for(name) if name else DEFAULT_CONTENT_TYPE)

    split = split_files(contents)
    if split is not None:
        return {n: (b, ctype(n)) for n, b in split.items()}
    if len(previous) > 1:
        raise UsageError(
            f"{what or 'this config'} has {len(previous)} files: write a '{FILE_HEADER}NAME' line before each file"
        )
    name = next(iter(previous)) if previous else ""
    return {name: (contents, ctype(name))}
