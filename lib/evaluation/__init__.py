"""Evaluation of an anytime network: the evaluation loop, per-exit metrics, test-time
passes (flip, multi-scale, sliding windows), result files, benchmark-server submissions,
per-exit panels and the cost of each evaluation mode.

Layer: below ``engine`` and ``anytime``, above ``models`` and ``datasets``. Knows nothing
of training: may import models, datasets, utils and config.
"""
