"""Inputs of the CLIP scorers' FiftyOne layer: the ID classes and the candidate vocabulary."""

import os
import warnings

import numpy as np

from ..errors import OODInputError
from ..validation import is_int

# Lexicons already read in this process, keyed by their source (WordNet takes ~5 s).
_LEXICON_MEMO = {}
_LEXICON_MEMO_SIZE = 2


def resolve_id_labels(samples, id_labels, label_field, *, allow_both=False):
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
        if not isinstance(id_labels, (list, tuple, np.ndarray)):
            raise OODInputError(f"id_labels must be a list of class names; got a {type(id_labels).__name__} "
                                f"({id_labels!r}); e.g. id_labels=['dog', 'cat']")
        names = list(id_labels)
        if not names:
            raise OODInputError(
                "id_labels is empty: NegLabel and RAP need at least one in-distribution class name; pass "
                "them (e.g. id_labels=dataset.distinct('ground_truth.label')) or label_field='<field>'"
            )
    try:
        names = check_id_names(names)  # empty, duplicates, non-strings, "-": OODInputError
    except OODInputError as e:
        if id_labels is not None:
            raise
        where = "dataset.classes" if samples._dataset.classes.get(label_field) else "its labels"
        raise OODInputError(
            f"the classes of label field {label_field!r} ({where}) cannot be the in-distribution classes: {e} "
            "Fix those labels (or dataset.classes), or pass the class names yourself: id_labels=[...]") from e
    if len(names) == 1:
        warnings.warn(
            f"only one in-distribution class ({names[0]!r}): the score then measures how much better an "
            "image matches that one label than the negative labels, and every prediction is that class "
            "with confidence 1. Give all the classes of the dataset if it has more.",
            UserWarning,
            stacklevel=3,
        )
    return names


def _lexicon_key(word_list, wordnet_dir, cross_pos, cache_dir, vocabulary):
    if word_list is not None:
        if not isinstance(word_list, (str, os.PathLike)):
            raise OODInputError(f"word_list must be the path of a text file (one word per line); got a "
                                f"{type(word_list).__name__}")
        if not os.fspath(word_list).strip():  # else read as the current folder: "word_list file '.' does not exist"
            raise OODInputError(f"word_list={word_list!r} is not a file path; pass the path of a text file (one word "
                                "per line), or word_list=None for WordNet")
        if os.path.isdir(os.path.expanduser(os.fspath(word_list))):
            raise OODInputError(f"word_list {os.fspath(word_list)!r} is a folder; pass a text file with one word "
                                "per line")
        path = os.path.abspath(os.path.expanduser(os.fspath(word_list)))
        stat = os.stat(path) if os.path.isfile(path) else None
        return ("word_list", path, stat and (stat.st_size, stat.st_mtime_ns), cross_pos)
    from ..clip.lexicon import ENV_WORDNET_DIR

    return ("wordnet", vocabulary, wordnet_dir, os.environ.get(ENV_WORDNET_DIR), cross_pos, cache_dir)


def load_vocabulary(word_list, wordnet_dir, cross_pos, parts_of_speech, cache_dir, vocabulary="paper"):
    """Candidate vocabulary (memoised per process), restricted to ``parts_of_speech``.

    ``vocabulary`` (WordNet only): ``"paper"`` (NegLabel's protocol) or ``"all"``; see
    :mod:`ood_core.clip.lexicon`.
    """
    from ..clip.lexicon import VALID_POS, Lexicon, check_vocabulary_name, load_lexicon
    from ..clip.text_cache import check_folder_arg

    check_vocabulary_name(vocabulary)
    check_folder_arg(wordnet_dir, "wordnet_dir", "holding WordNet (corpora/wordnet), or None to look for it")
    check_folder_arg(cache_dir, "cache_dir", "for cached text embeddings (or None for the package's cache)")
    pos_wanted = [parts_of_speech] if isinstance(parts_of_speech, str) else list(parts_of_speech or [])
    bad = [p for p in pos_wanted if p not in VALID_POS]
    if not pos_wanted or bad:
        raise OODInputError(
            f"parts_of_speech must be a non-empty subset of {list(VALID_POS)}; got {parts_of_speech!r}"
        )
    key = _lexicon_key(word_list, wordnet_dir, cross_pos, cache_dir, vocabulary)
    lex = _LEXICON_MEMO.get(key)
    if lex is None:
        lex = load_lexicon(word_list=word_list, wordnet_dir=wordnet_dir, cross_pos=cross_pos, cache_dir=cache_dir,
                           vocabulary=vocabulary)
        if len(_LEXICON_MEMO) >= _LEXICON_MEMO_SIZE:
            _LEXICON_MEMO.pop(next(iter(_LEXICON_MEMO)))
        _LEXICON_MEMO[key] = lex
    if set(pos_wanted) != set(VALID_POS):
        pairs = [(w, p) for w, p in zip(lex.words, lex.pos) if p in pos_wanted]
        lex = Lexicon([w for w, _ in pairs], [p for _, p in pairs], source=lex.source, vocabulary=lex.vocabulary)
    return lex


def check_vocabulary(lex, id_names, *, removes_id_names=True):
    """Refuse a vocabulary that holds nothing but ID class names.

    The scorers remove ID class names from the candidates themselves, after the
    candidates were embedded: the text cache key then depends on the vocabulary only,
    not on the ID classes, so changing the ID classes reuses the cached embeddings.
    """
    if len(lex.without(id_names) if removes_id_names else lex) == 0:
        raise OODInputError(
            f"the candidate vocabulary ({lex.source}, {len(lex)} words) is empty once the ID class names are "
            "removed (an ID class can never be a negative label); use WordNet (word_list=None) or a word_list "
            "with words unrelated to the ID classes"
        )


def check_num_negatives(num_negatives, num_candidates, removes_id_names, num_minable=None):
    """NegLabel and AdaNeg mine at most every candidate word: refuse a larger ``num_negatives``.

    ``num_minable``: the candidates that name no ID class (the others count in the pool the official protocol
    keeps, but are never mined), when known.
    """
    if num_negatives > num_candidates:
        raise OODInputError(
            f"num_negatives={num_negatives} is larger than the {num_candidates:,} candidate words of the "
            f"vocabulary{' (ID class names removed)' if removes_id_names else ''}: lower it to at most "
            f"{num_candidates:,}, leave it out (the paper's 15% per part of speech) or use a larger word list")
    if num_minable is not None and num_negatives > num_minable:
        raise OODInputError(
            f"num_negatives={num_negatives} is larger than the {num_minable:,} candidate words that name no ID "
            f"class ({num_candidates - num_minable:,} of the {num_candidates:,} name one, and a word naming an ID "
            f"class is never its negative label): lower it to at most {num_minable:,}, leave it out (the paper's "
            "15% per part of speech) or use a larger word list")


def check_counts_early(lex, id_names, *, num_negatives, fraction, num_groups, tau, removes_id_names=True,
                       caps_num_negatives=False):
    """Refuse impossible negative-label counts before the model loads and the images are encoded.

    ``fraction`` ``None`` with ``num_negatives`` ``None`` means NegLabel's 15% per part
    of speech; RAP passes ``fraction=None`` and its ``num_negatives``, capped at the
    vocabulary (``caps_num_negatives``); NegLabel and AdaNeg mine at most every candidate word, so a larger
    ``num_negatives`` is refused. The numpy layer checks the same again on the real arrays.
    """
    real = isinstance(tau, (int, float, np.integer, np.floating)) and not isinstance(tau, (bool, np.bool_))
    if not (real and np.isfinite(tau) and tau > 0):  # np.float32(0.01) is a number; True is not
        raise OODInputError(f"tau must be a positive number (NegLabel and RAP use 0.01); got {tau!r}")
    if not is_int(num_groups) or num_groups < 1:
        raise OODInputError(f"num_groups must be a positive integer (paper: 100); got {num_groups!r}")
    remaining = lex.without(id_names) if removes_id_names else lex
    # words naming an ID class are never mined, even where the pool keeps them (the official M counts them)
    minable = lex.without(id_names)
    if num_negatives is not None:
        if not is_int(num_negatives) or num_negatives < 1:
            raise OODInputError(f"num_negatives must be a positive integer; got {num_negatives!r}")
        if not caps_num_negatives:
            check_num_negatives(num_negatives, len(remaining), removes_id_names, len(minable))
        expected = min(int(num_negatives), len(minable))
        how = f"num_negatives={num_negatives} with {len(minable)} candidate words"
    else:
        share = 0.15 if fraction is None else float(fraction)
        if not 0 < share <= 1:
            raise OODInputError(f"fraction must be in (0, 1]; got {fraction!r}")
        expected = sum(min(int(np.floor(share * remaining.count(p))), minable.count(p)) for p in ("noun", "adj"))
        how = f"{share:g} of {remaining.count('noun')} nouns and {remaining.count('adj')} adjectives"
    if expected < num_groups:
        raise OODInputError(
            f"num_groups={num_groups} is larger than the number of negative labels this run would use "
            f"({expected}: {how}); every group needs at least one negative: lower num_groups, or use more "
            "negatives (num_negatives, fraction, a larger word_list or WordNet)"
        )


def lexicon_info(lex, cross_pos, parts_of_speech):
    return {
        "source": lex.source,
        "vocabulary": lex.vocabulary,
        "num_words": len(lex),
        "num_nouns": lex.count("noun"),
        "num_adjectives": lex.count("adj"),
        "cross_pos": cross_pos,
        "parts_of_speech": [parts_of_speech] if isinstance(parts_of_speech, str) else list(parts_of_speech),
    }


