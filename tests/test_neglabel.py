"""NegLabel on synthetic embeddings whose right answers are known."""

import json

import numpy as np
import pytest

from ood_core.clip.lexicon import Lexicon
from ood_core.clip.neglabel import (
    NegLabelScorer,
    candidate_id_similarity,
    explain,
    group_negatives,
    mine_negatives,
    neglabel_id_score,
    neglabel_ood_score,
    neglabel_scores,
    predict_id_class,
)
from ood_core.errors import NotFittedError, OODInputError

D = 16


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def basis(i, dim=D):
    e = np.zeros(dim)
    e[i] = 1.0
    return e


def random_unit(n, dim, seed):
    return unit(np.random.default_rng(seed).normal(size=(n, dim))).astype(np.float32)


def hand_score(img, ids, neg, groups, tau):
    """S(x) straight from the formula, group by group, with plain exp in float64."""
    img, ids, neg = unit(img), unit(ids), unit(neg)
    out = np.zeros(len(img))
    for n, x in enumerate(img):
        pos = np.exp(ids @ x / tau).sum()
        s = [pos / (pos + np.exp(neg[g] @ x / tau).sum()) for g in groups]
        out[n] = np.mean(s)
    return out


# ---------------------------------------------------------------------- the formula
def test_grouped_score_equals_hand_computation():
    img, ids, neg = random_unit(6, 8, 1), random_unit(3, 8, 2), random_unit(11, 8, 3)
    tau, g = 0.05, 3
    groups = group_negatives(11, g, seed=7)
    expected = hand_score(img, ids, neg, groups, tau)
    got = neglabel_id_score(img, ids, neg, tau=tau, num_groups=g, seed=7)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        neglabel_ood_score(img, ids, neg, tau=tau, num_groups=g, seed=7), 1 - expected, atol=1e-6
    )
    # One group with every negative: the ungrouped formula.
    one = hand_score(img, ids, neg, [np.arange(11)], tau)
    np.testing.assert_allclose(neglabel_id_score(img, ids, neg, tau=tau, num_groups=1), one, rtol=1e-5)


def test_group_negatives_partition_and_seed():
    g = group_negatives(103, 10, seed=0)
    assert g.shape == (10, 10)
    assert np.unique(g).size == 100 and g.min() >= 0 and g.max() < 103  # 3 dropped
    np.testing.assert_array_equal(g, group_negatives(103, 10, seed=0))
    assert not np.array_equal(g, group_negatives(103, 10, seed=1))
    with pytest.raises(OODInputError, match="larger than the number of negative"):
        group_negatives(5, 10)
    for seed in ("a", -1, 1.5):  # raw numpy errors before
        with pytest.raises(OODInputError, match="seed=.* is not valid"):
            group_negatives(103, 10, seed=seed)


def test_stable_at_default_tau_and_batch_invariant():
    # tau = 0.01 makes cos/tau up to 100: exp would overflow float32 without log-sum-exp.
    img, ids, neg = random_unit(50, 32, 4), random_unit(7, 32, 5), random_unit(300, 32, 6)
    ids[0] = img[0]  # cos = 1 -> logit 100
    id_s, ood_s = neglabel_scores(img, ids, neg, num_groups=10)
    assert np.all(np.isfinite(id_s)) and np.all((id_s >= 0) & (id_s <= 1))
    np.testing.assert_allclose(id_s + ood_s, 1.0, atol=1e-12)
    np.testing.assert_allclose(
        neglabel_ood_score(img, ids, neg, num_groups=10, batch_size=1), ood_s, rtol=1e-5, atol=1e-6
    )
    groups = group_negatives(300, 10, seed=0)
    np.testing.assert_allclose(id_s, hand_score(img, ids, neg, groups, 0.01), rtol=1e-4, atol=1e-6)
    # Seeded determinism; another seed regroups (scores change slightly but not wildly).
    np.testing.assert_array_equal(ood_s, neglabel_ood_score(img, ids, neg, num_groups=10, seed=0))
    other = neglabel_ood_score(img, ids, neg, num_groups=10, seed=3)
    assert not np.array_equal(other, ood_s)


def test_inputs_are_normalised():
    img, ids, neg = random_unit(5, 8, 1), random_unit(2, 8, 2), random_unit(10, 8, 3)
    a = neglabel_ood_score(img, ids, neg, num_groups=2)
    b = neglabel_ood_score(img * 3.0, ids * 0.5, neg * 7.0, num_groups=2)
    np.testing.assert_allclose(a, b, rtol=1e-5)


# ---------------------------------------------------------------------- known answers
def synthetic_vocab():
    """ID labels on axes 0-2; candidates: 6 near the ID axes, 10 far (axes 4-13)."""
    ids = np.stack([basis(0), basis(1), basis(2)])
    near = [unit(basis(i % 3) + 0.3 * basis(3 + i % 2)) for i in range(6)]
    far = [unit(basis(4 + i) + 0.1 * basis(15)) for i in range(10)]
    cand = np.stack(near + far).astype(np.float32)
    words = [f"near{i}" for i in range(6)] + [f"far{i}" for i in range(10)]
    pos = ["noun", "adj"] * 3 + ["noun"] * 6 + ["adj"] * 4
    return ids.astype(np.float32), cand, words, pos


def test_mining_keeps_least_similar_per_pos():
    ids, cand, words, pos = synthetic_vocab()
    sims = candidate_id_similarity(ids, cand, percentile=95)
    np.testing.assert_allclose(sims, np.percentile(unit(cand) @ unit(ids).T, 95, axis=1), rtol=1e-5)
    # 9 nouns (3 near + 6 far), 7 adjectives (3 near + 4 far); fraction 0.5 -> 4 + 3.
    idx = mine_negatives(ids, cand, pos, fraction=0.5)
    chosen = [words[i] for i in idx]
    assert len(idx) == 7 and all(w.startswith("far") for w in chosen)
    assert sum(pos[i] == "noun" for i in idx) == 4 and sum(pos[i] == "adj" for i in idx) == 3
    assert np.all(np.diff(sims[idx]) >= 0)  # least similar first
    # Default fraction 0.15: floor(0.15*9) = 1 noun, floor(0.15*7) = 1 adjective.
    assert len(mine_negatives(ids, cand, pos)) == 2
    # num_negatives is split by POS share: 10 of (9, 7) -> 6 nouns (5.6) + 4 adjectives (4.4).
    idx = mine_negatives(ids, cand, pos, num_negatives=10)
    assert sum(pos[i] == "noun" for i in idx) == 6 and sum(pos[i] == "adj" for i in idx) == 4
    assert all(words[i].startswith("far") for i in idx)
    with pytest.raises(OODInputError, match="either fraction or num_negatives"):
        mine_negatives(ids, cand, pos, fraction=0.2, num_negatives=3)
    with pytest.raises(OODInputError, match="num_negatives"):
        mine_negatives(ids, cand, pos, num_negatives=17)
    with pytest.raises(OODInputError, match="one POS tag per candidate"):
        mine_negatives(ids, cand, pos[:-1])


def test_images_near_id_score_low_and_near_negatives_high():
    ids, cand, words, pos = synthetic_vocab()
    neg = cand[mine_negatives(ids, cand, pos, num_negatives=10)]
    rng = np.random.default_rng(0)
    near_id = np.stack([unit(basis(k % 3) + 0.2 * rng.normal(size=D)) for k in range(9)])
    near_neg = np.stack([unit(basis(4 + k) + 0.2 * rng.normal(size=D)) for k in range(9)])
    ood = neglabel_ood_score(np.vstack([near_id, near_neg]), ids, neg, num_groups=1)
    assert ood[:9].max() < 0.05 and ood[9:].min() > 0.95
    # Grouping dilutes a match with a single negative word: only the group holding it
    # votes OOD, so the score is about 1/num_groups (real OOD images match many words).
    on_axis = unit(basis(5) + 0.3 * basis(0))[None]  # matches far1; ID beats the others
    assert neglabel_ood_score(on_axis, ids, neg, num_groups=5)[0] == pytest.approx(0.2, abs=1e-3)
    many = unit(np.sum([basis(4 + k) for k in range(10)], axis=0))[None]
    assert neglabel_ood_score(many, ids, neg, num_groups=5)[0] > 0.95
    cls, conf = predict_id_class(near_id, ids)
    np.testing.assert_array_equal(cls, np.arange(9) % 3)
    logits = unit(near_id) @ unit(ids).T / 0.01
    soft = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(conf, (soft / soft.sum(1, keepdims=True)).max(1), rtol=1e-6)


def test_explain_ranks_labels():
    ids, cand, words, pos = synthetic_vocab()
    x = unit(basis(1) + 0.5 * basis(6))
    out = explain(x, ids, ["cat", "dog", "car"], cand[6:], words[6:], top=2)
    assert out["id_labels"][0]["label"] == "dog"
    sims = [d["similarity"] for d in out["id_labels"] + out["negative_labels"][:0]]
    assert sims == sorted(sims, reverse=True)
    assert out["negative_labels"][0]["label"] == "far2"  # axis 6
    assert out["id_labels"][0]["similarity"] == pytest.approx(float(unit(x) @ basis(1)), rel=1e-5)
    assert len(out["negative_labels"]) == 2
    json.dumps(out)
    with pytest.raises(OODInputError, match="one to one"):
        explain(x, ids, ["cat", "dog"], cand[6:], words[6:])


# ---------------------------------------------------------------------- bad inputs
def test_bad_inputs():
    ids, cand, words, pos = synthetic_vocab()
    neg = cand[10:]
    img = ids[:2]
    with pytest.raises(OODInputError, match="dimension"):
        neglabel_ood_score(np.ones((2, D + 1)), ids, neg, num_groups=2)
    with pytest.raises(OODInputError, match="dimension"):
        mine_negatives(ids, np.ones((3, D + 1)), ["noun"] * 3)
    with pytest.raises(OODInputError, match="all-zero"):
        neglabel_ood_score(np.zeros((1, D)), ids, neg, num_groups=2)
    with pytest.raises(OODInputError, match="NaN"):
        neglabel_ood_score(np.full((1, D), np.nan), ids, neg, num_groups=2)
    with pytest.raises(OODInputError, match="2-D"):
        neglabel_ood_score(np.ones(D), ids, neg, num_groups=2)
    with pytest.raises(OODInputError, match="at least 1"):
        neglabel_ood_score(img, np.zeros((0, D)), neg, num_groups=2)
    with pytest.raises(OODInputError, match="tau"):
        neglabel_ood_score(img, ids, neg, tau=0, num_groups=2)


def test_scorer_end_to_end_and_id_label_rules():
    ids, cand, words, pos = synthetic_vocab()
    names = ["cat", "dog", "car"]
    sc = NegLabelScorer(num_negatives=6, num_groups=3, remove_id_names=True)
    with pytest.raises(NotFittedError):
        sc.score_samples(ids)
    # remove_id_names: an ID name that is also a candidate word is removed before mining.
    words_with_id = words[:-1] + ["Dog"]
    # The official default keeps it among the candidates.
    kept = NegLabelScorer(num_negatives=6, num_groups=3).fit_embeddings(names, ids, words_with_id, pos, cand)
    assert kept.excluded_words_ == [] and kept.num_candidates_ == len(words)
    sc.fit_embeddings(names, ids, words_with_id, pos, cand)
    assert "Dog" in sc.excluded_words_ and "Dog" not in sc.negative_words_
    assert sc.num_candidates_ == len(words) - 1 and len(sc.negative_words_) == 6
    assert all(w.startswith("far") for w in sc.negative_words_)
    # Near ID class "car"; near all the far (negative) words.
    x = np.stack([unit(basis(2) + 0.1 * basis(9)), unit(np.sum([basis(4 + k) for k in range(10)], 0))])
    ood = sc.score_samples(x)
    assert ood[0] < 0.05 and ood[1] > 0.95
    np.testing.assert_allclose(sc.id_scores(x), 1 - ood, atol=1e-12)
    labels, conf = sc.predict(x[:1])
    assert labels == ["car"] and conf[0] > 0.9
    record = sc.run_record()
    json.dumps(record)
    assert record["negative_words"] == sc.negative_words_ and record["id_names"] == names

    # Empty ID list: error. Duplicates (case-insensitive): error. Names vs embeddings.
    with pytest.raises(OODInputError, match="id_names is empty"):
        NegLabelScorer().fit_embeddings([], ids[:0], words, pos, cand)
    with pytest.raises(OODInputError, match="duplicates"):
        NegLabelScorer().fit_embeddings(["cat", "Cat", "car"], ids, words, pos, cand)
    with pytest.raises(OODInputError, match="match one to one"):
        NegLabelScorer().fit_embeddings(["cat", "dog"], ids, words, pos, cand)
    with pytest.raises(OODInputError, match="same length"):
        NegLabelScorer().fit_embeddings(names, ids, words[:-1], pos, cand)
    with pytest.raises(OODInputError, match="num_groups"):
        NegLabelScorer(num_negatives=4, num_groups=5).fit_embeddings(names, ids, words, pos, cand)

    # One ID class is allowed: S is well defined for K = 1, prediction is that class.
    one = NegLabelScorer(num_negatives=6, num_groups=3).fit_embeddings(["car"], ids[2:], words, pos, cand)
    ood1 = one.score_samples(x)
    assert ood1[0] < 0.05 and ood1[1] > 0.95
    labels, conf = one.predict(x)
    assert labels == ["car", "car"] and np.allclose(conf, 1.0)


class TableEncoder:
    """A deterministic text encoder over a fixed prompt -> vector table (no model)."""

    model_name = "table"
    weights_identity = "table-v1"

    def __init__(self, table):
        self.table = table
        self.prompts = []

    def encode_texts(self, texts, batch_size=256, progress=None):
        self.prompts.extend(texts)
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def test_scorer_fit_uses_templates_lexicon_and_cache(tmp_path):
    ids, cand, words, pos = synthetic_vocab()
    names = ["cat", "dog", "car"]
    table = {f"the nice {n}": v for n, v in zip(names, ids)}
    for w, p, v in zip(words, pos, cand):
        table[f"the nice {w}" if p == "noun" else f"This is a {w} photo"] = v
    table["the nice CAT"] = ids[0]
    lex = Lexicon(words + ["CAT"], pos + ["noun"])  # an ID name hidden in the vocabulary
    enc = TableEncoder(table)
    sc = NegLabelScorer(num_negatives=6, num_groups=3, remove_id_names=True).fit(names, enc, lex, cache_dir=tmp_path)
    # The whole vocabulary is embedded (cache key independent of the ID classes); the ID
    # name is dropped afterwards, by index.
    assert "the nice CAT" in enc.prompts and sc.excluded_words_ == ["CAT"]
    assert "This is a near1 photo" in enc.prompts and "the nice near0" in enc.prompts
    ref = NegLabelScorer(num_negatives=6, num_groups=3).fit_embeddings(names, ids, words, pos, cand)
    assert sc.negative_words_ == ref.negative_words_
    n_prompts = len(enc.prompts)
    NegLabelScorer(num_negatives=6, num_groups=3).fit(names, enc, lex, cache_dir=tmp_path)
    assert len(enc.prompts) == n_prompts + 3  # only the 3 ID prompts; candidates cached
    # Other ID classes: the same cache entry (its key does not depend on the ID classes).
    NegLabelScorer(num_negatives=6, num_groups=3).fit(["dog", "car"], enc, lex, cache_dir=tmp_path)
    assert len(enc.prompts) == n_prompts + 5


# ---------------------------------------------------------------------- the official protocol
def test_remainder_drops_the_most_id_like_mined_words():
    """Official code: mine M, drop the M mod G most ID-like, shuffle, split into G groups."""
    rng = np.random.default_rng(5)
    ids = random_unit(4, D, 11)
    cand = random_unit(40, D, 12)
    words = [f"w{i}" for i in range(40)]
    pos = ["noun"] * 40
    sc = NegLabelScorer(num_negatives=11, num_groups=3, seed=2).fit_embeddings(["a", "b", "c", "d"], ids,
                                                                               words, pos, cand)
    # Reference written from the paper: the 95th percentile of cos to the ID labels,
    # the 11 smallest are mined; 11 mod 3 = 2 with the largest statistic are dropped.
    stat = np.percentile(unit(cand) @ unit(ids).T, 95, axis=1)
    mined = np.argsort(stat, kind="stable")[:11]
    assert sc.num_mined_ == 11 and sc.dropped_words_ == [words[i] for i in mined[9:]]
    assert sc.negative_words_ == [words[i] for i in mined[:9]]
    assert stat[mined[9:]].min() >= stat[mined[:9]].max()
    # Scores: 3 groups of 3 from a seeded shuffle of the 9 kept words.
    img = unit(rng.normal(size=(5, D)))
    groups = [mined[:9][g] for g in np.random.default_rng(2).permutation(9).reshape(3, 3)]
    expected = hand_score(img, ids, cand, groups, 0.01)
    np.testing.assert_allclose(sc.id_scores(img), expected, rtol=1e-5, atol=1e-7)
    # remainder="random": all 11 kept, 2 random ones left out of the groups at scoring time.
    rnd = NegLabelScorer(num_negatives=11, num_groups=3, seed=2, remainder="random").fit_embeddings(
        ["a", "b", "c", "d"], ids, words, pos, cand)
    assert rnd.dropped_words_ == [] and len(rnd.negative_words_) == 11
    perm = np.random.default_rng(2).permutation(11)[:9].reshape(3, 3)
    expected = hand_score(img, ids, cand, [mined[g] for g in perm], 0.01)
    np.testing.assert_allclose(rnd.id_scores(img), expected, rtol=1e-5, atol=1e-7)
    record = sc.run_record()
    assert record["num_mined"] == 11 and record["num_negatives"] == 9 and len(record["dropped_words"]) == 2
    assert record["params"]["remainder"] == "last" and record["params"]["remove_id_names"] is False
    with pytest.raises(OODInputError, match="remainder must be one of"):
        NegLabelScorer(remainder="first")


def test_neglabel_is_deterministic_and_batch_size_free():
    ids, cand, words, pos = synthetic_vocab()
    img = random_unit(40, D, 9)
    a = NegLabelScorer(num_negatives=7, num_groups=2, seed=4).fit_embeddings(["x", "y", "z"], ids, words, pos, cand)
    b = NegLabelScorer(num_negatives=7, num_groups=2, seed=4).fit_embeddings(["x", "y", "z"], ids, words, pos, cand)
    assert a.negative_words_ == b.negative_words_
    np.testing.assert_array_equal(a.score_samples(img), b.score_samples(img))
    for bs in (1, 3, 17):
        np.testing.assert_allclose(a.score_samples(img, batch_size=bs), a.score_samples(img), rtol=1e-6, atol=1e-9)
