"""Shared steps of the CLIP scorers' FiftyOne layer: the encoder, image embeddings, outputs.

Used by :mod:`.clip_embeddings`, :mod:`.neglabel`, :mod:`.rap`, :mod:`.adaneg` and
:mod:`.clip_explain`. Encoder identity: :func:`encoder_info` is what
``compute_clip_embeddings`` records (model, weights tag or content hash, QuickGELU);
the scorers refuse stored image embeddings made by another encoder than the one they
embed the label prompts with, since image and text embeddings are only comparable
within one CLIP model.
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from . import runs
from ..errors import OODInputError
from ..images import ImageLoadError
from ..progress import Progress
from ..validation import is_int
from .names import validate_key
from .run_info import get_ood_run_info
from .run_records import list_ood_runs

logger = logging.getLogger(__name__)

DEFAULT_CLIP_EMBEDDINGS_FIELD = "clip_embeddings"
DEFAULT_MODEL_NAME = "ViT-B-16"
DEFAULT_PRETRAINED = "openai"
SCORE_CONVENTION = "ood_score = 1 - S(x) in [0, 1]; higher = more out-of-distribution"
PROCESSING_ORDER = "sample id ascending"


# --------------------------------------------------------------------------- encoder and image embeddings


def make_encoder(model_name, pretrained, quick_gelu, device, *, lazy=False):
    from ..clip.encoder import CLIPEncoder
    from ..validation import check_device

    if quick_gelu is not None and not isinstance(quick_gelu, (bool, np.bool_)):
        raise OODInputError(f"quick_gelu={quick_gelu!r} is not valid; pass True, False or None (the model's own)")
    check_device(device)

    return CLIPEncoder(
        model_name or DEFAULT_MODEL_NAME,
        pretrained or DEFAULT_PRETRAINED,
        quick_gelu=quick_gelu,
        device=device,
        lazy=lazy,
    )


def encoder_info(encoder):
    """JSON description of an encoder, stored in run configs."""
    pretrained = encoder.pretrained
    if encoder.weights_file is not None and os.path.isfile(os.path.expanduser(pretrained)):
        pretrained = os.path.abspath(os.path.expanduser(pretrained))
    return {
        "kind": "clip",
        "model_name": encoder.model_name,
        "pretrained": pretrained,
        "quick_gelu": bool(encoder.quick_gelu),
        "weights_identity": encoder.weights_identity,
        "embed_dim": int(encoder.embed_dim),
    }


def clip_embeddings_record(samples, embeddings_field):
    """The ``backbone`` config of the CLIP embeddings run that wrote ``embeddings_field``."""
    dataset = samples._dataset
    if not isinstance(embeddings_field, str) or not embeddings_field:
        raise OODInputError(f"embeddings_field={embeddings_field!r} is not a field name; pass the name of the field "
                            "compute_clip_embeddings wrote, as a string, or None to encode the images during scoring")
    if dataset.get_field(embeddings_field) is None:
        raise OODInputError(
            f"embeddings field {embeddings_field!r} does not exist on dataset {dataset.name!r}; "
            f"compute it with compute_clip_embeddings(samples, {embeddings_field!r}, model_name=..., "
            "pretrained=...) or leave embeddings_field=None to encode the images during scoring"
        )
    if embeddings_field not in list_ood_runs(samples, kind="embeddings"):
        raise OODInputError(
            f"field {embeddings_field!r} has no fiftyone-ood embeddings run, so nothing records which "
            "CLIP model produced it (image and text embeddings are only comparable within one model); "
            f"compute it with compute_clip_embeddings(samples, {embeddings_field!r}, ...) or leave "
            "embeddings_field=None"
        )
    backbone = get_ood_run_info(samples, embeddings_field).get("backbone") or {}
    if backbone.get("kind") != "clip":
        raise OODInputError(
            f"embeddings {embeddings_field!r} were computed by {backbone.get('model_name', 'a non-CLIP model')!r}, "
            "not by a CLIP model; NegLabel and RAP need CLIP image embeddings: run "
            "compute_clip_embeddings(samples, 'clip_embeddings', ...) and pass that field, or leave "
            "embeddings_field=None"
        )
    return backbone


def resolve_encoder_args(samples, embeddings_field, model_name, pretrained, quick_gelu):
    """Missing model arguments default to the embeddings run's, else ViT-B-16 / openai."""
    if embeddings_field is None or (model_name and pretrained):
        return model_name, pretrained, quick_gelu
    record = clip_embeddings_record(samples, embeddings_field)
    if model_name is None and pretrained is None and quick_gelu is None:
        return record["model_name"], record["pretrained"], record["quick_gelu"]
    return model_name or record["model_name"], pretrained or record["pretrained"], quick_gelu


def check_clip_embeddings_cover(samples, embeddings_field):
    """Refuse stored CLIP embeddings of which no sample of ``samples`` has one (the run covered other samples),
    with the CLIP ways out (the shared reader's "compute embeddings" names neither)."""
    from .items import num_samples

    if num_samples(samples.exists(embeddings_field)) == 0:
        raise OODInputError(
            f"no sample of this view has a CLIP embedding in {embeddings_field!r} (its embeddings run covered "
            "other samples); embed this view with the same encoder: ood.compute_clip_embeddings(view, "
            f"{embeddings_field!r}, overwrite=True, ...), or pass embeddings_field=None to encode the images now")


def read_clip_embeddings(samples, embeddings_field, encoder):
    """``(ids, X, read_ids)`` of the samples that have a stored embedding made by ``encoder``; ``read_ids``: every
    sample of that read, with an embedding or without."""
    from .items import read_embeddings_and_ids

    record = clip_embeddings_record(samples, embeddings_field)
    check_clip_embeddings_cover(samples, embeddings_field)
    # the shared reader: skips samples without an embedding, refuses mixed shapes, NaN rows and non-vectors
    keys, X, _, read_ids = read_embeddings_and_ids(samples, embeddings_field)
    if X.shape[1] != encoder.embed_dim:
        raise OODInputError(
            f"image embeddings in {embeddings_field!r} have dimension {X.shape[1]} but the text embeddings "
            f"of CLIP model {encoder.model_name!r} have dimension {encoder.embed_dim}; image and text "
            "embeddings must come from the same CLIP model: pass the model_name/pretrained the embeddings "
            f"were computed with ({record.get('model_name')!r}, {record.get('pretrained')!r}) or recompute "
            "them with compute_clip_embeddings(..., overwrite=True)"
        )
    if record.get("weights_identity") != encoder.weights_identity:
        raise OODInputError(
            f"embeddings {embeddings_field!r} were computed with {record.get('weights_identity')!r} but the "
            f"label prompts would be encoded with {encoder.weights_identity!r}; image and text embeddings "
            "are only comparable within one CLIP model and weights: pass the same model_name, pretrained "
            "and quick_gelu as the embeddings run (or omit all three to take them from it), or recompute "
            "the embeddings with compute_clip_embeddings(..., overwrite=True)"
        )
    return keys, X, read_ids


def check_skip_failures(skip_failures):
    """A string such as ``"no"`` would count as True and skip the images the user meant to stop at."""
    if not isinstance(skip_failures, (bool, np.bool_)):
        raise OODInputError(f"skip_failures={skip_failures!r} is not valid; pass True (skip unreadable images, warn "
                            "and list them in the run's results) or False (stop at the first one)")


def encode_samples(samples, encoder, *, batch_size, skip_failures, progress):
    """Encode a view's images in batches: ``(ids, X (N, D), failures)``."""
    from .view_checks import require_images

    require_images(samples, "CLIP image encoding")
    if not is_int(batch_size) or batch_size < 1:
        raise OODInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    ids, paths = samples.values(["id", "filepath"])  # one read: each id with its own file, whatever the order
    keys, chunks, failures = [], [], []
    with Progress(progress, len(ids), "CLIP image embeddings") as bar:
        for start in range(0, len(ids), int(batch_size)):
            stop = min(len(ids), start + int(batch_size))
            tensors, ok = [], []
            for i in range(start, stop):
                try:
                    tensors.append(prepare_image(encoder, paths[i]))
                    ok.append(i)
                except ImageLoadError as e:
                    if not skip_failures:  # the sample to look up in FiftyOne, besides the file
                        raise ImageLoadError(f"{e.problem} (sample {ids[i]})", e.fix, e.skip_hint) from e
                    failures.append({"id": ids[i], "filepath": paths[i], "error": e.skipped_message})
            if tensors:
                chunks.append(encoder.encode_prepared(tensors, batch_size=len(tensors), progress=False))
                keys.extend(ids[i] for i in ok)
            bar.update(stop - start)
    for f in failures:
        logger.warning("skipped sample %s: %s", f["id"], f["error"])
    if failures and not keys:
        raise OODInputError(
            f"none of the {len(failures):,} images of the view could be read (the first: {failures[0]['error']}); "
            "nothing was written. Check that the media files are where the samples' filepaths say (a moved "
            "dataset?), then run again")
    X = np.concatenate(chunks) if chunks else np.zeros((0, encoder.embed_dim), np.float32)
    return keys, X, failures


def prepare_image(encoder, path):
    """The encoder's input tensor for the image file ``path``; :class:`ImageLoadError` naming the file when it
    cannot be read, or when the model's preprocessing cannot take the decoded image (a degenerate size)."""
    from ..images import SKIP_HINT

    encoder.preprocess  # noqa: B018 -- loads the model first: a weights error is not this image's problem
    image = encoder.load_image(path)  # a large JPEG decoded reduced, as encode_images reads files
    try:
        return encoder.prepare_image(image)
    except Exception as e:  # whatever the transform raises is this image's problem
        raise ImageLoadError(
            f"image file {path!r} ({image.size[0]} x {image.size[1]} pixels) could not be prepared for CLIP model "
            f"{encoder.model_name!r} ({type(e).__name__}: {e})",
            "crop or resize the image to ordinary proportions, or remove the sample", SKIP_HINT) from e


def image_embeddings(samples, encoder, stored, *, batch_size, skip_failures, progress):
    """``(ids, X, failures, read_ids)``: ``stored`` = ``(ids, X, read_ids)`` read from an embeddings field, else
    the images encoded now; ``read_ids``: every sample read (encoded, skipped, or without a stored embedding)."""
    if stored is not None:
        return stored[0], stored[1], [], stored[2]
    keys, X, failures = encode_samples(
        samples, encoder, batch_size=batch_size, skip_failures=skip_failures, progress=progress
    )
    if not keys:
        raise OODInputError("no image of this view could be read; see the warnings for each file")
    return keys, X, failures, list(keys) + [f["id"] for f in failures]  # (encode_samples reads each id once)


# --------------------------------------------------------------------------- outputs


def check_outputs(samples, score_field, prediction_field, run_key, overwrite, *, reads=()):
    """Refuse bad or clobbering outputs before any work; ``reads``: fields the call reads (labels, embeddings)."""
    validate_key(score_field, "score field")
    fields = [score_field]
    if prediction_field is not None:
        validate_key(prediction_field, "prediction field")
        if prediction_field == score_field:
            raise OODInputError(
                f"score_field and prediction_field are both {score_field!r}; give them different names"
            )
        fields.append(prediction_field)
    runs.check_new_run(samples, run_key, fields, overwrite, reads=reads)


def prediction_writes(samples, prediction_field, keys, labels, confidences, read_ids=None):
    """The predicted-class write that goes with the scores (none without ``prediction_field``); ``read_ids``: as
    for :func:`.runs.record_scores`."""
    import fiftyone.core.labels as fol

    from .items import values_by_key

    writes = []
    if prediction_field is not None:
        by_key = {
            k: fol.Classification(label=str(lab), confidence=float(c))
            for k, lab, c in zip(keys, labels, confidences)
        }
        # keyed by sample id (written by id); the identity keeps each Classification as it is
        writes.append((prediction_field, values_by_key(samples, by_key, None, lambda v: v, read_ids)))
    return writes


def score_quantiles(scores):
    return {q: float(np.quantile(scores, q / 100)) for q in (5, 50, 95)}




# --------------------------------------------------------------------------- the steps every scorer shares


@dataclass
class ScorerInputs:
    """Everything a CLIP scorer reads before fitting: classes, encoder, vocabulary, images.

    ``keys``/``X``: ids and embeddings of the samples to score, in **ascending sample id**
    order (:data:`PROCESSING_ORDER`), so order-dependent methods are deterministic.
    """

    id_names: list
    encoder: object
    lexicon: object
    keys: list
    X: np.ndarray
    failures: list = field(default_factory=list)
    lexicon_record: dict = field(default_factory=dict)
    #: every sample the images were read for (scored or skipped): the write gives exactly these a value
    read_ids: list = None


def prepare_scorer_inputs(samples, id_names, *, embeddings_field, model_name, pretrained, quick_gelu, device,
                          vocabulary, counts, batch_size, skip_failures, progress):
    """Read the encoder, the vocabulary and the image embeddings of the samples to score.

    ``id_names``: from :func:`.clip_vocabulary.resolve_id_labels`. ``vocabulary``: keyword
    arguments of :func:`.clip_vocabulary.load_vocabulary`; ``counts``: of
    :func:`.clip_vocabulary.check_counts_early` (checked before the slow image encoding).
    """
    from .clip_vocabulary import (
        check_counts_early,
        check_vocabulary,
        lexicon_info,
        load_vocabulary,
    )

    check_skip_failures(skip_failures)
    model_name, pretrained, quick_gelu = resolve_encoder_args(
        samples, embeddings_field, model_name, pretrained, quick_gelu)
    lex = load_vocabulary(**vocabulary)  # the vocabulary's checks come before the model loads
    check_vocabulary(lex, id_names, removes_id_names=counts.get("removes_id_names", True))
    check_counts_early(lex, id_names, **counts)
    encoder = make_encoder(model_name, pretrained, quick_gelu, device)
    stored = None if embeddings_field is None else read_clip_embeddings(samples, embeddings_field, encoder)
    keys, X, failures, read_ids = image_embeddings(
        samples, encoder, stored, batch_size=batch_size, skip_failures=skip_failures, progress=progress)
    order = np.argsort(np.asarray(keys, dtype=str), kind="stable")
    return ScorerInputs(id_names, encoder, lex, [keys[i] for i in order], X[order], failures,
                        lexicon_info(lex, **{k: vocabulary[k] for k in ("cross_pos", "parts_of_speech")}), read_ids)


def record_clip_scores(samples, run_key, *, kind, inputs, scores, predictions, score_field, prediction_field,
                       label_field, embeddings_field, overwrite, results, **params):
    """Write the scores (and predicted classes) and record the run, all-or-nothing.

    ``predictions``: ``(labels, confidences)`` aligned with ``inputs.keys``.
    """
    labels, confidences = predictions
    runs.record_scores(
        samples, run_key, kind=kind, score_field=score_field,
        scores_by_key=dict(zip(inputs.keys, np.asarray(scores, np.float64))),
        extra_writes=prediction_writes(samples, prediction_field, inputs.keys, labels, confidences, inputs.read_ids),
        read_ids=inputs.read_ids, overwrite=overwrite, reads=[label_field, embeddings_field],
        prediction_field=prediction_field,
        label_field=label_field,
        id_labels=list(inputs.id_names), embeddings_field=embeddings_field, clip=encoder_info(inputs.encoder),
        lexicon=inputs.lexicon_record, score_convention=SCORE_CONVENTION, results=results, **params,
    )


def scores_summary(samples, run_key, score_field, prediction_field, inputs, scores, **extra):
    """The dict a scorer returns (and stores in its results)."""
    return {
        "run_key": run_key,
        "field": score_field,
        "prediction_field": prediction_field,
        "num_scored": int(len(inputs.keys)),
        "num_skipped": int(len(inputs.read_ids) - len(inputs.keys)),  # of the samples read
        **extra,
        "id_labels": list(inputs.id_names),
        "score_quantiles": score_quantiles(scores),
    }
