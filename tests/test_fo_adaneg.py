"""AdaNeg through the FiftyOne layer: equal to the numpy estimator, recorded, explained.

The tiny random open_clip model (conftest) runs the real loading and encoding code; its
scores carry no meaning, so the test checks the plumbing exactly against
:class:`ood_core.clip.adaneg.AdaNegScorer` on the same embeddings in sample-id order.
"""

import numpy as np
import pytest

import ood_core as ood
from ood_core.clip.adaneg import AdaNegScorer
from ood_core.clip.encoder import CLIPEncoder
from ood_core.clip.lexicon import read_word_list
from ood_core.fo import runs as fo_runs
from clip_helpers import labelled_images, write_word_list

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture
def setup(dataset_factory, fashion_files, tiny_clip, tmp_path):
    ds = labelled_images(dataset_factory, fashion_files, 4)
    model = dict(model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    ood.compute_clip_embeddings(ds, "clip", progress=False, **model)
    words = write_word_list(tmp_path)
    return ds, model, str(words), str(tmp_path / "cache")


def test_adaneg_equals_the_estimator_and_is_recorded(setup):
    ds, model, words, cache = setup
    kw = dict(label_field="ground_truth", embeddings_field="clip", word_list=words, num_negatives=12,
              num_groups=3, memory_size=2, gap=0.2, cache_dir=cache, progress=False)
    summary = ood.compute_adaneg_scores(ds, "ada", **kw)
    assert summary["num_scored"] == 40 and summary["num_negatives"] == 12

    enc = CLIPEncoder(model["model_name"], pretrained=model["pretrained"])
    lex = read_word_list(words)
    names = sorted(set(ds.values("ground_truth.label")))
    ids = sorted(ds.values("id"))
    by_id = dict(zip(ds.values("id"), ds.values("clip")))
    X = np.stack([by_id[i] for i in ids])
    ref = AdaNegScorer(num_negatives=12, num_groups=3, memory_size=2, gap=0.2).fit(names, enc, lex, cache_dir=cache)
    expected = ref.score_samples(X)
    got = dict(zip(ds.values("id"), ds.values("ada")))
    np.testing.assert_allclose([got[i] for i in ids], expected.ood_scores, rtol=1e-5, atol=1e-7)
    labels, _ = ref.predict(X)
    pred = dict(zip(ds.values("id"), ds.values("adaneg_prediction.label")))
    assert [pred[i] for i in ids] == labels

    info = fo_runs.get_ood_run_info(ds, "ada")
    assert info["kind"] == "adaneg" and info["fields"] == ["ada", "adaneg_prediction"]
    assert info["processing_order"] == "sample id ascending" and info["adaneg"]["memory_size"] == 2
    assert info["protocol"]["num_negatives"] == 12 and info["protocol"]["id_names_in_candidates"] == "kept"
    res = fo_runs.load_ood_results(ds, "ada")
    assert res.memory_sample_ids == [ids[i] for i in expected.memory_samples]
    assert res.negative_words == ref.neglabel_.negative_words_ and res.processed_ids == ids
    assert fo_runs.score_path(info) == "ada"

    # Determinism: the same call on another field gives the same scores.
    ood.compute_adaneg_scores(ds, "ada2", prediction_field=None, **kw)
    assert ds.values("ada2") == ds.values("ada")

    # explain_sample: the mined negatives plus the memory entries closest to the sample.
    sample_id = ids[-1]
    out = ood.explain_sample(ds, "ada", sample_id, top=3, cache_dir=cache)
    assert out["kind"] == "adaneg" and len(out["negative_labels"]) == 3
    memory = out["memory"]
    assert 0 < len(memory) <= 3 and {m["kind"] for m in memory} <= {"id", "ood"}
    x = np.asarray(by_id[sample_id])
    sims = {m["sample_id"]: float(np.asarray(by_id[m["sample_id"]]) @ x) for m in memory}
    assert [m["similarity"] for m in memory] == pytest.approx([sims[m["sample_id"]] for m in memory], abs=1e-5)
    assert [m["similarity"] for m in memory] == sorted([m["similarity"] for m in memory], reverse=True)
