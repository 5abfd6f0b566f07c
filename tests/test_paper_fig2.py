"""The paper's Fig. 2, measured (`adamflow.experiments.paper_fig2`): the switch-off slope
follows ln(β₁/√β₂), not |C|/2, and the boundaries drawn are `adamflow.stability`'s."""

from __future__ import annotations

import numpy as np
import pytest

from adamflow import stability
from adamflow.experiments.paper_fig2 import (
    CONVENTIONS,
    normal_segment,
    paper_c,
    paper_fig2_stability_experiment,
    switch_off_slopes,
)
from adamflow.plotting.paper_fig2 import draw_paper_fig2_stability


@pytest.fixture(scope="module")
def quick() -> object:
    return paper_fig2_stability_experiment(quick=True)


def test_slope_far_from_the_corner_is_ln_b1_over_sqrt_b2_not_half_abs_c() -> None:
    slope = float(switch_off_slopes(np.array([0.5]), np.array([0.1]))["slope"][0])
    exact = np.log(0.5 / np.sqrt(0.1))
    assert abs(slope / exact - 1.0) < 0.02
    assert abs(-paper_c(0.5, 0.1) / 2 - 3.5) < 1e-12
    assert abs(slope / 3.5 - 1.0) > 0.5


def test_segment_is_normal_to_c_zero_and_crosses_it() -> None:
    seg = normal_segment()
    np.testing.assert_allclose(paper_c(*seg["cross"]), 0.0, atol=1e-12)
    c = paper_c(seg["b1"], seg["b2"])
    assert seg["b1"].size == 64 and c[0] < 0 < c[-1] and np.all(np.diff(c) > 0)
    # Along the unit normal C changes at the rate |∇C| (to first order).
    step = seg["s"][1] - seg["s"][0]
    b1, b2 = seg["cross"]
    rate = np.hypot(2 / b1**2, 1 / b2**2)
    mid = np.argmin(np.abs(seg["s"]))
    np.testing.assert_allclose((c[mid + 1] - c[mid - 1]) / (2 * step), rate, rtol=1e-2)


def test_experiment_boundaries_and_predictions_are_stabilitys(quick: object) -> None:
    data, results = quick.data, quick.results  # type: ignore[attr-defined]
    b1, b2 = np.meshgrid(data["b1s"], data["b2s"], indexing="ij")
    for c in CONVENTIONS:
        np.testing.assert_array_equal(data["theory_stable"][c], stability.is_stable(b1, b2, c))
        np.testing.assert_array_equal(data["predicted_growth"][c], stability.log_growth(b1, b2, c))
    # The discrete optimizer follows the exact convention, everywhere.
    assert results["exact"]["map_classified_correctly"] == 1.0
    assert results["exact"]["map_growth_rel_error_max"] < 0.01
    assert results["paper"]["map_classified_correctly"] < 1.0
    assert results["far_point"]["paper_prediction"] == pytest.approx(3.5)
    assert results["far_point"]["measured_slope"] == pytest.approx(0.458, abs=1e-3)
    assert results["b_min_sqrt_v_over_eps"] > 1e6  # the ε cap plays no part
    fig = draw_paper_fig2_stability(data)
    assert len(fig.axes) == 4  # three panels and the colour bar
