"""Same evaluation as tools/test_ee.py, under the name the original README gives for
customised evaluation:

    python tools/test.py --cfg experiments/cityscapes/<config>.yaml TEST.MODEL_FILE <model>.pth
"""
import _init_paths  # noqa: F401  (puts lib/ on sys.path)
from test_ee import main

if __name__ == '__main__':
    main()
