"""The plugin in a real FiftyOne App, driven by headless Chromium (selenium + chromedriver).

One test, the curator's whole loop, checked both on screen and in the database:

1. a FiftyOne App server (``python -m fiftyone.server.main``) on a free localhost
   port, sharing this test run's private database and plugins directory, serves a
   dataset of 20 real Fashion-MNIST images with pyramid embeddings;
2. the operator browser (backtick key) finds ``score_ood``; its form is filled
   (reference tag, k, score field) and executed -> the score field and its run
   record are checked in the database;
3. the "OOD review" panel is opened from the "+" (new panel) menu; a ground-truth
   field is chosen (metrics appear), the threshold slider is moved (the live count
   must equal the database count at the slider's exact value), "show flagged" puts
   the flagged samples in the grid highest score first, two grid samples are
   selected and tagged ``ood_confirmed`` -> tags checked in the database.

Screenshots go to ``docs/screenshots/``. Skipped only when Chromium itself is not
installed (``./setup.sh`` installs it with chromedriver).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREENSHOTS = os.path.join(REPO, "docs", "screenshots")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--window-size=1800,1400",
)
WAIT = 90  # seconds for any single UI step (2 shared CPU cores: be generous)
GT_LABEL = "Ground truth (optional boolean field, True = positive)"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url, proc, log_path, timeout=180):
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"App server exited with code {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return time.time() - start
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"App server did not answer {url} within {timeout}s:\n{_tail(log_path)}")


def _tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"<no log: {e}>"


@pytest.fixture
def app_dataset(dataset_factory, fashion_files):
    """20 real images (2 per class), embeddings 'emb', is_ood = Bag / Ankle boot, half of ID 'trusted'."""
    import ood_core as ood

    paths, names = fashion_files
    idx = list(range(0, 200, 10))  # fashion_files holds 20 per class in class order
    ood_classes = {"Bag", "Ankle boot"}
    tags = [["trusted"] if names[i] not in ood_classes and j % 2 == 0 else [] for j, i in enumerate(idx)]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)
    ds.persistent = True  # visible to the server process whatever its cleanup policy
    ds.set_values("is_ood", [names[i] in ood_classes for i in idx])
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3])
    return ds


@pytest.fixture
def app_server(app_dataset, tmp_path):
    """The App server in a subprocess with this test run's database and plugins (env from conftest)."""
    port = _free_port()
    log_path = tmp_path / "app_server.log"
    # FIFTYONE_DATABASE_URI (set by conftest) points the server at this run's private mongod
    env = dict(os.environ, FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_VALIDATION="false")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fiftyone.server.main", "--port", str(port), "--address", "127.0.0.1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(tmp_path),
        )
    try:
        startup = _wait_http(f"http://127.0.0.1:{port}/", proc, log_path)
        print(f"\n[browser test] App server up on port {port} after {startup:.1f}s")
        yield {"url": f"http://127.0.0.1:{port}", "log": log_path, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own process group (start_new_session)
            proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    if not os.path.exists(CHROMIUM):
        message = f"Chromium not installed: run ./setup.sh (expected {CHROMIUM}); the browser test did NOT run"
        print("\n" + "!" * 100 + f"\n{message}\n" + "!" * 100, file=sys.stderr)
        pytest.skip(message)
    assert os.path.exists(CHROMEDRIVER), f"{CHROMEDRIVER} missing while Chromium is installed: run ./setup.sh"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                              options=opts)
    try:
        yield driver
    finally:
        driver.quit()


# --------------------------------------------------------------------------- selenium helpers


class UI:
    """Small waits and actions on the App; every lookup retries through React re-renders."""

    def __init__(self, driver):
        from selenium.common.exceptions import (
            ElementClickInterceptedException,
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        self.d = driver
        self._transient = (StaleElementReferenceException, NoSuchElementException,
                           ElementClickInterceptedException)
        self._wait = WebDriverWait

    def until(self, what, fn, timeout=WAIT):
        """Retry ``fn()`` until it returns a truthy value; ``what`` names the step in the error."""
        last = None
        end = time.time() + timeout
        while time.time() < end:
            try:
                value = fn()
                if value:
                    return value
            except self._transient as e:
                last = e
            time.sleep(0.3)
        raise TimeoutError(f"timed out after {timeout}s waiting for: {what}" + (f" (last: {last!r})" if last else ""))

    def xpath(self, xp, what=None, timeout=WAIT):
        from selenium.webdriver.common.by import By

        return self.until(what or xp, lambda: self.d.find_element(By.XPATH, xp), timeout)

    def css(self, selector, what=None, timeout=WAIT):
        from selenium.webdriver.common.by import By

        return self.until(what or selector, lambda: self.d.find_element(By.CSS_SELECTOR, selector), timeout)

    def click(self, get, what):
        from selenium.common.exceptions import ElementClickInterceptedException

        def attempt():
            el = get()
            if not el.is_displayed() or not el.is_enabled():
                return False
            try:
                el.click()
            except ElementClickInterceptedException:
                _dismiss_popups(self)  # e.g. the App's 'Explore Enterprise' card; then retry
                return False
            return True
        self.until(f"click {what}", attempt)

    def text_present(self, text, timeout=WAIT):
        return self.xpath(f"//*[contains(normalize-space(.), {_xq(text)}) and not(*[contains(normalize-space(.), "
                          f"{_xq(text)})])]", f"text {text!r}", timeout)

    def choose(self, label, option):
        """Pick ``option`` in the dropdown that follows the text ``label`` (MUI Select)."""
        box_xp = f"//*[normalize-space(text())={_xq(label)}]/following::*[@role='combobox'][1]"
        self.click(lambda: self.xpath(box_xp, f"dropdown {label!r}", 5), f"dropdown {label!r}")
        opt_xp = f"//li[@role='option'][normalize-space(.)={_xq(option)}]"
        self.click(lambda: self.xpath(opt_xp, f"option {option!r}", 5), f"option {option!r}")

    def type_into(self, label, value):
        """Replace the text of the input that follows the text ``label``."""
        from selenium.webdriver.common.keys import Keys

        xp = f"//*[normalize-space(text())={_xq(label)}]/following::input[not(@aria-hidden='true')][1]"

        def attempt():
            el = self.xpath(xp, f"input {label!r}", 5)
            el.click()
            el.send_keys(Keys.CONTROL, "a")
            el.send_keys(Keys.BACKSPACE)
            el.send_keys(str(value))
            return el.get_attribute("value") == str(value)
        self.until(f"type {value!r} into {label!r}", attempt)

    def body_text(self):
        from selenium.webdriver.common.by import By

        try:
            return self.d.find_element(By.TAG_NAME, "body").text
        except Exception as e:  # diagnostics only
            return f"<no body text: {e!r}>"


def _xq(s):
    """An XPath string literal for ``s``."""
    return f'"{s}"' if '"' not in s else "concat('" + s.replace("'", "', \"'\", '") + "')"


def _console_errors(driver):
    try:
        logs = driver.get_log("browser")
    except Exception as e:  # diagnostics only
        return [f"<no console log: {e!r}>"]
    # the App preloads Google fonts: offline, those requests always fail
    return [f"{e['level']}: {e['message'][:400]}" for e in logs
            if e["level"] in ("SEVERE", "WARNING") and "fonts.googleapis.com" not in e["message"]]


def _dismiss_popups(ui):
    """The App shows an 'Explore Enterprise' card over the top right corner on first visit."""
    from selenium.webdriver.common.by import By

    for el in ui.d.find_elements(By.XPATH, "//*[normalize-space(text())='Dismiss']"):
        try:
            if el.is_displayed():
                el.click()
        except Exception:  # gone or covered meanwhile: the caller retries
            pass


def _flag_count_text(ui):
    return ui.xpath("//*[contains(text(), 'scored samples flagged')]/..", "the panel's flagged count").text


def _slider(ui):
    return ui.xpath("//*[normalize-space(text())='Threshold']/following::*[contains(@class, 'MuiSlider-root')][1]",
                    "the threshold slider")


# --------------------------------------------------------------------------- the test


def test_score_in_the_app_and_review_in_the_panel(browser, app_dataset, app_server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    from ood_core.fo import runs as fo_runs
    from operators import panel

    t0 = time.perf_counter()
    ds, d = app_dataset, browser
    ui = UI(d)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    step = "open the dataset page"
    try:
        # ---- 1. the dataset page with its sample grid
        d.get(f"{app_server['url']}/datasets/{ds.name}")
        ui.css("[data-cy=looker]", "the sample grid (first tile)", timeout=150)
        ui.text_present("20 samples")
        time.sleep(1)
        _dismiss_popups(ui)

        # ---- 2. operator browser -> score_ood form -> execute
        step = "open the operator browser with the backtick key"

        def open_browser():
            from selenium.webdriver.common.by import By

            found = d.find_elements(By.CSS_SELECTOR, "input[data-cy=operators-browser-search]")
            if found and found[0].is_displayed():
                return found[0]
            ActionChains(d).send_keys("`").perform()
            time.sleep(1)
            return False
        search = ui.until("the operator browser's search box", open_browser)
        search.send_keys("score_ood")
        step = "pick score_ood in the operator browser"
        ui.click(lambda: ui.xpath("//*[normalize-space(text())='score_ood']/..", "score_ood entry", 5),
                 "the score_ood entry")
        ui.text_present("Score OOD / label issues")
        step = "fill the score_ood form"
        ui.choose("Reference tag (trusted samples)", "trusted")
        ui.type_into("k (neighbours)", 3)
        ui.type_into("Score field", "ood_knn")
        # the dynamic form re-validates after each edit: wait until it settles valid
        ui.until("the form to validate (no 'is not valid' message)",
                 lambda: "is not valid" not in ui.body_text() and "already exist" not in ui.body_text())

        def execute_enabled():
            btn = ui.xpath("//button[normalize-space(.)='Execute']", "Execute button", 5)
            return btn.is_enabled() and "Mui-disabled" not in (btn.get_attribute("class") or "")
        ui.until("the Execute button to be enabled", execute_enabled)
        d.save_screenshot(os.path.join(SCREENSHOTS, "app_score_ood_form.png"))
        step = "execute score_ood"
        ui.click(lambda: ui.xpath("//button[normalize-space(.)='Execute']", "Execute button", 5), "Execute")

        def scored():
            ds.reload()
            return ds.has_field("ood_knn") and "ood_knn" in fo_runs.list_ood_runs(ds)
        ui.until("the score field ood_knn in the database", scored, timeout=180)
        info = fo_runs.get_ood_run_info(ds, "ood_knn")
        assert info["kind"] == "ood_scores" and info["fields"] == ["ood_knn", "ood_knn_pvalue"]
        assert info["detector"]["method"] == "knn" and info["detector"]["k"] == 3
        assert info["reference"]["tag"] == "trusted" and info["reference"]["num_reference"] == 8
        scores = np.array(ds.values("ood_knn"), dtype=float)
        assert scores.shape == (20,) and np.isfinite(scores).all()
        ui.xpath("//*[normalize-space(text())='ood_knn']", "ood_knn in the sidebar (App reloaded the dataset)")
        t_scored = time.perf_counter() - t0

        # ---- 3. the OOD review panel
        step = "open the OOD review panel from the new-panel (+) menu"
        _dismiss_popups(ui)
        ui.click(lambda: ui.css("[data-cy=new-panel-btn]", "new panel (+) button", 5), "the new panel (+) button")
        ui.click(lambda: ui.css("[data-cy=new-panel-option-ood_review]", "OOD review in the panel menu", 5),
                 "OOD review in the new panel menu")
        ui.text_present("scored samples flagged")
        ui.xpath("//*[contains(@class, 'js-plotly-plot')]", "the score histogram")
        default_t = panel.default_threshold(scores)
        assert _flag_count_text(ui).startswith(f"{panel.count_flagged(scores, default_t)} of 20 scored samples")

        step = "choose the ground-truth field"
        ui.choose(GT_LABEL, "is_ood")
        ui.text_present("AUROC")
        expected = panel.evaluate(scores, np.array(ds.values("is_ood")), default_t)
        ui.until(f"the panel to show AUROC {expected['auroc']:.3f} (computed from the database)",
                 lambda: f"AUROC {expected['auroc']:.3f}" in ui.body_text())
        ui.text_present("Positive class: OOD")

        step = "move the threshold slider"
        before = _flag_count_text(ui)

        def move_slider():
            rail = _slider(ui)
            width = rail.size["width"]
            # selenium offsets are from the element's centre: click at 60% of the rail
            ActionChains(d).move_to_element_with_offset(rail, int(0.1 * width), 0).click().perform()
            return True
        ui.until("a click on the slider rail", move_slider)
        after = ui.until("the live count to change", lambda: (t := _flag_count_text(ui)) != before and t)
        threshold = float(ui.until("the slider value", lambda: _slider(ui).find_element(
            "xpath", ".//input[@type='range']").get_attribute("aria-valuenow")))
        n_flagged = panel.count_flagged(scores, threshold)
        assert 0 < n_flagged < 20, (threshold, scores)
        ui.until(f"the live count to read {n_flagged} (database count at threshold {threshold})",
                 lambda: _flag_count_text(ui).startswith(f"{n_flagged} of 20 scored samples flagged"))
        print(f"[browser test] slider: threshold {threshold:.4f} -> {n_flagged} flagged; panel says {after!r}")

        step = "show the flagged samples in the grid"
        ui.click(lambda: ui.xpath("//button[contains(normalize-space(.), 'Show flagged samples in the grid')]",
                                  "show flagged button", 5), "Show flagged samples")
        ui.xpath(f"//*[normalize-space(.)='{n_flagged} samples']", f"the grid to show {n_flagged} samples")
        expected_view = panel.flagged_view(ds, "ood_knn", threshold)
        expected_labels = expected_view.values("ground_truth.label")

        def grid_labels():
            from selenium.webdriver.common.by import By

            tiles = d.find_elements(By.CSS_SELECTOR, "[data-cy=looker] [data-cy=tag-ground_truth]")
            labels = [t.text for t in tiles]
            return labels if labels == expected_labels else False
        ui.until(f"grid tiles in score order {expected_labels}", grid_labels)

        step = "select two samples in the grid and tag them ood_confirmed"

        def select_tile(i):
            from selenium.webdriver.common.by import By

            tile = d.find_elements(By.CSS_SELECTOR, "[data-cy=looker]")[i]
            ActionChains(d).move_to_element(tile).perform()
            box = tile.find_element(By.CSS_SELECTOR, "[data-cy^=looker-checkbox-input]")
            if not box.is_selected():
                tile.find_element(By.CSS_SELECTOR, "label[data-cy^=looker-checkbox]").click()
            return tile.find_element(By.CSS_SELECTOR, "[data-cy^=looker-checkbox-input]").is_selected()
        for i in range(2):
            ui.until(f"grid tile {i} selected", lambda i=i: select_tile(i))
        ui.until("the panel to see 2 selected samples", lambda: "2 sample(s) selected" in _flag_count_text(ui))
        ui.click(lambda: ui.xpath("//button[normalize-space(.)='Tag selected: ood_confirmed']",
                                  "tag ood_confirmed button", 5), "Tag selected: ood_confirmed")
        top_two = expected_view.values("id")[:2]

        def tagged():
            ds.reload()
            return sorted(ds.match_tags("ood_confirmed").values("id")) == sorted(top_two)
        ui.until("the two highest-scoring samples tagged ood_confirmed in the database", tagged)
        assert ds.count_sample_tags().get("ood_dismissed", 0) == 0
        time.sleep(2)  # let the grid reload its samples before the screenshot
        d.save_screenshot(os.path.join(SCREENSHOTS, "ood_review_panel.png"))
        step = "check the panel's plots"
        ui.text_present("Precision-recall (positive = OOD)")
        plots = d.find_elements("css selector", "[data-cy=panel-content-ood_review] .js-plotly-plot")
        assert len(plots) == 2, f"expected the histogram and the ROC / PR plot, found {len(plots)} plots"
    except BaseException:
        failure_png = str(tmp_path / "failure.png")
        try:
            d.save_screenshot(failure_png)
        except Exception:
            failure_png = "<none>"
        print(f"\n[browser test] FAILED at step: {step}\n  url: {d.current_url}\n  screenshot: {failure_png}")
        print("  page text:\n" + ui.body_text()[:4000])
        print("  console errors/warnings:\n    " + "\n    ".join(_console_errors(d)[-30:]))
        print("  App server log (tail):\n" + _tail(app_server["log"]))
        mongo_log = os.path.join(os.environ.get("FIFTYONE_DATABASE_DIR", ""), "log", "mongo.log")
        print("  mongod log (tail):\n" + _tail(mongo_log, 15))
        raise
    wall = time.perf_counter() - t0
    print(f"[browser test] wall time in the browser: {wall:.1f}s (scoring done after {t_scored:.1f}s); "
          f"screenshots in {SCREENSHOTS}: app_score_ood_form.png, ood_review_panel.png")
    errors = [e for e in _console_errors(d) if e.startswith("SEVERE")]
    assert not [e for e in errors if "/operators/" in e], errors  # no failed operator calls


@pytest.fixture(autouse=True, scope="module")
def _report_wall_time():
    start = time.perf_counter()
    yield
    print(f"\n[browser test] module wall time (dataset, embeddings, server, browser): "
          f"{time.perf_counter() - start:.1f}s")
