"""Measure the break-even densities of MASK.EXECUTION 'auto' on this machine.

    python tools/calibrate.py [--device cuda] [--threads N] [CUDNN.ALLOW_TF32 False]

Prints the device and its TF32 flags, then, for representative masked layers, the mask
density up to which the sparse layer is faster than the dense one; see
models/sparse/calibrate.py for where the figures go.
"""
import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from models.sparse.calibrate import main
from utils.launch import reporting_user_errors

if __name__ == '__main__':
    reporting_user_errors(main)()  # a UserError: one 'error:' line, no traceback
