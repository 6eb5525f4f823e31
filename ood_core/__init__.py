"""fiftyone-ood core: feature-pyramid and CLIP negative-label OOD scoring.

Score convention, everywhere in this package: **a higher score means more
out-of-distribution** (more suspicious: unlike the training/reference data, or
a label that is probably wrong). Every metric states which class is positive.

Importing this package is cheap: torch, timm, open_clip, umap, nltk and faiss
are imported lazily inside the functions that need them.
"""

__version__ = "0.1.0"
