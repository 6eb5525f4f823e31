"""Real photos for tests: the 20 ImageNet validation images foolbox ships as samples (installed by ``setup.sh``)."""

import glob
import importlib.util
import os


def foolbox_imagenet():
    """``(files, labels)``: the sample photos' paths, sorted, and their ImageNet class numbers (in the names)."""
    # foolbox is installed --no-deps only for its sample images; importing it would need eagerpy.
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None, "foolbox sample images missing: run ./setup.sh"
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    files = sorted(glob.glob(os.path.join(folder, "imagenet_*.jpg")))
    labels = [int(os.path.basename(f).rsplit("_", 1)[1].split(".")[0]) for f in files]
    return files, labels
