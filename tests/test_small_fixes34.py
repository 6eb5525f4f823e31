"""Small correctness fixes: the object list read for embedding, the suggested fix for a single Detection field,
and CLIP class names without a word.

Real Fashion-MNIST images and real FiftyOne datasets on the private MongoDB.
"""

import re
import uuid

import pytest

from ood_core.errors import OODInputError

EMB = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)


@pytest.fixture
def ranked_objects(fashion_files):
    """Twelve images, sample i with (i % 3) + 1 objects of distinct boxes in 'objs', and a 'rank' with ties."""
    import fiftyone as fo

    paths, names = fashion_files
    ds = fo.Dataset(f"test-small34-{uuid.uuid4().hex[:8]}")
    ds.add_samples([fo.Sample(filepath=paths[i], rank=i % 2, objs=fo.Detections(detections=[
        fo.Detection(label=names[i], bounding_box=[0.05 * k, 0.01 * i, 0.5, 0.5]) for k in range(i % 3 + 1)]))
        for i in range(12)], progress=False)
    yield ds
    ds.delete()


def test_embedding_items_pairs_each_object_with_its_own_image_and_sample_in_any_view_order(ranked_objects):
    """Object ids, boxes, image paths and sample ids were read by four separate queries and paired by position,
    which only holds if each query returns the samples in the same order. Now they come from one query; on
    sorted views with ties, sliced and shuffled views every object is paired with its own box, image and
    sample, also in a view whose order changes at each query (``$sample``), where the separate queries paired
objects with the boxes, images and samples of others."""
    from ood_core.fo.projection import embedding_items

    ds = ranked_objects
    truth = {d.id: (s.filepath, d.bounding_box, s.id) for s in ds for d in s.objs.detections}
    views = [ds, ds.sort_by("rank"), ds.sort_by("rank", reverse=True).skip(2).limit(7), ds.shuffle(seed=3),
             ds.shuffle(seed=5).limit(5), ds.take(6, seed=1)]
    for view in views:
        keys, items, sample_of = embedding_items(view, "objs")
        expected = {d.id for s in view for d in s.objs.detections}
        assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys))
        for key, (path, box) in zip(keys, items):
            assert (path, list(box), sample_of[key]) == truth[key]
        order = [s.id for s in view]  # objects follow the view's sample order
        assert [sample_of[k] for k in keys] == sorted((sample_of[k] for k in keys), key=order.index)
    # a view in a new random order at each query (MongoDB's $sample): one query keeps each object with its own
    # image and sample; separate queries paired the objects of one sample with the images of others
    for _ in range(3):
        keys, items, sample_of = embedding_items(ds.mongo([{"$sample": {"size": len(ds)}}]), "objs")
        assert sorted(keys) == sorted(truth)
        assert [(path, list(box), sample_of[key]) for key, (path, box) in zip(keys, items)] == [truth[k] for k in keys]
    keys, paths, none = embedding_items(ds.sort_by("rank"), None)
    assert none is None and keys == ds.sort_by("rank").values("id")
    assert paths == [ds[k].filepath for k in keys]


def test_the_suggested_fix_for_a_single_detection_field_runs_and_gives_its_objects_new_ids(ranked_objects):
    """Before: the error for a ``Detection`` field suggested copying each object as it is into a Detections
    field, so the objects of the new field had the ids of the original ones (two labels with one id). Now the
    suggestion copies them (``d.copy()``): run as written, it makes a field of new ids that embeds."""
    import fiftyone as fo

    import ood_core as ood

    ds = ranked_objects
    ds.set_values("one", [fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.6, 0.6]) for _ in range(len(ds))])
    with pytest.raises(OODInputError) as err:
        ood.compute_pyramid_embeddings(ds, "one_emb", patches_field="one", **EMB)
    text = str(err.value)
    code = re.search(r"dataset\.set_values\('boxes', .*?dataset\.values\('one'\)\]\)", text)
    assert code is not None, text
    exec(code.group(0), {"fo": fo, "dataset": ds})  # the suggestion, run as written
    ds.reload()
    originals, copies = ds.values("one.id"), ds.values("boxes.detections.id", unwind=True)
    assert len(copies) == len(originals) == 12 and not set(copies) & set(originals)
    assert [row[0] for row in ds.values("boxes.detections.bounding_box")] == ds.values("one.bounding_box")
    assert ood.compute_pyramid_embeddings(ds, "one_emb", patches_field="boxes", **EMB)["num_embedded"] == 12
    assert ds.count("boxes.detections.one_emb") == 12


@pytest.mark.parametrize("bad", ["-", "...", "()", "- _ -"])
def test_a_clip_class_name_of_only_punctuation_is_refused_by_name(ranked_objects, bad):
    """Before: an ID class name without a letter or digit ("-", "...") passed the check and became a prompt
    that names no class. Now it is refused, named, with the fix; ordinary names (also with punctuation or
    digits) pass as before."""
    from ood_core.fo.clip_vocabulary import resolve_id_labels

    ds = ranked_objects
    with pytest.raises(OODInputError) as err:
        resolve_id_labels(ds, ["dog", bad, "cat"], None)
    text = str(err.value)
    assert repr(bad) in text and "only punctuation or whitespace" in text and "give those classes real" in text
    assert resolve_id_labels(ds, ["t-shirt/top", "7", "Ankle_boot", "x"], None) == ["t-shirt/top", "7",
                                                                                     "Ankle_boot", "x"]


def test_a_label_field_with_a_punctuation_class_is_refused_naming_the_field(ranked_objects):
    """The same check on classes read from a label field: the error names the field and the class."""
    import fiftyone as fo

    from ood_core.fo.clip_vocabulary import resolve_id_labels

    ds = ranked_objects
    ds.set_values("gt", [fo.Classification(label="..." if i == 3 else f"c{i % 2}") for i in range(len(ds))])
    with pytest.raises(OODInputError) as err:
        resolve_id_labels(ds, None, "gt")
    text = str(err.value)
    assert "label field 'gt'" in text and "'...'" in text and "only punctuation or whitespace" in text


def _embedded(dataset_factory, vectors):
    """A dataset of one sample per row of ``vectors``, stored in 'emb'."""
    import fiftyone as fo
    import numpy as np

    ds = dataset_factory([f"/tmp/small34_map_{i}.png" for i in range(len(vectors))])
    ds.add_sample_field("emb", fo.VectorField)
    ds.set_values("emb", [np.asarray(v, dtype=np.float32) for v in vectors])
    return ds


def test_a_tsne_map_puts_identical_embeddings_on_one_point_and_keeps_its_scale(dataset_factory):
    """Before: FiftyOne Brain's t-SNE spread 140 copies of one embedding (e.g. blank images) over hundreds to
    thousands of units, as far apart as unrelated images. Now each distinct embedding is laid out once and its
    copies share its point: the distinct points lie as in the brain's t-SNE of the view without the copies."""
    import fiftyone.brain as fob
    import numpy as np

    import ood_core as ood

    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16))
    ds = _embedded(dataset_factory, np.vstack([base, np.repeat(base[:1], 140, axis=0)]))
    assert ood.compute_ood_visualization(ds, "emb", "m", method="tsne")["num_points"] == 180
    points = dict(zip(ds.load_brain_results("m").current_sample_ids,
                      ds.load_brain_results("m").current_points))
    ids = ds.values("id")
    copies = np.array([points[i] for i in ids[:1] + ids[40:]])
    assert np.ptp(copies, axis=0).max() == 0  # all 141 copies on one point
    distinct = _embedded(dataset_factory, base)  # the same 40 vectors without copies, by the brain directly
    alone = fob.compute_visualization(distinct, embeddings="emb", method="tsne", num_dims=2, seed=0, verbose=False,
                                      pca_dims=16, perplexity=13.0).points
    assert np.array_equal(np.array([points[i] for i in ids[:40]]), alone)  # as if mapped without the copies
    assert np.abs(alone).max() < 1e3
    assert ds.get_brain_info("m").config.ood_plugin == "fiftyone-ood"


def test_a_tsne_map_of_objects_with_identical_embeddings_and_one_without_repeats_as_before(dataset_factory):
    """Objects: copies share one point too. A view without repeated embeddings is mapped by FiftyOne Brain's
    t-SNE exactly as before (a guard: same points as the brain's own call with the package's settings)."""
    import fiftyone as fo
    import fiftyone.brain as fob
    import numpy as np

    import ood_core as ood

    rng = np.random.default_rng(1)
    ds = dataset_factory([f"/tmp/small34_obj_{i}.png" for i in range(10)])
    ds.set_values("gt", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.3, 0.3])
                                                   for _ in range(3)]) for _ in range(10)])
    ds.add_sample_field("gt.detections.emb", fo.VectorField)
    same = rng.normal(size=8)
    vecs = [[same if (i + k) % 3 == 0 else rng.normal(size=8) for k in range(3)] for i in range(10)]
    ds.set_values("gt.detections.emb", [[np.asarray(v, dtype=np.float32) for v in row] for row in vecs])
    ood.compute_ood_visualization(ds, "emb", "m", patches_field="gt", method="tsne")
    res = ds.load_brain_results("m")
    points = dict(zip(res.current_label_ids, res.current_points))
    ids = ds.values("gt.detections.id")
    copies = np.array([points[ids[i][k]] for i in range(10) for k in range(3) if (i + k) % 3 == 0])
    assert len(copies) == 10 and np.ptp(copies, axis=0).max() == 0 and len(points) == 30

    plain = _embedded(dataset_factory, rng.normal(size=(30, 12)))
    ood.compute_ood_visualization(plain, "emb", "p", method="tsne", seed=4)
    brain = fob.compute_visualization(plain, embeddings="emb", method="tsne", num_dims=2, seed=4, verbose=False,
                                      pca_dims=12, perplexity=29 / 3)
    assert np.array_equal(plain.load_brain_results("p").points, brain.points)


def test_read_embeddings_keeps_each_vector_and_label_with_its_own_sample_or_object(ranked_objects):
    """Sample ids, vectors and labels were read by separate queries and paired by position; in a view whose
    order changes at each query (``$sample``) vectors and labels went to other samples' (objects') ids. Now
    they come from one query."""
    import fiftyone as fo
    import numpy as np

    from ood_core.fo.items import read_embeddings

    ds = ranked_objects
    ds.add_sample_field("emb", fo.VectorField)
    ds.add_sample_field("objs.detections.emb", fo.VectorField)
    for n, sample in enumerate(ds):
        sample["emb"] = np.array([n, -n], dtype=np.float32)
        sample["gt"] = fo.Classification(label=f"s{n}")
        for k, det in enumerate(sample.objs.detections):
            det["emb"] = np.array([n, k], dtype=np.float32)
        sample.save()
    own = {s.id: ([float(x) for x in s.emb], s.gt.label) for s in ds}
    own.update({d.id: ([float(x) for x in d.emb], d.label) for s in ds for d in s.objs.detections})
    for _ in range(3):
        shuffled = ds.mongo([{"$sample": {"size": len(ds)}}])
        for patches in (None, "objs"):
            keys, X, labels = read_embeddings(shuffled, "emb", patches, label_field="gt" if patches is None else
                                              "objs")
            assert sorted(keys) == sorted(k for k in own if (k in ds.values("id")) == (patches is None))
            assert [(list(map(float, x)), lab) for x, lab in zip(X, labels)] == [own[k] for k in keys]
