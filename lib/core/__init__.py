"""Training and evaluation of the anytime network.

- ``criterion``: multi-exit (OHEM) cross-entropy and the FullModel training wrapper;
- ``schedule``: the poly learning rate;
- ``metrics``: per-exit confusion matrices, result line, FLOPs meter;
- ``loaders``: per-process training and evaluation loaders;
- ``engine``: one training epoch, one evaluation pass;
- ``training``: a whole (resumable) training run;
- ``testing``: evaluation of a checkpoint and its result files.
"""
