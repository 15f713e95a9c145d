"""Sparse execution of confidence-masked segments at inference (``MASK.EXECUTION``)."""
from .engine import SegmentEngine, run_segment
from .policy import EXECUTION_MODES, ExecutionPolicy, check_execution

__all__ = ['EXECUTION_MODES', 'ExecutionPolicy', 'SegmentEngine', 'check_execution',
           'run_segment']
