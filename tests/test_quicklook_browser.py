"""The quick-look page in a real browser (Debian's chromium, driven by selenium through
chromedriver) against a real site: ``sisock up`` with the router, the hub, the example
weather node (a copy of its data with one injected spike), a live sensors node reading a
fake hwmon tree, and the bridge.

The page exposes what it drew in the plot element's ``data-*`` attributes (state,
points per series, range, point budget, live samples); tests compare them with
``/api/data`` and the raw files. Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from sisock_core.testing import start_site, wait_until
from sisock_plugins.weather.parser import parse_file
from sisock_plugins.weather.plugin import example_data_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# as the machine's notes say: without these, chromium keeps dialling Google on a closed network
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--disable-quic", "--window-size=1400,900"]

SPIKE_T, SPIKE_V = 1500552000.0, 9.99  # 2017-07-20T12:00Z; the data's maximum is 2.82
RADIOMETER = "apex_archive::apex_radiometer"
HUMIDITY = "apex_archive::apex_humidity"
SENSOR = "sensors::testchip-virtual-0_temp1"
JULY = "from=2017-07-13T00:00:00Z&to=2017-07-27T00:00:00Z"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quicklook")
    data = tmp / "weather"
    shutil.copytree(example_data_dir(), data)
    path = data / "apex_radiometer.dat"
    text = path.read_text()
    line = f"{int(SPIKE_T)} "
    at = text.index("\n" + line) + 1
    end = text.index("\n", at)
    path.write_text(text[:at] + f"{line}{SPIKE_V}" + text[end:])
    hwmon = tmp / "hwmon" / "hwmon0"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("testchip\n")
    (hwmon / "temp1_input").write_text("42000\n")
    nodes = {
        "apex_archive": {"plugin": "weather", "data_dir": str(data)},
        "sensors": {"plugin": "sensors", "command": str(tmp / "no-lm-sensors"),
                    "hwmon_root": str(hwmon.parent), "interval": 0.5},
    }
    with start_site(tmp / "site", nodes, http=True) as running:
        running.data_dir = data
        running.hwmon = hwmon
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for exe in (CHROMIUM, CHROMEDRIVER):
        assert Path(exe).exists(), f"{exe} is missing: run scripts/setup.sh (apt: chromium chromium-driver)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}")
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def plot(driver) -> dict:
    el = driver.find_element("id", "plot")
    keys = ("state", "points", "series", "series-points", "from", "to", "budget", "live",
            "live-samples", "last-time")
    return {k: el.get_attribute(f"data-{k}") for k in keys}


def wait_plot(driver, predicate, what: str, timeout: float = 30.0) -> dict:
    def check():
        p = plot(driver)
        return p if predicate(p) else None
    try:
        return wait_until(check, timeout=timeout, interval=0.1, what=what)
    except AssertionError:
        shot(driver, "failed")
        raise AssertionError(f"{what}; the plot is {plot(driver)}; notices: "
                             f"{driver.find_element('id', 'notices').text!r}") from None


def shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"quicklook-{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def view(driver) -> dict:
    """The page's series as the page holds them (the JS state)."""
    return driver.execute_script(
        "return window.sisockView.series.map(s => ({target: s.target, t: s.t, v: s.v, error: s.error}))")


def api_data(site, targets, start_ms, end_ms, points) -> dict:
    q = urllib.parse.urlencode([("target", t) for t in targets] +
                               [("from", start_ms), ("to", end_ms), ("points", points)])
    with urllib.request.urlopen(f"{site.http_url}/api/data?{q}", timeout=30) as r:
        return json.load(r)


def raw(site, field: str, start: float, end: float):
    _h, t, v = parse_file(site.data_dir / f"{field}.dat")
    keep = (t >= start) & (t < end)
    return t[keep], v[keep]


def test_a_new_user_sees_the_example_weather_data(site, browser):
    """Opening the bare URL shows the first field of the example node, over the last week
    of its (2017) data, found without any parameters."""
    browser.get(site.http_url + "/")
    p = wait_plot(browser, lambda p: p["state"] == "ready", "the default view to plot")
    shot(browser, "default")
    assert int(p["points"]) > 100 and p["series"] == "1"
    assert view(browser)[0]["target"] == HUMIDITY
    q = urllib.parse.parse_qs(urllib.parse.urlparse(browser.current_url).query)
    assert q["target"] == [HUMIDITY]
    _h, t, _v = parse_file(site.data_dir / "apex_humidity.dat")
    assert abs(float(q["to"][0]) / 1000 - t[-1]) < 2  # ends at the last sample
    assert [n.get_attribute("data-node") for n in browser.find_elements("css selector", ".node")] == \
        ["apex_archive", "sensors"]
    label = browser.find_element("css selector", f'.field[data-target="{RADIOMETER}"]')
    assert "[mm]" in label.text and "precipitable water" in label.text


def test_selecting_a_field_plots_the_budgeted_points_with_the_spike(site, browser):
    browser.get(f"{site.http_url}/?target={HUMIDITY}&{JULY}")
    wait_plot(browser, lambda p: p["state"] == "ready" and p["series"] == "1", "humidity to plot")
    browser.find_element("css selector", f'.field[data-target="{RADIOMETER}"] input').click()
    p = wait_plot(browser, lambda p: p["state"] == "ready" and p["series"] == "2", "two series to plot")
    budget = int(p["budget"])
    width = browser.execute_script("return document.getElementById('plot').clientWidth")
    assert budget == width
    answer = api_data(site, [HUMIDITY, RADIOMETER], p["from"], p["to"], budget)
    expected = [len(s["t"]) for s in answer["series"]]
    assert json.loads(p["series-points"]) == expected
    t, v = raw(site, "apex_radiometer", int(p["from"]) / 1000, int(p["to"]) / 1000)
    assert expected[1] <= budget < t.size  # reduced to the plot's width ...
    radiometer = view(browser)[1]
    assert max(radiometer["v"]) == SPIKE_V == v.max()  # ... with the one-sample spike kept
    assert radiometer["t"][radiometer["v"].index(SPIKE_V)] == SPIKE_T * 1000
    shot(browser, "two-fields")


def test_zooming_requeries_and_keeps_the_spike(site, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(f"{site.http_url}/?target={RADIOMETER}&{JULY}")
    before = wait_plot(browser, lambda p: p["state"] == "ready", "the radiometer to plot")
    over = browser.find_element("css selector", "#plot .u-over")
    # drag across six hours around the spike (uPlot maps times to CSS pixels of .u-over)
    x0, x1 = browser.execute_script(
        "const u = window.sisockView.plot;"
        "return [u.valToPos(arguments[0], 'x'), u.valToPos(arguments[1], 'x')];",
        SPIKE_T - 3 * 3600, SPIKE_T + 3 * 3600)
    size = over.size
    ActionChains(browser).move_to_element_with_offset(over, int(x0 - size["width"] / 2), 0) \
        .click_and_hold().move_by_offset(int(x1 - x0), 0).release().perform()
    p = wait_plot(browser, lambda p: p["state"] == "ready" and p["from"] != before["from"],
                  "the zoomed view to plot")
    start, end = int(p["from"]) / 1000, int(p["to"]) / 1000
    assert SPIKE_T - 4 * 3600 < start < SPIKE_T < end < SPIKE_T + 4 * 3600
    t, v = raw(site, "apex_radiometer", start, end)
    answer = api_data(site, [RADIOMETER], p["from"], p["to"], p["budget"])
    assert int(p["points"]) == len(answer["series"][0]["t"]) == t.size  # a minutely 6 h fits
    series = view(browser)[0]
    assert max(series["v"]) == SPIKE_V and SPIKE_T * 1000 in series["t"]
    q = urllib.parse.parse_qs(urllib.parse.urlparse(browser.current_url).query)
    assert (q["from"], q["to"]) == ([p["from"]], [p["to"]])
    shot(browser, "zoomed")
    # the URL captures the view: opened afresh, it shows the same
    browser.get(browser.current_url)
    again = wait_plot(browser, lambda p: p["state"] == "ready", "the shared view to plot")
    assert (again["from"], again["to"], again["points"]) == (p["from"], p["to"], p["points"])


def test_csv_download_is_what_is_shown(site, browser):
    browser.get(f"{site.http_url}/?target={HUMIDITY}&target={RADIOMETER}&from=2017-07-20T00:00:00Z"
                "&to=2017-07-21T00:00:00Z")
    p = wait_plot(browser, lambda p: p["state"] == "ready", "the day to plot")
    for old in browser.downloads.glob("*"):
        old.unlink()
    browser.find_element("id", "csv").click()
    path = wait_until(lambda: [f for f in browser.downloads.glob("*.csv")], timeout=30,
                      what="the CSV download")[0]
    wait_until(lambda: path.stat().st_size > 0 and not list(browser.downloads.glob("*.crdownload")),
               timeout=30, what="the CSV download to finish")
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["time", "target", "value"]
    assert len(rows) - 1 == int(p["points"])
    shown = view(browser)
    assert [r[1] for r in rows[1:]] == [s["target"] for s in shown for _ in s["t"]]
    assert [float(r[2]) for r in rows[1:]] == [v for s in shown for v in s["v"]]
    assert rows[1][0] == "2017-07-20T00:00:00.000Z"


def test_live_mode_appends_pushed_samples(site, browser):
    wait_until(lambda: any(f["target"] == SENSOR for n in json.load(urllib.request.urlopen(
        site.http_url + "/api/fields", timeout=30))["nodes"] for f in n["fields"]),
        timeout=60, what="the sensors node to list its field")
    browser.get(f"{site.http_url}/?target={SENSOR}&from=now-5m&to=now")
    wait_plot(browser, lambda p: p["state"] == "ready", "the sensor to plot")
    browser.find_element("id", "live").click()
    p = wait_plot(browser, lambda p: p["live"] == "on" and int(p["live-samples"] or 0) >= 1,
                  "a first live sample")
    assert "live=1" in browser.current_url
    (site.hwmon / "temp1_input").write_text("55500\n")  # the sensor changes: the page shows it
    # the plot's attributes and its data are read one after the other: wait for both
    p2 = wait_plot(browser, lambda q: float(q["last-time"] or 0) > float(p["last-time"])
                   and view(browser)[0]["v"][-1] == 55.5, "the new reading to appear")
    assert abs(float(p2["last-time"]) / 1000 - time.time()) < 30
    shot(browser, "live")
    log = site.log_text()
    assert "live stream opened" in log
    assert "sensors pushes live samples; forwarding them (no polling)" in log
