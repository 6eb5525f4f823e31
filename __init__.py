"""FiftyOne plugin entry point of fiftyone-ood.

When the plugin is used from a plugins directory (not ``pip install``-ed),
``ood_core`` lives beside this file; make it importable before the operators
import it.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if "ood_core" not in sys.modules and os.path.isdir(os.path.join(_HERE, "ood_core")) and _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from .operators import OPERATORS  # noqa: E402


def register(p):
    for operator in OPERATORS:
        p.register(operator)
