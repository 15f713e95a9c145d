"""The checks of ``tools/gpu_check.py``: each one a function ``check(setup)`` returning
``(summary, figures)``, or raising :class:`CheckFailed` with what went wrong.

- ``prepare``: the shapes and models of a device (W48 on CUDA, a tiny W48 on the CPU),
  with BatchNorm statistics of realistic inputs; comparison figures;
- ``correctness``: every execution mode against a CPU reference, autocast against float32;
- ``speed``: forward, training step, evaluation and break-even timings (CUDA only);
- ``end_to_end``: a TRAIN.AMP run through torchrun, resumed, then evaluated;
- ``faults``: faults that tests inject to show that the checks catch them.
"""
