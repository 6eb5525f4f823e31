"""The plugin in a real FiftyOne App, driven by headless Chromium (selenium + chromedriver).

One test, the curator's whole loop, checked both on screen and in the database:

1. a FiftyOne App server (``python -m fiftyone.server.main``) on a free localhost
   port, sharing this test run's private database and plugins directory and started
   with ``FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true`` (scheduling in open-source
   FiftyOne), serves a dataset of 20 real Fashion-MNIST images with pyramid embeddings;
2. the operator browser (backtick key) finds ``score_ood``; its form is filled
   (reference tag, k, score field) and executed -> the score field and its run
   record are checked in the database, and the result view (field written, counts,
   next steps) is checked on screen;
3. ``manage_ood_runs`` lists the runs as a table;
4. ``compute_ood_visualization`` is *delegated* from its form: the form says which
   worker to start, "Schedule" queues it (checked in the delegated-operations
   queue), the queue is run the way ``fiftyone delegated launch`` does, and the brain
   run appears in the database;
5. ``audit_dataset`` runs from its form: result view on screen, report file, audit
   run, flags and tags in the database (at the end, the report itself is opened in the
   browser from the file: every thumbnail decodes, the plots are there);
6. the "OOD review" panel is opened on a *saved view* (the untrusted samples): it
   counts only the view's samples; a ground-truth field is chosen (metrics of the
   view appear), the threshold slider is moved (the live count must equal the
   database count of the view at the slider's exact value), "show flagged" puts the
   flagged samples in the grid highest score first, two grid samples are selected
   and tagged ``ood_confirmed`` -> tags checked in the database, the selection is
   cleared and the panel counts the confirmed samples.

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
    env = dict(os.environ, FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_VALIDATION="false",
               FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS="true", FIFTYONE_OOD_ALLOWED_DIRS=str(tmp_path))
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


def _choose_saved_view(ui, name, n_samples, attempts=3):
    """Pick saved view ``name`` in the App's view menu and wait until the grid counts ``n_samples``.

    Under a loaded machine a click can land while the menu is still opening and select nothing; the App then
    still shows 'Unsaved view', and the user would simply pick the view again; a click that selected another
    saved view (the items moved while the menu opened) starts over from the unsaved dataset. The requested view,
    once picked (its name is in the URL), is never re-picked, only waited for.
    """
    for attempt in range(attempts):
        if "view=" in ui.d.current_url and f"view={name}" not in ui.d.current_url:
            # the click landed on another saved view (the menu's items moved while it opened): start over from
            # the unsaved dataset, as a user would pick again
            ui.d.get(ui.d.current_url.split("?")[0])
            ui.text_present("Unsaved view", timeout=60)
        unsaved = ui.d.find_elements("xpath", "//*[normalize-space(text())='Unsaved view']")
        if f"view={name}" not in ui.d.current_url and unsaved:
            _dismiss_popups(ui)
            ui.click(lambda: ui.xpath("//*[normalize-space(text())='Unsaved view']", "the saved views menu", 5),
                     "the saved views menu")
            ui.click(lambda: ui.xpath(f"//*[normalize-space(text())={_xq(name)}]", f"saved view {name!r}", 5),
                     f"the saved view {name!r}")
        try:
            found = ui.text_present(f"{n_samples} samples", timeout=45 if attempt < attempts - 1 else WAIT)
            print(f"[browser test] saved view {name!r} shown after pick {attempt + 1}: {ui.d.current_url}")
            return found
        except TimeoutError:
            if attempt == attempts - 1:
                raise
            print(f"[browser test] saved view {name!r} not shown after pick {attempt + 1} "
                  f"(url {ui.d.current_url}); picking again")


def _flag_count_text(ui):
    return ui.xpath("//*[contains(text(), 'scored samples flagged')]/..", "the panel's flagged count").text


def _slider(ui):
    return ui.xpath("//*[normalize-space(text())='Threshold']/following::*[contains(@class, 'MuiSlider-root')][1]",
                    "the threshold slider")


# --------------------------------------------------------------------------- the test


def _open_operator(ui, name, form_title):
    """Open ``name`` from the operator browser (backtick key) and wait for its form."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = ui.d

    def open_browser():
        found = d.find_elements(By.CSS_SELECTOR, "input[data-cy=operators-browser-search]")
        if found and found[0].is_displayed():
            return found[0]
        _dismiss_popups(ui)
        ActionChains(d).send_keys("`").perform()
        time.sleep(1)
        return False
    search = ui.until("the operator browser's search box", open_browser)
    search.send_keys(name)
    ui.click(lambda: ui.xpath(f"//*[normalize-space(text())='{name}']/..", f"{name} entry", 5), f"the {name} entry")
    ui.text_present(form_title)


def _button(ui, label):
    return ui.xpath(f"//button[normalize-space(.)={_xq(label)}]", f"the {label!r} button", 5)


def _wait_enabled(ui, label):
    def enabled():
        btn = _button(ui, label)
        return btn.is_enabled() and "Mui-disabled" not in (btn.get_attribute("class") or "")
    ui.until(f"the {label!r} button to be enabled", enabled)


def _close_prompt(ui):
    """Close the operator prompt (result view or form) and wait until it is gone."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def closed():
        for label in ("Close", "Done", "Cancel"):
            for el in ui.d.find_elements(By.XPATH, f"//button[normalize-space(.)='{label}']"):
                if el.is_displayed():
                    el.click()
                    time.sleep(0.5)
                    return False
        if ui.d.find_elements(By.CSS_SELECTOR, ".MuiDialog-root"):
            ActionChains(ui.d).send_keys(Keys.ESCAPE).perform()
            time.sleep(0.5)
            return False
        return True
    ui.until("the operator prompt to close", closed)


def _shot(d, name):
    d.save_screenshot(os.path.join(SCREENSHOTS, name))


def test_score_in_the_app_and_review_in_the_panel(browser, app_dataset, app_server, tmp_path):
    from fiftyone.operators.delegated import DelegatedOperationService
    from selenium.webdriver.common.action_chains import ActionChains

    from ood_core.fo import runs as fo_runs
    from operators import review as panel_data

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

        # ---- 2. operator browser -> score_ood form -> execute -> result view
        step = "open score_ood from the operator browser"
        _open_operator(ui, "score_ood", "Score OOD / label issues")
        step = "fill the score_ood form"
        ui.choose("Reference tag (trusted samples)", "trusted")
        ui.type_into("k (neighbours)", 3)
        ui.type_into("Score field", "ood_knn")
        # the dynamic form re-validates after each edit: wait until it settles valid
        ui.until("the form to validate (no 'is not valid' message)",
                 lambda: "is not valid" not in ui.body_text() and "already exist" not in ui.body_text())
        _wait_enabled(ui, "Execute")
        _shot(d, "app_score_ood_form.png")
        step = "execute score_ood"
        ui.click(lambda: _button(ui, "Execute"), "Execute")

        def scored():
            ds.reload()
            return ds.has_field("ood_knn") and "ood_knn" in fo_runs.list_ood_runs(ds)
        ui.until("the score field ood_knn in the database", scored, timeout=180)
        info = fo_runs.get_ood_run_info(ds, "ood_knn")
        assert info["kind"] == "ood_scores" and info["fields"] == ["ood_knn", "ood_knn_pvalue"]
        assert info["detector"]["method"] == "pyramid_knn" and info["detector"]["k"] == 3  # the form's default method
        assert info["reference"]["tag"] == "trusted" and info["reference"]["num_reference"] == 8
        scores = np.array(ds.values("ood_knn"), dtype=float)
        assert scores.shape == (20,) and np.isfinite(scores).all()
        step = "the result view of score_ood"
        ui.text_present("Scores written to ood_knn (higher = more suspicious)")
        ui.text_present("samples scored: 20 of 20")
        ui.text_present("OOD review")
        _shot(d, "score_result_view.png")
        _close_prompt(ui)
        ui.xpath("//*[normalize-space(text())='ood_knn']", "ood_knn in the sidebar (App reloaded the dataset)")
        t_scored = time.perf_counter() - t0

        # ---- 3. manage runs: the list as a table
        step = "list the runs with manage_ood_runs"
        _open_operator(ui, "manage_ood_runs", "Manage OOD runs")
        _wait_enabled(ui, "Execute")
        ui.click(lambda: _button(ui, "Execute"), "Execute")
        ui.xpath("//table//*[normalize-space(text())='ood_knn']", "ood_knn in the runs table")
        ui.xpath("//table//*[normalize-space(text())='ood_scores']", "the kind column of the runs table")
        ui.xpath("//table//*[normalize-space(text())='embeddings']", "the embeddings run in the runs table")
        _shot(d, "manage_runs.png")
        _close_prompt(ui)

        # ---- 4. delegated: the form says what to run, Schedule queues, the queue runs it
        step = "schedule compute_ood_visualization as a delegated operation"
        _open_operator(ui, "compute_ood_visualization", "Embeddings visualization")
        ui.click(lambda: ui.xpath("//*[normalize-space(text())='pca']", "the pca choice", 5), "method pca")
        ui.type_into("Brain key", "ood_map_bg")
        ui.click(lambda: ui.xpath("//*[normalize-space(text())='Delegate execution?']", "delegate box", 5),
                 "Delegate execution?")
        ui.text_present("fiftyone delegated launch")
        _wait_enabled(ui, "Schedule")
        _shot(d, "delegated_schedule.png")
        service = DelegatedOperationService()
        uri = "@fiftyone-ood/ood/compute_ood_visualization"
        ui.click(lambda: _button(ui, "Schedule"), "Schedule")
        ui.until("a queued compute_ood_visualization operation",
                 lambda: service.get_queued_operations(operator=uri, dataset_name=ds.name), timeout=60)
        _close_prompt(ui)
        assert "ood_map_bg" not in ds.list_brain_runs()  # nothing runs until a worker takes the queue
        service.execute_queued_operations(operator=uri, dataset_name=ds.name)  # what `fiftyone delegated launch` does
        ds.reload()
        assert "ood_map_bg" in ds.list_brain_runs()

        # ---- 5. the audit operator
        step = "run the audit from its form"
        report = tmp_path / "audit.html"
        _open_operator(ui, "audit_dataset", "Audit dataset")
        ui.type_into("HTML report file", str(report))
        ui.until("the audit form to validate", lambda: "inside the allowed" not in ui.body_text())
        _wait_enabled(ui, "Execute")
        _shot(d, "audit_form.png")
        ui.click(lambda: _button(ui, "Execute"), "Execute")
        ui.text_present("Audit ood_audit done", timeout=240)
        ui.text_present(f"{report}")
        _shot(d, "audit_result.png")
        _close_prompt(ui)
        ds.reload()
        audit = fo_runs.get_ood_run_info(ds, "ood_audit")
        assert audit["kind"] == "audit" and report.is_file()
        assert len(ds.match_tags("ood")) == audit["num_ood_flagged"] > 0

        # ---- 6. the OOD review panel on a saved view: the untrusted samples
        step = "open a saved view and the OOD review panel"
        view = ds.match_tags("trusted", bool=False)
        ds.save_view("untrusted", view, overwrite=True)
        n_view = len(view)
        view_scores = np.array(view.values("ood_knn"), dtype=float)
        d.get(f"{app_server['url']}/datasets/{ds.name}")  # reload: the App lists saved views on load
        ui.text_present("20 samples", timeout=150)
        _dismiss_popups(ui)
        _choose_saved_view(ui, "untrusted", n_view)
        ui.click(lambda: ui.css("[data-cy=new-panel-btn]", "new panel (+) button", 5), "the new panel (+) button")
        ui.click(lambda: ui.css("[data-cy=new-panel-option-ood_review]", "OOD review in the panel menu", 5),
                 "OOD review in the new panel menu")
        ui.text_present("scored samples flagged")
        step = "choose the ood_knn run in the panel"
        ui.choose("Score run", "ood_knn (ood_scores, pyramid_knn)")
        default_t = panel_data.default_threshold(view_scores)
        ui.until("the panel to count the view's samples only",
                 lambda: _flag_count_text(ui).startswith(
                     f"{panel_data.count_flagged(view_scores, default_t)} of {n_view} scored samples flagged in the "
                     f"current view ({n_view} of 20 samples)"))

        step = "choose the ground-truth field"
        ui.choose(GT_LABEL, "is_ood")
        expected = panel_data.evaluate(view_scores, np.array(view.values("is_ood")), default_t)
        ui.until(f"the panel to show AUROC {expected['auroc']:.3f} (computed from the view in the database)",
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
        n_flagged = panel_data.count_flagged(view_scores, threshold)
        assert 0 < n_flagged < n_view, (threshold, view_scores)
        ui.until(f"the live count to read {n_flagged} (database count of the view at threshold {threshold})",
                 lambda: _flag_count_text(ui).startswith(f"{n_flagged} of {n_view} scored samples flagged"))
        print(f"[browser test] slider: threshold {threshold:.4f} -> {n_flagged} flagged; panel says {after!r}")

        step = "show the flagged samples in the grid"
        ui.click(lambda: ui.xpath("//button[contains(normalize-space(.), 'Show flagged samples in the grid')]",
                                  "show flagged button", 5), "Show flagged samples")
        ui.xpath(f"//*[normalize-space(.)='{n_flagged} samples']", f"the grid to show {n_flagged} samples")
        expected_view = panel_data.flagged_view(view, "ood_knn", threshold)
        expected_labels = expected_view.values("ground_truth.label")

        def grid_labels():
            from selenium.webdriver.common.by import By

            tiles = d.find_elements(By.CSS_SELECTOR, "[data-cy=looker] [data-cy=tag-ground_truth]")
            labels = [t.text for t in tiles]
            return labels if labels == expected_labels else False
        ui.until(f"grid tiles in score order {expected_labels}", grid_labels)
        # the panel still reads the saved view, not the flagged view it opened
        ui.until("the panel to keep counting the saved view",
                 lambda: _flag_count_text(ui).startswith(f"{n_flagged} of {n_view} scored samples flagged"))

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
        ui.click(lambda: _button(ui, "Tag selected: ood_confirmed"), "Tag selected: ood_confirmed")
        top_two = expected_view.values("id")[:2]

        def tagged():
            ds.reload()
            return sorted(ds.match_tags("ood_confirmed").values("id")) == sorted(top_two)
        ui.until("the two highest-scoring samples tagged ood_confirmed in the database", tagged)
        assert ds.count_sample_tags().get("ood_dismissed", 0) == 0
        ui.until("the selection to be cleared after tagging", lambda: "0 sample(s) selected" in _flag_count_text(ui))
        ui.text_present("Reviewed in this view: 2 confirmed · 0 dismissed")
        time.sleep(2)  # let the grid reload its samples before the screenshot
        _shot(d, "ood_review_panel.png")
        step = "check the panel's plots"
        ui.text_present("Precision-recall (positive = OOD)")
        plots = d.find_elements("css selector", "[data-cy=panel-content-ood_review] .js-plotly-plot")
        assert len(plots) == 2, f"expected the histogram and the ROC / PR plot, found {len(plots)} plots"

        # ---- 7. the audit's HTML report opens in the browser from the file alone
        step = "open the audit's HTML report"
        d.get(report.as_uri())
        ui.text_present(f"fiftyone-ood audit: {ds.name}")
        images = d.find_elements("css selector", ".tile img")
        decoded = d.execute_script("return Array.from(document.querySelectorAll('.tile img'))"
                                   ".filter(i => i.complete && i.naturalWidth > 0).length")
        assert len(images) > 0 and decoded == len(images), (decoded, len(images))
        assert len(d.find_elements("css selector", "svg")) >= 2  # the score histograms
        d.set_window_size(1300, 2000)
        _shot(d, "audit_report.png")
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
        raise
    wall = time.perf_counter() - t0
    print(f"[browser test] wall time in the browser: {wall:.1f}s (scoring done after {t_scored:.1f}s); "
          f"screenshots in {SCREENSHOTS}")
    errors = [e for e in _console_errors(d) if e.startswith("SEVERE")]
    assert not [e for e in errors if "/operators/" in e], errors  # no failed operator calls


@pytest.fixture(autouse=True, scope="module")
def _report_wall_time():
    start = time.perf_counter()
    yield
    print(f"\n[browser test] module wall time (dataset, embeddings, server, browser): "
          f"{time.perf_counter() - start:.1f}s")
