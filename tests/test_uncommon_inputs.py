"""Realistic but less common inputs through the SDK's entry points (session 36 probe).

Real FiftyOne datasets of real Fashion-MNIST images (``audit_images``); each test names the defect it pins.
"""

import os
import re

import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.fo import inventory


def _labels_beside_an_unfilled_field(audit_images):
    """The audit images with their labels in ``labels`` and a second Classification field ``predictions`` that is
    declared but holds nothing yet (a model's output field created before it ran, or confidences only)."""
    import fiftyone as fo

    ds = audit_images(30)
    ds.rename_sample_field("ground_truth", "labels")
    ds.add_sample_field("predictions", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    ds.set_values("predictions", [fo.Classification(confidence=0.5) if i % 2 else None for i in range(len(ds))])
    return ds


def test_auto_label_field_passes_over_a_classification_field_without_labels(audit_images, tmp_path):
    """Before: with one labelled Classification field and a second one holding no label, ``label_field="auto"``
    found two fields and no ``ground_truth``, so the audit ran without any wrong-label scores and said nothing
    (summary ``label_field`` None): an unfilled field silently switched the wrong-label check off."""
    ds = _labels_beside_an_unfilled_field(audit_images)
    assert inventory.default_label_field(ds) == "labels"
    assert inventory.default_label_field(ds.match_tags("trusted")) == "labels"
    out = ood.audit(ds, embeddings_field="vec", report_path=str(tmp_path / "r.html"), near_duplicates=False,
                    progress=False)
    assert out["label_field"] == "labels"
    assert ds.count("audit_label_issue") == len(ds)
    # the empty field is left as it was
    assert ds.count("predictions.label") == 0 and ds.count("predictions") == len(ds) // 2


def test_auto_label_field_keeps_ground_truth_among_labelled_fields(audit_images):
    """The rule is unchanged where several fields hold labels: ``ground_truth`` when it is one of them, else none
    (the audit cannot know which labels to check)."""
    import fiftyone as fo

    ds = audit_images(30)
    ds.set_values("other", [fo.Classification(label="x")] * len(ds))
    assert inventory.default_label_field(ds) == "ground_truth"
    ds.rename_sample_field("ground_truth", "labels")
    assert inventory.default_label_field(ds) is None


def test_audit_label_field_error_suggests_only_fields_that_hold_labels(audit_images, tmp_path):
    """Before: refusing a label field of the wrong type suggested every Classification field, also one without a
    label, which the next call refused again ("holds no label in the view"). Nothing is written by the refusal."""
    ds = _labels_beside_an_unfilled_field(audit_images)
    fields_before = set(ds.get_field_schema())
    with pytest.raises(OODInputError, match="must be a Classification field") as err:
        ood.audit(ds, embeddings_field="vec", label_field="vec", report_path=str(tmp_path / "r.html"),
                  progress=False)
    assert "pass 'labels', or label_field=None" in str(err.value) and "predictions" not in str(err.value)
    assert set(ds.get_field_schema()) == fields_before and ood.list_ood_runs(ds) == []


def _audit_state(ds):
    ds.reload()
    return (sorted(ds.get_field_schema()), ood.list_ood_runs(ds), ds.count_sample_tags(), ds.list_saved_views())


def test_audit_with_export_refuses_a_missing_image_before_writing_anything(audit_images, fashion_files, tmp_path):
    """Before: embeddings computed, then an image file deleted (moved, cleaned up); an audit with ``export_dir``
    scored, flagged and tagged the samples, saved its runs, and only then refused the export because a flagged
    sample's file was missing, leaving a half-done audit with no record (and saying to redo it with
    overwrite=True). Now the files of every sample it can flag (those with an embedding) are checked first."""
    import shutil

    from fiftyone import ViewField as F

    files, _ = fashion_files
    copies = []
    for i in range(30):
        copies.append(str(tmp_path / f"copy_{i:02d}.png"))
        shutil.copy(files[(7 * i) % len(files)], copies[-1])
    # which sample the audit flags as OOD: found on a twin (same images, vectors and trusted tags)
    twin = audit_images(30, paths=copies)
    ood.audit(twin, embeddings_field="vec", report_path=str(tmp_path / "twin.html"), near_duplicates=False,
              progress=False)
    victim = twin.match(F("audit_ood_flag") == True).first().filepath  # noqa: E712 (a MongoDB query)
    ds = audit_images(30, paths=copies)
    os.remove(victim)
    before = _audit_state(ds)
    export = tmp_path / "export"
    with pytest.raises(OODInputError, match=r"export_dir=.*the media files of 1 .*missing.*"
                                            + re.escape(repr(victim))) as err:
        ood.audit(ds, embeddings_field="vec", report_path=str(tmp_path / "r.html"), export_dir=str(export),
                  near_duplicates=False, progress=False)
    assert "overwrite=True" not in str(err.value)  # nothing to redo: nothing was written
    assert _audit_state(ds) == before
    assert not export.exists() and not (tmp_path / "r.html").exists()
    # the fix the message names works: without the sample the audit and its export complete
    ds.delete_samples(ds.match(F("filepath") == victim))
    out = ood.audit(ds, embeddings_field="vec", report_path=str(tmp_path / "r.html"), export_dir=str(export),
                    near_duplicates=False, progress=False)
    assert out["export_dir"] and os.path.isfile(export / "samples.json")


def test_a_dynamic_groups_view_is_refused_not_worked_on_one_sample_per_group(audit_images, tmp_path):
    """Before: dataset.group_by(...) (the App's "group by") was worked on as the first sample of each group only:
    the audit and compute_label_issues scored 4 of 30 samples (one per class, each then a suspected wrong label),
    and compute_pyramid_embeddings crashed with AttributeError: 'NoneType' object has no attribute 'get'."""
    ds = audit_images(30)
    ood.compute_ood_scores(ds, "vec", "s", reference="trusted", progress=False)
    grouped = ds.group_by("ground_truth.label")
    before = (set(ds.get_field_schema()), ood.list_ood_runs(ds), ds.count_sample_tags())
    calls = {
        "audit": lambda: ood.audit(grouped, embeddings_field="vec", report_path=str(tmp_path / "r.html"),
                                   progress=False),
        "label issues": lambda: ood.compute_label_issues(grouped, "ground_truth", "vec", "li", progress=False),
        "scores": lambda: ood.compute_ood_scores(grouped, "vec", "s2", reference="trusted", progress=False),
        "map": lambda: ood.compute_ood_visualization(grouped, "vec", "m", method="pca"),
        "flags": lambda: ood.flag_samples(grouped, "s", rule="top_n", value=2, tag="odd"),
        "embeddings": lambda: ood.compute_pyramid_embeddings(grouped, "e", progress=False),
    }
    for name, call in calls.items():
        with pytest.raises(OODInputError, match=r"groups its samples \(group_by\).*only \d+ of its 30 samples.*"
                                                r"view\.flatten\(\)"):
            call()
    assert (set(ds.get_field_schema()), ood.list_ood_runs(ds), ds.count_sample_tags()) == before
    # the fix the message names works: every sample of the groups is scored
    out = ood.compute_label_issues(grouped.flatten(), "ground_truth", "vec", "li", progress=False)
    assert out["num_scored"] == 30


def test_a_multi_label_field_is_refused_with_a_fix_that_works(audit_images):
    """Before: a Classifications label_field was refused as 'expected a Classification field ...' with no way to
    get one; the message now gives the line that makes one, and scoring with it works."""
    import fiftyone as fo

    ds = audit_images(30)
    ds.set_values("tags_ml", [fo.Classifications(classifications=[c]) if c else None
                              for c in ds.values("ground_truth")])
    with pytest.raises(OODInputError, match=r"'tags_ml' has type Classifications.*put one of each sample's labels "
                                            r"in a Classification field, e\.g\. dataset\.set_values") as err:
        ood.compute_label_issues(ds, "tags_ml", "vec", "li", progress=False)
    assert "li" not in ood.list_ood_runs(ds)
    line = re.search(r"(dataset\.set_values\(.*\]\)), and pass", str(err.value)).group(1)
    eval(line, {"dataset": ds})  # the message's own line
    assert ds.values("label.label") == ds.values("ground_truth.label")
    assert ood.compute_label_issues(ds, "label", "vec", "li", progress=False)["num_scored"] == 30


def test_a_label_field_as_ground_truth_names_its_label_type(audit_images):
    """Before: 'ground-truth field 'ground_truth' is a EmbeddedDocumentField' (FiftyOne's container class)."""
    ds = audit_images(30)
    ood.compute_ood_scores(ds, "vec", "s", reference="trusted", progress=False)
    with pytest.raises(OODInputError, match=r"ground-truth field 'ground_truth' has type Classification; gt_field "
                                            r"must be a BooleanField"):
        ood.evaluate_ood_run(ds, "s", gt_field="ground_truth")
