"""RAP on synthetic embeddings: few-shot selection, crops, joint similarity, test-time updates."""

import json

import numpy as np
import pytest
from PIL import Image

from ood_core.clip.lexicon import Lexicon
from ood_core.clip.neglabel import neglabel_scores
from ood_core.clip.rap import (
    RAPScorer,
    joint_similarity,
    mine_train_negatives,
    select_few_shot,
)
from ood_core.clip.rap_crops import (
    CropStatistics,
    crop_boxes,
    random_crops,
    select_valuable_crops,
)
from ood_core.clip.rap_stream import rap_scores
from ood_core.errors import NotFittedError, OODInputError

D = 12


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def e(i):
    v = np.zeros(D)
    v[i] = 1.0
    return v


# ---------------------------------------------------------------------- few-shot + crops
def test_select_few_shot():
    labels = ["cat"] * 5 + ["dog"] * 3 + [None] + ["car"] * 4
    idx = select_few_shot(labels, 2, seed=0)
    picked = [labels[i] for i in idx]
    assert sorted(picked) == ["car", "car", "cat", "cat", "dog", "dog"]
    assert list(idx) == sorted(idx)
    np.testing.assert_array_equal(idx, select_few_shot(labels, 2, seed=0))
    assert any(not np.array_equal(idx, select_few_shot(labels, 2, seed=s)) for s in range(1, 6))
    with pytest.warns(UserWarning, match="fewer than 4"):
        short = select_few_shot(labels, 4, seed=0)
    assert [labels[i] for i in short].count("dog") == 3
    with pytest.raises(OODInputError, match="empty"):
        select_few_shot([], 1)
    with pytest.raises(OODInputError, match="k_per_class"):
        select_few_shot(labels, 0)


def test_crop_boxes_respect_scale_ratio_and_seed():
    w, h = 200, 120
    boxes = crop_boxes(w, h, 300, seed=3)
    assert boxes.shape == (300, 4)
    left, top, right, bottom = boxes.T
    assert np.all((left >= 0) & (top >= 0) & (right <= w) & (bottom <= h))
    bw, bh = right - left, bottom - top
    assert np.all((bw >= 1) & (bh >= 1))
    area = bw * bh / (w * h)
    # Rounding to whole pixels moves area/aspect a little off the sampled values.
    assert area.min() >= 0.08 * 0.9 and area.max() <= 1.0
    aspect = bw / bh
    assert aspect.min() >= 0.75 * 0.95 and aspect.max() <= (4 / 3) * 1.05
    assert area.std() > 0.1  # really random, not one size
    np.testing.assert_array_equal(boxes, crop_boxes(w, h, 300, seed=3))
    assert not np.array_equal(boxes, crop_boxes(w, h, 300, seed=4))
    small = crop_boxes(w, h, 50, seed=0, scale=(0.5, 0.5))
    a = (small[:, 2] - small[:, 0]) * (small[:, 3] - small[:, 1]) / (w * h)
    np.testing.assert_allclose(a, 0.5, rtol=0.05)
    img = Image.new("RGB", (w, h))
    crops = random_crops(img, 7, seed=3)
    assert [c.size for c in crops] == [(int(b[2] - b[0]), int(b[3] - b[1])) for b in boxes[:7]]
    with pytest.raises(OODInputError, match="scale"):
        crop_boxes(w, h, 3, scale=(0.0, 1.0))


def test_select_valuable_crops_known_order():
    ids = np.stack([e(0), e(1)])
    # Crop k has similarity sims[k] to its best ID prompt.
    sims = np.array([0.9, 0.1, 0.5, 0.95, 0.3, 0.7])
    crops = np.stack([unit(s * e(k % 2) + np.sqrt(1 - s * s) * e(5)) for k, s in enumerate(sims)])
    top, bottom = select_valuable_crops(crops, ids, num_keep=2)
    assert list(top) == [3, 0] and list(bottom) == [1, 4]
    stats = CropStatistics()
    stats.add(crops, ids, num_keep=2)
    np.testing.assert_allclose(stats.id_mean, crops[[3, 0]].mean(0), atol=1e-6)
    np.testing.assert_allclose(stats.outlier_mean, crops[[1, 4]].mean(0), atol=1e-6)
    with pytest.raises(OODInputError, match="dimension"):
        stats.add(np.ones((3, D + 1)), np.ones((2, D + 1)))


def test_joint_similarity_formula_and_top_p():
    rng = np.random.default_rng(0)
    cand = unit(rng.normal(size=(40, D)))
    ids = unit(rng.normal(size=(5, D)))
    id_crops = unit(rng.normal(size=(6, D)))
    out_crops = unit(rng.normal(size=(6, D)))
    l1, l2, l3 = 0.2, -0.2, -1.0
    expected = (
        l1 * (cand @ out_crops.T).mean(1)
        + l2 * (cand @ id_crops.T).mean(1)
        + l3 * np.percentile(cand @ ids.T, 95, axis=1)  # eta = 5: top-5% similarity level
    )
    got = joint_similarity(cand, id_crops, out_crops, ids, lambdas=(l1, l2, l3), eta=5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Mean vectors (as CropStatistics keeps them) give the same result.
    got2 = joint_similarity(cand, id_crops.mean(0), out_crops.mean(0), ids, lambdas=(l1, l2, l3))
    np.testing.assert_allclose(got2, expected, atol=1e-5)
    top = mine_train_negatives(got, 10)
    np.testing.assert_array_equal(top, np.argsort(-expected, kind="stable")[:10])
    excl = mine_train_negatives(got, 10, exclude=top[:3])
    assert not set(top[:3]) & set(excl) and len(excl) == 10
    with pytest.raises(OODInputError, match="num_negatives"):
        mine_train_negatives(got, 41)


def test_joint_similarity_prefers_outlier_like_words():
    ids = np.stack([e(0), e(1)])
    id_crop_mean = unit(e(0) + e(1))
    outlier_mean = e(2)
    cand = np.stack([e(2), e(0), unit(e(2) + e(0)), e(3)])  # outlier, ID, mixed, unrelated
    j = joint_similarity(cand, id_crop_mean, outlier_mean, ids)
    assert np.argmax(j) == 0 and np.argmin(j) == 1
    assert j[0] > j[3] > j[1]


# ---------------------------------------------------------------------- test time
def scenario():
    """ID labels on axes 0/1; candidates on axes 2..9 (word k on axis k+2)."""
    ids = np.stack([e(0), e(1)])
    cand = np.stack([unit(e(k + 2) + 0.05 * e(11)) for k in range(8)])
    train = np.array([0, 1])  # train-time negatives: axes 2 and 3
    # x_seen: clearly OOD (near axis 2, a train negative) but also close to axis 6.
    x_seen = unit(e(2) + 0.8 * e(6))
    # x_new: an OOD concept (axis 6) that the train-time negatives do not cover;
    # it resembles ID class 0 a little, so with train negatives only it looks ID.
    x_new = unit(e(6) + 0.5 * e(0))
    x_id = unit(e(1) + 0.1 * e(10))
    return ids, cand, train, x_seen, x_new, x_id


def test_train_time_only_equals_neglabel():
    ids, cand, train, x_seen, x_new, x_id = scenario()
    img = np.stack([x_seen, x_new, x_id])
    res = rap_scores(img, ids, cand, train, test_time=False, num_groups=1)
    id_s, ood_s = neglabel_scores(img, ids, cand[train], num_groups=1)
    np.testing.assert_allclose(res.ood_scores, ood_s)
    np.testing.assert_allclose(res.ood_scores, 1 - res.id_scores, atol=1e-12)
    assert res.test_negatives.size == 0 and list(res.train_negatives) == [0, 1]
    assert res.ood_scores[1] < 0.01  # x_new is missed without test-time words


def test_test_time_words_catch_a_new_ood_concept():
    ids, cand, train, x_seen, x_new, x_id = scenario()
    img = np.stack([x_seen, x_new, x_id])
    res = rap_scores(img, ids, cand, train, test_time=True, words_per_sample=1,
                     batch_size=1, num_groups=1, retrieval="new_only", rescore="final")
    # x_seen (S ~ 0) is valuable and adds its nearest unused word: axis 6 = word 4.
    # x_new is then OOD too (S ~ 0) and adds one word (all remaining tie at cos 0: the
    # lowest index, word 2); x_id (S ~ 1) adds nothing.
    assert list(res.test_negatives) == [4, 2] and list(res.test_negative_sources) == [0, 1]
    assert list(res.negatives) == [0, 1, 4, 2]
    assert res.ood_scores[1] > 0.99  # x_new is now caught
    assert res.ood_scores[2] < 0.01  # the ID image is unaffected and adds nothing
    # Deterministic.
    again = rap_scores(img, ids, cand, train, test_time=True, words_per_sample=1,
                       batch_size=1, num_groups=1, retrieval="new_only", rescore="final")
    np.testing.assert_array_equal(again.ood_scores, res.ood_scores)


def test_rescore_online_vs_final_and_thresholds():
    ids, cand, train, x_seen, x_new, x_id = scenario()
    img = np.stack([x_new, x_seen])  # the new concept arrives before the word is known
    kw = dict(test_time=True, words_per_sample=1, batch_size=1, num_groups=1, retrieval="new_only")
    online = rap_scores(img, ids, cand, train, rescore="online", **kw)
    final = rap_scores(img, ids, cand, train, rescore="final", **kw)
    assert online.ood_scores[0] < 0.01 and final.ood_scores[0] > 0.99
    np.testing.assert_array_equal(online.test_negatives, final.test_negatives)
    # Only samples with u1 <= S <= u2 add words. S(x_seen) ~ 1e-19 and S(x_new) ~ 1
    # with the train-time negatives: [0.01, 0.5] holds neither, so nothing is added.
    s_seen, s_new = neglabel_scores(np.stack([x_seen, x_new]), ids, cand[train], num_groups=1)[0]
    assert s_seen < 0.01 and s_new > 0.5
    none = rap_scores(img, ids, cand, train, u1=0.01, u2=0.5, **kw)
    assert none.test_negatives.size == 0
    np.testing.assert_allclose(
        none.ood_scores, neglabel_scores(img, ids, cand[train], num_groups=1)[1])


def test_q_words_are_the_nearest_unused_and_never_repeat():
    ids, cand, train, *_ = scenario()
    rng = np.random.default_rng(1)
    img = unit(np.stack([e(2 + k % 8) + 0.3 * rng.normal(size=D) for k in range(12)]))
    res = rap_scores(img, ids, cand, train, u1=0.0, u2=1.0, words_per_sample=2, batch_size=4,
                     num_groups=1, exclude=[7], retrieval="new_only")
    added = list(res.test_negatives)
    assert len(added) == len(set(added)) and not set(added) & {0, 1, 7}
    # The first sample's words are its 2 most similar candidates outside train/exclude.
    first = [i for i, s in zip(added, res.test_negative_sources) if s == 0]
    sims = unit(img[0]) @ unit(cand).T
    sims[[0, 1, 7]] = -np.inf
    assert first == list(np.argsort(-sims, kind="stable")[:2])
    # The pool (8 - 3 = 5 words) runs out instead of failing.
    assert len(added) == 5


def test_bad_inputs():
    ids, cand, train, x_seen, *_ = scenario()
    img = x_seen[None]
    for lambdas in ((float("nan"), -0.2, -1.0), (float("inf"), -0.2, -1.0), (0.2, "x", -1.0), (0.2, -0.2)):
        with pytest.raises(OODInputError, match="must be three finite numbers"):
            RAPScorer(lambdas=lambdas)
    with pytest.raises(OODInputError, match="num_keep=9 is larger than num_crops=4"):
        RAPScorer(num_crops=4, num_keep=9)
    with pytest.raises(OODInputError, match="u1 <= u2"):
        rap_scores(img, ids, cand, train, u1=0.6, u2=0.4, num_groups=1)
    with pytest.raises(OODInputError, match="empty"):
        rap_scores(img, ids, cand, [], num_groups=1)
    with pytest.raises(OODInputError, match="distinct indices"):
        rap_scores(img, ids, cand, [0, 99], num_groups=1)
    with pytest.raises(OODInputError, match="dimension"):
        rap_scores(np.ones((1, D + 2)), ids, cand, train, num_groups=1)
    with pytest.raises(OODInputError, match="rescore"):
        rap_scores(img, ids, cand, train, rescore="later", num_groups=1)
    with pytest.raises(OODInputError, match="num_groups"):
        rap_scores(img, ids, cand, train, num_groups=5)


# ---------------------------------------------------------------------- estimator
class ColourEncoder:
    """Deterministic toy encoder: an image maps to its mean colour; texts via a table."""

    model_name = "colour"
    weights_identity = "colour-v1"

    def __init__(self, table):
        self.table = table
        self.images_encoded = 0

    def encode_texts(self, texts, batch_size=256, progress=None):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)

    def encode_images(self, images, batch_size=32, progress=None):
        self.images_encoded += len(images)
        rows = []
        for im in images:
            rgb = np.asarray(im, dtype=np.float64).reshape(-1, 3).mean(0) / 255.0
            v = np.zeros(D)
            v[:3] = rgb
            v[11] = 0.05
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows).astype(np.float32)


def test_rap_scorer_fit_and_score(tmp_path):
    # ID class "red" (axis 0). Few-shot image: red left half, blue right half, so small
    # crops from the right are outliers and pull "blue"-like words into the negatives.
    table = {"the nice red": e(0)}
    words = ["crimson", "azure", "lime", "red"]
    vecs = [unit(e(0) + 0.1 * e(5)), unit(e(2) + 0.1 * e(5)), unit(e(1) + 0.1 * e(5)), e(0)]
    for w, v in zip(words, vecs):
        table[f"the nice {w}"] = v
    arr = np.zeros((40, 80, 3), dtype=np.uint8)
    arr[:, :40, 0] = 255
    arr[:, 40:, 2] = 255
    enc = ColourEncoder(table)
    sc = RAPScorer(num_crops=40, num_keep=8, num_negatives=1, num_groups=1, seed=0,
                   words_per_sample=1, retrieval="new_only", u1=0.0, u2=0.5)
    with pytest.raises(NotFittedError):
        sc.score_samples(np.ones((1, D)))
    sc.fit(["red"], [Image.fromarray(arr)], enc, Lexicon(words, ["noun"] * 4), few_shot_labels=["red"],
           cache_dir=tmp_path)
    assert enc.images_encoded == 40
    assert [sc.candidate_words_[i] for i in sc.train_negatives_] == ["azure"]
    assert "red" not in sc.candidate_words_  # the ID class name never becomes a negative
    res = sc.score_samples(np.stack([e(0), unit(e(2) + 0.2 * e(0))]), test_time=False)
    assert res.ood_scores[0] < 0.01 and res.ood_scores[1] > 0.99
    record = sc.run_record(res)
    json.dumps(record)
    assert record["train_negative_words"] == ["azure"] and record["test_negative_words"] == []
    assert record["params"]["num_crops"] == 40
    # Test time: an image near "azure" (S ~ 0) retrieves its nearest unused word, "lime".
    res_tt = sc.score_samples(np.stack([unit(e(2) + 0.3 * e(1))]))
    assert sc.run_record(res_tt)["test_negative_words"] == ["lime"]
    assert res_tt.ood_scores[0] > 0.99


# ---------------------------------------------------------------------- the paper's protocol
def reference_stream(img, ids, cand, train, u1, u2, q, batch, tau, rescore):
    """Algorithm 2 written from the paper, one group (plain S), no product code.

    For each batch in order: S with the current negatives; valuable = u1 <= S <= u2; each
    valuable sample (in order) unites its top-Q words (by cosine, ties by index) with the
    negatives; the batch is then scored with the updated negatives ("online").
    """
    img, ids, cand = unit(img), unit(ids), unit(cand)

    def s_of(x, neg):
        pos = np.exp(ids @ x / tau).sum()
        return pos / (pos + np.exp(cand[neg] @ x / tau).sum())

    neg, added = list(train), []
    out = np.zeros(len(img))
    for start in range(0, len(img), batch):
        rows = range(start, min(len(img), start + batch))
        valuable = [i for i in rows if u1 <= s_of(img[i], neg) <= u2]
        for i in valuable:
            top = np.argsort(-(cand @ img[i]), kind="stable")[:q]
            for w in top:
                if w not in neg:
                    neg.append(int(w))
                    added.append(int(w))
        for i in rows:
            out[i] = 1 - s_of(img[i], neg)
    if rescore == "final":
        out = np.array([1 - s_of(x, neg) for x in img])
    return out, added


def stream_case(seed=0):
    rng = np.random.default_rng(seed)
    ids = unit(rng.normal(size=(3, D)))
    cand = unit(rng.normal(size=(30, D)))
    img = unit(np.vstack([ids[rng.integers(0, 3, 10)] + 0.6 * rng.normal(size=(10, D)),
                          cand[rng.integers(0, 30, 10)] + 0.6 * rng.normal(size=(10, D))]))
    return img[rng.permutation(20)], ids, cand, np.array([0, 1, 2, 3, 4])


@pytest.mark.parametrize("rescore", ["online", "final"])
def test_streaming_union_equals_reference(rescore):
    img, ids, cand, train = stream_case()
    kw = dict(u1=0.0, u2=0.6, words_per_sample=3, tau=0.05)
    expected, added = reference_stream(img, ids, cand, train, 0.0, 0.6, 3, 4, 0.05, rescore)
    res = rap_scores(img, ids, cand, train, batch_size=4, num_groups=1, rescore=rescore, **kw)
    assert res.test_negatives.tolist() == added and len(added) > 0
    np.testing.assert_allclose(res.ood_scores, expected, rtol=2e-5, atol=1e-7)
    # The default protocol is the paper's: streaming ("online") and union retrieval.
    if rescore == "online":
        default = rap_scores(img, ids, cand, train, batch_size=4, num_groups=1, **kw)
        np.testing.assert_array_equal(default.ood_scores, res.ood_scores)


def test_union_adds_only_the_top_q_and_new_only_always_adds_q():
    ids, cand, train, x_seen, *_ = scenario()
    # x_seen's nearest word is word 0 (axis 2), already a train-time negative: the union
    # adds nothing with Q = 1, and word 4 (axis 6) with Q = 3 (top-3 = 0, 4, then word 1
    # at cos 0.06... already a negative); "new_only" skips the negatives and adds word 4.
    kw = dict(u1=0.0, u2=1.0, batch_size=1, num_groups=1)
    assert rap_scores(x_seen[None], ids, cand, train, words_per_sample=1, **kw).test_negatives.tolist() == []
    sims = unit(cand) @ unit(x_seen)
    top3 = np.argsort(-sims, kind="stable")[:3]
    union = rap_scores(x_seen[None], ids, cand, train, words_per_sample=3, **kw)
    assert union.test_negatives.tolist() == [w for w in top3 if w not in (0, 1)]
    new = rap_scores(x_seen[None], ids, cand, train, words_per_sample=1, retrieval="new_only", **kw)
    assert new.test_negatives.tolist() == [4]
    with pytest.raises(OODInputError, match="retrieval must be one of"):
        rap_scores(x_seen[None], ids, cand, train, retrieval="all", **kw)


def test_u_presets_are_the_papers_table_1():
    from ood_core.clip.rap_stream import DEFAULT_U_PRESET, U_PRESETS, resolve_u

    assert U_PRESETS == {"inaturalist": (0.5, 0.6), "sun": (0.2, 0.3), "places": (0.4, 0.5),
                         "textures": (0.4, 0.6), "imagenet10_vs_20": (0.0, 0.5),
                         "imagenet20_vs_10": (0.0, 0.2), "imagenet100_vs_10": (0.0, 0.2)}
    assert DEFAULT_U_PRESET in U_PRESETS
    assert resolve_u("sun") == (0.2, 0.3) and resolve_u("sun", u2=0.9) == (0.2, 0.9)
    assert resolve_u("custom", 0.1, 0.2) == (0.1, 0.2)
    with pytest.raises(OODInputError, match="u_preset must be one of"):
        resolve_u("imagenet")
    with pytest.raises(OODInputError, match="u1 <= u2"):
        resolve_u("sun", u1=0.5)
    sc = RAPScorer(u_preset="textures")
    assert sc.thresholds == (0.4, 0.6) and sc.get_params()["u_preset"] == "textures"


def test_crops_ranked_by_own_class_and_flipped():
    ids = np.stack([e(0), e(1)])
    # crop k: similarity a_k to class 0 and b_k to class 1
    a = np.array([0.9, 0.2, 0.5, 0.1])
    b = np.array([0.1, 0.8, 0.3, 0.95])
    crops = np.stack([unit(x * e(0) + y * e(1) + 0.2 * e(5)) for x, y in zip(a, b)])
    top0, low0 = select_valuable_crops(crops, ids, num_keep=1, class_index=0)
    top1, low1 = select_valuable_crops(crops, ids, num_keep=1, class_index=1)
    assert (top0[0], low0[0]) == (0, 3) and (top1[0], low1[0]) == (3, 0)
    top_any, low_any = select_valuable_crops(crops, ids, num_keep=1)  # best prompt: crop 3 (0.95), crop 2 lowest
    assert (top_any[0], low_any[0]) == (3, 2)
    # Flips: a seeded half of the crops are the mirror images of the unflipped ones.
    arr = np.random.default_rng(0).integers(0, 255, size=(30, 50, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    plain = random_crops(img, 40, seed=3)
    flipped = random_crops(img, 40, seed=3, flip=True)
    mirrored = [not np.array_equal(np.asarray(p), np.asarray(f)) for p, f in zip(plain, flipped)]
    assert 10 < sum(mirrored) < 30
    for p, f, m in zip(plain, flipped, mirrored):
        np.testing.assert_array_equal(np.asarray(f), np.asarray(p)[:, ::-1] if m else np.asarray(p))


def test_own_class_ranking_needs_the_labels(tmp_path):
    enc = ColourEncoder({"the nice red": e(0), "the nice azure": e(2)})
    img = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8) + 200)
    lex = Lexicon(["azure"], ["noun"])
    with pytest.raises(OODInputError, match="needs the class of every few-shot image"):
        RAPScorer(num_crops=2, num_keep=1, num_negatives=1, num_groups=1).fit(["red"], [img], enc, lex)
    with pytest.raises(OODInputError, match="not ID classes: \\['blue'\\]"):
        RAPScorer(num_crops=2, num_keep=1, num_negatives=1, num_groups=1).fit(
            ["red"], [img], enc, lex, few_shot_labels=["blue"])
    sc = RAPScorer(num_crops=2, num_keep=1, num_negatives=1, num_groups=1, crop_ranking="all_prompts")
    assert sc.fit(["red"], [img], enc, lex, cache_dir=tmp_path).train_negatives_.tolist() == [0]


def test_rap_is_deterministic(tmp_path):
    img, ids, cand, train = stream_case(1)
    a = rap_scores(img, ids, cand, train, u1=0.0, u2=0.6, batch_size=3, num_groups=2, seed=5)
    b = rap_scores(img, ids, cand, train, u1=0.0, u2=0.6, batch_size=3, num_groups=2, seed=5)
    np.testing.assert_array_equal(a.ood_scores, b.ood_scores)
    assert a.test_negatives.tolist() == b.test_negatives.tolist()
    # The update batch size is part of the protocol (recorded); batch_size=1 is the
    # per-sample reference.
    one, added = reference_stream(img, ids, cand, train, 0.0, 0.6, 4, 1, 0.01, "online")
    res = rap_scores(img, ids, cand, train, u1=0.0, u2=0.6, batch_size=1, num_groups=1)
    assert res.test_negatives.tolist() == added
    np.testing.assert_allclose(res.ood_scores, one, rtol=2e-5, atol=1e-7)
