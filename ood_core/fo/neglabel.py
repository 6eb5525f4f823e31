"""FiftyOne layer of NegLabel (zero-shot CLIP negative labels): fit the estimator, score, record.

Every computation goes through :class:`ood_core.clip.neglabel.NegLabelScorer`
(``fit`` / ``score_samples`` / ``predict`` / ``run_record``); this module only reads
the view, writes the fields and records the run (:mod:`.clip_common`).
"""

from .items import SKIP_FAILURES
from .clip_common import (
    check_outputs,
    prepare_scorer_inputs,
    record_clip_scores,
    scores_summary,
)
from .clip_vocabulary import resolve_id_labels


def compute_neglabel_scores(
    samples, score_field="neglabel_score", *, id_labels=None, label_field=None, embeddings_field=None,
    model_name=None, pretrained=None, quick_gelu=None, device="cpu", word_list=None, wordnet_dir=None,
    vocabulary="paper", cross_pos=None, parts_of_speech=("noun", "adj"), num_negatives=None, fraction=None,
    percentile=95.0, remove_id_names=False, remainder="last", tau=0.01, num_groups=100, seed=0,
    prediction_field="neglabel_prediction", run_key=None, batch_size=32, text_batch_size=256,
    skip_failures=SKIP_FAILURES, cache_dir=None, overwrite=False, progress=None,
):
    """Zero-shot OOD scores with NegLabel (Jiang et al., ICLR 2024); higher = more OOD.

    The in-distribution (ID) classes are embedded with the prompt ``"the nice {}"``;
    the candidate vocabulary (WordNet nouns and adjectives, or ``word_list``) with
    ``"the nice {}"`` / ``"This is a {} photo"``. The candidates least similar to the
    ID labels (``percentile`` of their similarities) become the negative labels, and
    each image gets ``1 - S(x)`` with ``S`` NegLabel's grouped ID score (see
    :mod:`ood_core.clip.neglabel`). The predicted ID class (zero-shot, argmax over the ID
    prompts; confidence = softmax over ``cos/tau``) is stored too. The defaults follow the
    official NegLabel protocol (recorded as ``protocol`` in the run).

    Args:
        samples: a Dataset or view; every sample is scored.
        score_field: float field for ``1 - S(x)`` in [0, 1] (higher = more OOD).
        id_labels, label_field: the ID class names (a list), or a Classification (or
            Detections) field whose classes are the ID classes (``dataset.classes``
            if set, else its distinct labels over the whole dataset).
        embeddings_field: reuse CLIP image embeddings stored by
            :func:`compute_clip_embeddings` (their encoder must be the one used here);
            ``None`` encodes the images now. Samples without an embedding are skipped.
        model_name, pretrained, quick_gelu, device: the CLIP encoder (see
            :func:`compute_clip_embeddings`). ``None`` = the embeddings run's settings
            when ``embeddings_field`` is given, else ``"ViT-B-16"`` / ``"openai"``.
        word_list: a file of candidate words (one per line, optional ``<TAB>noun|adj``), not WordNet.
        wordnet_dir: WordNet location (else ``$FIFTYONE_OOD_WORDNET_DIR``, NLTK's data
            path, Debian's ``/usr/share/wordnet``); nothing is ever downloaded.
        vocabulary: ``"paper"`` (the official lists' rule: 82,617 WordNet candidates,
            12,391 negatives) or ``"all"`` (all of WordNet, about 20,890 negatives).
        cross_pos: words both noun and adjective: ``"keep_both"``, ``"noun"``, ``"adj"``;
            ``None`` = the vocabulary's rule (see :mod:`ood_core.clip.lexicon`).
        parts_of_speech: candidate parts of speech, default nouns and adjectives.
        num_negatives: number of negative labels M (the paper's usual 10,000), or ...
        fraction: ... the share of each part of speech to keep (default 0.15).
        percentile: mining statistic over the ID-label similarities (default 95).
        remove_id_names: drop candidates that name an ID class (official: kept): equal up to case, to one of
            its alternatives ("T-shirt/top": "t-shirt", "top") or to its singular ("Dogs": "dog").
        remainder: ``"last"`` drops the ``M mod num_groups`` most ID-like mined words
            (official code); ``"random"`` leaves a random remainder out of the groups.
        tau, num_groups, seed: softmax temperature (0.01), groups averaged (100; at most M), shuffle seed.
        prediction_field: Classification field for the predicted ID class, or ``None``.
        run_key: key of the recorded run (default ``score_field``).
        batch_size, text_batch_size: images / prompts per forward pass.
        skip_failures: unreadable images are not scored, warned about and listed (default); False: raise.
        cache_dir: text embeddings and WordNet copy (default ``$FIFTYONE_OOD_CACHE_DIR``, ``~/.cache/fiftyone-ood``).
        overwrite: allow replacing existing fields / run of those names.
        progress: ``None``/``True`` tqdm bars, ``False``, or ``f(done, total)``, called
            per phase (image encoding, then candidate prompts on a text-cache miss).

    Returns:
        a dict: ``run_key``, ``field``, ``prediction_field``, ``num_scored``, ``num_skipped``,
        ``num_negatives``, ``id_labels``, ``excluded_words``, ``score_quantiles``.

    Raises:
        OODInputError: bad arguments or fields, no/duplicate ID classes, an empty
            vocabulary, stored embeddings of another encoder or dimension;
        ResourceNotFoundError (no WordNet, no ``word_list``); WeightsNotFoundError;
        UnsafeCheckpointError (a weights file that needs pickle code execution).
    """
    from ..clip.neglabel import NegLabelScorer
    from .items import require_nonempty

    require_nonempty(samples)
    run_key = run_key or score_field
    check_outputs(samples, score_field, prediction_field, run_key, overwrite,
                  reads=[label_field, embeddings_field])
    id_names = resolve_id_labels(samples, id_labels, label_field)
    scorer = NegLabelScorer(tau=tau, num_groups=num_groups, seed=seed, percentile=percentile, fraction=fraction,
                            num_negatives=num_negatives, remove_id_names=remove_id_names, remainder=remainder)
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
    scores = scorer.score_samples(inputs.X)
    summary = scores_summary(samples, run_key, score_field, prediction_field, inputs, scores,
                             num_negatives=len(scorer.negative_words_), excluded_words=list(scorer.excluded_words_))
    results = dict(scorer.run_record(), failures=inputs.failures,
                   **{k: summary[k] for k in ("num_scored", "num_skipped", "score_quantiles")})
    record_clip_scores(
        samples, run_key, kind="neglabel", inputs=inputs, scores=scores, predictions=scorer.predict(inputs.X),
        score_field=score_field, prediction_field=prediction_field, label_field=label_field,
        embeddings_field=embeddings_field, overwrite=overwrite, results=results, neglabel=scorer.get_params(),
        protocol=neglabel_protocol(inputs.lexicon, scorer),
    )
    return summary


def neglabel_protocol(lexicon, scorer):
    """Which NegLabel protocol a run followed, and how many negatives it used."""
    official = (lexicon.vocabulary == "paper" and scorer.fraction is None and scorer.num_negatives is None
                and not scorer.remove_id_names and scorer.remainder == "last")
    return {
        "name": "paper" if official else "custom",
        "vocabulary": lexicon.vocabulary,
        "id_names_in_candidates": "removed" if scorer.remove_id_names else "kept",
        "remainder": scorer.remainder,
        "num_mined": scorer.num_mined_,
        "num_negatives": len(scorer.negative_words_),
    }
