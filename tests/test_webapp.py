"""`painpath teach`: the tutor in the browser (Flask test client here; a real browser in the slow test)."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.teaching.cases import load_case
from simulator.teaching.narrate import setup_from_case
from simulator.teaching.tutor.session import Session
from simulator.teaching.webapp import create_app

ROOT = Path(__file__).resolve().parents[1]


def _keys(page: bytes) -> list[str]:
    return [k.decode() for k in re.findall(rb'name="key" value="([^"]+)"', page)]


def test_a_whole_case_over_http_with_a_non_guideline_first_choice() -> None:
    """Protects: the web tutor walks a case to the debrief; the first (non-guideline) choice changes the course,
    later guideline choices score; pages load nothing from the network (no scripts, no external URLs)."""
    app = create_app(ROOT / "cohorts")
    c = app.test_client()
    index = c.get("/").data
    assert b"strong-opioid-gate" in index
    loc = c.post("/start", data={"case": "strong-opioid-gate"}).headers["Location"]
    mirror = Session(setup_from_case(load_case("strong-opioid-gate")))
    key = "start:duloxetine"
    pages = 0
    while True:
        page = c.get(loc).data
        assert b"<script" not in page and not re.search(rb'(src|href)="https?://', page)
        if b'id="score"' in page:
            break
        assert key in _keys(page)
        assert b'stroke="#c05600"' in page  # the flowchart highlights the current position
        c.post(loc + "/answer", data={"key": key})
        mirror.answer(key)
        key = mirror.point.guideline_option.key if mirror.point is not None else ""
        pages += 1
        assert pages < 30
    ok, total = mirror.score
    assert f"Score: {ok}/{total}".encode() in page and ok == total  # duloxetine first is acceptable (P1)
    assert b"parted from the guideline's on day 0" in page
    yours = re.search(rb'<td class="yours">([^<]*)</td>', page).group(1)
    theirs = re.search(rb'<td class="guideline">([^<]*)</td>', page).group(1)
    assert yours.startswith(b"duloxetine (day 0)") and theirs.startswith(b"pregabalin (day 0)")


def test_bad_choices_in_the_web_app_are_one_paragraph_not_a_traceback() -> None:
    """Protects: an unknown cohort or option is a 400 page naming the field and the fix."""
    c = create_app(ROOT / "cohorts").test_client()
    r = c.post("/start", data={"cohort": "nope.yaml", "seed": "1", "patient": "0"})
    assert r.status_code == 400 and b"Fix:" in r.data and b"Traceback" not in r.data
    loc = c.post("/start", data={"cohort": "mixed-primary-care.yaml", "seed": "1", "patient": "2"}).headers["Location"]
    r = c.post(loc + "/answer", data={"key": "no-such-option"})
    assert r.status_code == 400 and b"not an option" in r.data
    assert c.get("/s/999").status_code == 404
    loc = c.post("/start", data={"case": "arrhythmia-no-tca"}).headers["Location"]
    c.post(loc + "/answer", data={"key": "start:nortriptyline"})
    page = c.get(loc).data
    assert b"Not allowed" in page and b"P5.tca_cardiac_contraindicated" in page and b"What do you start?" in page
    trace = c.get("/trace?cohort=mixed-primary-care.yaml&seed=1&patient=2")
    assert trace.status_code == 200 and b'id="timeline"' in trace.data and b"<svg" in trace.data


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture()
def server() -> Iterator[str]:
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, create_app(ROOT / "cohorts"), threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}/"
    finally:
        srv.shutdown()
        t.join(10)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_whole_case_in_headless_chromium(server: str) -> None:
    """Slow (starts a real browser; run with `python -m pytest -m slow tests/test_webapp.py`). Protects: a
    trainee in Chromium loads a case, answers every step by clicking, reaches the debrief; the score is shown
    and the non-guideline first choice (a strong opioid at the first evaluation) gave a different course."""
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def click_and_wait(element) -> None:  # a click posts a form: wait for the next page (the suite may be loaded)
        page = driver.find_element(By.TAG_NAME, "html")
        element.click()
        WebDriverWait(driver, 60).until(ec.staleness_of(page))
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1200"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    mirror = Session(setup_from_case(load_case("strong-opioid-gate")))
    try:
        driver.get(server)
        click_and_wait(driver.find_element(By.ID, "case-strong-opioid-gate"))
        steps = 0
        while not driver.find_elements(By.ID, "score"):
            assert mirror.point is not None
            assert driver.find_element(By.ID, "chart").find_elements(By.TAG_NAME, "svg")
            assert driver.find_element(By.ID, "flowchart").find_elements(By.TAG_NAME, "svg")
            key = "strong_opioid" if steps == 1 else mirror.point.guideline_option.key
            click_and_wait(driver.find_element(By.CSS_SELECTOR, f'button[name="key"][value="{key}"]'))
            mirror.answer(key)
            if steps == 1:
                assert "Declared departure" in driver.find_element(By.ID, "feedback").text
            steps += 1
            assert steps < 30
        ok, total = mirror.score
        assert driver.find_element(By.ID, "score").text == f"Score: {ok}/{total}" and ok == total - 1
        assert "parted from the guideline's on day" in driver.find_element(By.ID, "parted").text
        yours = driver.find_element(By.CSS_SELECTOR, "#courses td.yours").text
        theirs = driver.find_element(By.CSS_SELECTOR, "#courses td.guideline").text
        assert yours != theirs and "morphine" in yours
        assert "departure" in driver.find_element(By.ID, "answers").text
    finally:
        driver.quit()
