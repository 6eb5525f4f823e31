"""FiftyOne layer of AdaNeg (NegLabel + a memory of test images): fit, stream, record.

Every computation goes through :class:`ood_core.clip.adaneg.AdaNegScorer` (``fit`` /
``score_samples`` in ascending sample-id order / ``predict`` / ``run_record``); this
module only reads the view, writes the fields and records the run (:mod:`.clip_common`).
"""

from .items import SKIP_FAILURES
from .clip_common import (
    PROCESSING_ORDER,
    check_outputs,
    prepare_scorer_inputs,
    record_clip_scores,
    scores_summary,
)
from .clip_vocabulary import resolve_id_labels
from .neglabel import neglabel_protocol


def compute_adaneg_scores(
    samples, score_field="adaneg_score", *, id_labels=None, label_field=None, embeddings_field=None,
    model_name=None, pretrained=None, quick_gelu=None, device="cpu", word_list=None, wordnet_dir=None,
    vocabulary="paper", cross_pos=None, parts_of_speech=("noun", "adj"), num_negatives=None, fraction=None,
    percentile=95.0, remove_id_names=False, remainder="last", memory_size=10, gap=0.25, weight=1.0,
    sample_tau=0.01, tau=0.01, num_groups=100, seed=0, prediction_field="adaneg_prediction", run_key=None,
    batch_size=32, text_batch_size=256, skip_failures=SKIP_FAILURES, cache_dir=None, overwrite=False, progress=None,
):
    """Zero-shot OOD scores with AdaNeg (Zhang & Zhang, NeurIPS 2024); higher = more OOD.

    NegLabel's negatives are mined exactly as :func:`compute_neglabel_scores` does (same
    parameters, same paper-protocol defaults). The samples are then streamed in
    **ascending sample id** order (recorded): each is scored against image proxies built
    from a memory of earlier samples NegLabel judged confidently OOD or ID (at most
    ``memory_size`` per label), then, if confident, cached. The score is
    ``1 - (S_nl + weight * (S_ta + S_sa) / 2) / (1 + weight)`` in [0, 1]; see
    :mod:`ood_core.clip.adaneg` for the formulas and the choices the paper leaves open.
    Scores depend on the order and on the other samples of the view: score the whole
    test set at once.

    Args:
        samples: a Dataset or view; every sample is scored.
        score_field: float field for the scores.
        id_labels, label_field, embeddings_field, model_name, pretrained, quick_gelu, device,
            word_list, wordnet_dir, vocabulary, cross_pos, parts_of_speech, num_negatives,
            fraction, percentile, remove_id_names, remainder, tau, num_groups, seed:
            as in :func:`compute_neglabel_scores`.
        memory_size: features kept per label (L).
        gap: cache a sample when NegLabel's ``S <= 0.5 - gap`` (OOD) or ``>= 0.5 + gap`` (ID).
        weight: weight of the adaptive scores (0 = plain NegLabel).
        sample_tau: temperature of the sample-adaptive weights within a memory row.
        prediction_field, run_key, batch_size, text_batch_size, skip_failures, cache_dir,
            overwrite, progress: as in :func:`compute_neglabel_scores`.

    Returns:
        a dict: ``run_key``, ``field``, ``prediction_field``, ``num_scored``, ``num_skipped``,
        ``num_negatives``, ``num_cached_ood``, ``num_cached_id``, ``id_labels``,
        ``score_quantiles``.
    """
    from ..clip.adaneg import AdaNegScorer
    from .items import require_nonempty

    require_nonempty(samples)
    run_key = run_key or score_field
    check_outputs(samples, score_field, prediction_field, run_key, overwrite,
                  reads=[label_field, embeddings_field])
    id_names = resolve_id_labels(samples, id_labels, label_field)
    scorer = AdaNegScorer(
        memory_size=memory_size, gap=gap, weight=weight, sample_tau=sample_tau, tau=tau, num_groups=num_groups,
        seed=seed, percentile=percentile, fraction=fraction, num_negatives=num_negatives,
        remove_id_names=remove_id_names, remainder=remainder,
    )
    inputs = prepare_scorer_inputs(
        samples, id_names, embeddings_field=embeddings_field, model_name=model_name, pretrained=pretrained,
        quick_gelu=quick_gelu, device=device,
        vocabulary=dict(word_list=word_list, wordnet_dir=wordnet_dir, cross_pos=cross_pos,
                        parts_of_speech=parts_of_speech, cache_dir=cache_dir, vocabulary=vocabulary),
        counts=dict(num_negatives=num_negatives, fraction=fraction, num_groups=num_groups, tau=tau,
                    removes_id_names=remove_id_names),
        batch_size=batch_size, skip_failures=skip_failures, progress=progress,
    )
    scorer.fit(id_names, inputs.encoder, inputs.lexicon, cache_dir=cache_dir, progress=progress,
               text_batch_size=text_batch_size)
    result = scorer.score_samples(inputs.X, progress=progress)  # in ascending sample id order
    record = scorer.run_record(result)
    summary = scores_summary(
        samples, run_key, score_field, prediction_field, inputs, result.ood_scores,
        num_negatives=record["num_negatives"], num_cached_ood=record["num_cached_ood"],
        num_cached_id=record["num_cached_id"])
    record["memory_sample_ids"] = [inputs.keys[i] for i in record.pop("memory_samples")]
    results = dict(record, processing_order=PROCESSING_ORDER, processed_ids=inputs.keys, failures=inputs.failures,
                   **{k: summary[k] for k in ("num_scored", "num_skipped", "score_quantiles")})
    record_clip_scores(
        samples, run_key, kind="adaneg", inputs=inputs, scores=result.ood_scores,
        predictions=scorer.predict(inputs.X), score_field=score_field, prediction_field=prediction_field,
        label_field=label_field, embeddings_field=embeddings_field, overwrite=overwrite, results=results,
        adaneg=scorer.get_params(), processing_order=PROCESSING_ORDER,
        protocol=neglabel_protocol(inputs.lexicon, scorer.neglabel_),
    )
    return summary
