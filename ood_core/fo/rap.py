"""FiftyOne layer of RAP (few-shot CLIP negative labels with test-time updates).

Every computation goes through :class:`ood_core.clip.rap.RAPScorer` (``fit`` on the
few-shot images, ``score_samples`` in ascending sample-id order, ``predict``,
``run_record``); this module picks the few-shot set, writes the fields and records the
run (:mod:`.clip_common`).
"""

import numpy as np

from ..clip.rap_stream import DEFAULT_U_PRESET
from ..errors import OODInputError
from .items import SKIP_FAILURES
from .clip_common import (
    PROCESSING_ORDER,
    check_outputs,
    check_skip_failures,
    prepare_scorer_inputs,
    record_clip_scores,
    scores_summary,
)
from .clip_vocabulary import resolve_id_labels
from .view_descriptions import resolve_view


def compute_rap_scores(
    samples, score_field="rap_score", *, few_shot=None, k_per_class=None, id_labels=None, label_field=None,
    embeddings_field=None, model_name=None, pretrained=None, quick_gelu=None, device="cpu", word_list=None,
    wordnet_dir=None, vocabulary="paper", cross_pos=None, parts_of_speech=("noun", "adj"), num_crops=256,
    num_keep=32, crop_scale=(0.08, 1.0), crop_ranking="own_class", flip=True, lambdas=(0.2, -0.2, -1.0), eta=5.0,
    num_negatives=10000, test_time=True, u_preset=DEFAULT_U_PRESET, u1=None, u2=None, words_per_sample=4,
    retrieval="union", update_batch_size=256, rescore="online", tau=0.01, num_groups=100, seed=0,
    prediction_field="rap_prediction", run_key=None, batch_size=32, text_batch_size=256, skip_failures=SKIP_FAILURES,
    cache_dir=None, overwrite=False, progress=None,
):
    """Few-shot OOD scores with Retrieval-Augmented Prompts (RAP, Han et al.); higher = more OOD.

    **Train time**: every few-shot ID image is randomly cropped ``num_crops`` times
    (seed ``seed + i`` for the i-th image in sample-id order; ``flip``: each crop
    mirrored with probability 1/2); the ``num_keep`` crops most / least similar to the
    image's own class prompt (``crop_ranking="own_class"``, needs a Classification
    ``label_field``; ``"all_prompts"``: the best ID prompt) are kept, and every
    candidate word gets RAP's joint similarity; the top ``num_negatives`` become the
    train-time negative labels. **Test time** (``test_time=False``: the paper's
    train-time-only ablation): samples are streamed in **ascending sample id** order
    (recorded), in batches of ``update_batch_size``; a sample with ID score ``S`` in
    ``[u1, u2]`` retrieves its ``words_per_sample`` closest words (``retrieval="union"``:
    the top words, united with the negatives; ``"new_only"``: the closest words not yet
    negatives); ``rescore="online"`` scores each batch right after its own update (the
    paper), ``"final"`` scores all samples with the final negatives. See
    :mod:`ood_core.clip.rap_stream`. Score: ``1 - S(x)`` in [0, 1] (higher = more OOD);
    the predicted ID class goes to ``prediction_field``.

    Args:
        samples: a Dataset or view; every sample is scored (few-shot samples included).
        score_field: float field for the scores.
        few_shot: the few-shot ID images: a sample tag or a view of the same dataset.
        k_per_class: pick this many random samples per class of ``label_field`` (seeded)
            from ``few_shot`` (or ``samples``); without it every ``few_shot`` sample is used.
        id_labels, label_field: the ID classes (see :func:`compute_neglabel_scores`); a
            Classification ``label_field`` also picks the ``k_per_class`` samples, gives
            each its class and refuses few-shot samples of a non-ID class.
        embeddings_field, model_name, pretrained, quick_gelu, device: as in NegLabel.
        word_list, wordnet_dir, vocabulary, cross_pos, parts_of_speech: the vocabulary.
        num_crops, num_keep, crop_scale, crop_ranking, flip: crops (paper: 256, 32).
        lambdas, eta, num_negatives: joint similarity (paper: 0.2, -0.2, -1; 5; 10,000).
        test_time, u_preset, u1, u2, words_per_sample, retrieval, update_batch_size,
            rescore: the test-time procedure; ``u_preset`` names a row of the paper's
            Table 1 (:data:`ood_core.clip.rap_stream.U_PRESETS`), u1/u2 override it.
        tau, num_groups, seed, prediction_field, run_key, batch_size, text_batch_size,
            skip_failures, cache_dir, overwrite, progress: as in NegLabel.

    Returns:
        a dict: ``run_key``, ``field``, ``prediction_field``, ``num_scored``, ``num_skipped``,
        ``num_few_shot``, ``num_train_negatives``, ``num_test_negatives``, ``id_labels``,
        ``score_quantiles``.
    """
    from ..clip.rap import RAPScorer
    from .items import require_nonempty

    require_nonempty(samples)
    run_key = run_key or score_field
    check_outputs(samples, score_field, prediction_field, run_key, overwrite,
                  reads=[label_field, embeddings_field])
    id_names = resolve_id_labels(samples, id_labels, label_field, allow_both=True)
    scorer = RAPScorer(  # checks the settings before the few-shot images are read
        num_crops=num_crops, num_keep=num_keep, crop_scale=crop_scale, crop_ranking=crop_ranking, flip=flip,
        lambdas=lambdas, eta=eta, num_negatives=num_negatives, test_time=test_time, u_preset=u_preset, u1=u1,
        u2=u2, words_per_sample=words_per_sample, batch_size=update_batch_size, rescore=rescore,
        retrieval=retrieval, tau=tau, num_groups=num_groups, seed=seed,
    )
    few_ids, few_paths, few_labels, few_info = _few_shot_set(samples, few_shot, k_per_class, label_field, id_names,
                                                              seed)
    few_ids, few_paths, few_labels, few_failures = _readable_few_shot(few_ids, few_paths, few_labels, skip_failures)
    _check_few_shot_classes(scorer, id_names, few_ids, few_labels, label_field)  # before the slow steps
    inputs = prepare_scorer_inputs(
        samples, id_names, embeddings_field=embeddings_field, model_name=model_name, pretrained=pretrained,
        quick_gelu=quick_gelu, device=device,
        vocabulary=dict(word_list=word_list, wordnet_dir=wordnet_dir, cross_pos=cross_pos,
                        parts_of_speech=parts_of_speech, cache_dir=cache_dir, vocabulary=vocabulary),
        counts=dict(num_negatives=num_negatives, fraction=None, num_groups=num_groups, tau=tau,
                    caps_num_negatives=True),
        batch_size=batch_size, skip_failures=skip_failures, progress=progress,
    )
    scorer.fit(id_names, few_paths, inputs.encoder, inputs.lexicon, few_shot_labels=few_labels,
               cache_dir=cache_dir, progress=progress, image_batch_size=batch_size, text_batch_size=text_batch_size)
    result = scorer.score_samples(inputs.X, progress=progress)  # in ascending sample id order
    summary = scores_summary(
        samples, run_key, score_field, prediction_field, inputs, result.ood_scores, num_few_shot=len(few_ids),
        num_train_negatives=int(result.train_negatives.size), num_test_negatives=int(result.test_negatives.size))
    record_clip_scores(
        samples, run_key, kind="rap", inputs=inputs, scores=result.ood_scores, predictions=scorer.predict(inputs.X),
        score_field=score_field, prediction_field=prediction_field, label_field=label_field,
        embeddings_field=embeddings_field, overwrite=overwrite,
        results=dict(_results(scorer.run_record(result), inputs, few_ids, summary), few_shot_failures=few_failures),
        few_shot=few_info,
        num_few_shot=len(few_ids), test_time=bool(test_time), processing_order=PROCESSING_ORDER,
        rap=scorer.get_params(),
    )
    return summary


def _check_few_shot_classes(scorer, id_names, ids, labels, label_field):
    """The paper's crop ranking needs each few-shot image's class: unlabelled few-shot samples are named, with
    the field and the ways out (the estimator's own error spoke of ``few_shot_labels`` and a class 'None')."""
    missing = [sid for sid, y in zip(ids, labels or []) if y is None]
    if scorer.crop_ranking == "own_class" and labels is not None and missing:
        raise OODInputError(
            f"{len(missing)} of the {len(ids)} few-shot samples have no label in {label_field!r} (or the view hides "
            f"it; first: {missing[:5]}), and crop_ranking='own_class' (the paper's) ranks each few-shot image's crops "
            "by its own class prompt: label them with their in-distribution class, leave them out of the few-shot "
            "set, or pass crop_ranking='all_prompts'")
    scorer.class_indices(id_names, labels, len(ids))


def _readable_few_shot(ids, paths, labels, skip_failures):
    """With ``skip_failures``, the few-shot images that cannot be read are left out (and listed) instead of
    stopping the run, as for the scored images; ``(ids, paths, labels, failures)``."""
    from ..images import ImageLoadError, load_rgb

    check_skip_failures(skip_failures)
    if not skip_failures:
        return ids, paths, labels, []
    keep, failures = [], []
    for i, (sid, path) in enumerate(zip(ids, paths)):
        try:
            load_rgb(path)
            keep.append(i)
        except ImageLoadError as e:
            failures.append({"id": sid, "filepath": path, "error": e.skipped_message})
    if not keep:
        raise OODInputError(f"none of the {len(ids)} few-shot images could be read (first: {failures[0]['error']}); "
                            "tag readable in-distribution images as the few-shot set")
    pick = (lambda xs: None if xs is None else [xs[i] for i in keep])
    return pick(ids), pick(paths), pick(labels), failures


def _results(record, inputs, few_ids, summary):
    """The run results: the estimator's record, with sample ids instead of row indices."""
    sources = record.pop("test_negative_sources")
    return dict(
        record,
        test_negative_sample_ids=[inputs.keys[i] for i in sources],
        few_shot_ids=few_ids,
        processing_order=PROCESSING_ORDER,
        processed_ids=inputs.keys,
        failures=inputs.failures,
        **{k: summary[k] for k in ("num_scored", "num_skipped", "score_quantiles")},
    )


def _few_shot_set(samples, few_shot, k_per_class, label_field, id_names, seed):
    """``(ids, filepaths, labels, description)`` of the few-shot ID images, in sample id order.

    ``labels``: their classes in a Classification ``label_field``, else ``None``.
    """
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
        resolve_view(samples, few_shot, "few_shot", "few-shot in-distribution images")
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
    chosen_labels = None if labels is None else [labels[i] for i in chosen]
    missing = [] if chosen_labels is None else _classes_without_images(id_names, chosen_labels, label_field)
    if missing:  # (without labels, which classes the images show is unknown)
        description = dict(description, classes_without_images=missing)
    return [ids[i] for i in chosen], [paths[i] for i in chosen], chosen_labels, description


def _classes_without_images(id_names, labels, label_field):
    """The ID classes no few-shot image is labelled with, with a warning: RAP then knows them only by their
    prompt, and the run would not say so (a class with fewer than ``k_per_class`` images is warned about by
    :func:`~ood_core.clip.rap.select_few_shot`)."""
    import warnings

    from ..clip.lexicon import normalize_word

    present = {normalize_word(y) for y in labels if y is not None}
    missing = [n for n in id_names if normalize_word(n) not in present]
    if missing:
        warnings.warn(
            f"{len(missing)} of the {len(id_names)} ID classes have no few-shot image labelled with them in "
            f"{label_field!r}: {missing[:10]!r}; RAP's train-time negatives then know those classes only by their "
            "prompt. Label a few images of each class (or tag them as few-shot images), or leave those classes out "
            "of id_labels. The run records them as few_shot['classes_without_images'].", UserWarning, stacklevel=4)
    return missing
