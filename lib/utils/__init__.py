"""Infrastructure every layer uses: launch and process groups, checkpoint and weight I/O,
run directories, atomic writes, logging, runtime switches and the user-facing errors.

Layer: above ``config`` only. May import config; never models, datasets, evaluation,
engine or anytime.
"""
