"""The symbolic layer: its derived results equal the theory/ formulas and the numerical code."""

from __future__ import annotations

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

from adamflow import KAdam, _flows, _optimizers, rules, symbolic

ROOT = Path(__file__).resolve().parent.parent
b1, b2, eta, a, b = sp.symbols("beta_1 beta_2 eta a b")


def _positive(expr: sp.Expr) -> sp.Expr:
    """The expression in positive symbols of the same names (so sympy can simplify roots)."""
    return expr.xreplace({s: sp.Symbol(s.name, positive=True) for s in expr.free_symbols})


def _zero(expr: sp.Expr) -> bool:
    return sp.simplify(_positive(expr)) == 0


def _at(expr: sp.Expr, **values: float) -> float:
    """The value of ``expr`` with its symbols replaced by name."""
    return float(expr.subs({s: values[s.name] for s in expr.free_symbols}))


def _same_root(left: sp.Expr, right: sp.Expr, point: dict) -> bool:
    """Two square-root expressions agree: equal squares, and equal values at ``point``."""
    squares_equal = _zero(sp.cancel(left**2 - right**2))
    return squares_equal and abs(float((left - right).subs(point))) < 1e-12


def test_stability_condition_is_b2_greater_than_b1_squared():
    condition = symbolic.stability_condition()
    assert condition == sp.Gt(b2, b1**2)
    assert {s.name for s in condition.free_symbols} == {"beta_1", "beta_2"}
    # On a grid it decides exactly as b2 > b1^2 does.
    decide = sp.lambdify([b1, b2], condition, "numpy")
    grid_b, grid_g = np.meshgrid(np.linspace(0.01, 0.99, 41), np.linspace(0.01, 0.99, 43))
    np.testing.assert_array_equal(decide(grid_b, grid_g), grid_g > grid_b**2)


def test_continuous_and_euler_conditions_and_levels():
    assert symbolic.stability_condition("continuous") == sp.Lt(b, 2 * a)
    assert symbolic.stability_condition("euler") == sp.Gt(b2, 2 * b1 - 1)
    levels = symbolic.level_conditions(3)
    assert levels == tuple(
        sp.Gt(sp.Symbol(f"beta_2,{i}"), sp.Symbol(f"beta_1,{i}") ** 2) for i in (1, 2, 3)
    )
    assert symbolic.level_conditions(1) == (sp.Gt(b2, b1**2),)
    with pytest.raises(ValueError, match="form"):
        symbolic.stability_condition("implicit")


def test_update_bound_closed_form_and_value():
    bound = symbolic.update_bound()
    theory = (1 - b1) / sp.sqrt((1 - b2) * (1 - b1**2 / b2))
    assert _same_root(bound, theory, {b1: 0.6, b2: 0.5})
    assert float(bound.subs({b1: 0.9, b2: 0.999})) == pytest.approx(7.2703, abs=5e-5)
    # Continuous form, and it is the eta -> 0 limit of the discrete one.
    continuous = symbolic.update_bound(form="continuous")
    assert _same_root(continuous, a / sp.sqrt(b * (2 * a - b)), {a: 1.3, b: 0.4})
    assert symbolic.growth_factor() == b1 / sp.sqrt(b2)


def test_finite_n_bound_matches_partial_sums_and_boundary():
    n = 7
    finite = symbolic.update_bound(n)
    for b1v, b2v in [(0.9, 0.999), (0.9, 0.5), (0.3, 0.2)]:
        partial = sum((1 - b1v) ** 2 * b1v ** (2 * j) / ((1 - b2v) * b2v**j) for j in range(n))
        assert float(finite.subs({b1: b1v, b2: b2v})) == pytest.approx(np.sqrt(partial), 1e-12)
    boundary = symbolic.stability().results["boundary_bound"]
    n_sym = sp.Symbol("n")
    expected = sp.sqrt(n_sym) * (1 - b1) / sp.sqrt(1 - b2)
    assert _same_root(boundary, expected, {n_sym: 5, b1: 0.6, b2: 0.36})
    with pytest.raises(ValueError, match="n must be"):
        symbolic.update_bound(0)


def test_amplification_matches_theory():
    G, eps = sp.symbols("G epsilon", positive=True)
    leading = _positive(symbolic.eps_capped_amplification())
    b1p, b2p = sp.symbols("beta_1 beta_2", positive=True)
    theory = (G / eps) ** (1 - 2 * sp.log(1 / b1p) / sp.log(1 / b2p))
    assert sp.simplify(sp.expand_log(sp.log(leading) - sp.log(theory), force=True)) == 0
    sharp = symbolic.eps_capped_amplification(sharp=True)
    expected = 0.3**0.3 * 0.7**0.7 * (1e6) ** 0.7
    assert _at(sharp, G=1e-2, epsilon=1e-8, p=0.3) == pytest.approx(expected, rel=1e-12)
    # p is 2 ln(1/b1) / ln(1/b2).
    p_expr = symbolic.amplification().results["p"]
    assert _at(p_expr, beta_1=0.9, beta_2=0.5) == pytest.approx(2 * np.log(0.9) / np.log(0.5))


def test_moment_rates_equal_rules():
    for convention in ("exact", "euler"):
        rate = sp.lambdify([b1, eta], symbolic.moment_rate(convention), "numpy")
        for b1v, lr in [(0.9, 0.01), (0.999, 1e-3), (0.3, 0.5)]:
            expected = float(rules.moment_rate(b1v, lr, convention))  # a 0-d JAX array
            assert rate(b1v, lr) == pytest.approx(expected, rel=1e-14)
    assert symbolic.moment_rate("exact", "second") == -sp.log(b2) / eta
    with pytest.raises(ValueError, match="convention"):
        symbolic.moment_rate("midpoint")


def test_bias_correction_and_bias_corrected_form():
    results = symbolic.bias_correction().results
    assert _zero(results["discrete"] - (1 - b1 ** sp.Symbol("n")))
    assert results["limit_t0"] == sp.Symbol("g")
    t, x, mhat = sp.symbols("t x mhat")
    field = symbolic.bias_corrected_form().results["mhat_dot"]
    assert _zero(field - a / (1 - sp.exp(-a * t)) * (x - mhat))


@pytest.mark.parametrize("k", [1, 2])
def test_symbolic_discrete_step_equals_cascade_step(k):
    rng = np.random.default_rng(k)
    step = symbolic.discrete_step_function(k)
    for n in (1, 2, 17):
        b1s, b2s = rng.uniform(0.5, 0.99, k), rng.uniform(0.5, 0.999, k)
        lr, eps, lam = 0.03, 1e-3, 0.05
        theta, g = rng.normal(size=6), rng.normal(size=6)
        m = tuple(rng.normal(size=6) for _ in range(k))
        v = tuple(rng.uniform(0.1, 2.0, size=6) for _ in range(k))
        opt = KAdam(lr, k=k, b1=tuple(b1s), b2=tuple(b2s), eps=eps, weight_decay=lam)
        state = _optimizers.CascadeState(
            jnp.asarray(n - 1, jnp.int32),
            tuple(jnp.asarray(x) for x in m),
            tuple(jnp.asarray(x) for x in v),
        )
        new_state, u = _optimizers.cascade_step(opt, state, jnp.asarray(g))
        new_theta = _optimizers.parameter_step(opt, jnp.asarray(theta), u)
        got = step(n, theta, m, v, g, lr, b1s, b2s, eps, lam)
        np.testing.assert_allclose(got.u, u, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.theta, new_theta, rtol=1e-12, atol=1e-14)
        for i in range(k):
            np.testing.assert_allclose(got.m[i], new_state.m[i], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(got.v[i], new_state.v[i], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("k", "weight_decay"), [(1, False), (1, True), (2, True)])
def test_symbolic_leading_field_equals_flows(k, weight_decay):
    rng = np.random.default_rng(10 * k + weight_decay)
    field = symbolic.leading_field_function(k, weight_decay)
    lam = 0.07 if weight_decay else 0.0

    def grad_fn(theta):
        return np.sin(3 * theta) + 0.5 * theta

    for t in (1e-3, 0.05, 2.0):
        a_rates, b_rates = rng.uniform(2, 50, k), rng.uniform(0.5, 5, k)
        theta = rng.normal(size=8)
        m = tuple(rng.normal(size=8) for _ in range(k))
        v = tuple(rng.uniform(0.01, 2.0, size=8) for _ in range(k))
        params = _flows.FlowParams(a_rates, b_rates, 1e-4, lam)
        expected = _flows.leading_field(
            t, _flows.FlowState(theta, m, v), params, grad_fn, rules.NUMPY_OPS
        )
        got = field(t, theta, m, v, grad_fn(theta), a_rates, b_rates, 1e-4, lam)
        np.testing.assert_allclose(got.theta, expected.theta, rtol=1e-12, atol=1e-14)
        for i in range(k):
            np.testing.assert_allclose(got.m[i], expected.m[i], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(got.v[i], expected.v[i], rtol=1e-12, atol=1e-14)


def test_corrected_flow_equals_theory():
    results = symbolic.corrected_flow().results
    log_inv = sp.log(1 / b1)
    assert _zero(results["delta_b1"] - eta * (1 / (1 - b1) - 1 / log_inv))
    assert _zero(results["delta_prime_b1"] - eta * (b1 / (1 - b1) - 1 / log_inv))
    u, udot, theta, lam = sp.symbols("u udot theta lambda")
    thetadot0 = -(u + lam * theta)
    theory = -(u + eta / 2 * udot + lam * (theta - eta / 2 * thetadot0))
    assert sp.expand(results["theta_velocity"] - theory) == 0


def test_lag_functions_numeric():
    import mpmath

    lags = symbolic.lag_functions()
    factors = [0.01, 0.3, 0.85, 0.9, 0.999, 0.99999]
    lr = 0.02
    with mpmath.workdps(40):
        exact = [
            float(lr * (1 / (1 - mpmath.mpf(x)) - 1 / mpmath.log(1 / mpmath.mpf(x))))
            for x in factors
        ]
    expected = np.array(exact)
    np.testing.assert_allclose(lags.first_level(factors, lr), expected, rtol=1e-10)
    np.testing.assert_allclose(lags.upper_levels(factors, lr), expected - lr, rtol=1e-10)
    # delta/eta runs from 1 (b1 -> 0) to 1/2 (b1 -> 1); the upper-level lead is negative.
    assert np.all(np.diff(lags.first_level(factors, 1.0)) < 0)
    assert np.all(lags.upper_levels(factors, lr) < 0)


def test_every_derivation_exports_latex():
    for group in symbolic.derivations().values():
        for derivation in group:
            assert derivation.steps, derivation.key
            text = derivation.latex()
            assert text.startswith(r"\subsection*{") and r"\[" in text
            assert all(isinstance(v, str) for v in derivation.results_latex().values())
    stability_tex = symbolic.stability().results_latex()
    assert stability_tex["condition"] == r"\beta_{2} > \beta_{1}^{2}"
    assert stability_tex["continuous_condition"] == "b < 2 a"


def test_theory_documents_are_current():
    documents = symbolic.theory_documents()
    assert set(documents) == {
        "README.md",
        "adam.md",
        "adamw.md",
        "kadam.md",
        "stability.md",
        "corrected_flow.md",
    }
    for name, text in documents.items():
        committed = ROOT / "theory" / name
        assert committed.is_file(), f"{committed} missing: run python scripts/make_theory.py"
        assert committed.read_text(encoding="utf-8") == text, (
            f"{committed} is stale: run python scripts/make_theory.py"
        )
    assert "$$" in documents["stability.md"]
    assert r"\beta_{2} > \beta_{1}^{2}" in documents["README.md"]


def test_scale_invariance_and_the_norm_of_theta():
    results = symbolic.scale_invariance().results
    assert results["orthogonality"] == 0 and results["gradient_scaling"] == 1
    N, P, U, E, lam, size = sp.symbols("N P U E lambda |u|")
    exact = (1 - eta * lam) ** 2 * N - 2 * eta * (1 - eta * lam) * P + eta**2 * U
    assert sp.expand(results["norm_step"] - exact) == 0
    assert sp.expand(results["norm_rate"] - (-2 * lam * N - 2 * P + eta * U)) == 0
    assert _zero(results["equilibrium"] - eta * E / (2 * lam))
    assert _zero(results["angular_step"] - sp.sqrt(2 * eta * lam) * size / sp.sqrt(E))


def test_public_keywords_are_b1_b2_not_beta_gamma():
    import inspect

    step = symbolic.discrete_step_function(1)
    state = dict(n=3, theta=0.5, m=(0.1,), v=(0.2,), g=0.3, lr=0.01, eps=1e-8, weight_decay=0.1)
    by_keyword = step(**state, b1=(0.9,), b2=(0.999,))
    assert by_keyword == step(3, 0.5, (0.1,), (0.2,), 0.3, 0.01, (0.9,), (0.999,), 1e-8, 0.1)
    for old in ({"beta": (0.9,), "gamma": (0.999,)}, {"b1": (0.9,), "gamma": (0.999,)}):
        with pytest.raises(TypeError):
            step(**state, **old)
    with pytest.raises(TypeError):
        step(**state, beta=(0.9,), b2=(0.999,))
    # No public function, nor a function they return, has a parameter named beta or gamma.
    functions = [getattr(symbolic, name) for name in symbolic.__all__]
    functions += [step, symbolic.leading_field_function(1), *symbolic.lag_functions()]
    for function in functions:
        if callable(function) and not isinstance(function, type):
            names = set(inspect.signature(function).parameters)
            assert not names & {"beta", "gamma", "betas", "gammas"}, function


def test_write_theory_writes_and_checks(tmp_path):
    names = sorted(symbolic.theory_documents())
    assert sorted(symbolic.write_theory(tmp_path, check=True)) == names
    assert list(tmp_path.iterdir()) == []  # check=True writes nothing
    assert sorted(symbolic.write_theory(tmp_path)) == names
    assert symbolic.write_theory(tmp_path, check=True) == []
    (tmp_path / "adam.md").write_text("edited\n", encoding="utf-8")
    assert symbolic.write_theory(tmp_path, check=True) == ["adam.md"]
    assert symbolic.write_theory(tmp_path) == ["adam.md"]
    assert symbolic.write_theory(tmp_path, check=True) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left


_OLD_SPEC = "THEORY" + ".md"  # the retired specification file, which theory/ replaces
_CITATION = re.compile(r"\b([a-z_]+\.md)( §\d+(?:(?:,| and) §\d+)*)")


def _sections(text: str) -> set[int]:
    return {int(number) for number in re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE)}


def test_theory_citations_resolve():
    """Every ``page.md §n`` in the symbolic layer, its tests, its script and the theory pages
    names a numbered section of a theory page; none of them cites the old specification."""
    documents = symbolic.theory_documents()
    sections = {name: _sections(text) for name, text in documents.items()}
    assert all(sections[name] for name in documents if name != "README.md")
    files = sorted((ROOT / "adamflow" / "symbolic").glob("*.py"))
    files += [ROOT / "scripts" / "make_theory.py", Path(__file__)]
    texts = {str(path): path.read_text(encoding="utf-8") for path in files}
    texts.update({f"theory/{name}": text for name, text in documents.items()})
    cited = 0
    for where, text in texts.items():
        assert _OLD_SPEC not in text.replace("_OLD_SPEC", ""), where
        for page, numbers in _CITATION.findall(text):
            if page not in documents:
                continue
            for number in re.findall(r"§(\d+)", numbers):
                assert int(number) in sections[page], f"{where}: {page} §{number}"
                cited += 1
    assert cited > 20


def test_corrected_flows_of_every_order():
    """theory/corrected_flow.md §2: the drive multipliers do not depend on the window (the
    derivation raises if they do); their series equal an independent expansion of the
    generating functions at a numeric β₁; Q_R, Q_L are the Euler–Maclaurin weights."""
    results = symbolic.corrected_flows().results
    z, b1 = sp.Symbol("z"), sp.Symbol("beta_1")
    beta = 0.85
    # Independent: K_d(z)/K_c(z) written from the definitions, expanded numerically.
    ell = -np.log(beta)
    for name, offset in (("P_start", 1), ("P_end", 0)):
        for zz in (-0.3, 0.1, 0.4):
            k_d = (1 - beta) * np.exp(-zz * offset) / (1 - beta * np.exp(-zz))
            k_c = ell / (ell + zz)
            value = float(results[name].subs({b1: beta, z: zz}))
            assert value == pytest.approx(k_d / k_c, rel=1e-12)
    coefficients = symbolic.modified_coefficients(4)
    assert [float(c) for c in coefficients.right] == pytest.approx([1, 0.5, 1 / 12, 0, -1 / 720])
    assert [float(c) for c in coefficients.left] == pytest.approx([1, -0.5, 1 / 12, 0, -1 / 720])


def test_the_flow_s_numeric_coefficients_are_the_derived_series():
    """The corrected flows take their coefficients from a 50-digit series expansion of the
    closed forms (adamflow._corrected, no sympy at run time); sympy derives the same series
    from the one-step maps. Two derivations, one table, to order 4 and β up to 1 - 1e-5."""
    from adamflow import _corrected

    coefficients = symbolic.modified_coefficients(4)
    b1 = sp.Symbol("beta_1", positive=True)
    for beta in (0.05, 0.5, 0.85, 0.999, 0.99999):
        point = {b1: sp.Float(repr(beta), 40)}
        for offset, derived in ((1, coefficients.start), (0, coefficients.end)):
            expected = [float(c.subs(point).evalf(40)) for c in derived]
            assert _corrected.drive_coefficients(beta, offset, 4) == pytest.approx(
                expected, rel=1e-12
            )
    right, left = _corrected.parameter_coefficients(4)
    assert right == pytest.approx([float(c) for c in coefficients.right], rel=1e-15)
    assert left == pytest.approx([float(c) for c in coefficients.left], rel=1e-15)


def test_first_order_flow_is_cattaneo_klusowski_shigida_with_eps_inside():
    """theory/corrected_flow.md §3: slaving the moments of our first-order flow gives their
    modified equation exactly when ε sits inside the root, and the two ε placements agree at
    ε = 0; the bias-corrected window's mean delay has the n β^n/(1-β^n) transient."""
    results = symbolic.implicit_bias_comparison().results
    assert sp.simplify(results["difference_eps_inside"]) == 0
    assert sp.simplify(results["eps_zero_gap"]) == 0
    # ε outside the root is not ε inside: the two differ at ε > 0.
    g, gdot, eps = sp.Symbol("g"), sp.Symbol("gdot"), sp.Symbol("epsilon")
    point = {g: 0.3, gdot: -2.0, eps: 0.01, sp.Symbol("eta"): 0.01}
    point.update({sp.Symbol("beta_1"): 0.9, sp.Symbol("beta_2"): 0.99})
    inside = float(results["ours_eps_inside"].subs(point))
    outside = float(results["ours_eps_outside"].subs(point))
    assert abs(inside - outside) > 1e-3
    # Mean delay of the first n weights, by a plain sum.
    n, beta = 7, 0.9
    j = np.arange(n)
    delay = np.sum((1 - beta) * beta**j * (j + 1)) / (1 - beta**n)
    value = float(results["delay_window"].subs({sp.Symbol("beta_1"): beta, sp.Symbol("n"): n}))
    assert value == pytest.approx(delay, rel=1e-12)
    assert value == pytest.approx(1 / (1 - beta) - n * beta**n / (1 - beta**n), rel=1e-12)
