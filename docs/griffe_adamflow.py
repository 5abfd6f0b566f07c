r"""A griffe extension that lets mkdocstrings render adamflow's docstrings as Markdown.

adamflow's docstrings are written for reading in a terminal and in Sphinx-like tools:
reStructuredText math (``:math:`x```, ``.. math:: x``), literal blocks introduced by ``::``
and NumPy-style sections whose entries read ``name : description`` (the description where
NumPy puts the type). This extension rewrites the docstring text (never the source) before
griffe parses it:

- ``:math:`x``` becomes ``$x$`` and ``.. math:: x`` (with its indented continuation lines)
  a ``$$ … $$`` block, which pymdownx.arithmatex hands to KaTeX;
- the first paragraph is joined into one line (the summary tables show the first line);
- control characters left by TeX in a docstring that is not a raw string (there
  ``\varepsilon`` is a vertical tab and ``arepsilon``) get their backslash back;
- a paragraph ending in ``::`` ends in ``:`` (the indented block after it is already a
  Markdown code block);
- in ``Parameters``, ``Other Parameters`` and ``Attributes`` sections, an entry
  ``name : text`` whose text is prose rather than a type becomes ``name`` with ``text`` as
  the first line of its description (the signature supplies the type), entries that
  share a line (``steps : ... ; lr : ...``) are split, and a paragraph of prose after the
  entries (NumPy-style wants it in ``Notes``) starts a ``Notes`` section.

It also marks the explicit re-exports of a package's ``__init__`` (``from ._x import Y as
Y``) as public, so that the reference shows them even where ``__all__`` omits them
(``adamflow.symbolic``'s does).

Loaded by mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":math:`([^`]+)`")
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. math::\s*(?P<body>.*)$")
_SECTION = re.compile(r"^(?P<indent>\s*)(?P<title>[A-Z][A-Za-z ]+)\s*$")
_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_ENTRY = re.compile(
    r"^(?P<indent>\s*)(?P<names>[A-Za-z_*][\w*]*(?:\s*,\s*[\w*]+)*) : (?P<text>.*)$"
)
_NAMES = re.compile(r"^\s*[A-Za-z_*][\w*]*(\s*,\s*[\w*]+)*\s*$")
# A second entry on the same line: ``...; lr : the constant ...`` or ``... . eps : ...``.
_INLINE_ENTRY = re.compile(r"(?P<sep>[;.])\s+(?P<name>[a-z_]\w*) : ")
_ENTRY_SECTIONS = {"Parameters", "Other Parameters", "Attributes"}
# Text after ``name : `` that is a type: a dotted name, optionally subscripted or a union.
_TYPE = re.compile(r"^[\w.]+(\[[\w., |\[\]]*\])?( \| [\w.]+(\[[\w., |\[\]]*\])?)*(, optional)?$")


def _math(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(_ROLE.sub(lambda m: f"${m.group(1).strip()}$", lines[i]))
            i += 1
            continue
        indent = match.group("indent")
        body = [match.group("body").strip()] if match.group("body").strip() else []
        i += 1
        while i < len(lines) and lines[i].strip() and _indent(lines[i]) > len(indent):
            body.append(lines[i].strip())
            i += 1
        if out and out[-1].strip():
            out.append("")
        out += [f"{indent}$$", *(f"{indent}{line}" for line in body), f"{indent}$$"]
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _literal_blocks(lines: list[str]) -> list[str]:
    out = []
    for i, line in enumerate(lines):
        follows_blank = i + 1 < len(lines) and not lines[i + 1].strip()
        if line.rstrip().endswith("::") and not line.strip().startswith("..") and follows_blank:
            line = line.rstrip()[:-1]
        out.append(line)
    return out


def _entries(lines: list[str]) -> list[str]:
    out: list[str] = []
    section: str | None = None
    section_indent = 0
    for i, line in enumerate(lines):
        title = _SECTION.match(line)
        if title and i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]):
            section, section_indent = title.group("title").strip(), _indent(line)
            out.append(line)
            continue
        at_section_indent = line.strip() and _indent(line) == section_indent
        after_blank = i > 0 and not lines[i - 1].strip()
        if (
            section in _ENTRY_SECTIONS
            and at_section_indent
            and after_blank
            and not _ENTRY.match(line)
            and not _NAMES.match(line)
        ):
            # Prose after the entries: NumPy-style puts it in a Notes section.
            out += [f"{' ' * section_indent}Notes", f"{' ' * section_indent}-----"]
            section = "Notes"
        entry = _ENTRY.match(line)
        if (
            section in _ENTRY_SECTIONS
            and entry
            and len(entry.group("indent")) == section_indent
            and not _TYPE.match(entry.group("text").strip())
        ):
            out += _split_entry(entry.group("indent"), entry.group("names"), entry.group("text"))
            continue
        out.append(line)
    return out


def _split_entry(indent: str, names: str, text: str) -> list[str]:
    """``name`` on its own line and ``text`` as the first line of its description; further
    ``; other : text`` entries on the same line become entries of their own."""
    lines: list[str] = []
    position = 0
    for match in _INLINE_ENTRY.finditer(text):
        end = text[position : match.start()] + ("." if match.group("sep") == "." else "")
        lines += [f"{indent}{names}", f"{indent}    {end.strip()}"]
        names, position = match.group("name"), match.end()
    return lines + [f"{indent}{names}", f"{indent}    {text[position:].strip()}"]


def _one_line_summary(lines: list[str]) -> list[str]:
    """The first paragraph on one line: mkdocstrings' summary tables show a docstring's first
    line, and Markdown renders a paragraph the same either way."""
    end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    first = lines[:end]
    if len(first) < 2 or any(
        _indent(line) or line.lstrip().startswith(("$$", "-", "*", ">>>", "|")) for line in first
    ):
        return lines
    return [" ".join(line.strip() for line in first), *lines[end:]]


# Control characters that a TeX command in a docstring that is not raw turned into (``\v``
# of ``\varepsilon``, ``\b`` of ``\beta``): put the backslash back.
_LOST_ESCAPES = str.maketrans({"\x0b": "\\v", "\x08": "\\b", "\x0c": "\\f", "\x07": "\\a"})


def markdown_docstring(text: str) -> str:
    """The docstring ``text`` with the rewrites described in this module's docstring."""
    lines = text.translate(_LOST_ESCAPES).splitlines()
    return "\n".join(_one_line_summary(_entries(_literal_blocks(_math(lines)))))


class AdamflowDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package once its tree is built, and make the
    explicit re-exports (``from ._x import Y as Y``) public, as the package means them."""

    def on_alias_instance(self, *, node: Any, alias: griffe.Alias, **kwargs: Any) -> None:
        if isinstance(node, ast.ImportFrom) and any(
            name.asname == name.name == alias.name for name in node.names
        ):
            alias.public = True

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
