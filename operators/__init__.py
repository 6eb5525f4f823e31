"""Operators and panels of the fiftyone-ood plugin: one module per family."""

from .audit import AuditDataset
from .clip import ComputeAdaNegScores, ComputeNegLabelScores, ComputeRAPScores
from .embeddings import ComputePyramidEmbeddings
from .panel import OODReviewPanel
from .runs import ManageOODRuns
from .scoring import ScoreOOD
from .visualization import ComputeOODVisualization

OPERATORS = (
    ComputePyramidEmbeddings,
    ScoreOOD,
    ComputeOODVisualization,
    ManageOODRuns,
    ComputeNegLabelScores,
    ComputeRAPScores,
    ComputeAdaNegScores,
    AuditDataset,
    OODReviewPanel,
)
