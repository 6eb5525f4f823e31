"""File parameters typed into the App are read only from the allowed folders."""

import pytest


def test_app_refuses_a_word_list_outside_the_allowed_folders(dataset_factory, monkeypatch, tmp_path):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    monkeypatch.setenv("FIFTYONE_OOD_ALLOWED_DIRS", str(tmp_path))
    ds = dataset_factory([f"/tmp/app_paths_{i}.png" for i in range(3)])
    (tmp_path / "clip.safetensors").write_bytes(b"")  # weights inside the allowed folders (the form checks them)
    params = dict(id_source="labels", id_labels="cat, dog", score_field="nl", word_list="/etc/hostname",
                  model_name="ViT-B-16", weights=str(tmp_path / "clip.safetensors"))
    for uri in ("compute_neglabel_scores", "compute_adaneg_scores"):
        with pytest.raises(ExecutionError, match=r"word_list.*allowed folders") as err:
            foo.execute_operator(f"@fiftyone-ood/ood/{uri}", dict(view=ds.view()), params=params)
        assert "/etc/hostname" not in str(err.value).split("allowed folders")[1]  # no content, no probing
    with pytest.raises(ExecutionError, match=r"weights.*allowed folders"):
        foo.execute_operator("@fiftyone-ood/ood/compute_neglabel_scores", dict(view=ds.view()),
                             params=dict(params, word_list="", weights="/root/.ssh/id_rsa.pt"))
    assert not ds.has_field("nl")


def test_operator_integer_parameters_are_whole_numbers(dataset_factory, monkeypatch, tmp_path):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    from operators.base import int_param

    assert int_param({"k": 3.0}, "k", 5) == 3 and int_param({}, "k", 5) == 5  # the App's JSON numbers
    for bad in (2.5, "10", True):
        with pytest.raises(ValueError, match="whole number"):
            int_param({"k": bad}, "k", 5)
    monkeypatch.setenv("FIFTYONE_OOD_ALLOWED_DIRS", str(tmp_path))
    ds = dataset_factory([f"/tmp/app_ints_{i}.png" for i in range(3)])
    with pytest.raises(ExecutionError, match=r"batch_size=2\.5 is not a whole number"):
        foo.execute_operator("@fiftyone-ood/ood/compute_pyramid_embeddings", dict(view=ds.view()),
                             params=dict(embeddings_field="e", batch_size=2.5))
    with pytest.raises(ExecutionError, match=r"weights.*allowed folders"):
        foo.execute_operator("@fiftyone-ood/ood/compute_pyramid_embeddings", dict(view=ds.view()),
                             params=dict(embeddings_field="e", weights="/etc/ssl/private/key.safetensors"))
    assert not ds.has_field("e")
