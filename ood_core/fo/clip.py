"""FiftyOne layer of the CLIP negative-label scorers: embeddings, NegLabel, RAP, explanations.

The functions follow :mod:`ood_core.fo.scores`: they accept a Dataset or any view,
validate every input first, compute on numpy with the algorithm modules
(:mod:`ood_core.clip`, :mod:`ood_core.clip.lexicon`, :mod:`ood_core.clip.neglabel`,
:mod:`ood_core.clip.rap`), then write their fields and record a FiftyOne custom run
all-or-nothing (:func:`ood_core.fo.runs.write_and_record`). Nothing is written when
anything fails, and no field or run is replaced unless ``overwrite=True``.

Score convention: **higher = more out-of-distribution**. The NegLabel and RAP score
fields hold ``1 - S(x)`` in [0, 1], where ``S(x)`` is NegLabel's grouped ID score.

Encoder identity: :func:`compute_clip_embeddings` records the CLIP model, the weights
(tag, or a content hash of the weights file) and the QuickGELU switch. The scorers
refuse stored image embeddings made by another encoder than the one they embed the
label prompts with, since image and text embeddings are only comparable within one
CLIP model.

Text embeddings of the candidate vocabulary (139k WordNet prompts: minutes on CPU)
are cached on disk per encoder (:mod:`ood_core.clip.text_cache`), so only the first run
with a given model pays for them.
"""

import logging
import os
import warnings

import numpy as np

from ..errors import OODInputError
from ..progress import Progress
from . import runs

logger = logging.getLogger(__name__)

DEFAULT_CLIP_EMBEDDINGS_FIELD = "clip_embeddings"
DEFAULT_MODEL_NAME = "ViT-B-16"
DEFAULT_PRETRAINED = "openai"
SCORE_CONVENTION = "ood_score = 1 - S(x) in [0, 1]; higher = more out-of-distribution"
PROCESSING_ORDER = "sample id ascending"

# Lexicons already read in this process, keyed by their source (WordNet takes ~5 s).
_LEXICON_MEMO = {}
_LEXICON_MEMO_SIZE = 2


# --------------------------------------------------------------------------- encoder


def _make_encoder(model_name, pretrained, quick_gelu, device, *, lazy=False):
    from ..clip.encoder import CLIPEncoder

    return CLIPEncoder(
        model_name or DEFAULT_MODEL_NAME,
        pretrained or DEFAULT_PRETRAINED,
        quick_gelu=quick_gelu,
        device=device,
        lazy=lazy,
    )


def _encoder_info(encoder):
    """JSON description of an encoder, stored in run configs."""
    pretrained = encoder.pretrained
    if encoder.weights_file is not None and os.path.isfile(os.path.expanduser(pretrained)):
        pretrained = os.path.abspath(os.path.expanduser(pretrained))
    return {
        "kind": "clip",
        "model_name": encoder.model_name,
        "pretrained": pretrained,
        "quick_gelu": bool(encoder.quick_gelu),
        "weights_identity": encoder.weights_identity,
        "embed_dim": int(encoder.embed_dim),
    }


def _clip_embeddings_record(samples, embeddings_field):
    """The ``backbone`` config of the CLIP embeddings run that wrote ``embeddings_field``."""
    dataset = samples._dataset
    if dataset.get_field(embeddings_field) is None:
        raise OODInputError(
            f"embeddings field {embeddings_field!r} does not exist on dataset {dataset.name!r}; "
            f"compute it with compute_clip_embeddings(samples, {embeddings_field!r}, model_name=..., "
            "pretrained=...) or leave embeddings_field=None to encode the images during scoring"
        )
    if embeddings_field not in runs.list_ood_runs(samples, kind="embeddings"):
        raise OODInputError(
            f"field {embeddings_field!r} has no fiftyone-ood embeddings run, so nothing records which "
            "CLIP model produced it (image and text embeddings are only comparable within one model); "
            f"compute it with compute_clip_embeddings(samples, {embeddings_field!r}, ...) or leave "
            "embeddings_field=None"
        )
    backbone = runs.get_ood_run_info(samples, embeddings_field).get("backbone") or {}
    if backbone.get("kind") != "clip":
        raise OODInputError(
            f"embeddings {embeddings_field!r} were computed by {backbone.get('model_name', 'a non-CLIP model')!r}, "
            "not by a CLIP model; NegLabel and RAP need CLIP image embeddings: run "
            "compute_clip_embeddings(samples, 'clip_embeddings', ...) and pass that field, or leave "
            "embeddings_field=None"
        )
    return backbone


def _resolve_encoder_args(samples, embeddings_field, model_name, pretrained, quick_gelu):
    """Missing model arguments default to the embeddings run's, else ViT-B-16 / openai."""
    if embeddings_field is None or (model_name and pretrained):
        return model_name, pretrained, quick_gelu
    record = _clip_embeddings_record(samples, embeddings_field)
    if model_name is None and pretrained is None and quick_gelu is None:
        return record["model_name"], record["pretrained"], record["quick_gelu"]
    return model_name or record["model_name"], pretrained or record["pretrained"], quick_gelu


def _read_clip_embeddings(samples, embeddings_field, encoder):
    """``(ids, X)`` of the samples that have a stored embedding made by ``encoder``."""
    record = _clip_embeddings_record(samples, embeddings_field)
    ids = samples.values("id")
    vecs = samples.values(embeddings_field)
    keep = [i for i, v in enumerate(vecs) if v is not None]
    if not keep:
        raise OODInputError(
            f"no sample of this view has an embedding in {embeddings_field!r}; run "
            f"compute_clip_embeddings on this view first (overwrite=True to redo the field)"
        )
    shapes = {np.asarray(vecs[i]).shape for i in keep}
    if len(shapes) > 1:
        raise OODInputError(
            f"embeddings in {embeddings_field!r} have mixed shapes {sorted(shapes)}; recompute them with "
            "compute_clip_embeddings(..., overwrite=True)"
        )
    X = np.stack([np.asarray(vecs[i], dtype=np.float32).ravel() for i in keep])
    if X.shape[1] != encoder.embed_dim:
        raise OODInputError(
            f"image embeddings in {embeddings_field!r} have dimension {X.shape[1]} but the text embeddings "
            f"of CLIP model {encoder.model_name!r} have dimension {encoder.embed_dim}; image and text "
            "embeddings must come from the same CLIP model: pass the model_name/pretrained the embeddings "
            f"were computed with ({record.get('model_name')!r}, {record.get('pretrained')!r}) or recompute "
            "them with compute_clip_embeddings(..., overwrite=True)"
        )
    if record.get("weights_identity") != encoder.weights_identity:
        raise OODInputError(
            f"embeddings {embeddings_field!r} were computed with {record.get('weights_identity')!r} but the "
            f"label prompts would be encoded with {encoder.weights_identity!r}; image and text embeddings "
            "are only comparable within one CLIP model and weights: pass the same model_name, pretrained "
            "and quick_gelu as the embeddings run (or omit all three to take them from it), or recompute "
            "the embeddings with compute_clip_embeddings(..., overwrite=True)"
        )
    return [ids[i] for i in keep], X


def _encode_samples(samples, encoder, *, batch_size, skip_failures, progress):
    """Encode a view's images in batches: ``(ids, X (N, D), failures)``."""
    from ..images import ImageLoadError, load_rgb

    if int(batch_size) != batch_size or batch_size < 1:
        raise OODInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    ids = samples.values("id")
    paths = samples.values("filepath")
    keys, chunks, failures = [], [], []
    with Progress(progress, len(ids), "CLIP image embeddings") as bar:
        for start in range(0, len(ids), int(batch_size)):
            stop = min(len(ids), start + int(batch_size))
            images, ok = [], []
            for i in range(start, stop):
                try:
                    images.append(load_rgb(paths[i]))
                    ok.append(i)
                except ImageLoadError as e:
                    if not skip_failures:
                        raise
                    failures.append({"id": ids[i], "filepath": paths[i], "error": str(e)})
            if images:
                chunks.append(encoder.encode_images(images, batch_size=len(images), progress=False))
                keys.extend(ids[i] for i in ok)
            bar.update(stop - start)
    for f in failures:
        logger.warning("skipped sample %s: %s", f["id"], f["error"])
    X = np.concatenate(chunks) if chunks else np.zeros((0, encoder.embed_dim), np.float32)
    return keys, X, failures


def _image_embeddings(samples, encoder, stored, *, batch_size, skip_failures, progress):
    """``stored`` = ``(ids, X)`` read from an embeddings field, else encode the images."""
    if stored is not None:
        return stored[0], stored[1], []
    keys, X, failures = _encode_samples(
        samples, encoder, batch_size=batch_size, skip_failures=skip_failures, progress=progress
    )
    if not keys:
        raise OODInputError("no image of this view could be read; see the warnings for each file")
    return keys, X, failures


# --------------------------------------------------------------------------- labels and lexicon


def _resolve_id_labels(samples, id_labels, label_field, *, allow_both=False):
    """The ID class names: ``id_labels``, else the classes of ``label_field``.

    ``allow_both``: RAP also uses ``label_field`` for the few-shot set, so both may be
    given there; NegLabel refuses the ambiguity.
    """
    from ..clip.neglabel import check_id_names
    from .items import label_kind

    if (id_labels is None and label_field is None) or (
        not allow_both and id_labels is not None and label_field is not None
    ):
        raise OODInputError(
            "give the in-distribution classes either as id_labels=[...] (class names) or as "
            "label_field='<a Classification or Detections field>' (its classes)"
            + ("" if allow_both else ", not both")
        )
    if label_field is not None:
        label_kind(samples, label_field)  # the field must exist and hold labels
    if id_labels is None:
        kind = label_kind(samples, label_field)
        dataset = samples._dataset
        path = f"{label_field}.label" if kind == "classification" else f"{label_field}.detections.label"
        names = list(dataset.classes.get(label_field) or []) or sorted(dataset.distinct(path))
        if not names:
            raise OODInputError(
                f"label field {label_field!r} holds no labels on dataset {dataset.name!r}, so there are no "
                "in-distribution classes; label some samples or pass id_labels=[...]"
            )
    else:
        if isinstance(id_labels, str):
            raise OODInputError(
                f"id_labels must be a list of class names, not the string {id_labels!r}; e.g. "
                f"id_labels={[s.strip() for s in id_labels.split(',') if s.strip()]!r}"
            )
        names = list(id_labels)
        if not names:
            raise OODInputError(
                "id_labels is empty: NegLabel and RAP need at least one in-distribution class name; pass "
                "them (e.g. id_labels=dataset.distinct('ground_truth.label')) or label_field='<field>'"
            )
    names = check_id_names(names)  # empty list, duplicates, non-strings: OODInputError
    if len(names) == 1:
        warnings.warn(
            f"only one in-distribution class ({names[0]!r}): the score then measures how much better an "
            "image matches that one label than the negative labels, and every prediction is that class "
            "with confidence 1. Give all the classes of the dataset if it has more.",
            UserWarning,
            stacklevel=3,
        )
    return names


def _lexicon_key(word_list, wordnet_dir, cross_pos, cache_dir):
    if word_list is not None:
        path = os.path.abspath(os.path.expanduser(os.fspath(word_list)))
        stat = os.stat(path) if os.path.isfile(path) else None
        return ("word_list", path, stat and (stat.st_size, stat.st_mtime_ns), cross_pos)
    from ..clip.lexicon import ENV_WORDNET_DIR

    return ("wordnet", wordnet_dir, os.environ.get(ENV_WORDNET_DIR), cross_pos, cache_dir)


def _load_lexicon(word_list, wordnet_dir, cross_pos, parts_of_speech, cache_dir):
    """Candidate vocabulary (memoised per process), restricted to ``parts_of_speech``."""
    from ..clip.lexicon import VALID_POS, Lexicon, load_lexicon

    pos_wanted = [parts_of_speech] if isinstance(parts_of_speech, str) else list(parts_of_speech or [])
    bad = [p for p in pos_wanted if p not in VALID_POS]
    if not pos_wanted or bad:
        raise OODInputError(
            f"parts_of_speech must be a non-empty subset of {list(VALID_POS)}; got {parts_of_speech!r}"
        )
    key = _lexicon_key(word_list, wordnet_dir, cross_pos, cache_dir)
    lex = _LEXICON_MEMO.get(key)
    if lex is None:
        lex = load_lexicon(word_list=word_list, wordnet_dir=wordnet_dir, cross_pos=cross_pos, cache_dir=cache_dir)
        if len(_LEXICON_MEMO) >= _LEXICON_MEMO_SIZE:
            _LEXICON_MEMO.pop(next(iter(_LEXICON_MEMO)))
        _LEXICON_MEMO[key] = lex
    if set(pos_wanted) != set(VALID_POS):
        pairs = [(w, p) for w, p in zip(lex.words, lex.pos) if p in pos_wanted]
        lex = Lexicon([w for w, _ in pairs], [p for _, p in pairs], source=lex.source)
    return lex


def _check_vocabulary(lex, id_names):
    """Refuse a vocabulary that holds nothing but ID class names.

    The scorers remove ID class names from the candidates themselves, after the
    candidates were embedded: the text cache key then depends on the vocabulary only,
    not on the ID classes, so changing the ID classes reuses the cached embeddings.
    """
    if len(lex.without(id_names)) == 0:
        raise OODInputError(
            f"the candidate vocabulary ({lex.source}, {len(lex)} words) is empty once the ID class names are "
            "removed (an ID class can never be a negative label); use WordNet (word_list=None) or a word_list "
            "with words unrelated to the ID classes"
        )


def _check_counts_early(lex, id_names, *, num_negatives, fraction, num_groups, tau):
    """Refuse impossible negative-label counts before the slow encoding steps.

    ``fraction`` ``None`` with ``num_negatives`` ``None`` means NegLabel's 15% per part
    of speech; RAP passes ``fraction=None`` and its ``num_negatives`` (capped at the
    vocabulary). The numpy layer checks the same again on the real arrays.
    """
    if not (isinstance(tau, (int, float)) and np.isfinite(tau) and tau > 0):
        raise OODInputError(f"tau must be a positive number (NegLabel and RAP use 0.01); got {tau!r}")
    if int(num_groups) != num_groups or num_groups < 1:
        raise OODInputError(f"num_groups must be a positive integer (paper: 100); got {num_groups!r}")
    remaining = lex.without(id_names)
    if num_negatives is not None:
        if int(num_negatives) != num_negatives or num_negatives < 1:
            raise OODInputError(f"num_negatives must be a positive integer; got {num_negatives!r}")
        expected = min(int(num_negatives), len(remaining))
        how = f"num_negatives={num_negatives} with {len(remaining)} candidate words"
    else:
        share = 0.15 if fraction is None else float(fraction)
        if not 0 < share <= 1:
            raise OODInputError(f"fraction must be in (0, 1]; got {fraction!r}")
        expected = sum(int(np.floor(share * remaining.count(p))) for p in ("noun", "adj"))
        how = f"{share:g} of {remaining.count('noun')} nouns and {remaining.count('adj')} adjectives"
    if expected < num_groups:
        raise OODInputError(
            f"num_groups={num_groups} is larger than the number of negative labels this run would use "
            f"({expected}: {how}); every group needs at least one negative: lower num_groups, or use more "
            "negatives (num_negatives, fraction, a larger word_list or WordNet)"
        )


def _lexicon_info(lex, cross_pos, parts_of_speech):
    return {
        "source": lex.source,
        "num_words": len(lex),
        "num_nouns": lex.count("noun"),
        "num_adjectives": lex.count("adj"),
        "cross_pos": cross_pos,
        "parts_of_speech": [parts_of_speech] if isinstance(parts_of_speech, str) else list(parts_of_speech),
    }


# --------------------------------------------------------------------------- writing


def _check_outputs(samples, score_field, prediction_field, run_key, overwrite):
    runs.validate_key(score_field, "score field")
    fields = [score_field]
    if prediction_field is not None:
        runs.validate_key(prediction_field, "prediction field")
        if prediction_field == score_field:
            raise OODInputError(
                f"score_field and prediction_field are both {score_field!r}; give them different names"
            )
        fields.append(prediction_field)
    runs.check_new_run(samples, run_key, fields, overwrite)


def _prediction_writes(samples, prediction_field, keys, labels, confidences):
    """The predicted-class write that goes with the scores (none without ``prediction_field``)."""
    import fiftyone.core.labels as fol

    writes = []
    if prediction_field is not None:
        by_key = {
            k: fol.Classification(label=str(lab), confidence=float(c))
            for k, lab, c in zip(keys, labels, confidences)
        }
        writes.append((prediction_field, [by_key.get(k) for k in samples.values("id")]))
    return writes


def _quantiles(scores):
    return {q: float(np.quantile(scores, q / 100)) for q in (5, 50, 95)}


# --------------------------------------------------------------------------- public API


def compute_clip_embeddings(
    samples,
    embeddings_field=DEFAULT_CLIP_EMBEDDINGS_FIELD,
    *,
    model_name=DEFAULT_MODEL_NAME,
    pretrained=DEFAULT_PRETRAINED,
    quick_gelu=None,
    device="cpu",
    batch_size=32,
    skip_failures=False,
    overwrite=False,
    progress=None,
):
    """Compute CLIP image embeddings for every sample of a view and record the encoder.

    The embeddings (unit L2 norm, float32) go to a vector field; an ``embeddings`` run
    with the same key records the model name, the weights (open_clip tag, or the file
    path and a content hash of it) and the QuickGELU switch, so that
    :func:`compute_neglabel_scores` / :func:`compute_rap_scores` can reuse them and
    refuse them when they would embed the label prompts with another encoder. The field
    also works with :func:`ood_core.fo.scores.compute_ood_scores` (k-NN on CLIP features).

    Args:
        samples: a Dataset or view.
        embeddings_field: the vector field to write; also the run key.
        model_name: an open_clip architecture, e.g. ``"ViT-B-16"`` (NegLabel's default).
        pretrained: an open_clip pretrained tag (``"openai"``: local caches, then the
            hub) or a local weights file (``.safetensors`` recommended; ``.pt`` files are
            read with ``weights_only=True``). Offline, pass a file.
        quick_gelu: force QuickGELU; ``None`` = on for the ``"openai"`` tag, off for files.
            Pass ``True`` for OpenAI weights loaded from a file.
        device: torch device, default ``"cpu"``.
        batch_size: images per forward pass.
        skip_failures: skip unreadable images (no embedding; listed in the run results)
            instead of raising.
        overwrite: allow replacing an existing field / run of that name.
        progress: ``None``/``True`` tqdm bar, ``False`` silent, or ``f(done, total)``.

    Returns:
        a dict summary: ``run_key``, ``field``, ``num_embedded``, ``num_failed``,
        ``dim``, ``clip`` (the recorded encoder description).

    Raises:
        WeightsNotFoundError: the tag's weights are neither cached nor downloadable.
        OODInputError: bad arguments, an existing field/run without ``overwrite``, an
            unreadable image without ``skip_failures``.
    """
    import fiftyone.core.fields as fof

    from .items import require_nonempty, values_by_key

    require_nonempty(samples)
    runs.validate_key(embeddings_field, "embeddings field")
    runs.check_new_run(samples, embeddings_field, [embeddings_field], overwrite)
    encoder = _make_encoder(model_name, pretrained, quick_gelu, device)
    keys, X, failures = _encode_samples(
        samples, encoder, batch_size=batch_size, skip_failures=skip_failures, progress=progress
    )
    clip_info = _encoder_info(encoder)
    summary = {
        "run_key": embeddings_field,
        "field": embeddings_field,
        "num_embedded": len(keys),
        "num_failed": len(failures),
        "dim": int(encoder.embed_dim),
        "clip": clip_info,
    }
    runs.write_and_record(
        samples,
        [(embeddings_field, values_by_key(samples, dict(zip(keys, X)), None), fof.VectorField)],
        embeddings_field,
        kind="embeddings",
        overwrite=overwrite,
        embeddings_field=embeddings_field,
        patches_field=None,
        backbone=clip_info,
        projection=None,
        dtype="float32",
        batch_size=batch_size,
        results={"failures": failures, "num_embedded": len(keys)},
    )
    return summary


def compute_neglabel_scores(
    samples,
    score_field="neglabel_score",
    *,
    id_labels=None,
    label_field=None,
    embeddings_field=None,
    model_name=None,
    pretrained=None,
    quick_gelu=None,
    device="cpu",
    word_list=None,
    wordnet_dir=None,
    cross_pos="keep_both",
    parts_of_speech=("noun", "adj"),
    num_negatives=None,
    fraction=None,
    percentile=95.0,
    tau=0.01,
    num_groups=100,
    seed=0,
    prediction_field="neglabel_prediction",
    run_key=None,
    batch_size=32,
    text_batch_size=256,
    skip_failures=False,
    cache_dir=None,
    overwrite=False,
    progress=None,
):
    """Zero-shot OOD scores with NegLabel (Jiang et al., ICLR 2024); higher = more OOD.

    The in-distribution (ID) classes are embedded with the prompt ``"the nice {}"``;
    the candidate vocabulary (WordNet nouns and adjectives, or ``word_list``) with
    ``"the nice {}"`` / ``"This is a {} photo"``. The candidates least similar to the
    ID labels (``percentile`` of their similarities) become the negative labels, and
    each image gets ``1 - S(x)`` with ``S`` NegLabel's grouped ID score (see
    :mod:`ood_core.clip.neglabel`). The predicted ID class (zero-shot, argmax over the ID
    prompts; confidence = softmax over ``cos/tau``) is stored too.

    Args:
        samples: a Dataset or view; every sample is scored.
        score_field: float field for ``1 - S(x)`` in [0, 1] (higher = more OOD).
        id_labels: the ID class names (a list), or ...
        label_field: ... a Classification (or Detections) field whose classes are the ID
            classes (``dataset.classes[label_field]`` if set, else its distinct labels
            over the whole dataset).
        embeddings_field: reuse CLIP image embeddings stored by
            :func:`compute_clip_embeddings` (their encoder must be the one used here);
            ``None`` encodes the images now. Samples without an embedding are skipped.
        model_name, pretrained, quick_gelu, device: the CLIP encoder (see
            :func:`compute_clip_embeddings`). ``None`` = the embeddings run's settings
            when ``embeddings_field`` is given, else ``"ViT-B-16"`` / ``"openai"``.
        word_list: a text file of candidate words (one per line, optional
            ``<TAB>noun|adj``) used instead of WordNet.
        wordnet_dir: WordNet location (else ``$FIFTYONE_OOD_WORDNET_DIR``, NLTK's data
            path, Debian's ``/usr/share/wordnet``); nothing is ever downloaded.
        cross_pos: words that are both noun and adjective: ``"keep_both"``, ``"noun"``
            or ``"adj"`` (see :mod:`ood_core.clip.lexicon`).
        parts_of_speech: candidate parts of speech, default nouns and adjectives.
        num_negatives: number of negative labels M (the paper's usual 10,000), or ...
        fraction: ... the share of each part of speech to keep (default 0.15).
        percentile: mining statistic over the ID-label similarities (default 95).
        tau: softmax temperature (default 0.01).
        num_groups: negative-label groups averaged (default 100; must not exceed M).
        seed: seed of the grouping shuffle.
        prediction_field: Classification field for the predicted ID class, or ``None``.
        run_key: key of the recorded run (default ``score_field``).
        batch_size: images per forward pass (when encoding).
        text_batch_size: prompts per forward pass (candidate vocabulary).
        skip_failures: skip unreadable images (not scored; listed in the results).
        cache_dir: cache root for text embeddings and the WordNet copy (default
            ``$FIFTYONE_OOD_CACHE_DIR`` or ``~/.cache/fiftyone-ood``).
        overwrite: allow replacing existing fields / run of those names.
        progress: ``None``/``True`` tqdm bars, ``False``, or ``f(done, total)``, called
            per phase (image encoding, then candidate prompts on a text-cache miss).

    Returns:
        a dict summary: ``run_key``, ``field``, ``prediction_field``, ``num_scored``,
        ``num_skipped``, ``num_negatives``, ``id_labels``, ``excluded_words``,
        ``score_quantiles``.

    Raises:
        OODInputError: bad arguments or fields, no/duplicate ID classes, an empty
            vocabulary, stored embeddings of another encoder or dimension.
        ResourceNotFoundError: no WordNet and no ``word_list``.
        WeightsNotFoundError: the CLIP weights cannot be found.
        UnsafeCheckpointError: a weights file that needs pickle code execution.
    """
    from ..clip.neglabel import NegLabelScorer
    from ..clip.text_cache import cached_text_embeddings
    from .items import require_nonempty

    require_nonempty(samples)
    run_key = run_key or score_field
    _check_outputs(samples, score_field, prediction_field, run_key, overwrite)
    id_names = _resolve_id_labels(samples, id_labels, label_field)
    scorer = NegLabelScorer(
        tau=tau, num_groups=num_groups, seed=seed, percentile=percentile,
        fraction=fraction, num_negatives=num_negatives,
    )
    model_name, pretrained, quick_gelu = _resolve_encoder_args(
        samples, embeddings_field, model_name, pretrained, quick_gelu
    )
    encoder = _make_encoder(model_name, pretrained, quick_gelu, device)
    stored = None if embeddings_field is None else _read_clip_embeddings(samples, embeddings_field, encoder)
    lex = _load_lexicon(word_list, wordnet_dir, cross_pos, parts_of_speech, cache_dir)
    _check_vocabulary(lex, id_names)
    _check_counts_early(lex, id_names, num_negatives=num_negatives, fraction=fraction, num_groups=num_groups,
                        tau=tau)
    keys, X, failures = _image_embeddings(
        samples, encoder, stored, batch_size=batch_size, skip_failures=skip_failures, progress=progress
    )
    # NegLabelScorer.fit's steps, with the whole vocabulary embedded (cache-stable) and the
    # ID class names removed afterwards by fit_embeddings.
    cand_emb = cached_text_embeddings(
        encoder, lex.words, lex.pos, scorer.templates, cache_dir=cache_dir, progress=progress,
        batch_size=text_batch_size,
    )
    id_emb = encoder.encode_texts([scorer.id_template.format(n) for n in id_names], batch_size=text_batch_size)
    scorer.fit_embeddings(id_names, id_emb, lex.words, lex.pos, cand_emb)
    scores = scorer.score_samples(X)
    labels, confidences = scorer.predict(X)

    record = scorer.run_record()
    summary = {
        "run_key": run_key,
        "field": score_field,
        "prediction_field": prediction_field,
        "num_scored": int(len(keys)),
        "num_skipped": int(len(samples) - len(keys)),
        "num_negatives": len(record["negative_words"]),
        "id_labels": list(id_names),
        "excluded_words": record["excluded_words"],
        "score_quantiles": _quantiles(scores),
    }
    results = dict(
        record,
        negative_similarity=[float(v) for v in scorer.negative_similarity_],
        failures=failures,
        **{k: summary[k] for k in ("num_scored", "num_skipped", "score_quantiles")},
    )
    runs.record_scores(
        samples, run_key, kind="neglabel", score_field=score_field,
        scores_by_key=dict(zip(keys, np.asarray(scores, np.float64))),
        extra_writes=_prediction_writes(samples, prediction_field, keys, labels, confidences),
        overwrite=overwrite,
        prediction_field=prediction_field,
        label_field=label_field,
        id_labels=list(id_names),
        embeddings_field=embeddings_field,
        clip=_encoder_info(encoder),
        lexicon=_lexicon_info(lex, cross_pos, parts_of_speech),
        neglabel=scorer.get_params(),
        score_convention=SCORE_CONVENTION,
        results=results,
    )
    return summary


def _few_shot_set(samples, few_shot, k_per_class, label_field, id_names, seed):
    """``(ids, filepaths, description)`` of the few-shot ID images, in sample id order."""
    from ..clip.lexicon import normalize_word
    from ..clip.rap import select_few_shot
    from .items import label_kind

    if few_shot is None and k_per_class is None:
        raise OODInputError(
            "RAP needs a few-shot in-distribution set: pass few_shot=<sample tag or view> (all its samples "
            "are used), or k_per_class=<e.g. 1 or 4> with label_field to pick that many random samples per "
            "class (from few_shot if given, else from the scored view)"
        )
    pool, description = (samples, {"view": "scored samples"}) if few_shot is None else \
        runs.resolve_view(samples, few_shot, "few_shot", "few-shot in-distribution images")
    ids, paths = pool.values("id"), pool.values("filepath")
    order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
    ids = [ids[i] for i in order]
    paths = [paths[i] for i in order]
    labels = None
    if label_field is not None and label_kind(samples, label_field) == "classification":
        raw = pool.values(f"{label_field}.label")
        labels = [raw[i] for i in order]
    if k_per_class is not None:
        if labels is None:
            raise OODInputError(
                f"k_per_class={k_per_class!r} picks samples per class, which needs label_field to be a "
                f"Classification field (got {label_field!r}); pass few_shot=<tag or view> instead"
            )
        known = {normalize_word(n) for n in id_names}
        id_only = [y if y is not None and normalize_word(y) in known else None for y in labels]
        if all(y is None for y in id_only):
            raise OODInputError(
                f"no few-shot candidate is labelled with an ID class in {label_field!r} (ID classes: "
                f"{list(id_names)[:10]}); check label_field / id_labels or pass few_shot=<tag or view>"
            )
        chosen = select_few_shot(id_only, k_per_class, seed=seed).tolist()
        description = dict(description, k_per_class=int(k_per_class), seed=int(seed), label_field=label_field)
    else:
        chosen = list(range(len(ids)))
    if labels is not None:
        known = {normalize_word(n) for n in id_names}
        foreign = sorted({
            labels[i] for i in chosen if labels[i] is not None and normalize_word(labels[i]) not in known
        })
        if foreign:
            raise OODInputError(
                f"few-shot samples are labelled {foreign[:10]} in {label_field!r}, which are not ID classes "
                f"({list(id_names)[:10]}...); the few-shot set must hold in-distribution images only: fix the "
                "few-shot view/tag or add those classes to id_labels"
            )
    return [ids[i] for i in chosen], [paths[i] for i in chosen], description


def compute_rap_scores(
    samples,
    score_field="rap_score",
    *,
    few_shot=None,
    k_per_class=None,
    id_labels=None,
    label_field=None,
    embeddings_field=None,
    model_name=None,
    pretrained=None,
    quick_gelu=None,
    device="cpu",
    word_list=None,
    wordnet_dir=None,
    cross_pos="keep_both",
    parts_of_speech=("noun", "adj"),
    num_crops=256,
    num_keep=32,
    crop_scale=(0.08, 1.0),
    lambdas=(0.2, -0.2, -1.0),
    eta=5.0,
    num_negatives=10000,
    test_time=True,
    u1=0.0,
    u2=0.5,
    words_per_sample=4,
    update_batch_size=256,
    rescore="final",
    tau=0.01,
    num_groups=100,
    seed=0,
    prediction_field="rap_prediction",
    run_key=None,
    batch_size=32,
    text_batch_size=256,
    skip_failures=False,
    cache_dir=None,
    overwrite=False,
    progress=None,
):
    """Few-shot OOD scores with Retrieval-Augmented Prompts (RAP, Han et al.); higher = more OOD.

    **Train time**: every few-shot ID image is randomly cropped ``num_crops`` times
    (seed ``seed + i`` for the i-th image in sample-id order); per image the
    ``num_keep`` crops most / least similar to the ID prompts are kept, and every
    candidate word gets RAP's joint similarity ``l1*sim1 + l2*sim2 + l3*sim3``; the top
    ``num_negatives`` become the train-time negative labels.

    **Test time** (``test_time=True``; ``False`` is the paper's train-time-only
    ablation): the samples are processed in a deterministic order, **ascending sample
    id** (recorded in the run), in batches of ``update_batch_size``; a sample whose
    current ID score ``S`` lies in ``[u1, u2]`` adds the ``words_per_sample`` candidate
    words closest to its image to the negatives. With ``rescore="final"`` every sample
    is then scored with the final negatives (scores do not depend on the order); with
    ``"online"`` each batch keeps the score computed right after its own update.

    The score is ``1 - S(x)`` in [0, 1] (higher = more OOD); the predicted ID class
    goes to ``prediction_field`` (confidence = softmax over ``cos/tau``).

    Args:
        samples: a Dataset or view; every sample is scored (few-shot samples included).
        score_field: float field for the scores.
        few_shot: the few-shot ID images: a sample tag or a view of the same dataset.
        k_per_class: pick this many random samples per class of ``label_field`` (seeded
            with ``seed``) from ``few_shot`` (or from ``samples`` when ``few_shot`` is
            None). Without it, every sample of ``few_shot`` is used.
        id_labels, label_field: the ID classes: ``id_labels`` if given, else the classes
            of ``label_field`` (see :func:`compute_neglabel_scores`). A Classification
            ``label_field`` also picks the ``k_per_class`` samples (ID classes only) and
            checks the few-shot set: samples labelled with a non-ID class are refused.
        embeddings_field: reuse stored CLIP image embeddings for the scored samples
            (crops of the few-shot images are always encoded).
        model_name, pretrained, quick_gelu, device: the CLIP encoder.
        word_list, wordnet_dir, cross_pos, parts_of_speech: the candidate vocabulary.
        num_crops, num_keep, crop_scale: crops per few-shot image (paper: 256), kept
            per side (paper: 32), crop area range.
        lambdas, eta: joint-similarity weights (paper: 0.2, -0.2, -1) and percentile.
        num_negatives: train-time negatives P (paper: 10,000; capped at the vocabulary).
        test_time, u1, u2, words_per_sample, update_batch_size, rescore: the test-time
            procedure (see above).
        tau, num_groups, seed: NegLabel's grouped score parameters.
        prediction_field: Classification field for the predicted ID class, or ``None``.
        run_key, batch_size, text_batch_size, skip_failures, cache_dir, overwrite,
            progress: as in :func:`compute_neglabel_scores`.

    Returns:
        a dict summary: ``run_key``, ``field``, ``prediction_field``, ``num_scored``,
        ``num_skipped``, ``num_few_shot``, ``num_train_negatives``,
        ``num_test_negatives``, ``id_labels``, ``score_quantiles``.

    Raises:
        the errors of :func:`compute_neglabel_scores`, and OODInputError for a missing
        or empty few-shot set.
    """
    from ..clip.neglabel import predict_id_class
    from ..clip.rap import CropStatistics, RAPScorer, random_crops
    from ..clip.text_cache import cached_text_embeddings
    from ..images import load_rgb
    from .items import require_nonempty

    require_nonempty(samples)
    run_key = run_key or score_field
    _check_outputs(samples, score_field, prediction_field, run_key, overwrite)
    id_names = _resolve_id_labels(samples, id_labels, label_field, allow_both=True)
    few_ids, few_paths, few_info = _few_shot_set(samples, few_shot, k_per_class, label_field, id_names, seed)
    scorer = RAPScorer(
        num_crops=num_crops, num_keep=num_keep, crop_scale=crop_scale, lambdas=lambdas, eta=eta,
        num_negatives=num_negatives, test_time=test_time, u1=u1, u2=u2, words_per_sample=words_per_sample,
        batch_size=update_batch_size, rescore=rescore, tau=tau, num_groups=num_groups, seed=seed,
    )
    model_name, pretrained, quick_gelu = _resolve_encoder_args(
        samples, embeddings_field, model_name, pretrained, quick_gelu
    )
    encoder = _make_encoder(model_name, pretrained, quick_gelu, device)
    stored = None if embeddings_field is None else _read_clip_embeddings(samples, embeddings_field, encoder)
    lex = _load_lexicon(word_list, wordnet_dir, cross_pos, parts_of_speech, cache_dir)
    _check_vocabulary(lex, id_names)
    _check_counts_early(lex, id_names, num_negatives=num_negatives, fraction=None, num_groups=num_groups, tau=tau)

    keys, X, failures = _image_embeddings(
        samples, encoder, stored, batch_size=batch_size, skip_failures=skip_failures, progress=progress
    )
    order = np.argsort(np.asarray(keys, dtype=str), kind="stable")
    keys = [keys[i] for i in order]
    X = X[order]

    # Train time (the steps of RAPScorer.fit, with the package's image loading and progress).
    id_emb = encoder.encode_texts([scorer.id_template.format(n) for n in id_names], batch_size=text_batch_size)
    stats = CropStatistics()
    with Progress(progress, len(few_paths) * int(num_crops), "RAP few-shot crops") as bar:
        for i, path in enumerate(few_paths):
            crops = random_crops(load_rgb(path), num_crops, seed=seed + i, scale=scorer.crop_scale)
            stats.add(encoder.encode_images(crops, batch_size=batch_size), id_emb, num_keep)
            bar.update(len(crops))
    cand_emb = cached_text_embeddings(
        encoder, lex.words, lex.pos, scorer.templates, cache_dir=cache_dir, progress=progress,
        batch_size=text_batch_size,
    )
    scorer.fit_embeddings(id_names, id_emb, stats, lex.words, lex.pos, cand_emb)  # excludes ID names

    # Test time, in sample id order.
    with Progress(progress, len(keys), "RAP test-time scoring") as bar:
        result = scorer.score_samples(X, progress=lambda frac: bar.update(round(frac * len(keys)) - bar.done))
    cls, confidences = predict_id_class(X, scorer.id_emb_, tau=tau)
    labels = [id_names[i] for i in cls]

    words, pos = scorer.candidate_words_, scorer.candidate_pos_
    summary = {
        "run_key": run_key,
        "field": score_field,
        "prediction_field": prediction_field,
        "num_scored": int(len(keys)),
        "num_skipped": int(len(samples) - len(keys)),
        "num_few_shot": len(few_ids),
        "num_train_negatives": int(result.train_negatives.size),
        "num_test_negatives": int(result.test_negatives.size),
        "id_labels": list(id_names),
        "score_quantiles": _quantiles(result.ood_scores),
    }
    results = {
        "method": "rap",
        "params": scorer.get_params(),
        "id_names": list(id_names),
        "num_candidates": len(words),
        "excluded_words": [words[i] for i in scorer.excluded_],
        "train_negative_words": [words[i] for i in result.train_negatives],
        "train_negative_pos": [pos[i] for i in result.train_negatives],
        "test_negative_words": [words[i] for i in result.test_negatives],
        "test_negative_pos": [pos[i] for i in result.test_negatives],
        "test_negative_sample_ids": [keys[i] for i in result.test_negative_sources],
        "few_shot_ids": few_ids,
        "processing_order": PROCESSING_ORDER,
        "processed_ids": keys,
        "failures": failures,
        "score_convention": SCORE_CONVENTION,
        **{k: summary[k] for k in ("num_scored", "num_skipped", "score_quantiles")},
    }
    runs.record_scores(
        samples, run_key, kind="rap", score_field=score_field,
        scores_by_key=dict(zip(keys, np.asarray(result.ood_scores, np.float64))),
        extra_writes=_prediction_writes(samples, prediction_field, keys, labels, confidences),
        overwrite=overwrite,
        prediction_field=prediction_field,
        label_field=label_field,
        id_labels=list(id_names),
        embeddings_field=embeddings_field,
        few_shot=few_info,
        num_few_shot=len(few_ids),
        test_time=bool(test_time),
        processing_order=PROCESSING_ORDER,
        clip=_encoder_info(encoder),
        lexicon=_lexicon_info(lex, cross_pos, parts_of_speech),
        rap=scorer.get_params(),
        score_convention=SCORE_CONVENTION,
        results=results,
    )
    return summary


def explain_sample(samples, run_key, sample_id, top=5, *, cache_dir=None, device="cpu"):
    """The ID labels and negative labels that best match one sample of a NegLabel/RAP run.

    Uses the run record (encoder, templates, ID classes, negatives) and the sample's
    stored CLIP embedding when the run used one (else its image is encoded again). The
    label prompts are embedded through the text cache, so only the first explanation
    of a run encodes the negatives.

    Args:
        samples: the dataset or a view of it.
        run_key: a ``neglabel`` or ``rap`` run of this package.
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
    """
    from ..clip.neglabel import explain
    from ..clip.text_cache import cached_text_embeddings
    from ..images import load_rgb

    info = runs.get_ood_run_info(samples, run_key)
    kind = info.get("kind")
    if kind not in ("neglabel", "rap"):
        raise OODInputError(
            f"run {run_key!r} is a {kind!r} run; explain_sample explains NegLabel or RAP runs "
            f"(existing ones: {runs.list_ood_runs(samples, 'neglabel') + runs.list_ood_runs(samples, 'rap')})"
        )
    try:
        sample = samples._dataset[sample_id]
    except (KeyError, ValueError, TypeError) as e:
        raise OODInputError(
            f"sample_id {sample_id!r} is not a sample of dataset {samples._dataset.name!r}; pass a sample's id"
        ) from e
    res = runs.load_ood_results(samples, run_key)
    params = res.params
    if kind == "neglabel":
        words, pos = list(res.negative_words), list(res.negative_pos)
        stages = [{"stage": "mined"}] * len(words)
        templates = {"noun": params["noun_template"], "adj": params["adj_template"]}
    else:
        words = list(res.train_negative_words) + list(res.test_negative_words)
        pos = list(res.train_negative_pos) + list(res.test_negative_pos)
        stages = [{"stage": "train"}] * len(res.train_negative_words) + [
            {"stage": "test", "added_by": sid} for sid in res.test_negative_sample_ids
        ]
        templates = dict(params["templates"])
    id_names = list(res.id_names)

    clip = info["clip"]
    encoder = _make_encoder(clip["model_name"], clip["pretrained"], clip["quick_gelu"], device, lazy=True)
    if encoder.weights_identity != clip["weights_identity"]:
        raise OODInputError(
            f"run {run_key!r} used CLIP weights {clip['weights_identity']!r} but {clip['pretrained']!r} is now "
            f"{encoder.weights_identity!r}; the weights file changed since the run: re-run the scorer"
        )
    id_emb = cached_text_embeddings(
        encoder, id_names, ["noun"] * len(id_names), {"noun": params["id_template"]}, cache_dir=cache_dir,
        progress=False,
    )
    neg_emb = cached_text_embeddings(encoder, words, pos, templates, cache_dir=cache_dir, progress=False)

    x = None
    field = info.get("embeddings_field")
    if field and sample.has_field(field) and sample[field] is not None:
        try:
            if _clip_embeddings_record(samples, field).get("weights_identity") == encoder.weights_identity:
                x = np.asarray(sample[field], dtype=np.float32)
        except OODInputError:
            x = None  # the embeddings run was deleted or replaced: encode the image
    if x is None:
        x = encoder.encode_images([load_rgb(sample.filepath)])[0]

    # Index strings as names keep duplicates (a word that is both noun and adjective) apart.
    out = explain(x, id_emb, id_names, neg_emb, [str(i) for i in range(len(words))], top=top)
    negatives = []
    for entry in out["negative_labels"]:
        i = int(entry["label"])
        negatives.append({"label": words[i], "pos": pos[i], "similarity": entry["similarity"], **stages[i]})
    prediction_field = info.get("prediction_field")
    prediction = sample[prediction_field] if prediction_field and sample.has_field(prediction_field) else None
    score_field = info.get("score_field")
    return {
        "sample_id": sample_id,
        "run_key": run_key,
        "kind": kind,
        "score": sample[score_field] if score_field and sample.has_field(score_field) else None,
        "prediction": None if prediction is None else {"label": prediction.label, "confidence": prediction.confidence},
        "score_convention": SCORE_CONVENTION,
        "id_labels": out["id_labels"],
        "negative_labels": negatives,
    }
