"""The documentation site (docs/, mkdocs.yml): its examples run and it builds without warnings.

- Every ```python block of ``docs/**/*.md`` runs: the blocks of one page in order, in one
  fresh namespace per page, in a temporary working folder, with ``jax_enable_x64`` (as
  tests/conftest.py sets). Tracebacks point at the page and its line.
- ``mkdocs build --strict`` builds the site into a temporary folder with no warning, and
  the built site has a reference entry for every public name of ``adamflow`` and
  ``adamflow.symbolic``, every ``theory/*.md`` page and the Results page.

The build needs the ``docs`` extra (``pip install -e ".[docs]"``); without MkDocs those tests
are skipped, saying so. .ci/run installs the extra, so CI runs them.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<ticks>```+)(?P<info>[^\n`]*)$")
# Languages a fence may name: ``python`` blocks run; the others are shown only.
SHOWN_ONLY = {"bash", "text", "pycon", "toml", "yaml", "console", ""}
# Pages whose examples must take longer than 10 s: each compiles a diffrax solve, a
# corrected flow or several training loops, or starts processes (CPU seconds measured on the
# 2-core machine: concepts 28, continue 27, own-model 24, getting-started 18, sharpness 44
# (an eos flow and a leading flow past the edge), kadam-optax 12; distributed starts two
# JAX processes). The README's test command leaves them out;
# .ci/run runs them (pytest -m slow tests/test_docs.py).
SLOW_PAGES = {
    "concepts.md",
    "getting-started.md",
    "how-to/continue.md",
    "how-to/distributed.md",
    "how-to/kadam-optax.md",
    "how-to/own-model.md",
    "how-to/sharpness.md",
}


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(language, first line number of the body, body)`` of every fenced block of a page,
    the body dedented by its fence's indentation."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, ticks = opening.group("indent"), opening.group("ticks")
        language = opening.group("info").strip().split(" ")[0].split("{")[0]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != ticks:
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed ``` fence at line {i + 1}")
        blocks.append((language, i + 2, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def pages_with_examples() -> list[str]:
    return [
        p.relative_to(DOCS).as_posix()
        for p in pages()
        if any(lang == "python" for lang, _, _ in fenced_blocks(p.read_text()))
    ]


def test_fences_name_a_known_language() -> None:
    # A block marked ```py or ```Python would be shown but silently never run.
    for path in pages():
        for language, line, _ in fenced_blocks(path.read_text()):
            assert language == "python" or language in SHOWN_ONLY, (
                f"{path.relative_to(ROOT)}:{line - 1}: fence language {language!r}; use "
                f"python (run by this test) or one of {sorted(SHOWN_ONLY - {''})}"
            )


def test_the_docs_have_examples() -> None:
    assert len(pages_with_examples()) >= 5
    assert SLOW_PAGES <= set(pages_with_examples()), SLOW_PAGES - set(pages_with_examples())


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p
        for p in pages_with_examples()
    ]
    # The README's quick start (a corrected2 flow and a comparison: slow, like the pages').
    + [pytest.param("../README.md", marks=pytest.mark.slow)],
)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)  # what an example writes lands here
    path = DOCS / page
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for language, line, body in fenced_blocks(path.read_text()):
            if language != "python":
                continue
            # Pad with blank lines so that a traceback names the page's own line numbers.
            code = compile("\n" * (line - 1) + body, str(path), "exec")
            exec(code, namespace)
    finally:
        plt.close("all")


# --- the site ------------------------------------------------------------------------

_MISSING = [
    m for m in ("mkdocs", "material", "mkdocstrings") if importlib.util.find_spec(m) is None
]
needs_mkdocs = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{', '.join(_MISSING)} not installed: pip install -e '.[docs]' to build the site",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site built by ``mkdocs build --strict`` and what the build printed."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's end-of-life banner
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    return out, log


@needs_mkdocs
def test_site_builds_without_warnings(site: tuple[Path, str]) -> None:
    _, log = site
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)


def public_names(package: str) -> list[str]:
    """A package's public names that are not modules: its ``__all__`` together with what
    its ``__init__`` re-exports (``from .x import Y as Y``), which adamflow.symbolic's
    ``__all__`` does not all list; a plain module's ``__all__``."""
    folder = ROOT / Path(*package.split("."))
    if not folder.is_dir():
        module = importlib.import_module(package)
        return sorted(module.__all__)
    names: set[str] = set()
    for node in ast.parse((folder / "__init__.py").read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names |= {a.name for a in node.names if a.asname == a.name}
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            names |= set(ast.literal_eval(node.value))  # type: ignore[union-attr]
    modules = {p.stem for p in folder.glob("*.py")} | {
        p.name for p in folder.iterdir() if p.is_dir()
    }
    return sorted(names - modules)


@needs_mkdocs
@pytest.mark.parametrize(
    ("package", "page"),
    [
        ("adamflow", "adamflow"),
        ("adamflow.symbolic", "symbolic"),
        ("adamflow.stability", "stability"),
        ("adamflow.phase", "phase"),
        ("adamflow.problems", "problems"),
        ("adamflow.rules", "rules"),
        ("adamflow.fileio", "utilities"),
        ("adamflow.validation", "utilities"),
        ("adamflow.plotting", "plotting"),
        ("adamflow.experiments", "experiments"),
    ],
)
def test_reference_documents_every_public_name(
    site: tuple[Path, str], package: str, page: str
) -> None:
    out, _ = site
    html = (out / "reference" / page / "index.html").read_text()
    names = public_names(package)
    missing = [n for n in names if f'id="{package}.{n}"' not in html]
    assert not missing, f"not in the API reference page of {package}: {missing}"


@needs_mkdocs
def test_site_has_the_theory_results_and_figures(site: tuple[Path, str]) -> None:
    out, _ = site
    for md in sorted((ROOT / "theory").glob("*.md")):
        name = "index.html" if md.name == "README.md" else f"{md.stem}/index.html"
        assert (out / "theory" / name).is_file(), f"theory/{md.name} not in the site"
    results = (out / "results" / "index.html").read_text()
    assert "<!-- include" not in results
    assert "Stable region." in results and "figures/phase_diagram.png" in results
    for png in sorted((ROOT / "figures").glob("*.png")):
        assert (out / "figures" / png.name).is_file(), f"figures/{png.name} not in the site"
    # KaTeX is served from the site itself (no network needed to read it).
    assert (out / "assets" / "katex" / "katex.min.js").is_file()


def _modules_with_examples() -> list[str]:
    """The library modules whose docstrings hold ``>>>`` examples."""
    package = Path(__file__).resolve().parent.parent / "adamflow"
    names = []
    for path in sorted(package.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# Modules whose examples take more than a few seconds (each flow an example runs compiles
# once): their examples run with -m slow, as .ci/run does.
SLOW_EXAMPLE_MODULES: frozenset[str] = frozenset(
    {
        "adamflow._compare",
        "adamflow.phase._distributed",
        "adamflow.symbolic._documents",
        "adamflow.symbolic._modified",
    }
)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXAMPLE_MODULES else n
        for n in _modules_with_examples()
    ],
)
def test_docstring_examples_run(name: str) -> None:
    """Every docstring ``Examples`` section runs and prints what it shows (doctest)."""
    import doctest
    import importlib

    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
