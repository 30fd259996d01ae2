"""HTML reports: every section, embedded figures, statement; occupancy and queue series; Chromium render."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from simulator import load_scenario, simulate
from simulator.cli import main
from simulator.output.figures import occupancy, queue_series, run_data_from_result
from simulator.output.report import SECTIONS, run_report_html
from simulator.output.results import write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result():
    return simulate(load_scenario(ROOT / "scenarios" / "guideline.yaml"), patients=300, seed=4, replications=2)


def test_run_report_has_every_section(result) -> None:
    """Protects: the report a reader opens has each section, embedded PNG figures, no external resource,
    the not-for-clinical-use statement, the scenario's rationale and the reproducibility facts."""
    text = run_report_html(run_data_from_result(result))
    for sid in SECTIONS:
        assert f'id="{sid}"' in text, sid
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', text)) >= 4
    assert not re.search(r'(src|href)="https?:', text)
    assert "Not for clinical use" in text
    assert result.scenario.rationale[:40] in text
    assert result.manifest["model_hash"] in text and result.manifest["scenario_hash"] in text
    assert "calibrated" in text and "Straube" in text  # clinical parameters with tag and source


def test_occupancy_shares_sum_to_one(result) -> None:
    """Protects: each patient is in exactly one pathway state on every day of the occupancy plot."""
    occ = occupancy(result.events, len(result.patients), 730.0)
    assert np.allclose(occ.sum(axis=1), 1.0)
    # relief can be lost since the maintenance phase (issue 10): still relieved at day 730 ~0.5
    assert occ.loc[0.0, "relieved"] == 0 and occ["relieved"].iloc[-1] > 0.35


def test_queue_series_counts_patients_waiting(result) -> None:
    """Protects: queue length = referred so far - consults started so far - left the queue, never negative
    (v0.1 counted patients who had dropped out of the queue as still waiting)."""
    ev = result.events
    q = queue_series(ev, 730.0)
    assert (q["waiting"] >= 0).all()
    g = float(q.index[-1])  # the last grid day (the grid may stop short of the horizon)
    # Per referral: it ends at the first consult, drop-out or queue_left (relieved while waiting) after it.
    rows = ev[(ev["event"].isin(["referral_queued", "dropout", "queue_left"]) | ev["wait_days"].notna())
              & (ev["day"] <= g)]
    joined = started = left = 0
    for _, pat in rows.groupby(["replication", "patient"]):
        waiting = False
        for r in pat.itertuples():
            if r.event == "referral_queued":
                joined += 1
                waiting = True
            elif waiting:
                waiting = False
                started += r.event == "consult"
                left += r.event != "consult"
    assert q["waiting"].iloc[-1] == joined - started - left


def test_painpath_report_rerenders_run_folder(result, tmp_path: Path) -> None:
    """Protects: `painpath report DIR` renders report.html for a run folder; a non-results folder exits 2."""
    folder = write_run(result, tmp_path / "run")
    res = CliRunner().invoke(main, ["report", str(folder)])
    assert res.exit_code == 0, res.output
    assert 'id="time-to-relief"' in (folder / "report.html").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(main, ["report", str(empty)])
    assert res.exit_code == 2 and "Traceback" not in res.output


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="chromium not installed")
def test_report_renders_in_headless_chromium(result, tmp_path: Path) -> None:
    """Protects: the report renders offline in a real browser into a non-blank page."""
    from PIL import Image

    folder = write_run(result, tmp_path / "run", extra=None)
    from simulator.output.report import render_folder

    html = render_folder(folder)
    png = tmp_path / "shot.png"
    subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--hide-scrollbars", "--window-size=1200,5000",
                    f"--screenshot={png}", html.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape[0] >= 4000
    dark = img < 200
    # not a blank page: ink on the page (a blank one has none; this report's first 5,000 px, now mostly the
    # summary table, have ~5%), and content from top to bottom, not a header over an empty page
    assert dark.mean() > 0.02
    bands = dark[: img.shape[0] // 100 * 100].reshape(-1, 100, img.shape[1]).any(axis=(1, 2))
    assert bands.mean() > 0.9, bands.mean()


def test_occupancy_of_an_open_population_is_a_share_of_those_entered() -> None:
    """Protects: in an open population patients enter throughout the run; the occupancy plot shows the share
    of the patients who have entered by each day (rows sum to 1), not of everyone who will ever enter (the
    stacked areas then rose from 0 to 100% over the run, under the label "days since assessment")."""
    sc = load_scenario(ROOT / "scenarios" / "open-population.yaml")
    sc = sc.with_overrides(horizon_days=400, population={**sc.population.model_dump(), "size": 40000,
                                                         "warmup_days": 100})
    res = simulate(sc, seed=8)
    occ = occupancy(res.events, len(res.patients), 400.0)
    first = res.events.loc[res.events["event"] == "assessment", "day"].min()
    rows = occ[occ.index >= first]
    assert len(rows) > 40 and np.allclose(rows.sum(axis=1), 1.0)
    assert occ.loc[occ.index < first].sum(axis=1).eq(0).all()



def _report_bytes_in_a_fresh_process(cwd: Path, hashseed: str) -> tuple[bytes, bytes]:
    """report.html of `painpath run` and of `painpath compare`, both in one new interpreter with
    ``PYTHONHASHSEED``; relative output folders, so the command line recorded in the reports is the same in
    every ``cwd``."""
    import os
    import sys

    cwd.mkdir()
    guideline = str(ROOT / "scenarios" / "guideline.yaml")
    commands = [["run", guideline, "--patients", "60", "--seed", "7", "--out", "run"],
                ["compare", guideline, str(ROOT / "scenarios" / "early-referral.yaml"), "--patients", "60",
                 "--replications", "2", "--seed", "7", "--out", "cmp"]]
    script = ("import sys\nfrom simulator.cli import main\n"
              f"for args in {commands!r}:\n"
              "    sys.argv = ['painpath', *args]\n    main(args, standalone_mode=False)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env={**os.environ, "PYTHONHASHSEED": hashseed},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return (cwd / "run" / "report.html").read_bytes(), (cwd / "cmp" / "report.html").read_bytes()


def test_reports_are_byte_identical_whatever_the_hash_seed(tmp_path: Path) -> None:
    """Protects determinism of the reports: the same scenario and seed give the same report.html bytes (run
    and compare) in processes with different string-hash seeds. At 60 patients several adverse-event types
    have equal rates (8.333 per 100 for two, 5.0 for three...); v0.2 ordered them by a set's iteration order,
    which PYTHONHASHSEED changes, so the adverse-event figure's bars (and the report bytes) changed between
    runs. Also: no PNG carries a text chunk (matplotlib's default one names its version)."""
    import base64

    first = _report_bytes_in_a_fresh_process(tmp_path / "a", "1")
    second = _report_bytes_in_a_fresh_process(tmp_path / "b", "2")
    assert first[0] == second[0], "painpath run: report.html differs between two identical runs"
    assert first[1] == second[1], "painpath compare: report.html differs between two identical runs"
    for html in first:
        pngs = re.findall(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
        assert pngs and not any(b"tEXt" in base64.b64decode(b) for b in pngs)
