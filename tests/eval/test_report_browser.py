"""The HTML report in a real browser (headless Chromium, installed by ``make setup-dev``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testtime.eval.policy import fit_policy
from testtime.eval.report import build_report
from testtime.eval.store import ResultStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (make setup-dev installs them)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


ROWS = """return Array.from(document.querySelectorAll('table')).map(t =>
  Array.from(t.querySelectorAll('tr')).map(r =>
    Array.from(r.querySelectorAll('th,td')).map(c => c.innerText.trim())));"""
IMAGES = """return Array.from(document.images).map(i =>
  [i.getAttribute('src'), i.complete, i.naturalWidth, i.getBoundingClientRect().height]);"""


def test_report_tables_have_one_row_per_configuration_and_images_load(
        synthetic_store: Path, tmp_path: Path, browser: Any) -> None:
    with ResultStore(synthetic_store, create=False) as s:
        records = s.records()
    policy = fit_policy(records, probe_k=2, bins=3, budgets=[1293, 323, 646])
    summary = build_report(records, tmp_path / "rep", policy=policy)
    browser.get((tmp_path / "rep" / "report.html").resolve().as_uri())
    tables = browser.execute_script(ROWS)
    configs = tables[0]
    assert configs[0][0] == "configuration"
    assert len(configs) == 1 + summary["configurations"], "one row per configuration"
    assert all(len(row) == len(configs[0]) for row in configs)
    assert "majority@16" in [row[0] for row in configs]
    winners = next(t for t in tables if t[0][0] == "budget (tokens)")
    assert [row[0] for row in winners[1:]] == ["323", "646", "1293"]
    assert len(winners[0]) == policy.bins + 1
    held = tables[-1]
    assert {"adaptive@323", "adaptive@1293", "majority@16"} <= {row[0] for row in held[1:]}
    assert [r[0] for r in held if r[0].startswith("adaptive@")] == [
        "adaptive@323", "adaptive@646", "adaptive@1293"], "budgets in numeric order"
    width = browser.execute_script("return document.documentElement.scrollWidth;")
    assert width <= 1400, "the page does not scroll sideways"
    images = browser.execute_script(IMAGES)
    assert len(images) == len(summary["files"]) >= 3
    for src, complete, natural_width, height in images:
        assert complete and natural_width > 0 and height > 0, src
    text = browser.find_element("tag name", "body").text
    assert f"{policy.bins} bins cut at" in text
