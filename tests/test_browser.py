"""The plugin in a real FiftyOne App, driven by headless Chromium (selenium + chromedriver).

One test, the curator's whole loop, checked both on screen and in the database:

1. a FiftyOne App server (``python -m fiftyone.server.main``) on a free localhost
   port, sharing this test run's private database and plugins directory and started
   with ``FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true`` (scheduling in open-source
   FiftyOne), serves a dataset of 50 real Fashion-MNIST images with pyramid embeddings;
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
   cleared and the panel counts the confirmed samples;
7. a preset is applied in the panel (**Top N** = 3: its value input is labelled "N",
   the count and the label follow; a fraction of 7 is refused on screen) and saved
   with a typed tag -> the panel's own flags run, its threshold and the tag are
   checked in the database, and the audit's flags run and tags are unchanged;
8. README step 3: the audit's saved view ``ood_audit-ood`` is picked with the panel
   open on another run -> the panel switches to the audit's run and starts at the
   audit's threshold (every sample of the view flagged).

Screenshots go to ``docs/screenshots/``. Skipped only when Chromium itself is not
installed (``./setup.sh`` installs it with chromedriver). The selenium helpers are in
``tests/browser_ui.py``.
"""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import numpy as np
import pytest
from browser_ui import (CHROMIUM, SCREENSHOTS, UI, _button, _choose_saved_view, _close_prompt, _console_errors,
                        _dismiss_popups, _flag_count_text, _free_port, _open_operator, _shot, _slider, _tail,
                        _wait_enabled, _wait_http, chromium)

GT_LABEL = "Ground truth (optional boolean field, True = positive)"
SCREENSHOT_DATASET = "fashion-mnist-sample"


@pytest.fixture
def app_dataset(dataset_factory, fashion_files):
    """50 real images (5 per class), embeddings 'emb', is_ood = Bag / Ankle boot (labelled as a random other
    class, as images that do not belong arrive in a labelled set), 3 of each other class 'trusted' (24: enough for
    the audit's 95% cut, so the screenshots show a run without warnings). Named as a user would name it: the
    README shows these screenshots."""
    import fiftyone as fo

    import ood_core as ood

    paths, names = fashion_files
    idx = list(range(0, 200, 4))  # fashion_files holds 20 per class in class order
    ood_classes = {"Bag", "Ankle boot"}
    id_classes = sorted({names[i] for i in idx} - ood_classes)
    rng = np.random.default_rng(0)
    labels = [names[i] if names[i] not in ood_classes else id_classes[rng.integers(len(id_classes))] for i in idx]
    tags = [["trusted"] if names[i] not in ood_classes and j % 5 < 3 else [] for j, i in enumerate(idx)]
    ds = dataset_factory([paths[i] for i in idx], labels, tags)
    if fo.dataset_exists(SCREENSHOT_DATASET):  # left by a killed run
        fo.delete_dataset(SCREENSHOT_DATASET)
    ds.name = SCREENSHOT_DATASET
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
               FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS="true", FIFTYONE_OOD_ALLOWED_DIRS=str(tmp_path),
               HOME=str(tmp_path / "home"))  # the audit's default report goes to ~/fiftyone/ood_reports
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
    with chromium(str(tmp_path), browser_log=True) as driver:
        yield driver


# --------------------------------------------------------------------------- the steps


def _score_in_the_app(ui, ds, url):
    """Steps 1-2: the dataset page, then score_ood from the operator browser; returns the scores."""
    from ood_core.fo import runs as fo_runs

    d = ui.d
    ui.step = "open the dataset page"
    d.get(f"{url}/datasets/{ds.name}")
    ui.css("[data-cy=looker]", "the sample grid (first tile)", timeout=150)
    ui.text_present(f"{len(ds)} samples")
    time.sleep(1)
    _dismiss_popups(ui)

    ui.step = "open score_ood from the operator browser"
    _open_operator(ui, "score_ood", "OOD: score samples")
    ui.step = "fill the score_ood form"
    ui.choose("Reference tag (trusted samples)", "trusted")
    # the form preselects the only label field: per-class k-NN against 3 trusted images per class; k = 1 typed
    # (each trusted image is scored with itself left out: 2 others of its class)
    ui.type_into("k (neighbours)", 1)
    ui.type_into("Score field", "ood_knn")
    # the dynamic form re-validates after each edit: wait until it settles valid
    ui.until("the form to validate (no 'is not valid' message)",
             lambda: "is not valid" not in ui.body_text() and "already exist" not in ui.body_text())
    _wait_enabled(ui, "Execute")
    _shot(d, "app_score_ood_form.png")
    ui.step = "execute score_ood"
    ui.click(lambda: _button(ui, "Execute"), "Execute")

    def scored():
        ds.reload()
        return ds.has_field("ood_knn") and "ood_knn" in fo_runs.list_ood_runs(ds)
    ui.until("the score field ood_knn in the database", scored, timeout=180)
    info = fo_runs.get_ood_run_info(ds, "ood_knn")
    assert info["kind"] == "ood_scores" and info["fields"] == ["ood_knn", "ood_knn_pvalue"]
    assert info["detector"]["method"] == "pyramid_knn" and info["detector"]["k"] == 1  # the form's default method
    assert info["reference"]["tag"] == "trusted" and info["reference"]["num_reference"] == 24
    scores = np.array(ds.values("ood_knn"), dtype=float)
    assert scores.shape == (len(ds),) and np.isfinite(scores).all()
    ui.step = "the result view of score_ood"
    ui.text_present("Scores written to ood_knn (higher = more suspicious)")
    ui.text_present(f"samples scored: {len(ds)} of {len(ds)}")
    ui.text_present("OOD review")
    time.sleep(1.5)  # let the sidebar finish moving the new fields in before the screenshot
    _shot(d, "score_result_view.png")
    _close_prompt(ui)
    ui.xpath("//*[normalize-space(text())='ood_knn']", "ood_knn in the sidebar (App reloaded the dataset)")
    return scores


def _runs_and_delegated(ui, ds):
    """Steps 3-4: the runs table, then a delegated visualization run through the queue."""
    from fiftyone.operators.delegated import DelegatedOperationService

    d = ui.d
    ui.step = "list the runs with manage_ood_runs"
    _open_operator(ui, "manage_ood_runs", "OOD: manage runs")
    _wait_enabled(ui, "Execute")
    ui.click(lambda: _button(ui, "Execute"), "Execute")
    ui.xpath("//table//*[normalize-space(text())='ood_knn']", "ood_knn in the runs table")
    ui.xpath("//table//*[normalize-space(text())='ood_scores']", "the kind column of the runs table")
    ui.xpath("//table//*[normalize-space(text())='embeddings']", "the embeddings run in the runs table")
    _shot(d, "manage_runs.png")
    _close_prompt(ui)

    ui.step = "schedule compute_ood_visualization as a delegated operation"
    _open_operator(ui, "compute_ood_visualization", "OOD: compute embeddings visualization")
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


def _audit_from_its_form(ui, ds, report):
    """Step 5: the audit operator; returns its run record."""
    from ood_core.fo import runs as fo_runs

    ui.step = "run the audit from its form"
    _open_operator(ui, "audit_dataset", "OOD: audit dataset")
    shown = f"~/fiftyone/ood_reports/{report.name}"  # the default, left as it is
    ui.until(f"the report file's default {shown}",
             lambda: ui.d.execute_script("return Array.from(document.querySelectorAll('input'))"
                                         ".some(i => i.value === arguments[0])", shown))
    ui.until("the audit form to validate", lambda: "inside the allowed" not in ui.body_text())
    _wait_enabled(ui, "Execute")
    _shot(ui.d, "audit_form.png")
    ui.click(lambda: _button(ui, "Execute"), "Execute")
    ui.text_present("Audit ood_audit done", timeout=240)
    ui.text_present(shown)
    # the report opens from the App server (its /media route), also for a browser on another machine
    link = ui.xpath("//a[normalize-space(.)='Open the HTML report']", "the 'Open the HTML report' link", 10)
    report_url = link.get_attribute("href")  # the resolved, absolute URL
    assert report_url.endswith("/media?filepath=" + quote(str(report), safe="")), report_url
    assert link.get_attribute("target") == "_blank"  # a new tab: the App keeps its place and its open result
    time.sleep(1.5)  # let the sidebar finish moving the new fields in before the screenshot
    _shot(ui.d, "audit_result.png")
    _close_prompt(ui)
    ds.reload()
    audit = fo_runs.get_ood_run_info(ds, "ood_audit")
    assert audit["kind"] == "audit" and report.is_file()
    assert len(ds.match_tags("ood")) == audit["num_ood_flagged"] > 0
    return audit, report_url


def _open_panel_on_a_saved_view(ui, ds, url, view):
    """Step 6, first half: the saved view 'untrusted', the panel, the ood_knn run, ground truth, the slider;
    returns the slider's threshold."""
    from selenium.webdriver.common.action_chains import ActionChains

    from operators import review as panel_data

    d = ui.d
    ui.step = "open a saved view and the OOD review panel"
    ds.save_view("untrusted", view, overwrite=True)
    n_view = len(view)
    view_scores = np.array(view.values("ood_knn"), dtype=float)
    d.get(f"{url}/datasets/{ds.name}")  # reload: the App lists saved views on load
    ui.text_present(f"{len(ds)} samples", timeout=150)
    _dismiss_popups(ui)
    _choose_saved_view(ui, "untrusted", n_view)
    ui.click(lambda: ui.css("[data-cy=new-panel-btn]", "new panel (+) button", 5), "the new panel (+) button")
    ui.click(lambda: ui.css("[data-cy=new-panel-option-ood_review]", "OOD review in the panel menu", 5),
             "OOD review in the new panel menu")
    ui.text_present("scored samples flagged")
    ui.step = "choose the ood_knn run in the panel"
    ui.choose("Score run", "ood_knn (ood_scores, pyramid_knn)")
    default_t = panel_data.default_threshold(view_scores)  # ood_knn has no saved flags: the top 5% of the view
    ui.until("the panel to count the view's samples only",
             lambda: _flag_count_text(ui).startswith(
                 f"{panel_data.count_flagged(view_scores, default_t)} of {n_view} scored samples flagged in the "
                 f"current view ({n_view} of {len(ds)} samples)"))

    ui.step = "choose the ground-truth field"
    ui.choose(GT_LABEL, "is_ood")
    expected = panel_data.evaluate(view_scores, np.array(view.values("is_ood")), default_t)
    ui.until(f"the panel to show AUROC {expected['auroc']:.3f} (computed from the view in the database)",
             lambda: f"AUROC {expected['auroc']:.3f}" in ui.body_text())
    ui.text_present("Positive class: OOD")

    ui.step = "move the threshold slider"
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
             lambda: (t := _flag_count_text(ui)).startswith(f"{n_flagged} of {n_view} scored samples flagged")
             and "(set by hand)" in t)
    print(f"[browser test] slider: threshold {threshold:.4f} -> {n_flagged} flagged; panel says {after!r}")
    return threshold


def _show_flagged_and_tag(ui, ds, view, threshold):
    """Step 6, second half: the flagged samples in the grid, two of them tagged ood_confirmed, the plots."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from operators import review as panel_data

    d, n_view = ui.d, len(view)
    n_flagged = panel_data.count_flagged(np.array(view.values("ood_knn"), dtype=float), threshold)
    ui.step = "show the flagged samples in the grid"
    ui.click(lambda: ui.xpath("//button[contains(normalize-space(.), 'Show flagged samples in the grid')]",
                              "show flagged button", 5), "Show flagged samples")
    ui.xpath(f"//*[normalize-space(.)='{n_flagged} samples']", f"the grid to show {n_flagged} samples")
    expected_view = panel_data.flagged_view(view, "ood_knn", threshold)
    expected_labels = expected_view.values("ground_truth.label")

    def grid_labels():
        tiles = d.find_elements(By.CSS_SELECTOR, "[data-cy=looker] [data-cy=tag-ground_truth]")
        labels = [t.text for t in tiles]
        return labels if labels == expected_labels else False
    ui.until(f"grid tiles in score order {expected_labels}", grid_labels)
    # the panel still reads the saved view, not the flagged view it opened
    ui.until("the panel to keep counting the saved view",
             lambda: _flag_count_text(ui).startswith(f"{n_flagged} of {n_view} scored samples flagged"))

    ui.step = "select two samples in the grid and tag them ood_confirmed"

    def select_tile(i):
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
    ui.step = "check the panel's plots"
    ui.text_present("Precision-recall (positive = OOD)")
    plots = d.find_elements("css selector", "[data-cy=panel-content-ood_review] .js-plotly-plot")
    assert len(plots) == 2, f"expected the histogram and the ROC / PR plot, found {len(plots)} plots"


def _preset_and_save_flags(ui, ds, view, audit):
    """Step 7: Top N = 3 applied from the panel's inputs (nested in their stack in the App's state), a fraction
    of 7 refused, Save as flags with a typed tag -> the panel's own flags run; the audit's flags stay."""
    from fiftyone import ViewField as F

    import ood_core as ood
    from operators import review as panel_data

    n_view = len(view)
    view_scores = np.array(view.values("ood_knn"), dtype=float)
    ui.step = "apply the Top N preset with N = 3"
    ui.choose("Set the threshold from a preset", "Top N")
    ui.xpath("//*[normalize-space(text())='N']", "the preset's value input, labelled 'N'")
    ui.type_into("N", 3)
    ui.click(lambda: _button(ui, "Apply to the threshold"), "Apply to the threshold")
    t3, _ = panel_data.preset_threshold(view, panel_data.run_summary(ds, "ood_knn"), "top_n", 3, view_scores)
    n3 = panel_data.count_flagged(view_scores, t3)
    ui.until(f"the panel to flag the top 3 ({n3} with ties) of the view",
             lambda: (t := _flag_count_text(ui)).startswith(f"{n3} of {n_view} scored samples flagged")
             and "(preset: top 3)" in t)

    ui.step = "a fraction of 7 is refused"
    ui.choose("Set the threshold from a preset", "Top fraction of scores")
    ui.type_into("fraction flagged", 7)
    ui.click(lambda: _button(ui, "Apply to the threshold"), "Apply to the threshold")
    ui.text_present("must be between 0 and 1; got 7")
    assert "(preset: top 3)" in _flag_count_text(ui)  # the threshold did not move

    ui.step = "save the flags with a typed tag"
    ui.type_into("Tag for flags", "top3_review")
    ui.click(lambda: _button(ui, "Save as flags"), "Save as flags")

    def saved():
        ds.reload()
        return "ood_knn_review_flag" in ood.list_flag_runs(ds) and len(ds.match_tags("top3_review")) == n3
    ui.until(f"the panel's flags run with {n3} samples tagged 'top3_review' in the database", saved, timeout=60)
    info = ood.get_flag_info(ds, "ood_knn_review_flag")
    assert info["tag"] == "top3_review" and info["rule"]["threshold"] == pytest.approx(t3)
    assert sorted(ds.match_tags("top3_review").values("id")) == sorted(view.match(F("ood_knn") >= t3).values("id"))
    assert len(ds.match_tags("ood")) == audit["num_ood_flagged"]  # the audit's tags and flags are untouched
    assert ood.get_flag_info(ds, "audit_ood_flag")["num_flagged"] == audit["num_ood_flagged"]


def _audit_saved_view(ui, ds, audit):
    """Step 8 (README step 3): the audit's OOD saved view picked while the panel is open on ood_knn."""
    import ood_core as ood

    n = audit["num_ood_flagged"]
    t_audit = ood.get_flag_info(ds, "audit_ood_flag")["rule"]["threshold"]
    ui.step = "pick the audit's saved view ood_audit-ood with the panel open"
    _choose_saved_view(ui, "ood_audit-ood", n)
    ui.until(f"the panel to switch to audit_ood at the audit's threshold {t_audit:.4f}",
             lambda: (t := _flag_count_text(ui)).startswith(
                 f"{n} of {n} scored samples flagged in the current view ({n} of {len(ds)} samples) (audit_ood >= "
                 f"{t_audit:.4f} (saved flags 'audit_ood_flag'"))
    ui.text_present("audit_ood (ood_scores, pyramid_knn)")


def _open_the_report(ui, ds, report_url):
    """The audit's HTML report opens in the browser from the result view's link (served by the App server)."""
    d = ui.d
    ui.step = "open the audit's HTML report from its link"
    d.get(report_url)
    ui.text_present(f"fiftyone-ood audit: {ds.name}")
    images = d.find_elements("css selector", ".tile img")
    decoded = d.execute_script("return Array.from(document.querySelectorAll('.tile img'))"
                               ".filter(i => i.complete && i.naturalWidth > 0).length")
    assert len(images) > 0 and decoded == len(images), (decoded, len(images))
    assert len(d.find_elements("css selector", "svg")) >= 2  # the score histograms
    d.set_window_size(1300, 2000)
    _shot(d, "audit_report.png")


# --------------------------------------------------------------------------- the test


def test_score_in_the_app_and_review_in_the_panel(browser, app_dataset, app_server, tmp_path):
    t0 = time.perf_counter()
    ds, d = app_dataset, browser
    ui = UI(d)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    report = tmp_path / "home" / "fiftyone" / "ood_reports" / f"{ds.name}_ood_audit.html"  # the form's default
    try:
        _score_in_the_app(ui, ds, app_server["url"])
        t_scored = time.perf_counter() - t0
        _runs_and_delegated(ui, ds)
        audit, report_url = _audit_from_its_form(ui, ds, report)
        view = ds.match_tags("trusted", bool=False)
        threshold = _open_panel_on_a_saved_view(ui, ds, app_server["url"], view)
        _show_flagged_and_tag(ui, ds, view, threshold)
        _preset_and_save_flags(ui, ds, view, audit)
        _audit_saved_view(ui, ds, audit)
        _open_the_report(ui, ds, report_url)
    except BaseException:
        failure_png = str(tmp_path / "failure.png")
        try:
            d.save_screenshot(failure_png)
        except Exception:
            failure_png = "<none>"
        print(f"\n[browser test] FAILED at step: {ui.step}\n  url: {d.current_url}\n  screenshot: {failure_png}")
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
