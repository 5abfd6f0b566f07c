"""The calibration of the corrected flows' start indicator (theory/corrected_validity.md §2):
the committed table (figures/validity_calibration.json, measured by
`adamflow.experiments.validity_calibration`) against the library's constants, the refusal
rules against every measured row, and the page that shows it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from adamflow import _corrected
from adamflow.experiments import validity_calibration as calibration

ROOT = Path(__file__).resolve().parent.parent
TABLE = json.loads((ROOT / "figures" / "validity_calibration.json").read_text(encoding="utf-8"))


def test_the_fit_recovers_a_known_power_law():
    # Rows made from gain = 7·rms^-0.5 exactly (an independent reference for fit_gain).
    rms = np.array([0.01, 0.1, 1.0, 10.0])
    rows = [{"rms": float(r), "gain1": float(7.0 * r**-0.5)} for r in rms]
    rows.append({"rms": 3.0, "gain1": math.nan})  # a failed flow is left out of the fit
    fit = calibration.fit_gain(rows)
    assert fit["rows"] == 4
    np.testing.assert_allclose([fit["C"], fit["p"], fit["r2"]], [7.0, 0.5, 1.0], rtol=1e-12)
    np.testing.assert_allclose(fit["rms_limit"], 49.0, rtol=1e-12)
    assert fit["rms_decades"] < 1e-12


def test_the_library_constants_are_the_committed_fit():
    fit = calibration.fit_gain(TABLE["rows"])
    for key in ("C", "p", "rms_limit", "r2"):
        assert fit[key] == pytest.approx(TABLE["fit"][key], rel=1e-12)
    assert _corrected.GAIN_SCALE == pytest.approx(fit["C"], rel=5e-3)
    assert _corrected.GAIN_POWER == pytest.approx(fit["p"], rel=5e-3)
    assert _corrected.rms_limit() == pytest.approx(fit["rms_limit"], rel=0.02)
    # The scatter the docs quote: within a factor of about 2 (0.33 decades RMS measured).
    assert fit["rms_decades"] < 0.35


def test_the_refusal_rules_misjudge_no_measured_row():
    rows = TABLE["rows"]
    wrong = calibration.rule_errors(rows, _corrected.GAIN_SCALE, _corrected.GAIN_POWER)
    assert wrong == {"corrected": [], "corrected2": []}, wrong
    # The table holds both verdicts for both orders, so the rules are tested both ways.
    gain1 = np.array([r["gain1"] for r in rows], dtype=float)
    assert np.any(gain1 > 1) and np.any(~(gain1 > 1))
    ran2 = [bool(r["errors"]["corrected2"]["ok"]) for r in rows]
    assert any(ran2) and not all(ran2)
    # The old rule (refuse where any coordinate's validity exceeds 1) refused flows that win.
    refused_winners = [r for r in rows if r["max"] > 1 and r["gain1"] > 3]
    assert len(refused_winners) >= 3


def test_the_theory_page_shows_the_committed_table():
    page = (ROOT / "theory" / "corrected_validity.md").read_text(encoding="utf-8")
    assert calibration.calibration_markdown(TABLE) in page
