"""MkDocs hooks: the site shows files that live elsewhere in the repository, read at build
time so that none of them is copied by hand into ``docs/``.

- ``theory/*.md`` (written by ``scripts/make_theory.py``) become ``theory/<name>.md``, with
  ``theory/README.md`` as the section's index page; a page the nav's Theory section does
  not list yet is added to it;
- ``figures/*.png`` (written by the scripts) become ``figures/<name>.png``;
- in a page, the line ``<!-- include README.md NAME -->`` is replaced by the part of the
  repository's README.md between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` (for
  the generated Results), or, for ``NAME`` = ``figures``, by the README's figure table
  (the lines of its ``## Figures`` section that form the table).

Loaded by mkdocs.yml (``hooks:``); ``mkdocs build`` alone does all of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
_INCLUDE = re.compile(r"^<!-- include README\.md (?P<name>[\w-]+) -->$", re.MULTILINE)


def on_config(config: Any) -> Any:
    """Add to the nav's Theory section any ``theory/*.md`` page it does not list yet (a new
    derivation page appears without an edit here), titled by its first heading."""
    theory = next(
        (e["Theory"] for e in config.nav or [] if isinstance(e, dict) and "Theory" in e), None
    )
    if theory is None:
        return config
    listed = {v for e in theory for v in (e.values() if isinstance(e, dict) else [e])}
    for path in sorted((ROOT / "theory").glob("*.md")):
        uri = "theory/index.md" if path.name == "README.md" else f"theory/{path.name}"
        if uri not in listed:
            title = next(
                (
                    line[2:].strip()
                    for line in path.read_text().splitlines()
                    if line.startswith("# ")
                ),
                path.stem,
            )
            theory.append({title: uri})
    return config


def on_files(files: Files, config: Any) -> Files:
    for path in sorted((ROOT / "theory").glob("*.md")):
        uri = "theory/index.md" if path.name == "README.md" else f"theory/{path.name}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    for path in sorted((ROOT / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/{path.name}", abs_src_path=str(path)))
    return files


def readme_part(name: str, readme: str | None = None) -> str:
    """The part of README.md that ``<!-- include README.md NAME -->`` stands for."""
    text = (ROOT / "README.md").read_text() if readme is None else readme
    if name == "figures":
        section = text.split("\n## Figures\n", 1)[1].split("\n## ", 1)[0]
        table = [line for line in section.splitlines() if line.startswith("|")]
        if not table:
            raise ValueError("README.md's Figures section has no table")
        return "\n".join(table)
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, re.DOTALL)
    if match is None:
        raise ValueError(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return match.group(1).strip()


# A star right after a Greek letter is a mark (η*, the README's "lr where the error terms
# cancel"), not emphasis; Python-Markdown would pair two of them into italics.
_GREEK_STAR = re.compile(r"(?<=[\u0370-\u03ff])\*")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    return _INCLUDE.sub(lambda m: _GREEK_STAR.sub(r"\\*", readme_part(m.group("name"))), markdown)
