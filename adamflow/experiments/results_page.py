"""The documentation's Results page (``docs/results.md``), generated from the committed
figure sidecars.

A number in the documentation comes from a committed file, never typed by hand: each figure
of ``figures/`` has a JSON sidecar (``parameters``, ``seed``, ``adamflow_version`` and its
results, written by `adamflow.experiments.make_figure`), and `results_markdown` formats
every number of the Results section from them. The page holds that text between
`RESULTS_START` and `RESULTS_END`; `update_results` rewrites it (``python
scripts/update_results.py``) or, with ``check=True``, only says whether it is stale
(``tests/test_results_page.py`` fails while it is).

    sidecars = load_sidecars("figures")
    text = results_markdown(sidecars)          # the Markdown between the markers
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
#: Column at which the generated Markdown is wrapped.
WIDTH = 92

Sidecars = Mapping[str, Mapping[str, Any]]

# Names of the convergence figure's specs (adamflow.experiments.convergence); read here as
# plain strings so that generating the page imports no JAX.
_ADAM, _ADAMW, _KADAM2 = "Adam", "AdamW (λ = 0.05)", "2-Adam"
# The growth-rate threshold in phase_accuracy's keys.
_GROWTH_SPLIT = "0.1"


# ----------------------------------------------------------------------------- reading


class QuickSidecars(ValueError):
    """The sidecars come from ``make_figures.py --quick``: their reduced runs are not the
    numbers the Results page quotes."""


def is_quick(sidecar: Mapping[str, Any]) -> bool:
    """Whether a sidecar was made with ``--quick`` (said at its top level, or in its
    parameters by the experiments that record it there)."""
    parameters = sidecar.get("parameters")
    in_parameters = isinstance(parameters, Mapping) and parameters.get("quick") is True
    return sidecar.get("quick") is True or in_parameters


def load_sidecars(figures_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every JSON sidecar of ``figures_dir``, by figure name (the file's stem). Raises
    `QuickSidecars` naming them if any was made with ``--quick``."""
    folder = Path(figures_dir)
    sidecars = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    if not sidecars:
        raise FileNotFoundError(f"no figure sidecars (*.json) in {folder}")
    quick = [name for name, sidecar in sidecars.items() if is_quick(sidecar)]
    if quick:
        raise QuickSidecars(
            f"{folder} holds quick sidecars ({', '.join(quick)}): the Results page quotes the full "
            "figures; run python scripts/make_figures.py (without --quick) to regenerate them"
        )
    return sidecars


# ----------------------------------------------------------------------------- formatting


def _minus(text: str) -> str:
    """A leading ASCII minus as the typographic one (U+2212)."""
    return text.replace("-", "\u2212", 1) if text.startswith("-") else text


def sci(x: float, digits: int = 2, *, strip: bool = False) -> str:
    """``x`` with ``digits`` significant digits in short scientific form: ``2.2e-3``,
    ``2.0e-5``, ``5.4e-4`` (no ``+`` or padding in the exponent; ``strip``: trailing zeros
    of the mantissa dropped, ``2.5e-3`` rather than ``2.50e-3``)."""
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    if strip and "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return _minus(f"{mantissa}e{int(exponent)}")


def sig(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` significant digits in plain decimals (``0.031``, ``14``,
    ``0.0039``); scientific (`sci`) below 1e-3 or from 1e5."""
    if x != 0 and not 1e-3 <= abs(x) < 1e5:
        return sci(x, digits)
    return _minus(f"{float(f'{x:.{digits}g}'):g}")


def lr_text(lr: float) -> str:
    """A learning rate as the figures label it: ``0.02``, ``0.01``, ``6.25e-4``, ``2.44e-6``."""
    return f"{lr:g}" if lr >= 0.01 else sci(lr, 3, strip=True)


def percent(fraction: float, digits: int = 2) -> str:
    """``fraction`` as a percentage with ``digits`` significant digits (``100%``, ``0.071%``)."""
    if fraction == 1.0:
        return "100%"
    return f"{sig(100.0 * fraction, digits)}%"


def fixed(x: float, decimals: int = 2) -> str:
    """``x`` with ``decimals`` decimals and a typographic minus (orders, cosines)."""
    return _minus(f"{x:.{decimals}f}")


def _floor3(x: float) -> str:
    """``x`` rounded down to three decimals (for "none below ...")."""
    return f"{math.floor(x * 1000) / 1000:.3f}"


def lr_range(fit: Mapping[str, Any]) -> str:
    """An `asymptotic_fit`'s lr range, largest first: ``1.56e-4 → 2.44e-6``."""
    return f"{lr_text(fit['lr_max'])} → {lr_text(fit['lr_min'])}"


def _bullet(title: str, text: str) -> str:
    """A Markdown list item wrapped at `WIDTH`, checked not to start a block on a line."""
    lines = textwrap.wrap(
        f"**{title}** {text}",
        width=WIDTH,
        initial_indent="- ",
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    for line in lines[1:]:
        if re.match(r"\s*([-+*>#]|\d+[.)])(\s|$)", line):
            raise ValueError(f"a wrapped line would start a Markdown block: {line!r}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- sections


def _stable_region(phase: Mapping[str, Any], switch_off: Mapping[str, Any]) -> str:
    params, summary = phase["parameters"], phase["summary"]
    grid = switch_off["parameters"]["grid"]
    return (
        "Adam on a sparse quadratic (coordinates see their gradient with probability "
        f"{params['problem']['params']['p']:g} per step): measured stability agrees with "
        f"β₂ > β₁² in {percent(summary['agreement'], 3)} of the {summary['decided_cells']} "
        f"decidable cells of a {len(params['b1s'])} × {len(params['b2s'])} grid; "
        f"{summary['band_cells']} cells lie in the band where the ε cap makes the growth too "
        f"small to see in {params['steps']} steps. Where the gradient is switched off the "
        "measured growth of ln|u| per step matches ln(β₁/√β₂) to "
        f"{percent(switch_off['growth_max_rel_error'])} in all {switch_off['growth_cells']} "
        f"theory-unstable cells outside that band (a {len(grid['b1s'])} × "
        f"{len(grid['b2s'])} grid)."
    )


def _flow_vs_optimizer(conv: Mapping[str, Any]) -> str:
    params, fits = conv["parameters"], conv["fits"]
    lead = {name: fits[name]["leading"] for name in (_ADAM, _ADAMW, _KADAM2)}
    corr = {name: fits[name]["corrected"] for name in (_ADAM, _ADAMW, _KADAM2)}
    lead_lrs = params["leading_lrs"]
    ratios = [fits[name]["ratio_at_lr_0.01"] for name in (_ADAM, _ADAMW, _KADAM2)]
    asym = {name: fit["asymptotic"] for name, fit in lead.items()}
    corrected_lrs = params["corrected_lrs"]
    return (
        "On the convergence figure's quadratic far from its minimum (β₁ = "
        f"{params['b1']:g}, β₂ = {params['b2']:g}; error = the largest |θₙ − θ(nη)| for nη ≤ "
        f"{params['t1']:g}), the leading-order flow reaches its asymptotic order only at "
        f"small lrs: {fixed(asym[_ADAM]['order'])} for Adam (lr {lr_range(asym[_ADAM])}), "
        f"{fixed(asym[_ADAMW]['order'])} for AdamW ({lr_range(asym[_ADAMW])}) and "
        f"{fixed(asym[_KADAM2]['order'])} for 2-Adam ({lr_range(asym[_KADAM2])}); fitted "
        f"over all {len(lead_lrs)} lrs ({lr_text(max(lead_lrs))} → {lr_text(min(lead_lrs))})"
        f" the slopes are {fixed(lead[_ADAM]['order'])}, {fixed(lead[_ADAMW]['order'])} and "
        f"{fixed(lead[_KADAM2]['order'])}. The first-order corrected flow falls at order ≈ 2 "
        f"from the largest lr down: {fixed(corr[_ADAM]['order'])}, "
        f"{fixed(corr[_ADAMW]['order'])} and {fixed(corr[_KADAM2]['order'])} over all "
        f"{len(corrected_lrs)} lrs ({lr_text(max(corrected_lrs))} → "
        f"{lr_text(min(corrected_lrs))}; asymptotic {fixed(corr[_ADAM]['asymptotic']['order'])}"
        f", {fixed(corr[_ADAMW]['asymptotic']['order'])}, "
        f"{fixed(corr[_KADAM2]['asymptotic']['order'])}), and is "
        f"{min(ratios):.0f}–{max(ratios):.0f}× closer at lr = 0.01; where a coordinate's "
        "gradient starts near zero, its start indicator (`StartValidity`) says so. The test "
        "suite checks "
        "order ≈ 1 on a log-cosh loss, and that the exact-decay rates beat the Euler ones at "
        "every lr."
    )


def _corrected_flows(orders: Mapping[str, Any]) -> str:
    fits, params, row = orders["fits"], orders["parameters"], orders["table_row"]
    names = [_ADAM, _ADAMW, _KADAM2]

    def pairs(order: str) -> str:
        return ", ".join(
            f"{fixed(fits[name][order]['final_order'])}/{fixed(fits[name][order]['max_order'])}"
            for name in names
        )

    gains = [fits[name]["corrected2_gain_at_lr_0.01"] for name in names]
    best = min(row["corrected_final_error"], row["corrected2_final_error"])
    lrs = params["lrs"]
    return (
        "On a quadratic-plus-log-cosh loss far from its minimum (β₁ = "
        f"{params['b1']:g}, β₂ = {params['b2']:g}, T = {params['t1']:g}, lr "
        f"{lr_text(max(lrs))} → {lr_text(min(lrs))}), the fitted orders of the final-time/"
        f"largest error for {', '.join(names)} are: leading {pairs('leading')}; corrected "
        f"{pairs('corrected')}; corrected2 {pairs('corrected2')}. At lr = 0.01 corrected2 is "
        f"{min(gains):.0f}–{max(gains):.0f}× closer than corrected. On the 1-D table "
        f"(`scripts/corrected_table.py`: β₁ = {params['table_row']['b1']:g}, β₂ = "
        f"{params['table_row']['b2']:g}, T = {row['t1']:g}) at lr = {row['lr']:g} the errors "
        f"are {sci(row['leading_final_error'])} (leading), {sci(row['corrected_final_error'])}"
        f" (corrected) and {sci(row['corrected2_final_error'])} (corrected2): the best flow "
        f"is {row['leading_final_error'] / best:.0f}× closer than the leading one. Both "
        "corrected flows start after the first discrete step, or later where a coordinate "
        "changes by O(1) in a step, and refuse to start where a calibrated indicator "
        "predicts them farther from the discrete steps than the leading flow "
        "(theory/corrected_validity.md); k ≥ 3 is refused with its measured orders."
    )


def _flat_stretch(conv: Mapping[str, Any]) -> str:
    fits, decay = conv["fits"], conv["weight_decay_term"]
    ex = {name: fits[name]["expansion"] for name in (_ADAM, _ADAMW, _KADAM2)}
    star = ex[_ADAMW]["cancellation_lr"]
    adamw = fits[_ADAMW]["leading"]
    errors = dict(zip(adamw["lrs"], adamw["errors"], strict=True))
    above = min(lr for lr in errors if lr >= star)  # the first lr at or above η*
    below = min(errors, key=lambda lr: abs(lr - above / 4))  # a factor 4 lower
    ratio = ex[_ADAMW]["e1_norm"] / ex[_ADAM]["e1_norm"]
    return (
        "The final error vector expands as η e₁ + η² e₂ + …; on this loss e₂ points "
        f"against e₁ (cosine {fixed(ex[_ADAMW]['cosine'])} for AdamW, "
        f"{fixed(ex[_ADAM]['cosine'])} for Adam) and e₁ is small: |e₁| = "
        f"{sig(ex[_ADAMW]['e1_norm'])} against |e₂| = {sig(ex[_ADAMW]['e2_norm'])} (AdamW), "
        f"{sig(ex[_ADAM]['e1_norm'])} against {sig(ex[_ADAM]['e2_norm'])} (Adam). The two "
        "terms cancel near η\\* = −e₁·e₂/|e₂|² = "
        f"{sci(star)} (AdamW) and {sci(ex[_ADAM]['cancellation_lr'])} (Adam). Above η\\* the "
        "O(η²) term dominates (local slopes near 2 just above η\\*, flatter at the largest lrs "
        "where higher orders enter); around η\\* AdamW's error is flat, falling only from "
        f"{sci(errors[above])} to {sci(errors[below])} between lr {lr_text(above)} and "
        f"{lr_text(below)}; well below η\\* the order is 1. Weight decay is what moves AdamW's "
        "η\\* up: the discrete step applies the decay −ηλθ by explicit Euler, which adds "
        f"½λ(θ(t) − θ₀) to e₁ (predicted length {sig(decay['predicted'])}, measured AdamW − "
        f"Adam difference {sig(decay['measured'])}), making AdamW's |e₁| {ratio:.0f}× "
        f"Adam's. For 2-Adam |e₁| is below what these runs resolve "
        f"({sci(ex[_KADAM2]['e1_resolution'], 1)}), and its leading flow falls at order 2 "
        "on this loss."
    )


def _best_accuracy(table: Mapping[str, Mapping[str, str]], k: int) -> str:
    """The best ``"mean ± std"`` of level count ``k`` over lrs and normalizations."""
    cells = [
        value
        for config, by_lr in table.items()
        if config.startswith(f"k={k},")
        for value in by_lr.values()
    ]
    return max(cells, key=lambda cell: float(cell.split("±")[0]))


def _kadam(
    stability: Mapping[str, Any], training: Mapping[str, Any], accuracy: Mapping[str, Any]
) -> str:
    params, updates = stability["parameters"], stability["max_update"]
    acc, tasks = training["final_test_accuracy"], training["parameters"]
    digits, modular = tasks["digits"], tasks["modular"]
    ks = digits["ks"]

    def best(task: Mapping[str, Any]) -> str:
        return ", ".join(_best_accuracy(acc[task["task"]], k) for k in ks)

    seeds = sorted({digits["n_seeds"], modular["n_seeds"]})
    split = f"mean_accuracy_unstable_growth_{{}}_{_GROWTH_SPLIT}"
    return (
        "A stable top level bounds the update by C(β₁,ₖ, β₂,ₖ) even when a lower level is "
        f"unstable: after the gradient switches off, with β₂ = {params['b2_unstable']:g} < "
        f"β₁² = {params['b1'] ** 2:g} below the top, plain Adam's |u| reaches "
        f"{updates['plain_adam_unstable']:.0f} while the top level (β₂ = "
        f"{params['b2_top']:g}) stays at {sig(updates['2-Adam_top'])} (2-Adam) and "
        f"{sig(updates['3-Adam_top'])} (3-Adam), below C = {stability['bound_top']:.2f}; over "
        "a sweep of the lower level's β₂ the top level peaks at "
        f"{sig(stability['sweep_max_top_over_bound'])} C. In training (digits MLP, a small "
        "modular-addition transformer) k = 2, 3 did not beat AdamW (k = 1) beyond the seed "
        f"noise: the best final test accuracy over lr and normalization for k = "
        f"{', '.join(str(k) for k in ks)} is {best(digits)} on digits and {best(modular)} on "
        f"the transformer ({' or '.join(str(s) for s in seeds)} seeds). On a (β₁, β₂) grid "
        "the stable region trains better on digits (mean test accuracy "
        f"{accuracy['mean_accuracy_stable']:.3f} over its {accuracy['cells']['stable']} cells, "
        f"none below {_floor3(accuracy['min_accuracy_stable'])}), but unstable cells with a small "
        f"growth rate ln(β₁/√β₂) ≤ {_GROWTH_SPLIT} lose little "
        f"({accuracy[split.format('le')]:.3f}) and those above it much more "
        f"({accuracy[split.format('gt')]:.3f})."
    )


def _normalization(meta: Mapping[str, Any]) -> str:
    groups = meta["main_run"].values()
    flow_error = max(group["max_rel_error_flow"] for group in groups)
    factors = [group["norm_sq_over_equilibrium"] for group in groups]
    return (
        "For scale-invariant weights the first-order norm flow (with θ·u) predicts |θ|² with "
        f"a largest relative error of {sci(flow_error)}; the prediction that drops θ·u "
        f"underestimates it {min(factors):.0f}–{max(factors):.0f}× at β₁ = "
        f"{meta['parameters']['b1']:g}: with momentum, θ·u is not small."
    )


def _paper_fig1(fig1: Mapping[str, Any]) -> str:
    params = fig1["parameters"]
    names = [w for w in ("100", "1500", "long") if w in fig1["Adam"]["windows"]]
    steps = " / ".join(f"{fig1['Adam']['windows'][w]['steps']:,}" for w in names)

    def errors(run: Mapping[str, Any], flow: str) -> str:
        values = [float(run["windows"][w]["mse_final"][flow]) for w in names]
        return " / ".join(sci(x) if math.isfinite(x) else "failed" for x in values)

    def optimizer(name: str) -> str:
        run = fig1[name]
        corrected = run["flows"]["corrected"]
        if corrected["success"]:
            report = corrected["start_validity"]
            begun = (
                f" (from step {corrected['start_step']:g}, where every coordinate's validity "
                f"is at most 1: largest {sig(report['max'])}, predicted gain "
                f"{sig(report['predicted_gain'])})"
            )
        else:
            begun = " (it failed; the sidecar says why)"
        baseline = " / ".join(sci(run["windows"][w]["baseline_mse_final"]) for w in names)
        return (
            f"{name}: the paper's model {errors(run, 'paper')}, the leading flow "
            f"{errors(run, 'leading')}, the corrected flow {errors(run, 'corrected')}{begun}, "
            f"against {baseline} for holding θ₀ fixed"
        )

    return (
        f"On a {fig1['n_parameters']:,}-parameter character-level transformer (one fixed "
        f"batch, lr {params['lr']:g}, β₁ {params['b1']:g}, β₂ {params['b2']:g}, AdamW λ "
        f"{params['weight_decay']:g}), the mean squared error over all parameters against "
        f"the discrete run after {steps} steps is, for {optimizer('Adam')}; for "
        f"{optimizer('AdamW')}. AdamW's last number is the same for every flow: its run "
        "jumps near step 2,500 (an edge-of-stability catapult, `paper_fig1_sharpness`), "
        "which no flow follows."
    )


#: (title, figures read, text) of each bullet, in order.
_BULLETS: tuple[tuple[str, tuple[str, ...], Callable[..., str]], ...] = (
    ("Stable region.", ("phase_diagram", "switch_off_growth"), _stable_region),
    ("Flow vs optimizer.", ("convergence",), _flow_vs_optimizer),
    ("Corrected flows.", ("corrected_orders",), _corrected_flows),
    (
        "Why the leading flow needs small lrs (AdamW's flat stretch).",
        ("convergence",),
        _flat_stretch,
    ),
    ("k-Adam.", ("kadam_stability", "kadam_training", "phase_accuracy"), _kadam),
    ("Normalization.", ("meta_adaptive",), _normalization),
    ("The paper's Fig. 1.", ("paper_fig1",), _paper_fig1),
)


def results_markdown(sidecars: Sidecars) -> str:
    """The Results text (Markdown, ending in a newline), every number formatted
    from ``sidecars`` (`load_sidecars`); a missing figure or key raises ``KeyError``."""
    intro = textwrap.fill(
        "Measured by the tests, the scripts and the figures below. Every number here is "
        "generated from the committed sidecars `figures/*.json` by `python "
        "scripts/update_results.py`; `tests/test_results_page.py` fails when they disagree.",
        width=WIDTH,
        break_long_words=False,
        break_on_hyphens=False,
    )
    bullets = [
        _bullet(title, text(*(sidecars[name] for name in names))) + "\n\n" + _pictures(names)
        for title, names, text in _BULLETS
    ]
    return intro + "\n\n" + "\n\n".join(bullets) + "\n"


def _pictures(names: tuple[str, ...]) -> str:
    """The figures a bullet reads, side by side under it (a continuation of its list item;
    ``figures/`` is beside this page on the site)."""
    width = f"{min(60, 96 // len(names))}%"
    return "\n".join(f'    ![{name}](figures/{name}.png){{ width="{width}" }}' for name in names)


# ------------------------------------------------------------------------------- the page


def _bounds(page: str) -> tuple[int, int]:
    if page.count(RESULTS_START) != 1 or page.count(RESULTS_END) != 1:
        raise ValueError(f"the page needs exactly one {RESULTS_START} and one {RESULTS_END}")
    start = page.index(RESULTS_START) + len(RESULTS_START)
    end = page.index(RESULTS_END)
    if end < start:
        raise ValueError(f"{RESULTS_END} comes before {RESULTS_START}")
    return start, end


def page_results(page: str) -> str:
    """The text between the page's markers (without the newline after the start)."""
    start, end = _bounds(page)
    return page[start:end].removeprefix("\n")


def with_results(page: str, results: str) -> str:
    """``page`` with the text between its markers replaced by ``results``."""
    start, end = _bounds(page)
    return page[:start] + "\n" + results + page[end:]


def update_results(page_path: str | Path, figures_dir: str | Path, *, check: bool = False) -> bool:
    """Regenerate the Results block of ``page_path`` (``docs/results.md``) from
    ``figures_dir``'s sidecars.

    Returns ``True`` when the page already held the generated text. Unless ``check``, a
    stale page is rewritten (only between the markers)."""
    path = Path(page_path)
    page = path.read_text(encoding="utf-8")
    generated = results_markdown(load_sidecars(figures_dir))
    if page_results(page) == generated:
        return True
    if not check:
        path.write_text(with_results(page, generated), encoding="utf-8")
    return False
