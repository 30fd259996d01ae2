"""The clinical flowchart: drawn from the pathway, the policy and the drug data; legible when rendered."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.model import pathway
from simulator.model.catalog import load_catalog
from simulator.model.policy import Policy
from simulator.scenario import load_scenario
from simulator.teaching.flowchart import flowchart_svg

ROOT = Path(__file__).resolve().parents[1]
GUIDELINE = ROOT / "scenarios" / "guideline.yaml"


def _texts(svg: str) -> str:
    return html.unescape(" ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg)))


def _state_words(state: str) -> str:
    return state.replace("_", " ").lower()


def _drug_words(name: str) -> str:
    return name.replace("_5pct", " 5%").replace("_8pct", " 8%").replace("_", " ").lower()


def test_every_state_drug_and_criterion_is_written() -> None:
    """Protects: the trainee view names every pathway state, every catalogue drug, the decision criteria and
    the safety checks (not triggers such as escalate_strong_opioid)."""
    text = _texts(flowchart_svg(Policy())).lower()
    for s in pathway.STATES:
        assert _state_words(s) in text, s
    for name in load_catalog().drugs:
        assert _drug_words(name) in text, name
    for words in (">= 30% reduction", "nrs >= 4", "adequate trial", "intolerance", "ecg before a tricyclic over age 40",
                  "serotonin check", "misuse screen", "chemotherapy-induced", "radiculopathy", "300 mg/day (max 600)"):
        assert words in text, words
    assert "escalate_" not in text and "start_first_line" not in text


def test_policy_changes_the_flowchart() -> None:
    """Protects: the flowchart is the scenario's policy: duloxetine first, no tramadol, no strong opioids."""
    dul = _texts(flowchart_svg(load_scenario(ROOT / "scenarios" / "duloxetine-first.yaml").policy))
    assert "duloxetine first" in dul
    no_op = _texts(flowchart_svg(load_scenario(ROOT / "scenarios" / "no-strong-opioids.yaml").policy))
    assert "NOT USED by this policy" in no_op
    assert "NOT USED" not in _texts(flowchart_svg(Policy()))


def test_a_new_state_of_the_pathway_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects: the flowchart follows the definition: a state the layout does not know still appears."""
    monkeypatch.setattr(pathway, "STATES", pathway.STATES + ("dose_optimisation",))
    assert "Dose optimisation" in _texts(flowchart_svg(Policy()))


def test_run_counts_and_a_run_of_another_scenario_is_an_input_error(tmp_path: Path) -> None:
    """Protects: --run writes patients per step from the same scenario's run, and refuses another scenario's."""
    r = CliRunner()
    run = tmp_path / "run"
    out = r.invoke(main, ["run", str(GUIDELINE), "--patients", "300", "--replications", "1", "--out", str(run),
                          "--no-report", "--quiet"])
    assert out.exit_code == 0, out.output
    svg = tmp_path / "f.svg"
    out = r.invoke(main, ["flowchart", str(GUIDELINE), "--run", str(run), "--out", str(svg)])
    assert out.exit_code == 0, out.output
    text = _texts(svg.read_text())
    assert "Assessment (n=300)" in text and re.search(r"Relieved \(n=\d+\)", text)
    other = ROOT / "scenarios" / "duloxetine-first.yaml"
    for cmd in (["flowchart", str(other), "--run", str(run), "--out", str(tmp_path / "g.svg")],
                ["diagram", str(other), "--run", str(run)]):
        out = r.invoke(main, cmd)
        assert out.exit_code == 2, out.output
        assert "is of scenario 'guideline', not 'duloxetine-first'" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "g.svg").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium)")
def test_flowchart_png_is_legible(tmp_path: Path) -> None:
    """Slow (starts Chromium). Protects legibility: the PNG has the drawing's size at A4 portrait proportions,
    is mostly white with dark text, and (with chromedriver) every state and drug label is rendered inside the
    page at >= 13 px with no two text lines overlapping."""
    from PIL import Image

    png = tmp_path / "flowchart.png"
    out = CliRunner().invoke(main, ["flowchart", str(GUIDELINE), "--out", str(png)])
    assert out.exit_code == 0, out.output
    im = Image.open(png).convert("L")
    w, h = im.size
    assert w == 1100 and 1.2 < h / w < 1.9, (w, h)  # A4 is 1.41; legible at 100% on a screen
    dark = sum(im.histogram()[:100]) / (w * h)
    assert 0.01 < dark < 0.25, dark
    if CHROMEDRIVER is None:
        pytest.skip("chromedriver not installed: label positions not checked")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page = tmp_path / "f.html"
    CliRunner().invoke(main, ["flowchart", str(GUIDELINE), "--out", str(page)])
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={w},{h}"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(page.as_uri())
        boxes = driver.execute_script(
            "return [...document.querySelectorAll('svg text')].map(t => {const r = t.getBoundingClientRect();"
            "return [t.textContent, r.left, r.top, r.right, r.bottom, parseFloat(getComputedStyle(t).fontSize)];});")
    finally:
        driver.quit()
    shown = " ".join(b[0] for b in boxes).lower()
    for s in pathway.STATES:
        assert _state_words(s) in shown, s
    for name in load_catalog().drugs:
        assert _drug_words(name) in shown, name
    for text, left, top, right, bottom, size in boxes:
        assert size >= 13 and 0 <= left and right <= w and 0 <= top and bottom <= h, (text, left, top, right, bottom)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap_x = min(a[3], b[3]) - max(a[1], b[1])
            overlap_y = min(a[4], b[4]) - max(a[2], b[2])
            assert overlap_x <= 1 or overlap_y <= 3, f"'{a[0]}' overlaps '{b[0]}'"


def test_curved_arrows_do_not_strike_through_their_labels() -> None:
    """Protects (review r13): the 'yes' and 'partial' labels of the curved arrows sat on the curve, struck through.
    Every point of every curved arrow stays out of every italic edge label's box (an estimate: 7.5 px per
    character at 13 px, from the baseline 12 px up and 4 px down)."""
    svg = flowchart_svg(Policy())
    boxes = []
    for m in re.finditer(r'<text x="(\d+)" y="(\d+)"(?: text-anchor="(\w+)")?[^>]*font-style="italic"[^>]*>([^<]+)</text>', svg):
        x, y, width = float(m[1]), float(m[2]), 7.5 * len(html.unescape(m[4]))
        left = x - width if m[3] == "end" else x
        boxes.append((m[4], left, y - 12, left + width, y + 4))
    assert any(b[0] == "partial" for b in boxes) and any(b[0] == "yes" for b in boxes)
    curves = re.findall(r'<path d="M(\d+),(\d+) C(\d+),(\d+) (\d+),(\d+) (\d+),(\d+)"', svg)
    assert curves
    for c in curves:
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = [(float(c[i]), float(c[i + 1])) for i in range(0, 8, 2)]
        for k in range(101):
            t = k / 100
            px = (1 - t) ** 3 * x0 + 3 * (1 - t) ** 2 * t * x1 + 3 * (1 - t) * t ** 2 * x2 + t ** 3 * x3
            py = (1 - t) ** 3 * y0 + 3 * (1 - t) ** 2 * t * y1 + 3 * (1 - t) * t ** 2 * y2 + t ** 3 * y3
            for text, left, top, right, bottom in boxes:
                assert not (left <= px <= right and top <= py <= bottom), f"an arrow crosses the label '{text}'"
