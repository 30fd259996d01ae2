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


# The page that answers the trainee's k-th decision: fully parsed, with a question or the debrief, and the
# trainee's k decisions marked in its timeline (Session.timeline: one "YOUR DECISION" line, li.you, per answer).
PAGE_AFTER = """return document.readyState === 'complete'
    && (document.getElementById('question') !== null || document.getElementById('score') !== null)
    && document.querySelectorAll('#timeline li.you').length === arguments[0];"""
PAGE_WAIT = 300.0
"""Seconds a step may take before the test fails: only a failing run waits this long. A loaded machine (two other
suites beside this one) slows the server's pages (a simulation, charts) tenfold and more."""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_whole_case_in_headless_chromium(server: str) -> None:
    """Slow (starts a real browser; run with `python -m pytest -m slow tests/test_webapp.py`). Protects: a
    trainee in Chromium loads a case, answers every step by clicking, reaches the debrief; the score is shown
    and the non-guideline first choice (a strong opioid at the first evaluation) gave a different course.

    Robust under load: the browser does not block on page loads (page load strategy "none"), and each step waits
    explicitly for the condition it needs (:data:`PAGE_AFTER`: the page answering the k-th decision, complete).
    The former waits (the old page stale, then readyState) failed now and then on a loaded machine (the error
    was not kept); they left two load-sensitive points, both gone: the click blocked in chromedriver for the
    whole post-redirect-get under Selenium's 120 s HTTP command timeout, and the staleness poll ran commands in a
    document being replaced, whose transient errors (WebDriverException) the wait did not ignore; a timeout
    now names the page awaited and where the browser is."""
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def wait_for(what: str, condition) -> None:
        """Poll ``condition(driver)`` until true; errors of a page being replaced meanwhile are polled through."""
        try:
            WebDriverWait(driver, PAGE_WAIT, poll_frequency=0.2,
                          ignored_exceptions=(WebDriverException,)).until(condition)
        except TimeoutException as err:
            raise AssertionError(f"after {PAGE_WAIT:.0f} s, still waiting for {what}; the browser is at "
                                 f"{driver.current_url} ({driver.title!r}); last error: {err.msg}") from err

    def answer(selector: str, answered: int) -> None:
        """Click the button and wait for the page that shows the ``answered``-th decision."""
        button = driver.find_element(By.CSS_SELECTOR, selector)
        try:
            button.click()
        except (ElementClickInterceptedException, ElementNotInteractableException, NoSuchElementException,
                StaleElementReferenceException):
            raise  # the click did not happen
        except WebDriverException:
            pass  # the click was dispatched and the page is being replaced: the wait below decides
        wait_for(f"the page after decision {answered}",
                 lambda d: d.execute_script(PAGE_AFTER, answered))

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    opts.page_load_strategy = "none"  # no command blocks on a page load: the explicit waits do the waiting
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1200"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    mirror = Session(setup_from_case(load_case("strong-opioid-gate")))
    try:
        driver.get(server)
        wait_for("the start page", lambda d: d.execute_script(
            "return document.readyState === 'complete' && !!document.getElementById('case-strong-opioid-gate');"))
        answer("#case-strong-opioid-gate", 0)
        steps = 0
        while not driver.find_elements(By.ID, "score"):
            assert mirror.point is not None
            assert driver.find_element(By.ID, "chart").find_elements(By.TAG_NAME, "svg")
            assert driver.find_element(By.ID, "flowchart").find_elements(By.TAG_NAME, "svg")
            key = "strong_opioid" if steps == 1 else mirror.point.guideline_option.key
            mirror.answer(key)
            answer(f'button[name="key"][value="{key}"]', len(mirror.labels))
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
