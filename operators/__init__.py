"""Operators of the fiftyone-ood plugin: one module per operator family."""

from .embeddings import ComputePyramidEmbeddings
from .runs import ManageOODRuns
from .scoring import ScoreOOD
from .visualization import ComputeOODVisualization

OPERATORS = (ComputePyramidEmbeddings, ScoreOOD, ComputeOODVisualization, ManageOODRuns)
