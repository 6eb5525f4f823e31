"""2-D maps (compute_ood_visualization) and score plots misused: bad patches fields, views without embeddings,
embeddings of a scale the map methods cannot lay out, a brain run FiftyOne cannot load under the key, scores
closer together than float steps in a histogram. Each is refused by name (or drawn), nothing written."""

import os
import subprocess
import sys

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.core.odm as foo
import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _with_objects(dataset_factory, n=6, per=3, dim=8):
    """``n`` samples, each with ``per`` objects in the Detections field ``gt`` holding ``dim``-d vectors ``emb``,
    a Classification ``cls`` and image embeddings ``semb``."""
    rng = np.random.default_rng(0)
    ds = dataset_factory([f"/tmp/probe_maps33_{i}.png" for i in range(n)])
    ds.set_values("gt", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.3, 0.3])
                                                   for _ in range(per)]) for _ in range(n)])
    ds.add_sample_field("gt.detections.emb", fo.VectorField)
    ds.set_values("gt.detections.emb", [list(rng.normal(size=(per, dim))) for _ in range(n)])
    ds.set_values("cls", [fo.Classification(label="a")] * n)
    ds.set_values("semb", list(rng.normal(size=(n, dim))))
    return ds


def _vectors(dataset_factory, X):
    ds = dataset_factory([f"/tmp/probe_maps33_v{i}.png" for i in range(len(X))])
    ds.set_values("emb", list(np.asarray(X, dtype=np.float64)))
    return ds


@pytest.mark.parametrize("patches_field, named", [
    (5, r"patches_field=5 is not a field name"),
    ("nope", r"nope"),
    ("cls", r"patches_field='cls' holds Classification labels.*Detections fields here: \['gt'\]"),
])
def test_a_patches_field_that_is_no_detections_field_is_refused_by_name(dataset_factory, patches_field, named):
    ds = _with_objects(dataset_factory)
    with pytest.raises(OODInputError, match=named):
        ood.compute_ood_visualization(ds, "emb", "m", patches_field=patches_field, method="pca")
    assert ds.list_brain_runs() == []
    # the right field maps every object
    assert ood.compute_ood_visualization(ds, "emb", "m", patches_field="gt", method="pca")["num_points"] == 18


def test_object_map_of_image_embeddings_says_they_are_image_embeddings(dataset_factory):
    ds = _with_objects(dataset_factory)
    with pytest.raises(OODInputError, match=r"'gt.detections.semb'.*image embeddings"):
        ood.compute_ood_visualization(ds, "semb", "m", patches_field="gt", method="pca")
    assert ds.list_brain_runs() == []


def test_a_view_without_embeddings_is_refused_with_the_count_and_the_fix(dataset_factory):
    ds = _vectors(dataset_factory, np.random.default_rng(1).normal(size=(10, 8)))
    ds.select(ds.values("id")[:5]).set_values("emb", [None] * 5)
    view = ds.sort_by("filepath").exists("emb", False)
    with pytest.raises(OODInputError, match=r"none of the 5 samples of this view has an embedding in 'emb'.*"
                                            r"compute_pyramid_embeddings\(view, 'emb'\)"):
        ood.compute_ood_visualization(view, "emb", "m", method="pca")
    objects = _with_objects(dataset_factory)
    objects.set_values("gt.detections.emb", [[None] * 3] * len(objects))
    with pytest.raises(OODInputError, match=r"none of the 18 objects in 'gt' of this view has an embedding"):
        ood.compute_ood_visualization(objects, "emb", "m", patches_field="gt", method="pca")
    assert ds.list_brain_runs() == [] and objects.list_brain_runs() == []
    # the samples that have one are mapped
    assert ood.compute_ood_visualization(ds, "emb", "m", method="pca")["num_points"] == 5


_CHILD = """
import sys
import fiftyone as fo
import ood_core as ood
from ood_core.errors import OODInputError
ds = fo.load_dataset(sys.argv[1])
try:
    ood.compute_ood_visualization(ds, "emb", "m", method="tsne")
    print("mapped")
except OODInputError as e:
    print("refused:", e)
"""


def test_a_tsne_map_of_embeddings_of_tiny_spread_is_refused_not_a_crashed_process(dataset_factory):
    """t-SNE of vectors that differ by about 1e-30 killed the process (segmentation fault): run in a child."""
    ds = _vectors(dataset_factory, np.random.default_rng(0).normal(size=(6, 8)) * 1e-30)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    child = subprocess.run([sys.executable, "-c", _CHILD, ds.name], env=env, capture_output=True, text=True,
                           timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "refused:" in child.stdout and "differ by at most" in child.stdout and "rescaled" in child.stdout
    ds.reload()
    assert ds.list_brain_runs() == []


@pytest.mark.parametrize("scale, method, named", [(1e-30, "pca", "differ by at most"),
                                                  (1e20, "umap", "reach .*, above 1e\\+15")])
def test_embeddings_of_a_scale_no_map_method_lays_out_are_refused(dataset_factory, scale, method, named):
    ds = _vectors(dataset_factory, np.random.default_rng(0).normal(size=(12, 8)) * scale)
    with pytest.raises(OODInputError, match=rf"the 12 embeddings in 'emb' of this view {named}.*recompute"):
        ood.compute_ood_visualization(ds, "emb", "m", method=method)
    assert ds.list_brain_runs() == []


def test_overwrite_refuses_a_brain_run_fiftyone_cannot_load_and_keeps_it(dataset_factory):
    """A brain run of a package not installed here (FiftyOne loads its config as the base class) is not ours."""
    ds = _vectors(dataset_factory, np.random.default_rng(0).normal(size=(8, 8)))
    fob.compute_visualization(ds, embeddings="emb", brain_key="theirs", method="pca", verbose=False)
    conn = foo.get_db_conn()
    conn.runs.update_one({"_dataset_id": ds._doc.id, "key": "theirs"},
                         {"$set": {"config.cls": "not_installed_brain_package.VisualizationConfig"}})
    before = conn.runs.find_one({"_dataset_id": ds._doc.id, "key": "theirs"})
    ds.reload()
    with pytest.raises(OODInputError, match=r"'theirs' .*did not make.*refusing to replace it.*Choose another"):
        ood.compute_ood_visualization(ds, "emb", "theirs", method="pca", overwrite=True)
    ds.reload()
    assert ds.list_brain_runs() == ["theirs"]
    assert conn.runs.find_one({"_dataset_id": ds._doc.id, "key": "theirs"}) == before


def test_histogram_of_scores_closer_than_float_steps_is_drawn():
    """0.1 + 0.2 and 0.3 differ by one float step: numpy's 50 bin edges raised a ValueError."""
    scores = [0.3, 0.1 + 0.2, 0.3, 0.1 + 0.2]
    fig = ood.plot_score_histogram(scores, [False, True, False, True])
    bins = fig.data[0].xbins
    assert bins.start <= min(scores) and bins.end >= max(scores) and bins.start + bins.size > bins.start
    assert fig.data[1].xbins == bins
    assert sorted(fig.data[0].x) == [0.3, 0.3] and sorted(fig.data[1].x) == [0.1 + 0.2] * 2
    # usual scores keep nbins equal bins from the lowest score to the highest
    fig = ood.plot_score_histogram([0.0, 1.0, 2.0], [False, True, False], nbins=4)
    assert (fig.data[0].xbins.start, fig.data[0].xbins.end, fig.data[0].xbins.size) == (0.0, 2.0, 0.5)
