"""CLIP image embeddings of a view, recorded with the encoder that made them."""

import json

from . import runs
from ..errors import OODInputError
from .items import SKIP_FAILURES
from .clip_common import (
    DEFAULT_CLIP_EMBEDDINGS_FIELD,
    DEFAULT_MODEL_NAME,
    DEFAULT_PRETRAINED,
    check_skip_failures,
    encode_samples,
    encoder_info,
    make_encoder,
)
from ..images import decoding_record
from .names import validate_key
from .run_records import list_ood_runs
from .run_info import get_ood_run_info


def compute_clip_embeddings(
    samples,
    embeddings_field=DEFAULT_CLIP_EMBEDDINGS_FIELD,
    *,
    model_name=DEFAULT_MODEL_NAME,
    pretrained=DEFAULT_PRETRAINED,
    quick_gelu=None,
    device="cpu",
    batch_size=32,
    skip_failures=SKIP_FAILURES,
    overwrite=False,
    progress=None,
):
    """Compute CLIP image embeddings for every sample of a view and record the encoder.

    The embeddings (unit L2 norm, float32) go to a vector field; an ``embeddings`` run
    with the same key records the model name, the weights (open_clip tag, or the file
    path and a content hash of it) and the QuickGELU switch, so that
    :func:`compute_neglabel_scores` / :func:`compute_rap_scores` can reuse them and
    refuse them when they would embed the label prompts with another encoder. The field
    also works with :func:`ood_core.fo.scores.compute_ood_scores` (k-NN on CLIP features).

    Args:
        samples: a Dataset or view.
        embeddings_field: the vector field to write; also the run key.
        model_name: an open_clip architecture, e.g. ``"ViT-B-16"`` (NegLabel's default).
        pretrained: an open_clip pretrained tag (``"openai"``: local caches, then the
            hub) or a local weights file (``.safetensors`` recommended; ``.pt`` files are
            read with ``weights_only=True``). Offline, pass a file.
        quick_gelu: force QuickGELU; ``None`` = on for the ``"openai"`` tag, off for files.
            Pass ``True`` for OpenAI weights loaded from a file.
        device: torch device, default ``"cpu"``.
        batch_size: images per forward pass.
        skip_failures: ``True`` (default): an unreadable image gets no embedding, a warning and a line
            in the run's results (``failures``); ``False``: the first one raises.
        overwrite: allow replacing an existing field / run of that name.
        progress: ``None``/``True`` tqdm bar, ``False`` silent, or ``f(done, total)``.

    Returns:
        a dict summary: ``run_key``, ``field``, ``num_embedded``, ``num_failed``,
        ``dim``, ``clip`` (the recorded encoder description).

    Raises:
        WeightsNotFoundError: the tag's weights are neither cached nor downloadable.
        OODInputError: bad arguments, an existing field/run without ``overwrite``, an
            unreadable image with ``skip_failures=False``, a view with no readable image.
    """
    import fiftyone.core.fields as fof

    from .items import require_nonempty, values_by_key

    require_nonempty(samples)
    validate_key(embeddings_field, "embeddings field")
    runs.check_new_run(samples, embeddings_field, [embeddings_field], overwrite, kind="embeddings")
    check_skip_failures(skip_failures)
    encoder = make_encoder(model_name, pretrained, quick_gelu, device)
    clip_info = encoder_info(encoder)
    decoding = decoding_record(encoder.decode_size)
    _refuse_mixed_encoders(samples, embeddings_field, clip_info, decoding, overwrite)
    keys, X, failures = encode_samples(
        samples, encoder, batch_size=batch_size, skip_failures=skip_failures, progress=progress
    )
    if not keys:
        raise OODInputError(f"no image of the view could be read ({len(failures)} failed; first: "
                            f"{failures[0]['error'] if failures else 'none'}); nothing was written")
    summary = {
        "run_key": embeddings_field,
        "field": embeddings_field,
        "num_embedded": len(keys),
        "num_failed": len(failures),
        "dim": int(encoder.embed_dim),
        "clip": clip_info,
    }
    runs.write_and_record(
        samples,
        [(embeddings_field, values_by_key(samples, dict(zip(keys, X)), None,
                                                  read_ids=list(keys) + [f["id"] for f in failures]), fof.VectorField)],
        embeddings_field,
        kind="embeddings",
        overwrite=overwrite,
        embeddings_field=embeddings_field,
        patches_field=None,
        backbone=clip_info,
        decoding=decoding,
        projection=None,
        dtype="float32",
        batch_size=batch_size,
        results={"failures": failures, "num_embedded": len(keys)},
    )
    return summary


def _refuse_mixed_encoders(samples, embeddings_field, clip_info, decoding, overwrite):
    """Overwriting from a view keeps the other samples' embeddings: only when they come from the same encoder,
    from files read the same way (:func:`ood_core.images.decoding_record`)."""
    from .embedding_plans import settings_diff
    from .items import is_whole_dataset

    dataset = samples._dataset
    if not overwrite or is_whole_dataset(samples) or embeddings_field not in list_ood_runs(samples,
                                                                                                kind="embeddings"):
        return
    info = get_ood_run_info(samples, embeddings_field)
    old = info.get("backbone")
    if json.dumps(old, sort_keys=True, default=str) != json.dumps(clip_info, sort_keys=True, default=str):
        raise OODInputError(
            f"CLIP embeddings {embeddings_field!r} on dataset {dataset.name!r} come from another encoder ({old}); "
            f"overwriting them on a view with {clip_info} would leave the other samples' under the new record. "
            "Overwrite on the whole dataset, or choose another embeddings_field"
        )
    differs = settings_diff({"decoding": info.get("decoding")}, {"decoding": decoding})
    if differs:
        raise OODInputError(
            f"CLIP embeddings {embeddings_field!r} on dataset {dataset.name!r} were made from files read another "
            f"way ({differs}); overwriting them on a view would leave the other samples' under the new record. "
            "Overwrite on the whole dataset, or choose another embeddings_field"
        )
