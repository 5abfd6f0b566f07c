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
    its display equations (sympy objects, or raw LaTeX strings).

    Parameters
    ----------
    text : str
        The sentence, Markdown with ``$...$`` inline maths.
    math : tuple[Any, ...], optional
        Its display equations: sympy objects, raw LaTeX strings, or tuples of them shown
        side by side (default: none).

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import Step
    >>> x, y = sp.symbols("x y")
    >>> Step("The square of $x$:", (sp.Eq(y, x**2),))
    Step(text='The square of $x$:', math=(Eq(y, x**2),))
    """

    text: str
    math: tuple[Any, ...] = ()


@dataclass(frozen=True, eq=False)
class Derivation:
    r"""A derivation: title, steps, and its results (sympy expressions by name).

    What every derivation function of `adamflow.symbolic` returns (`moment_rates`,
    `stability`, ...); `theory_documents` renders them as the ``theory/`` pages.

    Parameters
    ----------
    key : str
        A short identifier (``"moment_rates"``, ``"eos_k1"``, ...).
    title : str
        The section title.
    steps : tuple[Step, ...]
        The steps, in order.
    results : Mapping[str, Any], optional
        The results by name, mostly sympy expressions (default: none).

    Examples
    --------
    >>> import sympy as sp
    >>> from adamflow.symbolic import Derivation, Step
    >>> x, y = sp.symbols("x y")
    >>> square = Derivation("square", "A square", (Step("Square $x$:", (sp.Eq(y, x**2),)),),
    ...                     {"y": x**2})
    >>> print(square.markdown(number=1))
    ## 1. A square
    <BLANKLINE>
    1. Square $x$:
    <BLANKLINE>
    $$
    y = x^{2}
    $$
    <BLANKLINE>
    >>> square.results_latex()
    {'y': 'x^{2}'}
    """

    key: str
    title: str
    steps: tuple[Step, ...]
    results: Mapping[str, Any] = field(default_factory=dict)

    def latex(self) -> str:
        r"""The derivation as a LaTeX fragment (``\subsection*`` + text + ``\[...\]``).

        Returns
        -------
        str
            The title as ``\subsection*``, each step's text (backquoted code as
            ``\texttt``, starred words as ``\emph``) and its equations as ``\[ ... \]``.

        Raises
        ------
        sympy.SympifyError
            A display item that is neither a string, a tuple nor sympifiable.

        Examples
        --------
        >>> import sympy as sp
        >>> from adamflow.symbolic import Derivation, Step
        >>> x, y = sp.symbols("x y")
        >>> print(Derivation("k", "A square", (Step("Square $x$:", (sp.Eq(y, x**2),)),)).latex())
        \subsection*{A square}
        <BLANKLINE>
        Square $x$:
        <BLANKLINE>
        \[ y = x^{2} \]
        <BLANKLINE>
        """
        lines = [rf"\subsection*{{{_text_to_latex(self.title)}}}", ""]
        for step in self.steps:
            lines += [_text_to_latex(step.text), ""]
            lines += [rf"\[ {render(item)} \]" for item in step.math]
            if step.math:
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def markdown(self, heading: str = "##", number: int | None = None) -> str:
        """The derivation as Markdown, equations in ``$$...$$`` blocks; with ``number`` the
        heading reads ``## 3. Title`` (the section that ``page.md §3`` cites).

        Parameters
        ----------
        heading : str, optional
            The Markdown heading mark of the title (default ``"##"``).
        number : int | None, optional
            The section number put before the title (default: none).

        Returns
        -------
        str
            The heading, the steps as a numbered list and each equation in a ``$$`` block.

        Raises
        ------
        sympy.SympifyError
            A display item that is neither a string, a tuple nor sympifiable.
        """
        title = self.title if number is None else f"{number}. {self.title}"
        lines = [f"{heading} {title}", ""]
        for index, step in enumerate(self.steps, start=1):
            lines += [f"{index}. {step.text}", ""]
            for item in step.math:
                lines += ["$$", render(item), "$$", ""]
        return "\n".join(lines).rstrip() + "\n"

    def results_latex(self) -> dict[str, str]:
        """Each result as LaTeX.

        Returns
        -------
        dict[str, str]
            ``{name: LaTeX}`` of `results` (strings as they are).

        Raises
        ------
        sympy.SympifyError
            A result that is neither a string, a tuple nor sympifiable.
        """
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
