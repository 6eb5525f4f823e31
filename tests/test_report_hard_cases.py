"""The audit's HTML report under conditions a curator meets and the other report tests do not build: colour photos
(report size), an image too large to decode, a missing image file, and class names and a trusted tag that are HTML.
Real FiftyOne datasets on the tests' private MongoDB, real Fashion-MNIST images, the real timm backbone, and the
report opened in a real headless Chromium where the layout matters.

1. every thumbnail was a PNG: a 138 px colour photo took 30-40 KB in the page (a 500-photo audit's report 3.2 MB,
   96 thumbnails); a JPEG of it takes 5-8 KB;
2. an image file too large for Pillow to decode (over its decompression-bomb limit) stopped the audit at the
   report with ``DecompressionBombError``, after its scores, flags and tags were written;
3. a missing image file's tile said "(image unreadable)" in a line of text, so the tile was shorter than its
   neighbours and did not say that the file is gone.
"""

import os
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

import ood_core as ood
from browser_ui import CHROMIUM, chromium

#: the most a 138 px thumbnail may add to the page (base64 data URI): 3 galleries of 24 tiles stay under 1 MB
THUMBNAIL_BUDGET = 10_000


def _embed(ds, extractor):
    """The real pyramid embeddings (the session's loaded backbone) into ``emb``."""
    import ood_core.features as features

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "PyramidExtractor", lambda *a, **k: extractor)
        ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1,
                                       progress=False)


def _fashion_copies(fashion_files, folder, count):
    """``count`` of the real Fashion-MNIST files copied into ``folder`` (the tests change some of them), and their
    classes."""
    files, names = fashion_files
    os.makedirs(folder, exist_ok=True)
    paths = [shutil.copy(files[(7 * i) % len(files)], os.path.join(folder, f"f_{i:03d}.png")) for i in range(count)]
    return paths, [names[(7 * i) % len(files)] for i in range(count)]


def _photos(fashion_arrays, folder, count):
    """``count`` colour 320x240 JPEG photos made of real Fashion-MNIST images (three as the red, green and blue
    channels, scaled up smoothly) with a camera's grain (noise), which a lossless PNG thumbnail keeps at great cost."""
    from PIL import Image

    images, labels = fashion_arrays
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        rgb = np.stack([images[i], images[(i + 50) % len(images)], images[(i + 100) % len(images)]], axis=-1)
        smooth = np.asarray(Image.fromarray(rgb).resize((320, 240), Image.BICUBIC), dtype=np.float64)
        grain = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"photo_{i:03d}.jpg")
        Image.fromarray(grain).save(path, quality=90)
        paths.append(path)
    return paths, [f"class{int(c)}" for c in labels[:count]]


class _Tiles(HTMLParser):
    """The report's gallery tiles: ``[{"img": src or None, "noimage": text or None, "texts": [...]}]``."""

    def __init__(self, page):
        super().__init__()
        self.tiles, self._depth, self._in_noimage = [], 0, False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("class") == "tile":
            self.tiles.append({"img": None, "noimage": None, "texts": []})
            self._depth = 1
        elif self._depth and tag == "div":
            self._depth += 1
            self._in_noimage = "noimage" in (attrs.get("class") or "").split()
        elif self._depth and tag == "img":
            self.tiles[-1]["img"] = attrs.get("src")

    def handle_endtag(self, tag):
        if self._depth and tag == "div":
            self._depth -= 1
            self._in_noimage = False

    def handle_data(self, data):
        if self._depth:
            self.tiles[-1]["texts"].append(data)
            if self._in_noimage:
                self.tiles[-1]["noimage"] = (self.tiles[-1]["noimage"] or "") + data


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --------------------------------------------------------------------------- 1. report size


def _in_browser(tmp_path, page_path, script, window="1280,1000"):
    """What ``script`` returns on the page at ``page_path``, opened in headless Chromium."""
    os.makedirs(tmp_path / "chromium", exist_ok=True)
    with chromium(str(tmp_path / "chromium"), window=window) as browser:
        browser.get(f"file://{page_path}")
        return browser.execute_script(script)


def test_photo_thumbnails_keep_the_report_small(dataset_factory, fashion_arrays, fashion_files, extractor, tmp_path):
    """Colour photos: each thumbnail adds at most :data:`THUMBNAIL_BUDGET` to the page (a PNG of a photo took 2-4
    times that); Fashion-MNIST's 28 px images, scaled up pixel by pixel, stay lossless PNGs."""
    from ood_core.report import thumbnail_data_uri

    photos, classes = _photos(fashion_arrays, str(tmp_path / "photos"), 24)
    ds = dataset_factory(photos, classes)
    _embed(ds, extractor)
    out = ood.audit(ds, embeddings_field="emb", report_path=str(tmp_path / "r.html"), near_duplicates=False,
                    progress=False)
    tiles = _Tiles(_read(out["report_path"])).tiles
    assert len(tiles) == 48 and all(t["img"] for t in tiles)  # two galleries of all 24 photos
    sizes = sorted(len(t["img"]) for t in tiles)
    assert sizes[-1] <= THUMBNAIL_BUDGET, sizes
    tiny = thumbnail_data_uri(fashion_files[0][0])
    assert tiny.startswith("data:image/png;base64,") and len(tiny) <= THUMBNAIL_BUDGET


def test_photos_are_drawn_smooth_and_tiny_images_as_crisp_pixels(fashion_arrays, fashion_files, tmp_path):
    """The browser scales a thumbnail to the screen (twice on a high-density display): a 28 px image scaled up pixel
    by pixel stays crisp (``image-rendering: pixelated``), a photo (a JPEG thumbnail) is drawn smooth, not blocky."""
    from ood_core import report

    photo = report.thumbnail(_photos(fashion_arrays, str(tmp_path / "photos"), 1)[0][0])[0]
    tiny = report.thumbnail(fashion_files[0][0])[0]
    assert photo.startswith("data:image/jpeg") and tiny.startswith("data:image/png")
    tiles = [{"id": name, "image": uri, "score": 1.0} for name, uri in (("photo", photo), ("tiny", tiny))]
    path = tmp_path / "page.html"
    path.write_text(report.page("t", "s", [(None, report.gallery(tiles))]), encoding="utf-8")
    rendering = _in_browser(tmp_path, path, "return Array.from(document.querySelectorAll('.tile img'))"
                            ".map(e => getComputedStyle(e).imageRendering);", window="800,600")
    assert rendering == ["auto", "pixelated"]


# --------------------------------------------------------------------------- 2. and 3. images without a thumbnail


@pytest.fixture
def without_thumbnails(dataset_factory, fashion_files, extractor, tmp_path):
    """The audit of 24 real images after their embeddings were computed: one file then replaced by a PNG of
    20000 x 10000 pixels (over Pillow's decompression-bomb limit; 24 KB on disk), one deleted. Returns the summary,
    the report's tiles and the two file names."""
    from PIL import Image

    paths, classes = _fashion_copies(fashion_files, str(tmp_path / "img"), 24)
    ds = dataset_factory(paths, classes)
    _embed(ds, extractor)
    huge, gone = paths[0], paths[1]
    Image.new("1", (20000, 10000)).save(huge, format="PNG")
    os.remove(gone)
    out = ood.audit(ds, embeddings_field="emb", report_path=str(tmp_path / "r.html"), near_duplicates=False,
                    progress=False)
    return out, _Tiles(_read(out["report_path"])).tiles, os.path.basename(huge), os.path.basename(gone)


def _tiles_of(tiles, name):
    return [t for t in tiles if any(name in text for text in t["texts"])]


def test_an_image_too_large_to_decode_gets_a_tile_saying_so(without_thumbnails):
    from PIL import Image

    out, tiles, huge, _ = without_thumbnails
    assert out["num_skipped"] == 0 and len(tiles) == 48  # scored from its embedding, shown in both galleries
    shown = _tiles_of(tiles, huge)
    assert len(shown) == 2
    for tile in shown:
        limit = 2 * Image.MAX_IMAGE_PIXELS  # Pillow's: it refuses to decode an image of more pixels
        assert tile["img"] is None and tile["noimage"] == f"image too large to show (over {limit:,} pixels)", tile


def test_a_missing_image_file_says_so_in_a_box_of_the_thumbnails_size(without_thumbnails, tmp_path):
    out, tiles, _, gone = without_thumbnails
    shown = _tiles_of(tiles, gone)
    assert len(shown) == 2
    for tile in shown:
        assert tile["img"] is None and tile["noimage"] == "image file not found", tile
    assert sum(t["img"] is not None for t in tiles) == 44  # every other tile has its thumbnail
    assert os.path.exists(CHROMIUM), "Chromium missing: run ./setup.sh"
    boxes = _in_browser(tmp_path, out["report_path"],
                        "const size = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };"
                        "return {img: Array.from(document.querySelectorAll('.tile img')).map(size),"
                        "        none: Array.from(document.querySelectorAll('.tile .noimage')).map(size)};")
    assert len(boxes["none"]) == 4 and len(boxes["img"]) == 44
    # the placeholder takes the thumbnail's room: the captions below it line up with the neighbours'
    assert {tuple(b) for b in boxes["none"]} == {tuple(b) for b in boxes["img"]}, boxes


# --------------------------------------------------------------------------- names that are HTML


HTML_CLASSES = ["<img src=x onerror=alert(1)>", "</style><b>x", 'a & "b"']


def test_class_names_and_a_trusted_tag_that_are_html_show_as_text(dataset_factory, fashion_files, extractor,
                                                                  tmp_path):
    """Coverage (it passed before): class names and a trusted tag written as HTML are text in every part of the
    report: tiles, warnings, the histogram's legend; the browser makes no element of them."""
    paths, _ = _fashion_copies(fashion_files, str(tmp_path / "img"), 24)
    tag = "<i>trusted</i>"
    classes = [HTML_CLASSES[i % 3] for i in range(24)]
    # the first two classes trusted, the third not: the uncovered-classes warning names it
    ds = dataset_factory(paths, classes, [[tag] if i % 3 != 2 and i < 18 else [] for i in range(24)])
    _embed(ds, extractor)
    out = ood.audit(ds, embeddings_field="emb", reference=tag, label_field="ground_truth",
                    report_path=str(tmp_path / "r.html"), near_duplicates=False, progress=False)
    page = _read(out["report_path"])
    assert "<img src=x" not in page and "</style><b>" not in page and "<i>trusted" not in page
    found = _in_browser(tmp_path, out["report_path"],
                        "return {text: document.body.innerText, svg: Array.from(document.querySelectorAll('svg text'))"
                        ".map(t => t.textContent).join(' '), onerror: document.querySelectorAll('[onerror]').length,"
                        " italic: document.querySelectorAll('i').length, styles: document.querySelectorAll('style')"
                        ".length};")
    assert found["onerror"] == 0 and found["italic"] == 0 and found["styles"] == 1, found
    for name in HTML_CLASSES:
        assert f"label: {name}" in found["text"], name
    assert f"'{HTML_CLASSES[2]}'" in found["text"]  # the warning names the class without a trusted image
    assert tag in found["svg"]  # the histogram's legend names the trusted tag


# --------------------------------------------------------------------------- 4. the histogram's texts


#: per figure: every text's box, the figure's box and the threshold line's x (None without one)
PLOT_TEXTS = """
return Array.from(document.querySelectorAll('svg')).map(svg => {
  const box = r => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom});
  const line = Array.from(svg.querySelectorAll('line')).find(l => l.getAttribute('stroke') === '#f57c00');
  return {svg: box(svg.getBoundingClientRect()), line: line ? line.getBoundingClientRect().left : null,
          texts: Array.from(svg.querySelectorAll('text')).map(t => ({text: t.textContent,
                                                                    ...box(t.getBoundingClientRect())}))};
});"""


def _overlap(a, b):
    return min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5 and \
        min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5


def test_histogram_texts_stay_inside_the_figure_and_apart(tmp_path):
    """A curator's long trusted tag in the OOD histogram's legend ran out of the 540 px figure (cut off) and was
    drawn over the threshold's label where the threshold lies left (most samples OOD); a threshold near the right
    end had its label pushed back over its own line. In Chromium's layout: every text of each figure lies inside
    it, no two overlap, and the threshold's label is beside its line, not across it."""
    from ood_core import report

    rng = np.random.default_rng(0)
    trusted, new = rng.normal(0, 1, 30), rng.normal(8, 3, 170)  # most samples far from the trusted ones
    scores = np.concatenate([trusted, new])
    is_new = np.arange(200) >= 30
    tag = "trusted images reviewed by the annotation team in March, batch seven of the spring campaign, second pass"
    figures = [report.histogram_svg(scores, threshold=np.percentile(trusted, 50), is_positive=is_new,
                                    names=("not trusted", f"'{tag}'"), title="audit_ood: k-NN distance"),
               report.histogram_svg(scores, threshold=float(trusted.min()), is_positive=is_new,
                                    names=("not trusted", "'trusted'"), title="audit_ood: k-NN distance"),
               # a threshold 90% of the way along the axis (its label no longer fits right of the line)
               report.histogram_svg(scores, threshold=float(scores.min() + 0.9 * np.ptp(scores)),
                                    title="audit_label_issue: votes against the label")]
    path = tmp_path / "plots.html"
    path.write_text(report.page("plots", "", [("Score distributions", "<div class='plots'>" + "".join(figures)
                                               + "</div>")]), encoding="utf-8")
    shown = _in_browser(tmp_path, path, PLOT_TEXTS)
    assert len(shown) == 3
    for figure in shown:
        svg, texts = figure["svg"], figure["texts"]
        outside = [t["text"] for t in texts if t["left"] < svg["left"] - 0.5 or t["right"] > svg["right"] + 0.5
                   or t["top"] < svg["top"] - 0.5 or t["bottom"] > svg["bottom"] + 0.5]
        assert outside == [], outside
        crossing = [(a["text"], b["text"]) for i, a in enumerate(texts) for b in texts[i + 1:] if _overlap(a, b)]
        assert crossing == [], crossing
        (label,) = [t for t in texts if t["text"].startswith("threshold ")]
        assert not label["left"] - 0.5 < figure["line"] < label["right"] + 0.5, (label, figure["line"])
    assert tag in " ".join(t["text"] for t in shown[0]["texts"]).replace("\u00ad", "")  # all of it shown


# --------------------------------------------------------------------------- 5. images of other kinds


def _decoded(uri):
    """The pixels of a thumbnail's data URI, grey (0-255)."""
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("L"), dtype=np.int16)


def test_16_bit_and_transparent_images_look_in_their_thumbnails_as_they_are(fashion_arrays, tmp_path):
    """A 16-bit PNG (microscopy, medical, depth images) was converted by clipping every value over 255 to white:
    its thumbnail a washed-out silhouette. A drawing on a transparent background (black lines, the shape in the
    alpha channel) became a black square. Now both look as the embeddings see them (``ood_core.images.to_rgb``):
    the 16-bit image as its 8-bit copy (it spans 0-255, so rescaling by its range keeps its values), the
    transparent one as it shows on white."""
    from PIL import Image

    from ood_core.report import thumbnail_data_uri

    image = fashion_arrays[0][0]  # a real 28 px Fashion-MNIST image
    assert image.min() == 0 and image.max() == 255
    Image.fromarray(image, mode="L").save(tmp_path / "8bit.png")
    Image.fromarray(image.astype(np.uint16) * 257).save(tmp_path / "16bit.png")  # the same values on 0-65535
    assert Image.open(tmp_path / "16bit.png").mode.startswith("I")
    expected = _decoded(thumbnail_data_uri(str(tmp_path / "8bit.png")))
    sixteen = _decoded(thumbnail_data_uri(str(tmp_path / "16bit.png")))
    assert sixteen.shape == expected.shape and np.abs(sixteen - expected).max() <= 1, (sixteen.mean(), expected.mean())

    drawing = np.zeros(image.shape + (4,), np.uint8)
    drawing[..., 3] = image  # black ink, as opaque as the image is bright
    Image.fromarray(drawing, mode="RGBA").save(tmp_path / "drawing.png")
    Image.fromarray(255 - image, mode="L").save(tmp_path / "on_white.png")
    shown = _decoded(thumbnail_data_uri(str(tmp_path / "drawing.png")))
    on_white = _decoded(thumbnail_data_uri(str(tmp_path / "on_white.png")))
    assert shown.shape == on_white.shape and np.abs(shown - on_white).max() <= 1, (shown.mean(), on_white.mean())
