"""Sparse execution of confidence-masked segments at inference (``MASK.EXECUTION``)."""
from .engine import SegmentEngine, run_segment
from .policy import EXECUTION_MODES, ExecutionPolicy, check_execution, has_break_even
from .weights import FoldedWeights

__all__ = ['EXECUTION_MODES', 'ExecutionPolicy', 'FoldedWeights', 'SegmentEngine',
           'check_execution', 'has_break_even', 'run_segment']
