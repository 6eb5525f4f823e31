"""The App's first pass of a form, and the parameter names a Python ``op(view, ...)`` call may use.

The App resolves a form first with no value at all, shows it with each input's default filled in, and resolves it
again with those values: the first screen must already be the one of the values it shows."""

import asyncio
import pathlib

import pytest
import yaml

import form_helpers as forms

OPERATORS = yaml.safe_load((pathlib.Path(__file__).resolve().parents[1] / "fiftyone.yml").read_text())["operators"]


def _app_form(ds, params):
    """The form's properties as the App gets them for ``params`` (FiftyOne's resolve-type path of the App server)."""
    from fiftyone.operators.executor import resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    def resolve(name):
        request = dict(dataset_name=ds.name, params=dict(params), selected=[], view=ds.view()._serialize())
        prop = asyncio.run(resolve_type(OperatorRegistry(), forms.uri(name), request))
        assert not getattr(prop, "error", None), prop.error
        return prop.type.properties
    return resolve


def _screen(properties):
    """What the user reads on the form: each input's label, description, default and error, each notice's text."""
    import fiftyone.operators.types as types

    out = {}
    for name, prop in properties.items():
        view = prop.view or types.View()
        out[name] = (getattr(view, "label", None) or getattr(prop, "label", None),
                     getattr(view, "description", None) or getattr(prop, "description", None),
                     prop.default, prop.invalid, prop.error_message)
    return out


def _app_passes(ds, name):
    """The screens of the App's passes: the first (no values), then one per round of the defaults it fills in
    (each input it shows, with a default, not yet filled: SchemaIO's default values), until none is new."""
    import fiftyone.operators.types as types

    params, screens = {}, []
    for _ in range(6):
        properties = _app_form(ds, params)(name)
        screens.append(_screen(properties))
        new = {n: p.default for n, p in properties.items() if n != "view_target" and n not in params
               and not isinstance(p.type, types.Void) and p.default is not None}
        if not new:
            return params, screens
        params.update(new)
    raise AssertionError(f"the defaults of {name}'s form kept changing: {params}")


@pytest.fixture
def uncovered_dataset(form_dataset):
    """``form_dataset`` whose trusted samples of one class lost their tag (that class has none)."""
    from fiftyone import ViewField as F

    ds = form_dataset
    cls = ds.match_tags("trusted").first().ground_truth.label
    ds.match_tags("trusted").match(F("ground_truth.label") == cls).untag_samples("trusted")
    return ds, cls


def test_the_score_forms_first_app_pass_warns_about_classes_without_a_trusted_sample(uncovered_dataset):
    """The form read the reference tag as the run of a Python call without it does (absent: no reference), so the
    App's first pass, before it sends the preselected 'trusted', had no "Classes without a trusted sample" warning
    under 'trusted' shown in 'Reference tag'; it appeared a pass later. Now the first screen has it."""
    ds, cls = uncovered_dataset
    params, screens = _app_passes(ds, "score_ood")
    assert params["reference_tag"] == "trusted" and params["label_field"] == "ground_truth", params
    first, settled = screens[0], screens[-1]
    assert "uncovered_classes" in first, sorted(first)
    assert repr(cls) in first["uncovered_classes"][1], first["uncovered_classes"]
    assert first == settled


@pytest.mark.parametrize("name", OPERATORS)
def test_every_forms_first_app_pass_is_the_screen_of_the_defaults_it_shows(uncovered_dataset, name):
    ds, _ = uncovered_dataset
    import ood_core as ood

    ood.compute_ood_scores(ds, "vec", "x", method="knn", k=3)  # a run for 'manage runs'
    _, screens = _app_passes(ds, name)
    assert screens[0] == screens[-1], {n: (screens[0].get(n), screens[-1].get(n))
                                       for n in set(screens[0]) | set(screens[-1])
                                       if screens[0].get(n) != screens[-1].get(n)}


def test_a_python_call_without_reference_tag_is_still_checked_without_a_reference(uncovered_dataset):
    """The first-pass defaults are the App's only: a run resolves the form with the params it is given, and a
    Python call without reference_tag scores without a reference, so its form shows no uncovered-classes warning
    and checks k against the whole target."""
    ds, _ = uncovered_dataset
    params = dict(embeddings_field="vec", score_field="s", method="pyramid_knn", label_field="ground_truth")
    assert "uncovered_classes" not in forms.props("score_ood", ds, params)
    assert "uncovered_classes" in forms.props("score_ood", ds, dict(params, reference_tag="trusted"))


def test_the_score_forms_first_app_pass_refuses_a_preselected_tag_whose_samples_have_no_embedding(form_dataset):
    """Trusted samples without embeddings: the first screen checked the fit on the target (no tag read) and said
    nothing; a pass later 'Reference tag' was refused. Now the first screen refuses it."""
    ds = form_dataset
    ds.match_tags("trusted").set_field("vec", None).save()
    params, screens = _app_passes(ds, "score_ood")
    assert params["reference_tag"] == "trusted", params
    label, description, default, invalid, message = screens[0]["reference_tag"]
    assert invalid and "'trusted'" in message and "'vec'" in message, message
    assert screens[0] == screens[-1]


# ----------------------------------------------------------------------------- Python calls: parameter names


def _op(name):
    import fiftyone.operators as foo

    return foo.get_operator(forms.uri(name))


def test_a_misspelt_keyword_given_none_is_refused_by_name(form_dataset):
    """``refrence_tag=None`` means something (no reference): refused like any misspelt name, with the right one."""
    from ood_core.errors import OODInputError

    ds = form_dataset
    with pytest.raises(OODInputError, match=r"'refrence_tag' \(did you mean 'reference_tag'\?\)"):
        _op("score_ood")(ds, "vec", "s", method="knn", k=3, refrence_tag=None)
    assert "s" not in ds.get_field_schema() and not ds.has_run("s")


def test_a_known_keyword_is_found_on_a_dataset_with_more_tags_than_the_search_tries(form_dataset):
    """The names a form shows only for another choice (``n_components`` for a 'Reduction') were looked for input by
    input, within :data:`operators.param_names.MAX_RESOLUTIONS` resolutions: a tag dropdown with more values used
    them up first, so the call was refused as "unknown parameter(s) 'n_components'" (accepted with 2 tags). Now
    every choice input gets a turn; a misspelt name is still refused."""
    from ood_core.errors import OODInputError
    from operators.param_names import MAX_RESOLUTIONS

    ds = form_dataset
    per_sample = MAX_RESOLUTIONS // len(ds) + 1
    for i, sample in enumerate(ds.iter_samples(autosave=True)):
        sample.tags = sample.tags + [f"batch{i}_{j}" for j in range(per_sample)]
    assert len(ds.distinct("tags")) > MAX_RESOLUTIONS
    _op("score_ood")(ds, "vec", "s", method="knn", k=3, reference_tag="trusted", n_components=4)
    assert ds.count("s") == len(ds)
    with pytest.raises(OODInputError, match=r"'n_component' \(did you mean 'n_components'\?\)"):
        _op("score_ood")(ds, "vec", "s2", method="knn", k=3, reference_tag="trusted", n_component=4)
    assert "s2" not in ds.get_field_schema()
