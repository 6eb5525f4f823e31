"""The names this package gives its runs and its temporary fields, and the rule for the names users choose.

Every run record of this package carries ``ood_plugin=PLUGIN_TAG``. Temporary fields and run keys start with
:data:`TMP_PREFIX` and have one of the exact shapes of :data:`INTERNAL_NAME` (a field a user called
``tmp_ood_notes`` by hand is not ours: repair never deletes it).
"""

import re

from ..errors import OODInputError

#: the ``ood_plugin`` of every run record of this package
PLUGIN_TAG = "fiftyone-ood"
#: prefix of every temporary field and run key of this package (hidden from users)
TMP_PREFIX = "tmp_ood_"
BACKUP_RUN_PREFIX = "tmp_ood_backup_"
#: the exact shapes of those names (a random token, or a resumable extraction's ``partial_<field>``): a field or
#: run a user named ``tmp_ood_notes`` by hand is not the package's, and repair never deletes it
INTERNAL_NAME = r"^tmp_ood_(?:(?:old_)?[0-9a-f]{10}|backup_[0-9a-f]{12}|partial_.+)$"


def is_internal(name):
    """Whether a field path or run key is one of the package's temporary ones (:data:`INTERNAL_NAME`)."""
    return re.match(INTERNAL_NAME, name.rpartition(".")[2]) is not None


def validate_key(key, what="run key"):
    """``key`` if a user may name a run or field so (an identifier, not starting with ``_`` or :data:`TMP_PREFIX`)."""
    if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
        raise OODInputError(
            f"{what} {key!r} is not valid: use letters, digits and underscores, not starting "
            "with a digit or underscore (e.g. 'ood_knn')"
        )
    if key.startswith(TMP_PREFIX):
        raise OODInputError(f"{what} {key!r} is reserved: names starting with 'tmp_ood_' are the plugin's own "
                            "temporary fields; choose another name")
    return key
