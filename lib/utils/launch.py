"""What every entry point in tools/ shares: its command line and its process setup.

    args = default_argument_parser('Train ...').parse_args()
    launch(train, args)    # train(cfg, cfg_path, ctx) on every process
"""
import argparse

from config import config, update_config
from .distributed import add_launcher_arguments, cleanup, init_distributed


def default_argument_parser(description, cfg_help='experiment YAML file'):
    """``--cfg CFG [--local-rank N] [KEY VALUE ...]``.

    Args:
        description (str): the tool's one-line description.
        cfg_help (str): help text of ``--cfg``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--cfg', required=True, help=cfg_help)
    add_launcher_arguments(parser)
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=[],
                        help='config overrides as KEY VALUE pairs, e.g. TRAIN.END_EPOCH 10')
    return parser


def launch(fn, args):
    """Merge ``args.cfg`` and ``args.opts`` into the config, join the process group the
    launcher prepared (if any), run ``fn(cfg, cfg_path, ctx)`` and leave the group.

    Args:
        fn (callable): e.g. ``core.training.train`` or ``core.testing.run_evaluation``.
        args (argparse.Namespace): from :func:`default_argument_parser`.

    Returns:
        whatever ``fn`` returns.
    """
    update_config(config, args)
    ctx = init_distributed(args.local_rank, config.GPUS)
    try:
        return fn(config, args.cfg, ctx)
    finally:
        cleanup()
