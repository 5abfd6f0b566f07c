"""The Results page's numbers (docs/results.md) are generated from the committed figure
sidecars."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from adamflow.experiments.results_page import (
    RESULTS_END,
    RESULTS_START,
    load_sidecars,
    lr_text,
    page_results,
    percent,
    results_markdown,
    sci,
    sig,
    update_results,
    with_results,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sidecars():
    return load_sidecars(ROOT / "figures")


def test_committed_page_holds_the_generated_results(sidecars):
    # A regenerated figure that changes a number fails here until
    # `python scripts/update_results.py` is run and the page committed with it.
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert page_results(page) == results_markdown(sidecars), (
        "docs/results.md's Results are stale: run python scripts/update_results.py"
    )


def test_a_changed_sidecar_number_changes_the_text(sidecars):
    changed = copy.deepcopy(dict(sidecars))
    changed["phase_diagram"]["summary"]["decided_cells"] += 1
    changed["convergence"]["fits"]["AdamW (λ = 0.05)"]["leading"]["asymptotic"]["order"] = 0.5
    before, after = (" ".join(results_markdown(s).split()) for s in (sidecars, changed))
    decided = sidecars["phase_diagram"]["summary"]["decided_cells"]
    assert f"of the {decided} decidable" in before and f"of the {decided + 1} decidable" in after
    assert "0.50 for AdamW" in after and "0.50 for AdamW" not in before


def test_missing_figure_raises(sidecars):
    partial = {k: v for k, v in sidecars.items() if k != "meta_adaptive"}
    with pytest.raises(KeyError):
        results_markdown(partial)


def test_generated_markdown_is_wrapped_and_one_list(sidecars):
    text = results_markdown(sidecars)
    assert text.endswith("\n") and RESULTS_START not in text and RESULTS_END not in text
    for line in text.splitlines():
        assert len(line) <= 92, line
    items = [line for line in text.splitlines() if line.startswith("- **")]
    assert len(items) == 7


def test_formatting():
    assert sci(0.0021972836) == "2.2e-3"
    assert sci(1.979e-5) == "2.0e-5"
    assert sci(4.096e-6, 1) == "4e-6"
    assert lr_text(0.02) == "0.02" and lr_text(0.000625) == "6.25e-4"
    assert lr_text(0.0025) == "2.5e-3" and lr_text(2.44140625e-06) == "2.44e-6"
    assert sig(0.030868) == "0.031" and sig(13.578) == "14" and sig(0.0038644) == "0.0039"
    assert sig(-0.9665, 2) == "\u22120.97"
    assert percent(1.0) == "100%" and percent(0.0007137) == "0.071%"
    assert percent(0.99651, 3) == "99.7%"


def test_update_results_rewrites_only_between_the_markers(tmp_path, sidecars):
    page = tmp_path / "results.md"
    text = f"# title\n\n## Results\n\n{RESULTS_START}\nold numbers\n{RESULTS_END}\n\ntail\n"
    page.write_text(text, encoding="utf-8")
    assert update_results(page, ROOT / "figures", check=True) is False
    assert page.read_text(encoding="utf-8") == text  # check writes nothing
    assert update_results(page, ROOT / "figures") is False
    written = page.read_text(encoding="utf-8")
    assert written == with_results(text, results_markdown(sidecars))
    assert written.startswith("# title\n\n## Results\n\n") and written.endswith("\n\ntail\n")
    assert update_results(page, ROOT / "figures", check=True) is True


def test_markers_are_required(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        page_results("no markers here")
    with pytest.raises(ValueError, match="before"):
        page_results(f"{RESULTS_END}\n{RESULTS_START}\n")


def test_script_check_exit_codes(tmp_path):
    stale = tmp_path / "results.md"
    stale.write_text(f"{RESULTS_START}\nold\n{RESULTS_END}\n", encoding="utf-8")
    script = [sys.executable, str(ROOT / "scripts" / "update_results.py"), "--check"]
    bad = subprocess.run([*script, "--page", str(stale)], capture_output=True, text=True)
    assert bad.returncode == 1 and "stale" in bad.stdout, bad
    good = subprocess.run(script, capture_output=True, text=True, cwd=ROOT)
    assert good.returncode == 0, good


def test_the_fig1_bullet_quotes_every_flow_and_where_the_corrected_one_began(sidecars):
    from adamflow.experiments.results_page import _paper_fig1

    fig1 = copy.deepcopy(sidecars["paper_fig1"])
    run = fig1["Adam"]
    text = _paper_fig1(fig1)
    for flow in ("paper", "leading", "corrected"):
        assert sci(float(run["windows"]["1500"]["mse_final"][flow])) in text
    assert f"from step {run['flows']['corrected']['start_step']:g}" in text
    run["flows"]["corrected"]["success"] = False  # a failed flow is said to have failed
    for window in run["windows"].values():
        window["mse_final"]["corrected"] = "nan"
    assert "/ failed (it failed; the sidecar says why)" in _paper_fig1(fig1)
