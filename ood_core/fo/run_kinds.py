"""The kinds of run this package records, in one registry: what each kind is and where a score run's scores are.

Evaluation, flags, the review panel and run management all look here (:data:`RUN_KINDS`).
"""

from dataclasses import dataclass

from ..errors import OODInputError


@dataclass(frozen=True)
class RunKind:
    """What a run kind is: the one place evaluation, flags, the panel and run management look.

    ``positive_class`` is set for *score* runs (one number per item, higher =
    more of the positive class) and None for the others.
    """

    name: str
    description: str
    positive_class: str = None
    #: (positive, negative) class names as shown to a user (panel, reports)
    class_names: tuple = None

    @property
    def is_score(self):
        return self.positive_class is not None


#: run kind name -> :class:`RunKind`; every run of this package has one of these kinds
RUN_KINDS = {kind.name: kind for kind in (
    RunKind("embeddings", "pyramid or CLIP embeddings"),
    RunKind("ood_scores", "OOD scores (k-NN, Mahalanobis, LOF, ...)", "ood", ("OOD", "ID")),
    RunKind("label_issues", "wrong-label scores (weighted label votes, label agreement, per-class LOF)", "wrong label",
            ("wrong label", "correct label")),
    RunKind("neglabel", "NegLabel zero-shot CLIP OOD scores", "ood", ("OOD", "ID")),
    RunKind("rap", "RAP few-shot CLIP OOD scores", "ood", ("OOD", "ID")),
    RunKind("adaneg", "AdaNeg zero-shot CLIP OOD scores (NegLabel + test-time memory)", "ood", ("OOD", "ID")),
    RunKind("flags", "threshold rule applied to a score run (flag field + tags)"),
    RunKind("auto_config", "configuration chosen on a labelled validation set"),
    RunKind("experiment", "a table of an experiment workflow (no fields)"),
    RunKind("audit", "one-call audit: scores, flags and an HTML report"),
)}


#: detector task (:mod:`ood_core.detectors`) -> the kind of the score run it records
_KIND_BY_TASK = {"ood": "ood_scores", "label_issues": "label_issues"}


def run_kind(name):
    """The :class:`RunKind` called ``name`` (raises for unknown kinds)."""
    if not isinstance(name, str) or name not in RUN_KINDS:  # (a list: "unhashable type" from the lookup)
        raise OODInputError(f"unknown run kind {name!r}; kinds are {sorted(RUN_KINDS)}: pass one of them")
    return RUN_KINDS[name]


def score_kinds():
    """Names of the kinds whose runs hold one score per item."""
    return tuple(name for name, kind in RUN_KINDS.items() if kind.is_score)


def score_kind(task):
    """The run kind recording scores of a detector ``task`` (``"ood"`` / ``"label_issues"``)."""
    return _KIND_BY_TASK[task]


def score_path(info):
    """The field path of a score run's scores, from its record (``get_ood_run_info``).

    ``score_field`` for sample scores, ``<patches>.detections.<score_field>``
    for object scores; None when the run is not a score run. A record without
    ``score_field`` (written by hand with :func:`write_and_record`) that lists
    exactly one field scores that field.
    """
    if not run_kind(info.get("kind")).is_score:
        return None
    fields = info.get("fields") or []
    if not info.get("score_field"):
        return fields[0] if len(fields) == 1 else None
    patches = info.get("patches_field")
    return f"{patches}.detections.{info['score_field']}" if patches else info["score_field"]
