"""Selenium helpers for ``tests/test_browser.py``: waits and actions on the FiftyOne App that retry through
React re-renders, the App server's startup, and the OOD review panel's elements."""

import contextlib
import os
import socket
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREENSHOTS = os.path.join(REPO, "docs", "screenshots")
WAIT = 90  # seconds for any single UI step (2 shared CPU cores: be generous)


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
)


@contextlib.contextmanager
def chromium(folder, window="1800,1400", browser_log=False):
    """A headless Chromium driven by Selenium (profile and driver log in ``folder``), quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert os.path.exists(CHROMEDRIVER), f"{CHROMEDRIVER} missing while Chromium is installed: run ./setup.sh"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--window-size={window}", f"--user-data-dir={os.path.join(folder, 'profile')}"):
        opts.add_argument(flag)
    if browser_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=os.path.join(folder, "chromedriver.log")),
                              options=opts)
    try:
        yield driver
    finally:
        driver.quit()


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
        self.step = "start"  # the step under way, named in the failure report
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
    # the form's title is the operator's label, which the browser's list shows too: the list must be gone first
    ui.until("the operator browser to close", lambda: not any(
        e.is_displayed() for e in d.find_elements(By.CSS_SELECTOR, "input[data-cy=operators-browser-search]")))
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


def _shot(d, name, timeout=20):
    """Save a README screenshot once the App's toast of an earlier step (e.g. "Operation successfully
    scheduled") has faded out; it stays over the page for some seconds, longer on a loaded machine."""
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    toast = "//*[normalize-space(text())='Operation successfully scheduled']"

    def shown():
        try:
            return any(el.is_displayed() for el in d.find_elements(By.XPATH, toast))
        except Exception:  # noqa: BLE001 (removed while looked at: look again)
            return True

    while time.time() < deadline and shown():
        time.sleep(0.5)
    d.save_screenshot(os.path.join(SCREENSHOTS, name))

