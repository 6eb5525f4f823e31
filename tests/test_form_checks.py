"""App forms refuse, on the field, what the run would refuse: each test drives a form (``resolve_input``) the way
the App does, then shows the run (or the SDK) refusing the same values with the same reason."""

import re

import numpy as np
import pytest

import form_helpers as forms
import ood_core as ood
from ood_core.errors import OODInputError

LITE = dict(model_name="tf_efficientnet_lite0", levels=[1], grid=1)  # the bundled backbone, one small level


def test_score_form_refuses_k_not_below_the_set_the_detector_is_fitted_on(form_dataset):
    """1. k must be below the trusted (reference) items, each scored with itself left out; without a reference,
    below the scored items."""
    ds = form_dataset
    params = dict(embeddings_field="vec", score_field="s", method="knn", reference_tag="trusted", k=25)
    message = ("k=25 but the reference (samples tagged 'trusted') has only 20 item(s) with an embedding; each of "
               "them is also scored with itself left out, so k must be < 20: lower k or tag more samples 'trusted'")
    assert forms.invalid(forms.props("score_ood", ds, params)) == {"k": message}
    assert message in forms.refusal("score_ood", ds, params)
    with pytest.raises(OODInputError) as sdk:  # the SDK, called directly, says the same
        ood.compute_ood_scores(ds, "vec", "s", method="knn", reference="trusted", k=25)
    assert str(sdk.value) == message
    assert not forms.invalid(forms.props("score_ood", ds, dict(params, k=19)))
    # unsupervised: the scored set (40 samples) is the fit set; a detector's own default k counts too
    props = forms.props("score_ood", ds, dict(params, reference_tag=None, k=40))
    assert props["k"].invalid and "the scored set has only 40 item(s)" in props["k"].error_message
    props = forms.props("score_ood", ds, dict(params, method="lof", reference_tag=None, k=None), view=ds.limit(10))
    assert props["k"].default == 50 and "k=50 but the scored set has only 10" in props["k"].error_message
    assert not forms.props("score_ood", ds, dict(params, method="pyramid_knn", k=None))["k"].invalid  # empty = auto


def test_score_form_refuses_k_that_the_trusted_classes_cannot_give_a_class_conditional_detector(form_dataset):
    """1b. pyramid_knn searches each trusted class (labels preselected): k above what the largest class offers (an
    item is never its own neighbour) is refused on the form, as the run refuses it, not only k above the set."""
    ds = form_dataset
    first = {}
    for sample in ds.match_tags("trusted"):
        first.setdefault(sample.ground_truth.label, sample.id)
    one_each = ds.select(list(first.values()))
    one_each.tag_samples("one_each")
    assert len(first) >= 4  # several classes of 1 trusted sample: k=3 < the 4+ samples, but no class offers 3
    params = dict(embeddings_field="vec", score_field="s", method="pyramid_knn", reference_tag="one_each", k=3)
    props = forms.props("score_ood", ds, params)
    assert props["label_field"].default == "ground_truth" and not props["k"].invalid  # no labels given yet
    params["label_field"] = "ground_truth"  # what the App sends once it shows the preselected field
    props = forms.props("score_ood", ds, params)
    assert props["k"].invalid and "classes of the reference (samples tagged 'one_each') are too small: the largest " \
        "has 1 item(s)" in props["k"].error_message
    with pytest.raises(OODInputError, match="reference classes are too small"):  # what the run says
        ood.compute_ood_scores(ds, "vec", "s", reference="one_each", label_field="ground_truth", k=3)
    # the 'trusted' classes: k below the largest class passes, and without labels only the set size counts
    largest = max(ds.match_tags("trusted").count_values("ground_truth.label").values())
    assert not forms.props("score_ood", ds, dict(params, reference_tag="trusted", k=largest - 1))["k"].invalid
    assert forms.props("score_ood", ds, dict(params, reference_tag="trusted", k=largest + 1))["k"].invalid
    assert not forms.props("score_ood", ds, dict(params, method="knn", label_field=None))["k"].invalid


def test_score_form_refuses_more_reduced_dimensions_than_the_reducer_can_give(form_dataset):
    """2. Reduced dimensions above the embedding dimension (or the fit set) are refused by the reducer's check."""
    ds = form_dataset
    params = dict(embeddings_field="vec", score_field="s", method="knn", reference_tag=None, k=3, reduce="pca",
                  n_components=9, show_advanced=True)
    message = ("PCA with n_components=9 needs n_components <= min(num_samples, dim) = min(40, 8) = 8; lower "
               "n_components or fit on more samples.")
    assert forms.invalid(forms.props("score_ood", ds, params)) == {"n_components": message}
    assert message in forms.refusal("score_ood", ds, params)
    assert not forms.invalid(forms.props("score_ood", ds, dict(params, n_components=8)))
    props = forms.props("score_ood", ds, dict(params, reduce="random"))
    assert "would not reduce 8-dim embeddings; use n_components <= 8" in props["n_components"].error_message
    # fitted on the 20 trusted samples: at most 20 PCA components of the 40-d vectors
    props = forms.props("score_ood", ds,
                        dict(params, embeddings_field="vec40", reference_tag="trusted", n_components=21))
    assert "min(20, 40) = 20" in props["n_components"].error_message


def test_map_form_refuses_a_target_with_too_few_points(form_dataset):
    """3. A map needs 4 points with an embedding in the target."""
    ds = form_dataset
    params = dict(embeddings_field="vec", brain_key="m", method="pca")
    one = ds.limit(1)
    message = "a 2-D map needs at least 4 points with embeddings in 'vec'; the view has 1: map a larger view"
    props = forms.props("compute_ood_visualization", ds, params, view=one)
    assert forms.invalid(props) == {"embeddings_field": message}
    assert message in forms.refusal("compute_ood_visualization", one, params)
    assert not forms.invalid(forms.props("compute_ood_visualization", ds, params, view=ds.limit(4)))
    ds.match_tags("test").set_field("vec", None).save()  # 20 trusted samples keep their vectors
    props = forms.props("compute_ood_visualization", ds, params, view=ds.match_tags("test"))
    assert "the view has 0" in props["embeddings_field"].error_message


def test_forms_refuse_files_outside_the_allowed_folders(form_dataset, tmp_path):
    """4. A weights file or word list outside the allowed folders is refused on its field, by the SDK's check."""
    from ood_core.paths import check_app_file

    ds = form_dataset
    with pytest.raises(OODInputError) as sdk:
        check_app_file("/etc/ood-weights.safetensors", "weights", may_be_tag=True)
    props = forms.props("compute_pyramid_embeddings", ds, dict(show_advanced=True,
                                                          weights="/etc/ood-weights.safetensors"))
    assert forms.invalid(props) == {"weights": str(sdk.value)}
    assert "FIFTYONE_OOD_ALLOWED_DIRS" in str(sdk.value)
    for fine in ("bundled", "random", str(tmp_path / "w.safetensors")):  # tags, and a file in an allowed folder
        assert not forms.invalid(forms.props("compute_pyramid_embeddings", ds, dict(show_advanced=True, weights=fine)))
    words = tmp_path / "words.txt"
    words.write_text("dog\ncat\n")
    for name in ("compute_neglabel_scores", "compute_rap_scores", "compute_adaneg_scores"):
        props = forms.props(name, ds, dict(weights="/etc/clip.pt", word_list="/usr/share/dict/words"))
        assert props["weights"].invalid and "'/etc/clip.pt' is not inside the allowed folders" in \
            props["weights"].error_message, name
        assert props["word_list"].invalid and props["word_list"].error_message.startswith(
            "word_list '/usr/share/dict/words' is not inside the allowed folders"), name
        props = forms.props(name, ds, dict(weights="openai", word_list=str(words)))
        assert not props["weights"].invalid and not props["word_list"].invalid, name


def test_clip_forms_refuse_more_groups_than_negative_labels(form_dataset, tmp_path):
    """5. Every negative-label group needs a negative label: the SDK's count check runs on the form's word list;
    with WordNet the form checks the bound num_negatives gives."""
    from ood_core.fo.clip_vocabulary import check_counts_early, load_vocabulary

    ds = form_dataset
    words = tmp_path / "words.txt"
    words.write_text("\n".join("dog cat horse bird fish car truck".split()) + "\n")
    base = dict(score_field="n", id_source="labels", id_labels="Bag, Coat", word_list=str(words), show_advanced=True)
    with pytest.raises(OODInputError) as sdk:
        check_counts_early(load_vocabulary(str(words), None, None, ("noun", "adj"), None), ["Bag", "Coat"],
                           num_negatives=3, fraction=None, num_groups=5, tau=0.01, removes_id_names=False)
    assert str(sdk.value).startswith("num_groups=5 is larger than the number of negative labels this run would "
                                     "use (3: num_negatives=3 with 7 candidate words)")
    for name in ("compute_neglabel_scores", "compute_adaneg_scores"):
        props = forms.props(name, ds, dict(base, num_negatives=3, num_groups=5))
        assert forms.invalid(props) == {"num_groups": str(sdk.value)}, name
        assert not forms.invalid(forms.props(name, ds, dict(base, num_negatives=3, num_groups=3))), name
        # the paper's share: 15% of 7 nouns is 1 negative label
        props = forms.props(name, ds, dict(base, num_groups=2))
        assert "(1: 0.15 of 7 nouns and 0 adjectives)" in props["num_groups"].error_message, name
    assert str(sdk.value) in forms.refusal("compute_neglabel_scores", ds, dict(base, num_negatives=3, num_groups=5))
    # the paper's settings hidden: the default 100 groups cannot be formed either, and the form says where to look
    props = forms.props("compute_neglabel_scores", ds, dict(base, show_advanced=False))
    assert list(forms.invalid(props)) == ["num_groups_error"] and "under 'Show the papers' hyper-parameters'" in \
        props["num_groups_error"].view.label
    # RAP: its 10,000 train-time negatives are capped at the 7 words; the default 100 groups cannot be formed
    props = forms.props("compute_rap_scores", ds, dict(base, few_shot_tag="trusted"))
    assert "num_groups=100 is larger than the number of negative labels this run would use (7: num_negatives=" \
           "10000 with 7 candidate words)" in props["num_groups"].error_message
    # WordNet (not read by the form): at most num_negatives negative labels
    props = forms.props("compute_neglabel_scores", ds, dict(base, word_list="", num_negatives=3, num_groups=5))
    assert props["num_groups"].error_message == ("num_groups=5 is larger than num_negatives=3: every group needs "
                                                 "at least one negative label; lower num_groups or raise "
                                                 "num_negatives")


def test_embeddings_form_lists_the_settings_that_differ_from_the_run_it_resumes(form_dataset):
    """6. Resuming (or filling in) a run with other settings: the form lists what differs, as the SDK does; a
    resume without settings keeps the stored ones."""
    from ood_core.fo import runs as fo_runs

    ds = form_dataset
    ood.compute_pyramid_embeddings(ds, "emb", shard=(0, 2), **LITE)  # interrupted: half of the samples
    assert fo_runs.get_ood_run_info(ds, "emb")["status"] == "partial"
    names = fo_runs.get_ood_run_info(ds, "emb")["backbone"]["levels"]
    same = dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1", grid=1)
    for params in (dict(embeddings_field="emb"), same, dict(same, levels=names[0])):  # stored settings kept
        props = forms.props("compute_pyramid_embeddings", ds, params)
        assert not forms.invalid(props)
        assert "computes only what is missing" in props["embeddings_field_resume"].view.label
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="emb", show_advanced=True))
    assert (props["model_name"].default, props["levels"].default, props["grid"].default) == \
        ("tf_efficientnet_lite0", "1", 1)
    with pytest.raises(OODInputError) as sdk:
        ood.compute_pyramid_embeddings(ds, "emb", **dict(LITE, grid=2))
    assert "backbone.grid: stored 1 vs requested 2" in str(sdk.value)
    for changed, listed in ((dict(grid=2), "backbone.grid: stored 1 vs requested 2"),
                            (dict(levels="2"), "backbone.level_indices: stored [1] vs requested [2]"),
                            (dict(mode="flatten"), "backbone.mode: stored 'pool' vs requested 'flatten'"),
                            (dict(project_dim=4), "projection: stored None vs requested")):
        props = forms.props("compute_pyramid_embeddings", ds, dict(same, **changed))
        message = props["embeddings_field"].error_message
        assert props["embeddings_field"].invalid and "embeddings_field_resume" not in props, changed
        assert message.startswith("embeddings 'emb' exist with other settings (") and listed in message, changed
        assert "tick 'overwrite'" in message
    assert "backbone.grid: stored 1 vs requested 2" in forms.refusal("compute_pyramid_embeddings", ds, dict(same, grid=2))
    out = forms.execute("compute_pyramid_embeddings", ds, dict(embeddings_field="emb"))  # the resume, from Python
    assert out.result["num_computed"] == 20 and out.result["status"] == "complete"


def test_embeddings_form_computes_afresh_a_field_deleted_by_hand(form_dataset):
    """The form showed a 'resume' and listed settings conflicts for a run whose field was deleted by hand, which
    the SDK computes afresh with any settings."""
    ds = form_dataset
    ood.compute_pyramid_embeddings(ds, "emb", **LITE)
    ds.delete_sample_field("emb")
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="emb", model_name=LITE["model_name"],
                                                              levels="2", grid=2))
    assert not forms.invalid(props) and "embeddings_field_resume" not in props
    out = forms.execute("compute_pyramid_embeddings", ds, dict(embeddings_field="emb", model_name=LITE["model_name"],
                                                          levels="2", grid=2))
    assert out.result["status"] == "complete" and out.result["num_computed"] == len(ds)


def test_embeddings_form_resumes_an_interrupted_overwrite_with_its_settings(form_dataset):
    """6b. An overwrite interrupted from the SDK (or a killed worker): the form fills in the overwrite's settings,
    says so, and running it resumes the overwrite (only what is missing) instead of asking for 'overwrite' (which
    would start over); the old run's settings still fill in the old field."""
    from ood_core.fo import runs as fo_runs
    from ood_core.fo.embedding_runs import side_key

    ds = form_dataset
    ood.compute_pyramid_embeddings(ds, "emb", **LITE)
    old = fo_runs.get_ood_run_info(ds, "emb")
    assert old["projection"] is None

    def stop_after_first_chunk(done, total):
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ood.compute_pyramid_embeddings(ds, "emb", overwrite=True, project_dim=4, chunk_size=8, batch_size=8,
                                       progress=stop_after_first_chunk, **LITE)
    ds.reload()
    info = fo_runs.get_ood_run_info(ds, "emb")
    assert ds.has_run(side_key("emb")) and info["status"] == "complete" and info["projection"] == old["projection"]
    done_before = len(ds.exists("tmp_ood_partial_emb"))
    assert 0 < done_before < len(ds)
    base = dict(embeddings_field="emb", model_name="tf_efficientnet_lite0", levels="1", grid=1)
    props = forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="emb", show_advanced=True))
    assert not forms.invalid(props)
    assert "An overwrite of 'emb' with other settings was interrupted" in props["embeddings_field_pending"].view.label
    assert props["project_dim"].default == 4  # the pending overwrite's settings are filled in
    for params in (dict(base, project_dim=4), dict(base, project_dim=0)):  # the overwrite's, the old run's
        assert not forms.invalid(forms.props("compute_pyramid_embeddings", ds, params)), params
    props = forms.props("compute_pyramid_embeddings", ds, dict(base, project_dim=5))  # neither
    assert props["embeddings_field"].invalid and "projection" in props["embeddings_field"].error_message
    out = forms.execute("compute_pyramid_embeddings", ds, dict(base, project_dim=4))
    assert out.result["status"] == "complete"
    assert out.result["num_computed"] == len(ds) - done_before
    ds.reload()
    info = fo_runs.get_ood_run_info(ds, "emb")
    assert info["projection"]["n_components"] == 4 and not ds.has_run(side_key("emb"))
    assert np.stack(ds.values("emb")).shape == (len(ds), 4)
    assert "embeddings_field_pending" not in forms.props("compute_pyramid_embeddings", ds, dict(embeddings_field="emb"))


def test_forms_refuse_a_generated_view_as_target(form_dataset):
    """7. A patches view as target is refused by every form, with the SDK's reason; its dataset is fine."""
    import fiftyone as fo

    from ood_core.fo.view_checks import require_own_dataset

    ds = form_dataset
    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0, 0, .5, .5])])
                           for _ in range(len(ds))])
    patches = ds.to_patches("objs")
    with pytest.raises(OODInputError) as sdk:
        require_own_dataset(patches)
    for name, params in (("score_ood", dict(embeddings_field="vec")), ("compute_pyramid_embeddings", {}),
                         ("compute_ood_visualization", dict(embeddings_field="vec")),
                         ("compute_neglabel_scores", {}), ("compute_rap_scores", {}), ("compute_adaneg_scores", {})):
        assert forms.invalid(forms.props(name, ds, params, view=patches)) == {"target_refused": str(sdk.value)}, name
    assert "generated view" in str(sdk.value)
    assert str(sdk.value) in forms.refusal("compute_pyramid_embeddings", patches, dict(embeddings_field="e"))
    # the App's only other choice there, the patches' base view, is all the patches: refused too
    props = forms.props("score_ood", ds, dict(embeddings_field="vec", view_target="BASE_VIEW"), view=patches)
    assert props["view_target"].type.values == ["BASE_VIEW"] and props["target_refused"].invalid
    props = forms.props("score_ood", ds, dict(embeddings_field="vec"), view=ds.match_tags("test"))
    assert "target_refused" not in props


@pytest.fixture(scope="module")
def pg():
    from pg_loopback import LoopbackPostgres

    server = LoopbackPostgres().start()
    yield server
    server.stop()


def test_score_form_offers_only_the_similarity_indexes_it_can_query(form_dataset, pg):
    """8. A sklearn index, or one of another embeddings field, is not offered; a notice says why."""
    import fiftyone.brain as fob

    ds = form_dataset
    base = dict(embeddings_field="vec", score_field="s", method="knn", reference_tag="trusted", k=3)
    fob.compute_similarity(ds, embeddings="vec", brain_key="sim", backend="sklearn")
    props = forms.props("score_ood", ds, base)
    assert "similarity_index" not in props
    notice = props["similarity_index_refused"].view.label
    assert notice.startswith("Similarity index not offered: 'sim': the Brain's sklearn similarity backend centres "
                             "the embeddings, so its distances are not k-NN scores")
    props = forms.props("score_ood", ds, dict(base, similarity_index="sim"))  # e.g. from Python
    assert props["similarity_index"].invalid and "'sim' cannot be used" in props["similarity_index"].error_message
    import fiftyone as fo

    rng = np.random.default_rng(1)  # 40 more trusted vectors: 60 in all, more than an index run's default k
    ds.add_samples([fo.Sample(filepath=f"/tmp/ood-forms-{i}.png", tags=["trusted"], vec=rng.normal(size=8))
                    for i in range(40)], progress=False)
    ood.compute_knn_scores_with_index(ds, "vec", "via_pg", reference="trusted", brain_key="pg", backend="pgvector",
                                      k=3, connection_string=pg.connection_string, index_type="ivfflat",
                                      ivfflat_lists=1)
    props = forms.props("score_ood", ds, base)
    assert props["similarity_index"].type.values == ["pg"] and "'sim'" in props["similarity_index_refused"].view.label
    # through an index k is a number (no 'auto'): empty = the SDK's default for index runs
    props = forms.props("score_ood", ds, dict(base, k=None, similarity_index="pg"))
    assert props["k"].default == 50 and not forms.invalid(props)
    out = forms.execute("score_ood", ds, dict(base, k=None, similarity_index="pg", score_field="via_index"))
    assert out.result["num_scored"] == 80 and ood.get_ood_run_info(ds, "via_index")["detector"]["k"] == 50
    # the index holds the vectors of 'vec' (its Brain config names no field: the score run that built it does)
    props = forms.props("score_ood", ds, dict(base, embeddings_field="vec40"))
    assert "similarity_index" not in props
    assert "'pg': it holds embeddings of field 'vec', not 'vec40'" in props["similarity_index_refused"].view.label
    fob.compute_similarity(ds, embeddings="vec", brain_key="pg_vec", backend="pgvector", metric="cosine",
                           connection_string=pg.connection_string, index_type="ivfflat", ivfflat_lists=1)
    props = forms.props("score_ood", ds, dict(base, embeddings_field="vec40"))
    assert "'pg_vec': it holds embeddings of field 'vec', not 'vec40'" in props["similarity_index_refused"].view.label
    with pytest.raises(OODInputError, match="similarity index 'pg_vec' holds embeddings of field 'vec', not 'vec40'"):
        ood.compute_knn_scores_with_index(ds, "vec40", "s40", brain_key="pg_vec", k=3,
                                          connection_string=pg.connection_string)
    # an index of object patches answers with labels, not samples: not offered, and the notice says so
    trusted = ds.match_tags("trusted")
    box = [0.1, 0.1, 0.3, 0.3]
    ds.set_values("boxes", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=box)]) for _ in ds])
    patches = {sid: np.asarray(v)[None] for sid, v in zip(trusted.values("id"), trusted.values("vec"))}
    fob.compute_similarity(trusted, patches_field="boxes", embeddings=patches, brain_key="pg_patch",
                           backend="pgvector", metric="cosine", connection_string=pg.connection_string,
                           index_type="ivfflat", ivfflat_lists=1)
    props = forms.props("score_ood", ds, base)
    assert props["similarity_index"].type.values == ["pg", "pg_vec"]
    assert re.search(r"'pg_patch': this similarity index holds embeddings of object patches "
                     r"\(patches_field='boxes'\)", props["similarity_index_refused"].view.label)
    props = forms.props("score_ood", ds, dict(base, similarity_index="pg_patch"))  # e.g. from Python
    assert props["similarity_index"].invalid and "'pg_patch' cannot be used" in props["similarity_index"].error_message
    for key in ("pg", "pg_vec", "pg_patch"):
        ds.load_brain_results(key, connection_string=pg.connection_string).cleanup()
        ds.delete_brain_run(key)


def test_sharded_embeddings_run_has_a_result_view(form_dataset):
    """9. Queuing shards from the form ends with a result view: what was queued, how to run it, where to look."""
    from fiftyone.operators.delegated import DelegatedOperationService

    ds = form_dataset
    out = forms.execute("compute_pyramid_embeddings", ds, dict(embeddings_field="emb", model_name="tf_efficientnet_lite0",
                                                          levels="1", grid=1, num_shards=2.0))
    report = out.result["report"]
    queued = out.result["queued_operations"]
    assert report.startswith("**2 delegated operations queued for embeddings `emb` (one slice of the target each)**")
    assert "- target: 40 samples, about 20 per shard" in report and all(f"`{q}`" in report for q in queued)
    assert "`fiftyone delegated launch` in 2 terminals" in report and "`fiftyone delegated list`" in report
    assert "completes the field `emb`" in report and "Took " in report
    service = DelegatedOperationService()
    service.execute_queued_operations(operator=forms.uri("compute_pyramid_embeddings"), dataset_name=ds.name)
    ds.reload()
    assert len(ds.exists("emb")) == 40


def test_score_operator_from_python_takes_whole_number_floats_and_the_form_default_n_components(form_dataset):
    """10. k=3.0 is 3 (as for every integer input); reduce without n_components uses the form's default."""
    import fiftyone.operators as foo

    from ood_core.fo import runs as fo_runs

    ds = form_dataset
    score = foo.get_operator(forms.uri("score_ood"))
    score(ds, "vec", "s3", method="knn", reference_tag="trusted", k=3.0)
    assert fo_runs.get_ood_run_info(ds, "s3")["detector"]["k"] == 3
    from ood_core.fo.scores import DEFAULT_N_COMPONENTS
    score(ds, "vec40", "pca", method="knn", k=3, reduce="pca")  # unsupervised: 40 samples of 40 dimensions
    assert fo_runs.get_ood_run_info(ds, "pca")["reduction"]["n_components"] == DEFAULT_N_COMPONENTS == 30
    props = forms.props("score_ood", ds, dict(embeddings_field="vec40", reduce="pca", show_advanced=True))
    assert props["n_components"].default == DEFAULT_N_COMPONENTS
    assert "k=2.5 is not a whole number; pass an integer >= 1" in forms.refusal(
        "score_ood", ds, dict(embeddings_field="vec", score_field="s25", method="knn", k=2.5))


def _object_embeddings(ds, n=8):
    """Objects labelled like their images on the first ``n`` samples (``objs``), embedded into ``oemb``."""
    import fiftyone as fo

    ds.set_values("objs", [fo.Detections(detections=[fo.Detection(label=g.label, bounding_box=[0, 0, .9, .9])])
                           if i < n else None for i, g in enumerate(ds.values("ground_truth"))])
    ood.compute_pyramid_embeddings(ds, "oemb", patches_field="objs", progress=False, **LITE)


def test_score_form_with_object_embeddings_takes_only_the_objects_own_labels(form_dataset, session_extractor):
    """11. Object embeddings go with their objects' own labels: another label field is refused on 'Label field'
    with the fix (was FiftyOne's bare "Invalid enum value" on Execute), as image embeddings with a Detections
    field; the objects' field scores the objects and the result view speaks of objects."""
    import fiftyone.operators as foo

    ds = form_dataset
    _object_embeddings(ds)
    params = dict(embeddings_field="oemb", score_field="os", method="knn", label_field="ground_truth", k=2)
    props = forms.props("score_ood", ds, params)
    assert props["label_field"].type.values == ["objs"]
    assert props["label_field"].view.description.startswith("The objects' own labels ('objs': the embeddings are theirs)")
    message = forms.invalid(props).get("label_field", "")
    assert message == ("label field 'ground_truth' does not go with embeddings 'oemb': they are object embeddings "
                       "of the objects of 'objs', whose labels are their own ('objs.detections.label'), so the labels "
                       "of 'ground_truth' would be ignored. Pick 'objs' or leave 'Label field' empty, or to use the "
                       "image labels of 'ground_truth', choose image embeddings in 'Embeddings'")
    assert message in forms.refusal("score_ood", ds, params)
    with pytest.raises(OODInputError, match="the labels of 'ground_truth' would be ignored"):  # the SDK's reason
        ood.compute_ood_scores(ds, "oemb", "os", method="knn", label_field="ground_truth", patches_field="objs")
    # the run itself, reached without the form's validation, gives the SDK's reason (was "are object embeddings")
    with pytest.raises(OODInputError, match="the labels of 'ground_truth' would be ignored"):
        foo.get_operator(forms.uri("score_ood")).execute(forms.context(ds, params))
    wrong_label = forms.invalid(forms.props("score_ood", ds, dict(params, method="class_lof")))
    assert wrong_label.get("label_field") == message
    # image embeddings with the objects' Detections field: refused the other way round
    message = forms.invalid(forms.props("score_ood", ds, dict(params, embeddings_field="vec", label_field="objs")))
    assert message.get("label_field", "").startswith(
        "label field 'objs' is a Detections field, whose labels belong to its objects, but embeddings 'vec' are "
        "image embeddings (one per sample): pick 'ground_truth' (image labels), or, to score the objects, embed")
    # the objects' own field scores the objects, against the trusted ones
    out = forms.execute("score_ood", ds, dict(params, method="pyramid_knn", label_field="objs", reference_tag="trusted",
                                         k=None))
    report = out.result["report"]
    assert out.result["field"] == "objs.detections.os" and "- objects scored: 8 of 8" in report
    assert "- in plain words: each score is the distance to the trusted objects only" in report  # was "images"
    assert "(0 = as typical as the trusted objects, 1 = one of their standard deviations further)" in report


def test_score_form_says_where_object_labels_are_when_a_method_needs_labels(form_dataset, session_extractor):
    """12. Image embeddings and no Classification field: a wrong-label method's 'Label field' points to the
    objects' embeddings (was "needs a Classification or Detections field; this dataset has none")."""
    ds = form_dataset
    _object_embeddings(ds, n=2)
    ds.delete_sample_field("ground_truth")
    props = forms.props("score_ood", ds, dict(embeddings_field="vec", score_field="li", method="class_lof"))
    assert forms.invalid(props).get("label_field") == (
        "method 'class_lof' needs labels: with image embeddings, a Classification field, and this dataset has none; "
        "to check the labels of the objects of 'objs', choose their object embeddings in 'Embeddings' (or compute "
        "them: 'OOD: compute pyramid embeddings' with 'Objects field' 'objs')")
    props = forms.props("score_ood", ds, dict(embeddings_field="oemb", score_field="li", method="class_lof"))
    assert props["label_field"].default == "objs" and "label_field" not in forms.invalid(props)


def test_audit_form_refuses_object_embeddings_on_their_input(form_images, session_extractor):
    """13. The audit scores images: object embeddings are refused on 'Embeddings' with the reason and the way to
    score objects (were "deleted or renamed since the form opened?", or without image embeddings the SDK's "does
    not exist" on Execute)."""
    import numpy as np

    ds = form_images
    _object_embeddings(ds, n=2)
    params = dict(embeddings_field="oemb", audit_key="a0", near_duplicates=False)
    message = ("embeddings 'oemb' are object embeddings (one per object of 'objs'), but this form scores images and "
               "needs image embeddings (one per sample): pick image embeddings in the list, or leave it empty to "
               "compute them; to score the objects of 'objs', use 'OOD: score samples' with 'oemb'")
    props = forms.props("audit_dataset", ds, params)
    assert forms.invalid(props) == {"embeddings_field": message}
    assert "object embeddings are not used" in props["embeddings_note"].view.label
    assert message in forms.refusal("audit_dataset", ds, params)
    # the SDK says the same (was "does not exist ...; pass embeddings_field='auto'")
    with pytest.raises(OODInputError, match=r"'oemb' are object embeddings \(one per object of 'objs'\), but the audit "
                                            r"scores images.*patches_field='objs'"):
        ood.audit(ds, embeddings_field="oemb", audit_key="a1", near_duplicates=False, progress=False)
    ds.set_values("vec", list(np.random.default_rng(0).normal(size=(len(ds), 8)).astype(np.float32)))
    props = forms.props("audit_dataset", ds, params)  # image embeddings offered: the same reason
    assert forms.invalid(props) == {"embeddings_field": message} and props["embeddings_field"].type.values == ["vec"]
    assert "embeddings_note" not in props and not forms.invalid(forms.props("audit_dataset", ds, {}))


def test_a_wrong_label_run_ignores_a_reference_tag_its_form_does_not_show(form_dataset):
    """14. The score form hides 'Reference tag' for wrong-label methods, but a tag left in the params by an earlier
    OOD method (the App keeps a hidden input's value) reached the run and changed what the votes were fitted on.
    The run now scores as its form shows: without a reference."""
    ds = form_dataset
    params = dict(embeddings_field="vec", score_field="li_form", method="weighted_label_vote",
                  label_field="ground_truth", reference_tag="trusted")
    props = forms.props("score_ood", ds, params)
    assert "reference_tag" not in props and not forms.invalid(props)
    forms.execute("score_ood", ds, params).raise_exceptions()
    ood.compute_ood_scores(ds, "vec", "li_sdk", method="weighted_label_vote", label_field="ground_truth")
    np.testing.assert_allclose(ds.values("li_form"), ds.values("li_sdk"))
    assert ood.get_ood_run_info(ds, "li_form").get("reference") in (None, {})
