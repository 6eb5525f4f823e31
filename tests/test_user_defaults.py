"""Three user-facing defaults: unreadable images are skipped and named (as FiftyOne's compute_embeddings does),
report tiles print scores with the digits that tell them apart, and a suggested label only where it differs
from the given one (so the App's grid shows suggestions on the samples they concern)."""

import logging
import re

import numpy as np
import pytest

from ood_core.errors import OODInputError

PLUGIN = "@fiftyone-ood/ood"


def _embed(ds, field="emb", **kw):
    """Pyramid embeddings with the session's backbone (``session_extractor``); returns the summary."""
    import ood_core as ood

    return ood.compute_pyramid_embeddings(ds, field, progress=False, **kw)


@pytest.fixture
def bad_files(tmp_path):
    """A file that is not an image and a path that does not exist."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    return str(broken), str(tmp_path / "missing.png")


@pytest.fixture
def labelled(dataset_factory, fashion_files, session_extractor):
    """60 real images of 6 classes (10 each) with ``ground_truth`` labels, 6 of them flipped to another class,
    embedded into ``emb``; returns ``(dataset, indices of the flipped labels)``."""
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(6) for j in range(10)]
    labels = [names[i] for i in idx]
    classes = sorted(set(labels))
    flipped = list(range(0, 60, 10))
    for i in flipped:
        labels[i] = classes[(classes.index(labels[i]) + 1) % len(classes)]
    ds = dataset_factory([paths[i] for i in idx], labels, [["trusted"] if j % 10 >= 5 else [] for j in range(60)])
    _embed(ds)
    return ds, flipped


# ----------------------------------------------------------------------------- 1. skip_failures=True by default


def test_unreadable_images_are_skipped_by_default_and_named_in_the_summary_results_and_log(
        dataset_factory, fashion_files, session_extractor, bad_files, caplog):
    import inspect

    import ood_core as ood

    assert inspect.signature(ood.compute_pyramid_embeddings).parameters["skip_failures"].default is True
    assert inspect.signature(ood.compute_pyramid_embeddings).parameters["skip_failures"].default is \
        inspect.signature(ood.audit).parameters["skip_failures"].default
    paths, _ = fashion_files
    broken, missing = bad_files
    ds = dataset_factory([paths[0], broken, paths[1], missing])
    with caplog.at_level(logging.WARNING, logger="ood_core.fo.embeddings"):
        summary = _embed(ds)  # no skip_failures: the default skips, as FiftyOne's compute_embeddings does
    assert summary["status"] == "complete" and summary["num_embedded"] == 2 and summary["num_failed"] == 2
    assert {f["item"] for f in summary["failures"]} == {broken, missing}
    ids = ds.values("id")
    assert {f["id"] for f in summary["failures"]} == {ids[1], ids[3]}
    # as in FiftyOne: the skipped samples have no value (None) in the field
    values = ds.values("emb")
    assert values[1] is None and values[3] is None and values[0] is not None and values[2] is not None
    # the run's results list them with their errors; the log says how many and where the list is
    stored = {f["item"]: f["error"] for f in ood.load_ood_results(ds, "emb").failures}
    assert "could not be decoded" in stored[broken] and "does not exist" in stored[missing]
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "ood_core.fo.embeddings")
    assert "2 of 4 images could not be read" in logged and "ood.load_ood_results(dataset, 'emb').failures" in logged
    # fixed, the next call with the same settings computes only the skipped images
    from PIL import Image

    Image.open(paths[2]).save(broken)
    again = _embed(ds)
    assert again["num_computed"] == 1 and again["num_failed"] == 1 and again["num_embedded"] == 3
    assert [f["item"] for f in ood.load_ood_results(ds, "emb").failures] == [missing]


def test_a_view_without_any_readable_image_is_refused_and_nothing_is_written(dataset_factory, session_extractor,
                                                                            bad_files):
    import ood_core as ood

    ds = dataset_factory(list(bad_files))
    with pytest.raises(OODInputError, match=r"none of the 2 images of the view could be read \(the first: image "
                                            r"file .*nothing was written to 'emb'.*filepaths"):
        _embed(ds)
    assert not ds.has_field("emb") and ood.get_ood_run_info(ds, "emb")["status"] == "partial"
    with pytest.raises(OODInputError, match="none of the 2 images"):
        _embed(ds, None)  # returning the arrays only: the same refusal


def test_the_embeddings_form_skips_by_default_and_its_result_lists_the_skipped_files(
        dataset_factory, fashion_files, session_extractor, bad_files):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    paths, _ = fashion_files
    broken, missing = bad_files
    ds = dataset_factory([paths[0], broken, paths[1], missing])
    uri = f"{PLUGIN}/compute_pyramid_embeddings"
    ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, params=dict(embeddings_field="e"), selected=[]))
    prop = foo.get_operator(uri).resolve_input(ctx).type.properties["skip_failures"]
    assert prop.default is True and "what FiftyOne's compute_embeddings does" in prop.view.description
    out = foo.execute_operator(uri, dict(view=ds.view()), params=dict(embeddings_field="e"))  # the form's defaults
    assert out.error is None, out.error
    assert out.result["num_failed"] == 2 and {f["item"] for f in out.result["failures"]} == {broken, missing}
    report = out.result["report"]
    assert "unreadable, skipped (no embedding): 2 (below)" in report
    assert re.search(r"- skipped: image file '.*broken\.png' could not be decoded", report)
    assert re.search(r"- skipped: image file '.*missing\.png' does not exist", report)
    assert "ood.load_ood_results(dataset, 'e').failures" in report


# ----------------------------------------------------------------------------- 2. report captions


def _printed(gallery_html):
    """``(printed scores of the tiles in order, printed threshold or None)`` of a gallery's HTML."""
    scores = re.findall(r"<div class='score'>score ([^<]+)</div>", gallery_html)
    threshold = re.search(r"Flagged when score &gt;= ([^ ]+) ", gallery_html)
    return scores, threshold.group(1) if threshold else None


def test_tile_scores_have_the_digits_that_tell_neighbours_and_the_threshold_apart(dataset_factory, fashion_files):
    from ood_core import report
    from ood_core.fo import audit_report

    paths, _ = fashion_files
    ds = dataset_factory(paths[:8])
    ids = ds.values("id")
    # three scores 1e-7 apart around the threshold, two exactly tied, the rest far apart
    scores = [0.8651234, 0.8651235, 0.8651236, 0.9151234, 0.9151234, 0.95, 1.25, 0.5]
    ds.set_values("sc", scores)
    threshold = scores[1]
    tiles = audit_report.worst_tiles(ds, "sc", 8, flagged_ids={i for i, s in zip(ids, scores) if s >= threshold})
    printed, printed_threshold = _printed(report.gallery(tiles, threshold=threshold))
    values = [t["score"] for t in tiles]
    assert values == sorted(scores, reverse=True)
    for a, b, pa, pb in zip(values, values[1:], printed, printed[1:]):  # neighbouring tiles
        assert (pa == pb) == (a == b), (a, b, pa, pb)
    assert printed_threshold == "0.8651235" and printed.count("0.8651235") == 1  # only the tile at the threshold
    for value, text in zip(values, printed):  # the printed order is the true order, against the threshold too
        assert (float(text) >= float(printed_threshold)) == (value >= threshold)
    # one line says flagged or not: the score line already tells a tie at the threshold apart
    assert all(len(t["lines"]) == 1 and t["lines"][0][1] in ("flagged", "not flagged") for t in tiles)
    # scores far apart keep 3 digits
    assert _printed(report.gallery(tiles[:4], threshold=0.9)) == (["1.25", "0.95", "0.915", "0.915"], "0.9")
    assert report.score_digits([0.1249, 0.1251]) == 4 and report.score_digits([0.86512341, 0.86512349]) == 7
    # a threshold one unit in the last place above a score (a percentile of tied scores): rounding, not 17 digits
    assert report.score_digits([1.0, 2.5], threshold=1.0 + 2.3e-16) == 3
    # such a tile prints as the threshold: it says it lies just below (it read as a bug: "1.16 · not flagged")
    below = [dict(tiles[0], score=1.0, lines=[("muted", "not flagged")]), dict(tiles[1], score=2.5)]
    html = report.gallery(below, threshold=1.0 + 2.3e-16)
    assert _printed(html) == (["1", "2.5"], "1") and html.count("just below the threshold") == 1
    assert "just below the threshold" not in report.gallery(below, threshold=1.0)  # at the threshold: flagged


# ----------------------------------------------------------------------------- 3. suggestions where they differ


def test_a_suggested_label_is_stored_only_where_it_differs_from_the_given_label(labelled):
    import ood_core as ood
    from ood_core.detectors import make_detector

    ds, flipped = labelled
    summary = ood.compute_label_issues(ds, "ground_truth", "emb", "issue")
    given = ds.values("ground_truth.label")
    # the numpy-level detector votes for every sample; the field keeps only the votes against the given label
    det = make_detector("weighted_label_vote", level_dims=[24, 40, 112], levels="auto")
    det.fit_score(np.stack(ds.values("emb")), np.array(given, dtype=object))
    stored = ds.values("issue_suggestion")
    for label, voted, probs, value in zip(given, det.suggested_labels_, det.class_probabilities_, stored):
        if voted == label:
            assert value is None
        else:
            assert value.label == voted and value.confidence == pytest.approx(probs.max(), rel=1e-6)
    num = sum(v is not None for v in stored)
    assert 0 < num < len(ds) and sum(stored[i] is not None for i in flipped) >= len(flipped) // 2
    assert summary["num_suggested"] == num and len(ds.exists("issue_suggestion")) == num
    info = ood.get_ood_run_info(ds, "issue")
    assert info["suggestion"]["field"] == "issue_suggestion" and info["suggestion"]["num_suggested"] == num
    assert "only where it differs from the given label (None elsewhere)" in info["suggestion"]["meaning"]
    # the App's result view of the run names the field and how many samples got a suggestion
    from operators.scoring import score_report

    view = score_report(summary, "emb", "ground_truth", run_info=info)
    assert f"- suggested labels: `issue_suggestion` on the {num:,} samples whose votes favour another class" in view


def test_objects_get_a_suggested_class_only_where_it_differs(dataset_factory, fashion_files, session_extractor):
    import fiftyone as fo

    import ood_core as ood

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(4) for j in range(8)]
    ds = dataset_factory([paths[i] for i in idx])
    wrong = {0: names[20], 9: names[0]}  # two objects carry another class's label
    ds.set_values("objects", [fo.Detections(detections=[
        fo.Detection(label=wrong.get(n, names[i]), bounding_box=[0.0, 0.0, 1.0, 1.0]),
        fo.Detection(label=names[i], bounding_box=[0.1, 0.1, 0.8, 0.8])]) for n, i in enumerate(idx)])
    _embed(ds, patches_field="objects")
    summary = ood.compute_label_issues(ds, "objects", "emb", "issue", k=3)
    labels = [lab for row in ds.values("objects.detections.label") for lab in row]
    stored = [s for row in ds.values("objects.detections.issue_suggestion") for s in row]
    assert all(s is None or (isinstance(s, str) and s != lab) for s, lab in zip(stored, labels))
    num = sum(s is not None for s in stored)
    assert 0 < num < len(labels) and summary["num_suggested"] == num
    assert stored[0] == names[0]  # the first image's wrong object label: its own class is suggested


def test_no_suggestion_field_when_the_votes_agree_with_every_label(dataset_factory, fashion_files,
                                                                   session_extractor, tmp_path):
    import ood_core as ood
    from ood_core.fo import audit_report

    paths, names = fashion_files
    idx = [20 * c + j for c in (1, 8) for j in range(10)]  # Trouser and Bag: the votes never hesitate
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx])
    _embed(ds)
    summary = ood.compute_label_issues(ds, "ground_truth", "emb", "issue")
    assert summary["num_suggested"] == 0 and summary["suggestion"] is None
    assert not ds.has_field("issue_suggestion")
    info = ood.get_ood_run_info(ds, "issue")
    assert info["fields"] == ["issue"] and info["suggestion"]["field"] is None
    assert audit_report.suggested_label_field(ds, "issue") is None
    from operators.scoring import score_report

    view = score_report(summary, "emb", "ground_truth", run_info=info)
    assert "- suggested labels: none: the votes favour the given label of every sample" in view


def test_the_audit_report_shows_suggestions_only_where_they_differ_and_readable_scores(labelled, tmp_path):
    import ood_core as ood

    ds, _ = labelled
    out = ood.audit(ds, embeddings_field="emb", near_duplicates=False, num_worst=12,
                    report_path=str(tmp_path / "a.html"))
    html = open(out["report_path"], encoding="utf-8").read()
    labels_part = html[html.index("Most suspicious labels"):]
    tiles = re.findall(r"<div class='tile'>(.*?)<div class='id'>", labels_part)
    assert len(tiles) == 12
    suggested = 0
    for tile in tiles:
        given = re.search(r"<div class='given'>label: ([^<]+)</div>", tile).group(1)
        match = re.search(r"<div class='suggest'>suggested: ([^<]+)</div>", tile)
        assert match is None or match.group(1) not in (given, "None"), tile
        suggested += match is not None
    assert suggested == sum(v is not None for v in ds.sort_by("audit_label_issue", reverse=True).limit(12)
                            .values("audit_label_issue_suggestion"))
    assert "only where it differs from the given label" in labels_part
    # both galleries: one threshold line, the tiles' printed order is the flag
    for part, threshold in ((html[html.index("Most out-of-distribution samples"):html.index("Most suspicious")],
                             out["thresholds"]["ood"]), (labels_part, out["thresholds"]["label_issues"])):
        printed, printed_threshold = _printed(part)
        muted = re.findall(r"<div class='muted'>([^<]*)</div>", part)  # a score printed as the threshold says so
        assert printed_threshold is not None and not [m for m in muted if "threshold" in m and
                                                      m != "just below the threshold"]
        for below in re.findall(r"just below the threshold</div><div class='(?:flagged|muted)'>([^<]*)<", part):
            assert below == "not flagged"
        flags = re.findall(r"<div class='(flagged|muted)'>(?:not )?flagged</div>", part)
        assert len(flags) == len(printed)
        for text, flag in zip(printed, flags):  # printed equal: within rounding of the threshold, the line decides
            if float(text) != float(printed_threshold):
                assert (float(text) > float(printed_threshold)) == (flag == "flagged"), (text, printed_threshold)
