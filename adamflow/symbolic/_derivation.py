r"""`Step` and `Derivation`, and the LaTeX rendering of their equations.

A derivation is a sequence of steps, each a sentence (Markdown with ``$...$`` inline maths)
and its display equations (sympy objects or raw LaTeX strings), plus a dict of results. It
renders as a LaTeX fragment (`Derivation.latex`) or as Markdown (`Derivation.markdown`, from
which the ``theory/`` pages are written).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

#: LaTeX of the symbols whose names sympy cannot render by itself (the lags of
#: theory/corrected_flow.md).
_TEX_NAMES = {
    "delta_b1": r"\delta_{\beta_1}",
    "delta_b2": r"\delta_{\beta_2}",
    "deltaprime_b1": r"\delta'_{\beta_1}",
}


@dataclass(frozen=True)
class Step:
    """One step of a derivation: a sentence (Markdown/LaTeX with ``$...$`` inline maths) and
    its display equations (sympy objects, or raw LaTeX strings)."""

    text: str
    math: tuple[Any, ...] = ()


@dataclass(frozen=True, eq=False)
class Derivation:
    """A derivation: title, steps, and its results (sympy expressions by name)."""

    key: str
    title: str
    steps: tuple[Step, ...]
    results: Mapping[str, Any] = field(default_factory=dict)

    def latex(self) -> str:
        r"""The derivation as a LaTeX fragment (``\subsection*`` + text + ``\[...\]``)."""
        lines = [rf"\subsection*{{{_text_to_latex(self.title)}}}", ""]
        for step in self.steps:
            lines += [_text_to_latex(step.text), ""]
            lines += [rf"\[ {render(item)} \]" for item in step.math]
            if step.math:
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def markdown(self, heading: str = "##", number: int | None = None) -> str:
        """The derivation as Markdown, equations in ``$$...$$`` blocks; with ``number`` the
        heading reads ``## 3. Title`` (the section that ``page.md §3`` cites)."""
        title = self.title if number is None else f"{number}. {self.title}"
        lines = [f"{heading} {title}", ""]
        for index, step in enumerate(self.steps, start=1):
            lines += [f"{index}. {step.text}", ""]
            for item in step.math:
                lines += ["$$", render(item), "$$", ""]
        return "\n".join(lines).rstrip() + "\n"

    def results_latex(self) -> dict[str, str]:
        """Each result as LaTeX."""
        return {name: render(value) for name, value in self.results.items()}


def _text_to_latex(text: str) -> str:
    """Markdown prose to LaTeX prose: backquoted code to texttt, starred words to emph."""

    def code(match: re.Match[str]) -> str:
        return r"\texttt{" + match.group(1).replace("_", r"\_") + "}"

    text = re.sub(r"`([^`]*)`", code, text)
    return re.sub(r"\*([^*$]+)\*", r"\\emph{\1}", text)


def latex(item: sp.Basic) -> str:
    """`sympy.latex`, with the symbols of ``_TEX_NAMES`` written as there."""
    names = {
        s: _TEX_NAMES[s.name]
        for s in item.free_symbols
        if isinstance(s, sp.Symbol) and s.name in _TEX_NAMES
    }
    return sp.latex(item, symbol_names=names) if names else sp.latex(item)


def render(item: Any) -> str:
    """LaTeX of a display item: a raw string as is, a tuple side by side, else `latex`."""
    if isinstance(item, str):
        return item
    if isinstance(item, (tuple, list)):
        return r",\qquad ".join(render(x) for x in item)
    return latex(sp.sympify(item))


def eq(lhs: Any, rhs: Any) -> sp.Basic:
    """An unevaluated equation, for display."""
    return sp.Eq(lhs, rhs, evaluate=False)


def lhs_eq(latex_text: str, rhs: Any) -> str:
    """An equation with a left-hand side written in LaTeX, for display."""
    return f"{latex_text} = {render(rhs)}"


def iff(*items: Any) -> str:
    """Items joined by a displayed "if and only if"."""
    return r" \;\Longleftrightarrow\; ".join(render(x) for x in items)
