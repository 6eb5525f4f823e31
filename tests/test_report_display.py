"""What the audit shows people, checked where they see it: the HTML report in a real headless Chromium (element
geometry), and the App's result view through the operator's own execute path. Real FiftyOne datasets on the tests'
private MongoDB, real 32x32 images and the real timm backbone.

1. long words (a 300-letter label, a 200-letter file name, a long dataset name) stayed one line: they ran out of
   their 150 px gallery tile over the next tiles and widened the page;
2. a right-to-left class name in the uncovered-classes warning took the count after it along: "'<name>' (2)"
   showed the 2 beside the class before it;
3. labels and tags in the App's result view were markdown: a label ``**x**`` showed in bold, ``[a](b)`` as a link;
4. identical images (every OOD score 0): the report said "score >= 4.941e-324 (top 5% ...)" and flagged none;
5. an unlabelled sample showed "label: None", as a class named "None" does;
6. the stored audit summary (``load_ood_results``) lacked ``removed_fields``, which the returned one has.

Each test fails without the fix it covers. The audits run once per module.
"""

import os
import re
import shutil
import uuid
from html.parser import HTMLParser

import numpy as np
import pytest

import ood_core as ood
from browser_ui import CHROMIUM, chromium

PLUGIN = "@fiftyone-ood/ood"
LONG_LABEL = "x" * 300
LONG_FILE = "y" * 200 + ".png"
RTL = "\u05e9\u05dc\u05d5\u05dd"  # a Hebrew class name
BOLD, LINK = "**x**", "[a](b)"
TAG = "**trusted**"  # a trusted tag that is markdown too
#: (class, items, trusted items); None = unlabelled
CLASSES = [("T-shirt/top", 4, 3), ("Trouser", 4, 3), ("Sneaker", 4, 3), ("None", 2, 1), (None, 2, 0),
           (RTL, 2, 0), (BOLD, 1, 0), (LINK, 1, 0), (LONG_LABEL, 1, 0)]


def _images(fashion_arrays, folder, count, names=None):
    """``count`` real Fashion-MNIST images as 32x32 PNG files (28 px padded by 2) in ``folder``."""
    from PIL import Image

    images, _ = fashion_arrays
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(folder, names[i] if names and names[i] else f"img_{i:03d}.png")
        Image.fromarray(np.pad(images[i * 7 % len(images)], 2), mode="L").save(path)
        paths.append(path)
    return paths


def _embed(ds, extractor):
    """The real pyramid embeddings (the session's loaded backbone) into ``emb``."""
    import ood_core.features as features

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "PyramidExtractor", lambda *a, **k: extractor)
        ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1,
                                       progress=False)


@pytest.fixture(scope="module")
def audited(fashion_arrays, extractor, tmp_path_factory):
    """The audit run through the App operator's execute path on 21 images: classes with markdown, right-to-left
    and 300-letter names, a class named "None", 2 unlabelled samples, a 200-letter file name, a long dataset name
    and a trusted tag that is markdown. Returns (dataset, operator result, report HTML, report path)."""
    import fiftyone as fo
    import fiftyone.operators as foo

    folder = tmp_path_factory.mktemp("display")
    rows = [(label, j < trusted) for label, count, trusted in CLASSES for j in range(count)]
    names = [LONG_FILE if i == 1 else None for i in range(len(rows))]
    paths = _images(fashion_arrays, str(folder / "img"), len(rows), names)
    ds = fo.Dataset("d" * 300 + uuid.uuid4().hex[:8])
    ds.persistent = True  # as a curator's dataset in the App is (deleted below all the same)
    try:
        ds.add_samples([fo.Sample(filepath=p, tags=[TAG] if trusted else [],
                                  ground_truth=None if label is None else fo.Classification(label=label))
                        for p, (label, trusted) in zip(paths, rows)], progress=False)
        _embed(ds, extractor)
        report = str(folder / "audit.html")
        result = foo.execute_operator(f"{PLUGIN}/audit_dataset", dict(view=ds.view()),
                                      params=dict(report_path=report, label_field="ground_truth", reference_tag=TAG,
                                                  embeddings_field="emb", near_duplicates=False, delegate=False))
        assert result.error is None, result.error
        with open(report, encoding="utf-8") as f:
            yield ds, result.result, f.read(), report
    finally:
        ds.delete()


@pytest.fixture(scope="module")
def identical(fashion_arrays, extractor, tmp_path_factory):
    """The audit of 20 copies of one image file (every OOD score equal). Returns (dataset, summary, report HTML)."""
    import fiftyone as fo

    folder = tmp_path_factory.mktemp("identical")
    (path,) = _images(fashion_arrays, str(folder), 1)
    ds = fo.Dataset(f"test-identical-{uuid.uuid4().hex[:8]}")
    try:
        ds.add_samples([fo.Sample(filepath=path) for _ in range(20)], progress=False)
        _embed(ds, extractor)
        out = ood.audit(ds, report_path=str(folder / "r.html"), near_duplicates=False, progress=False)
        with open(out["report_path"], encoding="utf-8") as f:
            yield ds, out, f.read()
    finally:
        ds.delete()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium session for the module (as tests/test_browser.py makes it)."""
    assert os.path.exists(CHROMIUM), "Chromium missing: run ./setup.sh"
    with chromium(str(tmp_path_factory.mktemp("chromium")), window="1280,3200") as driver:
        yield driver


@pytest.fixture(scope="module")
def screenshot(audited, browser, tmp_path_factory):
    """The audit's report opened in the browser (file:// URL) once, and its screenshot saved (in
    ``OOD_SCREENSHOT_DIR`` or a temporary folder)."""
    browser.get("file://" + audited[3])
    folder = os.environ.get("OOD_SCREENSHOT_DIR") or str(tmp_path_factory.mktemp("shots"))
    browser.save_screenshot(os.path.join(folder, "report_display.png"))
    return folder


@pytest.fixture
def shown(audited, browser, screenshot):
    """The browser showing the audit's report (opened again if a test went to another page)."""
    url = "file://" + audited[3]
    if browser.current_url != url:
        browser.get(url)
    return browser


class _Tiles(HTMLParser):
    """The gallery tiles of a report: ``[{"classes": [...], "texts": [...]}]`` (one per tile, galleries in order)."""

    def __init__(self, page):
        super().__init__()
        self.tiles, self._depth, self._class = [], 0, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag == "div" and cls == "tile":
            self.tiles.append({"classes": [], "texts": []})
            self._depth = 1
        elif self._depth and tag == "div":
            self._depth += 1
            self._class = cls

    def handle_endtag(self, tag):
        if self._depth and tag == "div":
            self._depth -= 1

    def handle_data(self, data):
        if self._depth > 1:
            self.tiles[-1]["classes"].append(self._class)
            self.tiles[-1]["texts"].append(data)


# --------------------------------------------------------------------------- 1. long words


TILES_INSIDE = """
return Array.from(document.querySelectorAll('.tile')).map(tile => {
  const box = tile.getBoundingClientRect(), range = document.createRange();
  range.selectNodeContents(tile);
  const text = range.getBoundingClientRect();  // the tile's content, text included
  return {left: text.left - box.left, right: box.right - text.right, scroll: tile.scrollWidth - tile.clientWidth,
          text: tile.innerText.slice(0, 40)};
});"""

PAGE_WIDTH = """
return {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
        wide: Array.from(document.querySelectorAll('h1, h2, p, td, th, li, .card')).filter(
          e => e.scrollWidth > e.clientWidth + 1).map(e => e.tagName + ': ' + e.innerText.slice(0, 30))};"""


def test_long_words_stay_inside_their_tiles_and_the_page(audited, shown):
    """A 300-letter label and a 200-letter file name wrap inside their 150 px tiles; the long dataset name and the
    warnings naming the long class wrap inside the page (no horizontal scroll)."""
    _, _, page, _ = audited
    assert LONG_LABEL in page and LONG_FILE in page  # the report shows them (whole: wrapped, not cut)
    tiles = shown.execute_script(TILES_INSIDE)
    assert len(tiles) == len(_Tiles(page).tiles) >= 21
    outside = [t for t in tiles if t["left"] < -0.5 or t["right"] < -0.5 or t["scroll"] > 0]
    assert outside == [], outside
    width = shown.execute_script(PAGE_WIDTH)
    assert width["scroll"] <= width["client"], width
    assert width["wide"] == [], width


WRAPS_ANYWHERE = """
return Array.from(document.querySelectorAll('h1, h2, p, li, td, th, .card, .tile, .warning')).filter(
  e => getComputedStyle(e).overflowWrap !== 'anywhere').map(e => e.tagName + '.' + e.className);"""


def test_every_text_box_wraps_long_words_by_one_inherited_rule(audited, shown):
    """``overflow-wrap`` is inherited: the body's ``anywhere`` reaches every heading, paragraph, cell, card and tile
    (the browser's computed style), so the report's style sheet says it once, not again per element."""
    _, _, page, _ = audited
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert style.count("overflow-wrap:anywhere") == 1 and re.search(r"body\{[^}]*overflow-wrap:anywhere", style)
    assert shown.execute_script(WRAPS_ANYWHERE) == []


# --------------------------------------------------------------------------- 2. right-to-left class names


RTL_ORDER = """
const name = arguments[0];
for (const p of document.querySelectorAll('p.warning')) {
  const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
  let node, nameNode = null, nameAt = -1;
  while ((node = walker.nextNode())) {
    if (nameNode === null && node.data.includes(name)) { nameNode = node; nameAt = node.data.indexOf(name); continue; }
    if (nameNode !== null) {
      // the count: the first digit after the name, in its own text node or the same one
      const text = node === nameNode ? node.data.slice(nameAt + name.length) : node.data;
      const m = /\\d/.exec(text);
      if (!m) continue;
      const r1 = document.createRange(); r1.setStart(nameNode, nameAt); r1.setEnd(nameNode, nameAt + name.length);
      const r2 = document.createRange(); r2.setStart(node, m.index); r2.setEnd(node, m.index + 1);
      const a = r1.getBoundingClientRect(), b = r2.getBoundingClientRect();
      return {name_left: a.left, name_right: a.right, count_left: b.left, count_top: b.top, name_top: a.top,
              digit: node.data[m.index]};
    }
  }
  if (nameNode !== null) {  // name and count in one text node (no isolation)
    const text = nameNode.data.slice(nameAt + name.length), m = /\\d/.exec(text);
    const at = nameAt + name.length + m.index;
    const r1 = document.createRange(); r1.setStart(nameNode, nameAt); r1.setEnd(nameNode, nameAt + name.length);
    const r2 = document.createRange(); r2.setStart(nameNode, at); r2.setEnd(nameNode, at + 1);
    const a = r1.getBoundingClientRect(), b = r2.getBoundingClientRect();
    return {name_left: a.left, name_right: a.right, count_left: b.left, count_top: b.top, name_top: a.top,
            digit: nameNode.data[at]};
  }
}
return null;"""


def test_a_right_to_left_class_keeps_its_count_after_it(audited, shown):
    """In the report (a real browser's layout), the count of the right-to-left class is shown right of its name,
    as the sentence reads; the App's result view (markdown, plain text) isolates the name with U+2068 / U+2069."""
    _, result, page, _ = audited
    where = shown.execute_script(RTL_ORDER, RTL)
    assert where is not None and where["digit"] == "2", where
    assert abs(where["count_top"] - where["name_top"]) < 2, where  # on the same line
    assert where["count_left"] >= where["name_right"] - 0.5, where  # the 2 follows the name (it preceded it)
    assert f"<bdi>&#x27;{RTL}&#x27;</bdi> (2)" in page
    warning = next(w for w in result["warnings"] if "class(es) of" in w)
    assert f"\u2068'{RTL}'\u2069 (2)" in warning
    assert f"\u2068'{RTL}'\u2069 (2)" in result["report"]
    # left-to-right names are left as they are (nothing to isolate)
    assert warning.count("\u2068") == warning.count("\u2069") == 1 and f"{LINK!r} (1)" in warning


# --------------------------------------------------------------------------- 3. markdown in the result view


def test_result_view_shows_labels_and_tags_as_text(audited):
    """The labels ``**x**`` and ``[a](b)`` and the trusted tag ``**trusted**`` in the audit's warnings are escaped
    in the result view's markdown (they rendered bold and as a link); the SDK's warnings stay plain text."""
    _, result, _, _ = audited
    text = result["report"]
    assert "**x**" not in text and "[a](b)" not in text and "'**trusted**'" not in text
    assert r"'\*\*x\*\*' (1)" in text and r"'\[a\](b)' (1)" in text
    assert r"'\*\*trusted\*\*' and re-run with overwrite=True" in text
    # every warning line: no markdown markup left outside the form's hint (`overwrite` in backticks)
    lines = [line for line in text.splitlines() if line.startswith("- warning: ")]
    assert len(lines) == len(result["warnings"]) == 2
    for line in lines:
        body = line.split(" In this form: ")[0]
        assert not re.search(r"(?<!\\)[*\[\]`<]", body), line
    assert any(BOLD in w for w in result["warnings"]) and any(TAG in w for w in result["warnings"])
    # our own markdown is kept: the headline, the code spans of keys and paths
    assert text.startswith("**Audit `ood_audit` done**") and f"`{result['report_path']}`" in text


def test_markdown_escaping_keeps_text_as_written():
    """The one escaping function of the result views: markdown's markup characters and line breaks, not the
    punctuation of ordinary sentences; code spans hold any text."""
    from operators.markdown import code, escape

    assert escape("2 class(es) of 'ground_truth': 'c0' (10)") == "2 class(es) of 'ground_truth': 'c0' (10)"
    assert escape("**x** _y_ [a](b) <b> `c` ~~d~~ a|b &amp; ![i](j)") == (
        r"\*\*x\*\* \_y\_ \[a\](b) \<b\> \`c\` \~\~d\~\~ a\|b \&amp; \!\[i\](j)")
    assert escape("line\n- item\r\n# head") == r"line - item \# head"
    assert escape("see http://x.io or www.x.io, a@b.io") == r"see http\://x.io or www\.x.io, a\@b.io"
    assert code("emb") == "`emb`" and code("a`b") == "``a`b``" and code("`a") == "`` `a ``"


# --------------------------------------------------------------------------- 4. constant scores


def test_constant_scores_are_said_in_words(identical, browser, tmp_path):
    """20 copies of one image: every OOD score is 0 and none is flagged; the report says so in words instead of
    "score >= 4.941e-324"."""
    ds, out, page = identical
    browser.get("file://" + out["report_path"])
    browser.save_screenshot(os.path.join(os.environ.get("OOD_SCREENSHOT_DIR") or str(tmp_path), "identical.png"))
    shown = browser.execute_script("return document.body.innerText")
    assert "e-32" not in shown and "OOD flagged when\tnone: all 20 scores are equal (0)" in shown
    scores = np.array(ds.values("audit_ood"))
    assert np.unique(scores).size == 1 and out["num_ood_flagged"] == 0
    assert "e-324" not in page and "e-32" not in page
    assert ("<td>OOD flagged when</td><td>none: all 20 scores are equal (0), so no sample stands out (rule: top 5% "
            "of the scores (no trusted samples))</td>") in page
    assert "Flagged when score &gt;=" not in page and "All 20 scores are equal (0): none is flagged." in page
    assert "threshold" not in re.search(r"<svg.*?</svg>", page).group(0)  # no threshold line at a denormal
    # nothing flagged: no empty saved view in the App's menu, and the report says there is none
    assert out["saved_views"] == ds.list_saved_views() == []
    assert "No saved views: the audit found nothing to review" in shown and "<ul></ul>" not in page
    from operators.audit import audit_report  # the App's result view says it too, instead of an empty list

    view = audit_report(out)
    assert "saved views: none (nothing was flagged" in view and "saved views:  (" not in view


# --------------------------------------------------------------------------- 5. unlabelled samples


def test_unlabelled_samples_say_no_label_apart_from_a_class_named_none(audited, shown):
    ds, _, page, _ = audited
    unlabelled = set(ds.exists("ground_truth", False).values("id"))
    named_none = {i for i, label in zip(*ds.values(["id", "ground_truth.label"])) if label == "None"}
    assert len(unlabelled) == 2 and len(named_none) == 2
    tiles = _Tiles(page).tiles
    by_id = {}
    for tile in tiles:
        sid = re.search(r"\(([0-9a-f]{24})\)$", tile["texts"][-1]).group(1)
        by_id.setdefault(sid, []).append(dict(zip(tile["classes"], tile["texts"])))
    assert set(by_id) >= unlabelled | named_none
    for sid in unlabelled:
        for lines in by_id[sid]:
            assert lines.get("nolabel") == "no label" and "given" not in lines, lines
    for sid in named_none:
        for lines in by_id[sid]:
            assert lines.get("given") == "label: None" and "nolabel" not in lines, lines
    assert page.count("label: None") == sum(len(by_id[sid]) for sid in named_none)
    # styled apart from a label (the browser's computed style)
    style = shown.execute_script(
        "const a = document.querySelector('.tile .nolabel'), b = document.querySelector('.tile .given');"
        "return [getComputedStyle(a).fontStyle, getComputedStyle(b).fontStyle, getComputedStyle(a).color,"
        "        getComputedStyle(b).color];")
    assert style[0] == "italic" and style[1] == "normal" and style[2] != style[3], style


# --------------------------------------------------------------------------- 6. the stored summary


def test_the_stored_summary_is_the_returned_one(fashion_arrays, audited, tmp_path):
    """``load_ood_results(ds, key).summary`` lacked ``removed_fields`` (written by the commit after the record):
    also when a redo removes the earlier audit's wrong-label runs with their fields."""
    import fiftyone as fo

    ds_main = audited[0]
    vectors = ds_main.values("emb")[:12]
    paths = _images(fashion_arrays, str(tmp_path / "img"), 12)
    ds = fo.Dataset(f"test-summary-{uuid.uuid4().hex[:8]}")
    try:
        ds.add_samples([fo.Sample(filepath=p, ground_truth=fo.Classification(label="ab"[i % 2]))
                        for i, p in enumerate(paths)], progress=False)
        ds.set_values("emb", vectors)
        first = ood.audit(ds, embeddings_field="emb", report_path=str(tmp_path / "r.html"), near_duplicates=False,
                          progress=False)
        assert first["removed_fields"] == []
        assert ood.load_ood_results(ds, "ood_audit").summary == first
        again = ood.audit(ds, embeddings_field="emb", label_field=None, overwrite=True,
                          report_path=str(tmp_path / "r.html"), near_duplicates=False, progress=False)
        assert "audit_label_issue" in again["removed_fields"] and again["removed_runs"]
        stored = ood.load_ood_results(ds, "ood_audit").summary
        assert stored == again, {k: (stored.get(k), again.get(k)) for k in set(stored) | set(again)
                                 if stored.get(k) != again.get(k)}
    finally:
        ds.delete()
        shutil.rmtree(tmp_path / "img", ignore_errors=True)
