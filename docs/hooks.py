"""MkDocs hooks: the site shows files that live elsewhere in the repository, read at build
time so that none of them is copied by hand into ``docs/``.

- ``theory/*.md`` (written by ``scripts/make_theory.py``) become ``theory/<name>.md``, with
  ``theory/README.md`` as the section's index page; a page the nav's Theory section does
  not list yet is added to it;
- ``figures/*.png`` (written by the scripts) become ``figures/<name>.png``, which the
  Results page (``docs/results.md``, its numbers written by ``scripts/update_results.py``)
  shows.

Loaded by mkdocs.yml (``hooks:``); ``mkdocs build`` alone does all of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


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
