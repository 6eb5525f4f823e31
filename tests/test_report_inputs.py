"""Inputs of ``ood.audit`` that broke its report or were found too late, each reproduced on real images, the real
backbone and the tests' private MongoDB:

1. a report file name (a long dataset name in the default path, a long report_path) or export folder name too long
   for the file system failed only when the report was published (the export staged), after every score, flag and
   tag was written: an interrupted audit that the next call refused until redone with overwrite=True; and a
   right-to-left dataset name turned the report's subtitle after it around;
2. a report_path that is not a file path (a folder written with a trailing separator, a number) became a file
   named like the folder, or a TypeError;
3. a trusted tag that matches no sample, or one sample, was refused only after the audit computed embeddings; a
   label field of another type than Classification was refused naming Detections as a choice, which the audit
   refuses in turn;
4. auditing a view without the trusted samples (a new batch) when no embeddings existed yet embedded the view
   only, then refused: the trusted samples outside it had no embedding.

Each test fails without the fix it covers.
"""

import os
import uuid
from html.parser import HTMLParser

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError

#: 20 real Fashion-MNIST images, two per class
IDX = list(range(0, 200, 10))
TRUSTED = [["trusted"] if i < 10 else [] for i in range(len(IDX))]


@pytest.fixture(scope="module")
def vectors(fashion_files, extractor):
    """The real pyramid embeddings of the 20 images, computed once (then copied into each test's dataset)."""
    import fiftyone as fo

    paths, _ = fashion_files
    ds = fo.Dataset(f"test-vec-{uuid.uuid4().hex[:8]}")
    try:
        ds.add_samples([fo.Sample(filepath=paths[i]) for i in IDX], progress=False)
        ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1, 2, 3], grid=1,
                                       progress=False)
        return ds.values("emb")
    finally:
        ds.delete()


@pytest.fixture
def make(dataset_factory, fashion_files, vectors):
    """``make(tags=TRUSTED, embedded=True)``: the 20 images with their labels, tags and (when ``embedded``) their
    embeddings in ``emb``."""
    paths, names = fashion_files

    def build(tags=TRUSTED, embedded=True):
        ds = dataset_factory([paths[i] for i in IDX], [names[i] for i in IDX], tags)
        if embedded:
            ds.set_values("emb", vectors)
        return ds

    return build


class _Text(HTMLParser):
    """The text of an HTML page (what a browser shows) and its elements."""

    def __init__(self, page):
        super().__init__()
        self.text, self.elements, self.isolated, self._open = [], [], [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.elements.append(tag)
        self._open.append(tag)

    def handle_endtag(self, tag):
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]

    def handle_data(self, data):
        self.text.append(data)
        if "bdi" in self._open:  # text isolated from its neighbours' direction
            self.isolated.append(data)


def _state(ds):
    ds.reload()
    return sorted(ood.list_ood_runs(ds)), sorted(ds.get_field_schema()), ds.values("tags")


# --------------------------------------------------------------------------- 1. file names too long


def test_a_long_dataset_name_gets_a_default_report_the_file_system_can_hold(make, tmp_path, monkeypatch):
    """FiftyOne takes dataset names of up to 1551 characters; the default report was named after all of them."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ds = make()
    ds.name = "<script>alert(1)</script> \"q\" & " + "\u05e9" * 300  # markup and 300 Hebrew letters (600 bytes)
    out = ood.audit(ds, near_duplicates=False, progress=False)
    folder = tmp_path / "home" / "fiftyone" / "ood_reports"
    assert sorted(os.listdir(folder)) == sorted([os.path.basename(out["report_path"]),
                                                 os.path.basename(out["csv_path"])])
    assert all(len(os.fsencode(name)) <= 255 for name in os.listdir(folder))
    assert ood.get_ood_run_info(ds, "ood_audit")["report_path"] == out["report_path"]
    # the name is shown as text: no element of it, the name whole in the title and the how-to-review code
    page = _Text(open(out["report_path"], encoding="utf-8").read())
    assert "script" not in page.elements
    assert [t for t in page.text if t.strip()][0] == f"fiftyone-ood audit: {ds.name}"  # the <title>
    assert f"fo.load_dataset({ds.name!r})" in "".join(page.text)
    # right-to-left: the name is isolated in the subtitle, so the sentence after it ("', 20 samples, ...") keeps its
    # order (it took the name's direction: "dataset '20 ,'<name> samples")
    subtitle = next(t for t in page.text if t.startswith("dataset '"))
    assert subtitle == "dataset '" and page.isolated == [ds.name]
    # the same name gets the same default report (a redo replaces it)
    again = ood.audit(ds, near_duplicates=False, overwrite=True, progress=False)
    assert again["report_path"] == out["report_path"] and len(os.listdir(folder)) == 2


def test_a_report_name_too_long_for_the_file_system_is_refused_before_anything_is_written(make, tmp_path):
    ds = make()
    before = _state(ds)
    for name in ("x" * 250 + ".html", "x" * 230 + ".html"):  # the report's name too long; its CSV's only
        with pytest.raises(OODInputError, match=r"report_path=.*too long for the file system.*Pass a shorter "
                                                r"report_path"):
            ood.audit(ds, report_path=str(tmp_path / name), near_duplicates=False, progress=False)
        assert _state(ds) == before and os.listdir(tmp_path) == []
    # the export folder: staged beside it as '<name>.tmp-<12 hex>' (failed at the export step, after the runs)
    report = str(tmp_path / "r.html")
    with pytest.raises(OODInputError, match=r"export_dir=.*too long for the file system.*Pass a shorter export_dir"):
        ood.audit(ds, report_path=report, export_dir=str(tmp_path / ("e" * 245)), near_duplicates=False,
                  progress=False)
    with pytest.raises(OODInputError, match=r"export_dir=7 is not a folder path; pass a new folder"):
        ood.audit(ds, report_path=report, export_dir=7, near_duplicates=False, progress=False)
    assert _state(ds) == before and os.listdir(tmp_path) == []
    out = ood.audit(ds, report_path=str(tmp_path / ("x" * 200 + ".html")), near_duplicates=False, progress=False)
    assert os.path.isfile(out["report_path"]) and os.path.isfile(out["csv_path"])


# --------------------------------------------------------------------------- 2. not a file path


def test_a_report_path_that_is_no_file_path_is_refused_naming_it(make, tmp_path):
    ds = make()
    before = _state(ds)
    folder = tmp_path / "reports"
    folder.mkdir()
    for bad, problem in ((str(tmp_path / "new") + os.sep, "ends with a path separator: it names a folder"),
                         (str(folder), "is a folder"),
                         (5, "is not a file path")):
        with pytest.raises(OODInputError, match=f"report_path={bad!r}.*{problem}.*pass the HTML file to write"):
            ood.audit(ds, report_path=bad, near_duplicates=False, progress=False)
        assert _state(ds) == before
    assert os.listdir(tmp_path) == ["reports"] and os.listdir(folder) == []
    # the App's form and operator (whose allowed-folder check resolves the path, dropping the separator)
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext, ExecutionError

    uri, bad = "@fiftyone-ood/ood/audit_dataset", str(tmp_path / "new") + os.sep
    ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, params=dict(report_path=bad)))
    field = foo.get_operator(uri).resolve_input(ctx).type.properties["report_path"]
    assert field.invalid and "ends with a path separator: it names a folder" in field.error_message
    with pytest.raises(ExecutionError, match="ends with a path separator: it names a folder"):
        foo.execute_operator(uri, dict(view=ds.view()), params=dict(report_path=bad, near_duplicates=False,
                                                                    embeddings_field="emb"))
    assert _state(ds) == before and os.listdir(tmp_path) == ["reports"]


# --------------------------------------------------------------------------- 3. a reference found unusable late


def test_a_trusted_tag_too_small_to_score_against_is_refused_before_embeddings_are_computed(make, tmp_path,
                                                                                           session_extractor):
    ds = make(tags=[["trusted"]] + [[]] * 19, embedded=False)
    before = _state(ds)
    for reference, problem in (("trustd", "reference tag 'trustd' matches no samples"),
                               ("auto", r"the reference \(samples tagged 'trusted'\) has only 1 sample")):
        with pytest.raises(OODInputError, match=problem):
            ood.audit(ds, reference=reference, report_path=str(tmp_path / "r.html"), progress=False)
        assert _state(ds) == before  # no embeddings computed for nothing


def test_a_label_field_of_another_type_is_refused_with_the_audits_own_choices(make, tmp_path):
    """A Classifications (or string) field was refused with "expected a Classification field or a Detections field",
    and a Detections field then with "must be a Classification field"."""
    import fiftyone as fo

    ds = make()
    ds.set_values("tags_cls", [fo.Classifications(classifications=[fo.Classification(label="a")])] * len(ds))
    ds.set_values("name", ["a"] * len(ds))
    ds.set_values("boxes", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0, 0, .5, .5])])] * len(ds))
    before = _state(ds)
    for field, kind in (("tags_cls", "Classifications"), ("name", "StringField"), ("boxes", "Detections")):
        with pytest.raises(OODInputError) as refused:
            ood.audit(ds, label_field=field, report_path=str(tmp_path / "r.html"), progress=False)
        message = str(refused.value)
        assert message.startswith(f"audit label_field {field!r} must be a Classification field (image labels); it "
                                  f"is a {kind} field: pass 'ground_truth'"), message
        assert "or a Detections field" not in message
        assert ("compute_label_issues" in message) == (kind == "Detections")
    assert _state(ds) == before


# --------------------------------------------------------------------------- 4. a new batch without embeddings


def test_a_view_without_the_trusted_samples_is_audited_when_embeddings_are_computed(make, tmp_path,
                                                                                    session_extractor):
    """The README's new batch: the trusted samples outside the view set the cut; the audit embeds them too."""
    from ood_core import thresholds

    ds = make(embedded=False)
    batch = ds.match_tags("trusted", bool=False)
    out = ood.audit(batch, report_path=str(tmp_path / "r.html"), near_duplicates=False, progress=False)
    assert out["embeddings_computed"] and out["num_samples"] == 10 and out["num_skipped"] == 0
    assert out["reference_tag"] == "trusted" and out["rules"]["ood"].startswith("95% of the trusted samples pass")
    assert ds.count("ood_embeddings") == 20  # the trusted samples too: the reference
    ds.reload()
    trusted_scores = ds.match_tags("trusted").values("audit_ood")
    assert None not in trusted_scores
    cut = thresholds.percentile_of_reference(np.array(trusted_scores), 0.95).threshold
    assert out["thresholds"]["ood"] == pytest.approx(cut)
    scores = np.array(batch.values("audit_ood"))
    assert out["num_ood_flagged"] == int((scores >= cut).sum())
    assert batch.values("audit_ood_flag") == (scores >= cut).tolist()
    page = _Text(open(out["report_path"], encoding="utf-8").read())
    assert f"{out['num_ood_flagged']}" in page.text and "10" in page.text


# --------------------------------------------------------------------------- 5. the CSV in a spreadsheet


def test_labels_that_begin_like_a_formula_stay_text_in_the_csv(make):
    """An annotator's label ``=HYPERLINK(...)`` (or ``@SUM``, ``+cmd``) went into the flagged CSV as written, and a
    spreadsheet opening the CSV ran it as a formula. Such cells now start with an apostrophe (the spreadsheet's mark
    for text); numbers written as text and ordinary labels are unchanged."""
    import csv
    import io

    import fiftyone as fo

    from ood_core.fo.audit_report import csv_table

    ds = make(embedded=False)
    labels = ['=HYPERLINK("http://x.io","open")', "@SUM(A1:A9)", "+cmd|' /C calc'!A0", "-1", "+3.5", "shirt"]
    ids = ds.values("id")[:len(labels)]
    ds.select(ids).set_values("ground_truth", [fo.Classification(label=label) for label in labels])
    ds.set_values("score", [float(i) for i in range(len(ds))])
    found = {"flagged": {"ood": ids}, "runs": {"ood": "score"}}
    text, num_rows = csv_table(ds, found, "ground_truth", {})
    rows = {row["sample_id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert num_rows == len(labels)
    shown = [rows[i]["label"] for i in ids]
    assert shown == ["'" + labels[0], "'" + labels[1], "'" + labels[2], "-1", "+3.5", "shirt"]
    assert all(rows[i]["filepath"] == fp for i, fp in zip(*ds.select(ids).values(["id", "filepath"])))
