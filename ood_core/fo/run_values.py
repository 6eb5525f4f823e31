"""Values in a score run's field that the run did not write.

A field's mark (:mod:`.ownership`) is per field, not per item. ``dataset.merge_samples(other)`` and
``dataset.add_samples(other...)`` bring the other dataset's values into a field of the same name: when both datasets
have a score run writing that field, the merged items carry the other run's scores (another reference, another
detector), and this dataset's record would claim them. So a score run records how many items held a value in its
score field when it was recorded (``num_score_values``, counted under the commit's locks, every slice of a grouped
dataset); flags and metrics read the scores only while the field holds no more values than that (one count query:
about 0.07 s on 100,000 samples). Fewer is fine (samples deleted since). Values replacing the run's own on samples
it scored (``merge_samples`` onto samples of the same ``filepath``), or as many deleted as added, are not seen:
that needs a hash of every value, not a count.
"""

from ..errors import OODInputError

#: the score run's record entry: items holding a value in its score field when it was recorded
KEY = "num_score_values"


def count_values(dataset, path):
    """Items (samples, or objects for ``a.detections.b``) holding a value at ``path``, on every slice."""
    from .view_checks import every_sample

    return int(every_sample(dataset).count(path))


def recorded_count(dataset, kind, fields, params):
    """``{KEY: count}`` for the record of a score run being registered (its fields in place), else ``{}``."""
    from .run_kinds import run_kind, score_path

    if not run_kind(kind).is_score:
        return {}
    path = score_path({"kind": kind, "fields": list(fields), **params})
    if path is None or dataset.get_field(path) is None:
        return {}
    return {KEY: count_values(dataset, path)}


def refuse_values_from_elsewhere(dataset, run_key, path):
    """Refuse reading the scores of run ``run_key`` at ``path`` when the field holds more values than the run
    wrote (records without the count, written by earlier versions: not checked)."""
    recorded = getattr(dataset.get_run_info(run_key).config, KEY, None)
    if recorded is None or dataset.get_field(path) is None:
        return
    now = count_values(dataset, path)
    if now <= recorded:
        return
    raise OODInputError(
        f"field {path!r} on dataset {dataset.name!r} holds {now} values, but score run {run_key!r} wrote {recorded}: "
        f"at least {now - recorded} came from elsewhere (samples added with merge_samples / add_samples from a "
        "dataset with a score field of the same name, or values set by hand), and would be read as this run's "
        f"scores. Score the dataset again with overwrite=True under run_key={run_key!r} (the whole dataset, so every "
        f"value is this run's), or remove the added values (dataset.select(<their ids>).set_field({path!r}, None)"
        ".save())")
