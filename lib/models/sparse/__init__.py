"""Sparse execution of confidence-masked segments at inference (``MASK.EXECUTION``)."""
from .engine import SegmentEngine, run_segment
from .policy import EXECUTION_MODES, ExecutionPolicy, check_execution
from .weights import FoldedWeights

__all__ = ['EXECUTION_MODES', 'ExecutionPolicy', 'FoldedWeights', 'SegmentEngine',
           'check_execution', 'run_segment']
