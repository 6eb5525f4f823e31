"""Why a sample got its CLIP negative-label score: the best matching ID and negative labels."""

import numpy as np

from ..errors import OODInputError
from ..validation import check_positive_int
from .clip_common import SCORE_CONVENTION, clip_embeddings_record, make_encoder
from .run_info import get_ood_run_info, load_ood_results
from .run_records import list_ood_runs

#: run kinds explain_sample understands
EXPLAINED_KINDS = ("neglabel", "rap", "adaneg")


def explain_sample(samples, run_key, sample_id, top=5, *, cache_dir=None, device="cpu"):
    """The ID labels and negative labels that best match one sample of a NegLabel/RAP/AdaNeg run.

    Uses the run record (encoder, templates, ID classes, negatives) and the sample's
    stored CLIP embedding when the run used one (else its image is encoded again). The
    label prompts are embedded through the text cache, so only the first explanation
    of a run encodes the negatives.

    Args:
        samples: the dataset or a view of it.
        run_key: a ``neglabel``, ``rap`` or ``adaneg`` run of this package.
        sample_id: the sample's id.
        top: how many labels of each kind to return.
        cache_dir: text-embedding cache root (default: the package cache).
        device: torch device when the image or prompts must be encoded.

    Returns:
        ``{"sample_id", "run_key", "kind", "score", "prediction", "score_convention",
        "id_labels": [{"label", "similarity"}...], "negative_labels": [{"label", "pos",
        "similarity", "stage"[, "added_by"]}...]}``, each list sorted by decreasing
        cosine similarity. ``stage`` is ``"mined"`` (NegLabel), ``"train"`` or ``"test"``
        (RAP; ``added_by`` = the sample whose test-time update added the word).
        AdaNeg runs add ``"memory"``: the ``top`` final-memory samples most similar to
        this one (``{"sample_id", "label", "kind", "similarity"}``, ``kind`` ``"ood"`` or
        ``"id"``), when the run read stored embeddings and they are still the run's encoder's
        (else ``None``: no stored embeddings, or deleted or recomputed with another encoder since).
    """
    from ..clip.neglabel import explain
    from ..clip.text_cache import cached_text_embeddings, check_folder_arg
    from .view_checks import require_collection, require_not_generated

    require_collection(samples)
    require_not_generated(samples)  # runs are recorded on the source dataset, not on a patches view's
    check_folder_arg(cache_dir, "cache_dir", "for cached text embeddings (or None for the package's cache)")
    info = get_ood_run_info(samples, run_key)
    kind = info.get("kind")
    if kind not in EXPLAINED_KINDS:
        existing = [k for name in EXPLAINED_KINDS for k in list_ood_runs(samples, name)]
        raise OODInputError(
            f"run {run_key!r} is a {kind!r} run; explain_sample explains NegLabel, RAP or AdaNeg runs "
            f"(existing ones: {existing})"
        )
    top = check_positive_int(top, "top")
    sample = _sample(samples, sample_id)
    score_field = info.get("score_field")
    if score_field and (not sample.has_field(score_field) or sample[score_field] is None):
        raise OODInputError(
            f"sample {sample.id} has no score in run {run_key!r} (field {score_field!r}): the run did not score it "
            "(outside the run's view, or its image could not be read); explain a sample the run scored"
        )
    res = load_ood_results(samples, run_key)
    words, pos, stages, templates = _run_negatives(kind, res)
    id_names = list(res.id_names)
    encoder = _run_encoder(info, run_key, device)
    id_emb = cached_text_embeddings(
        encoder, id_names, ["noun"] * len(id_names), {"noun": res.params["id_template"]}, cache_dir=cache_dir,
        progress=False,
    )
    neg_emb = cached_text_embeddings(encoder, words, pos, templates, cache_dir=cache_dir, progress=False)
    x = _sample_embedding(samples, sample, info.get("embeddings_field"), encoder)
    # Index strings as names keep duplicates (a word that is both noun and adjective) apart.
    out = explain(x, id_emb, id_names, neg_emb, [str(i) for i in range(len(words))], top=top)
    negatives = []
    for entry in out["negative_labels"]:
        i = int(entry["label"])
        negatives.append({"label": words[i], "pos": pos[i], "similarity": entry["similarity"], **stages[i]})
    prediction_field = info.get("prediction_field")
    prediction = sample[prediction_field] if prediction_field and sample.has_field(prediction_field) else None
    extra = {"memory": _memory_neighbours(samples, res, x, info.get("embeddings_field"), top, encoder)} \
        if kind == "adaneg" else {}
    return {
        "sample_id": sample_id,
        "run_key": run_key,
        "kind": kind,
        "score": sample[score_field] if score_field and sample.has_field(score_field) else None,
        "prediction": None if prediction is None else {"label": prediction.label, "confidence": prediction.confidence},
        "score_convention": SCORE_CONVENTION,
        "id_labels": out["id_labels"],
        "negative_labels": negatives,
        **extra,
    }


def _sample(samples, sample_id):
    if not isinstance(sample_id, str):
        raise OODInputError(f"sample_id must be a sample's id (a string, e.g. sample.id); got a "
                            f"{type(sample_id).__name__}")
    try:
        return samples._dataset[sample_id]
    except (KeyError, ValueError, TypeError) as e:
        raise OODInputError(
            f"sample_id {sample_id!r} is not a sample of dataset {samples._dataset.name!r}; pass a sample's id"
        ) from e


def _run_negatives(kind, res):
    """``(words, pos, stages, templates)`` of the negatives a run used, from its results."""
    params = res.params
    if kind in ("neglabel", "adaneg"):
        words, pos = list(res.negative_words), list(res.negative_pos)
        return words, pos, [{"stage": "mined"}] * len(words), \
            {"noun": params["noun_template"], "adj": params["adj_template"]}
    words = list(res.train_negative_words) + list(res.test_negative_words)
    pos = list(res.train_negative_pos) + list(res.test_negative_pos)
    stages = [{"stage": "train"}] * len(res.train_negative_words) + [
        {"stage": "test", "added_by": sid} for sid in res.test_negative_sample_ids
    ]
    return words, pos, stages, dict(params["templates"])


def _run_encoder(info, run_key, device):
    clip = info["clip"]
    encoder = make_encoder(clip["model_name"], clip["pretrained"], clip["quick_gelu"], device, lazy=True)
    if encoder.weights_identity != clip["weights_identity"]:
        raise OODInputError(
            f"run {run_key!r} used CLIP weights {clip['weights_identity']!r} but {clip['pretrained']!r} is now "
            f"{encoder.weights_identity!r}; the weights file changed since the run: re-run the scorer"
        )
    return encoder


def _sample_embedding(samples, sample, field, encoder):
    """The sample's stored embedding when the run used one made by ``encoder``, else its image encoded."""
    if field and sample.has_field(field) and sample[field] is not None:
        try:
            if clip_embeddings_record(samples, field).get("weights_identity") == encoder.weights_identity:
                return np.asarray(sample[field], dtype=np.float32)
        except OODInputError:
            pass  # the embeddings run was deleted or replaced: encode the image
    return encoder.encode_images([sample.filepath])[0]  # read as the scoring run read it


def _memory_neighbours(samples, res, x, field, top, encoder):
    """The AdaNeg memory entries most similar to ``x`` (needs the run's stored embeddings, still made by the
    run's encoder: vectors of another model are not comparable, and may not even have ``x``'s dimension)."""
    ids = list(res.memory_sample_ids)
    if not field or not ids:
        return None if not field else []
    try:
        same_encoder = clip_embeddings_record(samples, field).get("weights_identity") == encoder.weights_identity
    except OODInputError:
        same_encoder = False  # the run's embeddings were deleted since
    if not same_encoder:
        return None  # deleted, or recomputed with another encoder since: no memory to compare with
    view = samples._dataset.select(ids)
    vectors = dict(zip(view.values("id"), view.values(field)))
    rows = [(sid, label, kind) for sid, label, kind in zip(ids, res.memory_labels, res.memory_kinds)
            if vectors.get(sid) is not None]
    if not rows:
        return []
    feats = np.stack([np.asarray(vectors[sid], dtype=np.float64) for sid, _, _ in rows])
    sims = feats @ x / (np.linalg.norm(feats, axis=1) * np.linalg.norm(x))
    best = np.argsort(-sims, kind="stable")[: int(top)]
    return [{"sample_id": rows[i][0], "label": rows[i][1], "kind": rows[i][2], "similarity": float(sims[i])}
            for i in best]
