"""The accuracy-versus-cost curve of a confidence-masked model: one evaluation per
threshold of MASK.CRIT, sharing everything that does not depend on the threshold.

Each image runs exit 1 once (stem, layer1 and exit 1 do not depend on the threshold);
for every threshold, segments 1-3 continue from that state under the masks the threshold
gives. Each row equals what ``tools/test_ee.py`` reports with that threshold: per-exit
mIoU, mask-aware GFLOPs (mean over images), plus each segment's mean mask density and,
optionally, the mean latency to each exit.
"""
import csv
import io
import json
import logging
import math
import os
import textwrap
import time

import torch

import datasets
from datasets.checks import check_evaluation_inputs
from datasets.loaders import eval_loader
from evaluation.loop import padded_groups
from evaluation.metrics import ConfusionMatrix
from evaluation.run import resolve_test_paths
from models.confidence import ConfidenceMasks
from models.flops import FlopsCounter
from models.layout import to_inference
from models.model_anytime import NUM_EXITS
from utils.checkpoint import describe_variant, variant_name
from utils.distributed import all_reduce
from utils.io import atomic_write, atomic_write_text, check_writable
from utils.logger import progress, setup_logger
from utils.run_dir import RUN_CONFIG
from utils.runtime import apply_cudnn, device_name, sync, tf32_flags
from .predict import load_model

logger = logging.getLogger(__name__)

# The threshold at which every pixel is computed: the unmasked reference point.
UNMASKED = {'conf_thre': 1.0, 'entropy_thre': 0.0}
TITLE_WIDTH = 100  # characters per line of sweep.png's title
LABEL_GAP_PX = 30  # threshold labels of points closer than this on sweep.png are merged
# Size of a threshold label on sweep.png (8-point text at 110 dpi), to keep labels apart.
LABEL_CHAR_PX = 7
LABEL_LINE_PX = 14


class ThresholdStats:
    """Per-exit confusion matrices and sums of GFLOPs, densities and latencies of one
    threshold (exit 1's matrix is shared by all thresholds)."""

    def __init__(self, exit1_matrix, num_classes, ignore_label):
        self.matrices = [exit1_matrix] + [ConfusionMatrix(num_classes, ignore_label)
                                          for _ in range(NUM_EXITS - 1)]
        self.sums = torch.zeros(NUM_EXITS + (NUM_EXITS - 1) + NUM_EXITS + 1,
                                dtype=torch.float64)  # gflops, densities, latency, images

    def add(self, gflops, densities, latency_s, images):
        self.sums += torch.tensor(list(gflops) + list(densities) + list(latency_s) + [images],
                                  dtype=torch.float64)

    def reduce_from_all_processes(self):
        for matrix in self.matrices[1:]:
            matrix.reduce_from_all_processes()
        self.sums = all_reduce(self.sums)

    def row(self, threshold, criterion, with_latency):
        count = max(self.sums[-1].item(), 1)
        means = (self.sums[:-1] / count).tolist()
        row = {'threshold': threshold, 'criterion': criterion,
               'mIoU': [m.mean_iou() for m in self.matrices],
               'gflops': means[:NUM_EXITS],
               'density': means[NUM_EXITS:2 * NUM_EXITS - 1],
               'images': int(self.sums[-1].item())}
        if with_latency:
            row['latency_ms'] = [v * 1000 for v in means[2 * NUM_EXITS - 1:]]
        return row


@torch.no_grad()
def sweep_thresholds(model, loader, thresholds, criterion, num_classes, ignore_label, ctx,
                     latency=False):
    """Evaluate ``model`` at every threshold in one pass over ``loader``.

    Args:
        model (AnytimeHRNet): in eval mode on ``ctx.device``.
        loader (DataLoader): this process's shard of (images, labels, names).
        thresholds (list[float]): thresholds of ``criterion``; ignored (one point) for an
            unmasked model.
        criterion (str): 'conf_thre' or 'entropy_thre'.
        num_classes (int): DATASET.NUM_CLASSES.
        ignore_label (int): TRAIN.IGNORE_LABEL.
        ctx (DistContext): this process.
        latency (bool): also time each exit (exit 1's time is shared by all thresholds).

    Returns:
        list[dict]: one row per threshold (see :meth:`ThresholdStats.row`), reduced over
        all processes.
    """
    to_inference(model)
    points = list(thresholds) if model.use_masks else [None]
    exit1 = ConfusionMatrix(num_classes, ignore_label)
    stats = {t: ThresholdStats(exit1, num_classes, ignore_label) for t in points}
    counter = FlopsCounter(model)  # FLOPs from the masks each forward ran with
    for batch in progress(loader, f'sweep ({len(points)} thresholds)', ctx.is_main,
                          log_lines=True):
        # Each image at its own size padded to the stride, as evaluation runs it.
        for _, images, labels in padded_groups(batch, ignore_label):
            _sweep_images(model, images.to(ctx.device), labels.to(ctx.device), points,
                          criterion, exit1, stats, counter)
    exit1.reduce_from_all_processes()
    rows = []
    for t in points:
        stats[t].reduce_from_all_processes()
        rows.append(stats[t].row(t, criterion if t is not None else None, latency))
    return rows


def _sweep_images(model, images, labels, points, criterion, exit1, stats, counter):
    """One group of images: exit 1 once, then segments 1-3 at every threshold."""
    device = images.device
    sync(device)
    start = time.perf_counter()
    first = model.first_exit(images)
    sync(device)
    exit1_s = time.perf_counter() - start
    exit1.update(first.logits, labels)
    n = images.shape[0]
    for t in points:
        state, times, densities, used = first, [exit1_s], [], []
        start = time.perf_counter()
        while state.exit < NUM_EXITS:
            masks = ConfidenceMasks(state.logits, criterion, t) if t is not None else None
            if masks is not None:
                densities.append(masks.at(state.logits.shape[-2:]).mean().item())
            state = model.next_exit(state, masks)
            used.append(state.masks)
            sync(device)
            times.append(exit1_s + time.perf_counter() - start)
            stats[t].matrices[state.exit - 1].update(state.logits, labels)
        stats[t].add(counter.gflops(images.shape, used).sum(dim=0).tolist(),
                     [d * n for d in densities or [1.0] * (NUM_EXITS - 1)],
                     [s * n for s in times], n)


def thresholds_with_reference(thresholds, criterion):
    """The thresholds, sorted, with the unmasked reference (every pixel computed) added."""
    return sorted(set(float(t) for t in thresholds) | {UNMASKED[criterion]})


def sweep_csv(rows):
    """CSV text: one line per row, one column per exit and figure."""
    header = ['threshold', 'criterion', 'images'] + \
        [f'mIoU_exit{k}' for k in range(1, NUM_EXITS + 1)] + \
        [f'gflops_exit{k}' for k in range(1, NUM_EXITS + 1)] + \
        [f'density_segment{j}' for j in range(1, NUM_EXITS)]
    if any('latency_ms' in r for r in rows):
        header += [f'latency_ms_exit{k}' for k in range(1, NUM_EXITS + 1)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(header)
    for r in rows:
        line = ['' if r['threshold'] is None else r['threshold'], r['criterion'] or '',
                r['images']]
        line += [f'{v * 100:.4f}' for v in r['mIoU']] + [f'{v:.6g}' for v in r['gflops']]
        line += [f'{v:.6f}' for v in r['density']]
        if 'latency_ms' in r:
            line += [f'{v:.3f}' for v in r['latency_ms']]
        writer.writerow(line)
    return out.getvalue()


def read_compare(run_dir):
    """(name, per-exit mIoU in [0, 1], per-exit GFLOPs) of a finished evaluation: a
    folder with ``result.txt`` and ``test_stats.json`` (e.g. an RH run's directory)."""
    from utils.errors import DataError
    result, stats = os.path.join(run_dir, 'result.txt'), os.path.join(run_dir, 'test_stats.json')
    for path in (result, stats):
        if not os.path.isfile(path):
            raise DataError(f'--compare {run_dir}: {os.path.basename(path)} not found; give a '
                            'folder where tools/test_ee.py wrote result.txt and test_stats.json')
    with open(result) as f:
        values = [float(v) / 100 for v in f.read().split()]
    with open(stats) as f:
        gflops = json.load(f)['Gflops']
    name = os.path.basename(os.path.normpath(run_dir))
    return name, values[:len(gflops)], gflops


def label_groups(points, to_pixels, min_gap_px=LABEL_GAP_PX, char_px=LABEL_CHAR_PX,
                 line_px=LABEL_LINE_PX):
    """Points of one curve grouped so that each group gets one label, and labels of
    nearby thresholds never print over each other: a point joins the group before it
    when it is closer than ``min_gap_px`` (on the figure) to that group's first point,
    or when its label would start under that group's label (within one text line below
    or above, and left of the label's end).

    Args:
        points (list[tuple]): (x, y, threshold) in data coordinates; grouped in the
            order of their thresholds, the order of the curve.
        to_pixels (callable): (N, 2) data coordinates -> (N, 2) figure pixels.
        min_gap_px (float): how far apart two labelled points must be.
        char_px (float): width of one character of a label, in pixels.
        line_px (float): height of a label's line, in pixels.

    Returns:
        list[tuple]: (x, y, [thresholds]) per group, at the group's first point.
    """
    groups = []
    for x, y, threshold in sorted(points, key=lambda p: p[2]):
        if groups:
            gx, gy, members = groups[-1]
            (px, py), (qx, qy) = to_pixels([(gx, gy), (x, y)])
            label_end = px + len(threshold_label(members)) * char_px + char_px
            under_label = abs(qy - py) < line_px and px <= qx < label_end
            if under_label or math.hypot(px - qx, py - qy) < min_gap_px:
                members.append(threshold)
                continue
        groups.append((x, y, [threshold]))
    return groups


def threshold_label(thresholds):
    """The text of one group's label on sweep.png, e.g. '0.9, 0.95'."""
    return ', '.join(f'{t:g}' for t in thresholds)


def plot_sweep(rows, path, compare=(), title=None):
    """``sweep.png``: mIoU against GFLOPs, one curve per exit, points labelled by
    threshold, the unmasked point and ``compare`` evaluations as reference markers.

    Args:
        rows (list[dict]): from :func:`sweep_thresholds`.
        path (str): PNG to write.
        compare (list[tuple]): from :func:`read_compare`.
        title (str or None): the plot's title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    criterion = next((r['criterion'] for r in rows if r['criterion']), None)
    labelled = []  # (color, points of thresholds) per exit
    for k in range(NUM_EXITS):
        color = colors[k % len(colors)]
        xs = [r['gflops'][k] for r in rows]
        ys = [r['mIoU'][k] * 100 for r in rows]
        ax.plot(xs, ys, '-o', color=color, label=f'exit {k + 1}', markersize=5)
        for r, x, y in zip(rows, xs, ys):
            if r['threshold'] is not None and r['threshold'] == UNMASKED.get(criterion):
                ax.plot([x], [y], '*', color=color, markersize=13, markeredgecolor='black')
        if k > 0:  # exit 1 does not depend on the threshold: one point, no labels
            labelled.append((color, [(x, y, r['threshold']) for r, x, y in zip(rows, xs, ys)
                                        if r['threshold'] is not None]))
    ax.margins(x=0.1, y=0.06)  # room for the labels of the last points
    ax.relim()
    ax.autoscale_view()  # the final data limits, so that label distances are known
    for color, points in labelled:
        for x, y, thresholds in label_groups(points, ax.transData.transform):
            # Below and right of the point: the curves rise to the right, so the label
            # stays clear of its own line; its top 12 points below the point clears the
            # unmasked star (13 points across) where a flat curve ends in it, and a white
            # ground keeps it legible over any marker it still meets.
            ax.annotate(threshold_label(thresholds), (x, y),
                        textcoords='offset points', xytext=(6, -12), va='top', fontsize=8,
                        color=color, zorder=5,
                        bbox=dict(facecolor='white', edgecolor='none', alpha=0.8, pad=0.5))
    for i, (name, mious, gflops) in enumerate(compare):
        marker = 'sPD^v'[i % 5]
        ax.plot(gflops, [m * 100 for m in mious], marker, linestyle=':', color='gray',
                markerfacecolor='none', markersize=9, label=f'{name} (exits 1-4)')
    if criterion is not None and any(r['threshold'] == UNMASKED[criterion] for r in rows):
        ax.plot([], [], '*', color='gray', markeredgecolor='black', markersize=13,
                label=f'unmasked ({criterion} {UNMASKED[criterion]:g}: every pixel)')
    ax.set_xlabel('GFLOPs per image (mask-aware, cumulative to the exit)')
    ax.set_ylabel('mIoU (%)')
    thresholds = f'labels: {criterion} threshold' if criterion else \
        'unmasked model: the threshold does not apply'
    title = textwrap.fill(title, TITLE_WIDTH) + '\n' if title else ''  # long data paths
    ax.set_title(title + f'accuracy vs cost per exit ({thresholds})',
                 fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc='lower right')
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format='png'))
    plt.close(fig)


def free_directory(path):
    """``path``, or ``path_2``, ``path_3``, ... if it already holds a sweep (results are
    never overwritten)."""
    candidate, n = path, 1
    while os.path.exists(os.path.join(candidate, 'sweep.json')):
        n += 1
        candidate = f'{path}_{n}'
    return candidate


def write_sweep(rows, out_dir, compare=(), title=None, meta=None):
    """Write ``sweep.csv``, ``sweep.json`` and ``sweep.png`` into ``out_dir``.

    Returns:
        dict: the three paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f'sweep.{ext}') for ext in ('csv', 'json', 'png')}
    atomic_write_text(paths['csv'], sweep_csv(rows))
    atomic_write_text(paths['json'], json.dumps(dict(meta or {}, rows=rows), indent=1))
    plot_sweep(rows, paths['png'], compare, title)
    return paths


def sweep_table(rows):
    """The rows as a text table for the log."""
    lines = [f"{'threshold':>10} " + ' '.join(f'{"mIoU" + str(k):>7}' for k in range(1, 5)) + ' '
             + ' '.join(f'{"GF" + str(k):>9}' for k in range(1, 5)) + ' '
             + ' '.join(f'{"dens" + str(j):>6}' for j in range(1, 4))]
    for r in rows:
        t = '-' if r['threshold'] is None else f"{r['threshold']:g}"
        line = f'{t:>10} ' + ' '.join(f'{m * 100:7.2f}' for m in r['mIoU']) + ' ' + \
            ' '.join(f'{g:9.4g}' for g in r['gflops']) + ' ' + \
            ' '.join(f'{d:6.3f}' for d in r['density'])
        if 'latency_ms' in r:
            line += '  ms ' + ' '.join(f'{v:.1f}' for v in r['latency_ms'])
        lines.append(line)
    return '\n'.join(lines)


def sweep_title(cfg, cfg_path, model, weights, num_images):
    """What a sweep measured, for its plot: the config and the variant of its model, the
    weights and the images, e.g. ``tiny_adpc (W16 ADP-C), weights final_state.pth, on 4
    images of data/synthetic/list/cityscapes/val.lst``.

    Args:
        cfg (CfgNode): the merged config (DATASET.ROOT, DATASET.TEST_SET).
        cfg_path (str): the ``--cfg`` argument (a run's config.yaml names its run).
        model (nn.Module): the swept network.
        weights (str): where its weights came from (a path, or 'random initialisation').
        num_images (int): the images evaluated.
    """
    name = os.path.splitext(os.path.basename(cfg_path))[0]
    if os.path.basename(cfg_path) == RUN_CONFIG:
        name = os.path.basename(os.path.dirname(os.path.abspath(cfg_path)))
    variant = variant_name(describe_variant(model.state_dict()))
    if os.path.exists(weights):
        weights = os.path.basename(weights)
    test_set = os.path.join(cfg.DATASET.ROOT, cfg.DATASET.TEST_SET)
    return f'{name} ({variant}), weights {weights}, on {num_images} images of {test_set}'


def run_sweep(cfg, cfg_path, ctx, thresholds, criterion=None, out_dir=None, compare=(),
              latency=False):
    """Everything ``tools/sweep_threshold.py`` does: load the model as ``tools/test_ee.py``
    does, sweep DATASET.TEST_SET and write the results (rank 0).

    Args:
        cfg (CfgNode): the merged config.
        cfg_path (str): the ``--cfg`` argument.
        ctx (DistContext): this process.
        thresholds (list[float]): thresholds to evaluate (the unmasked one is added).
        criterion (str or None): 'conf_thre' or 'entropy_thre'; default MASK.CRIT.
        out_dir (str or None): default ``<run dir>/sweep`` (``_2``, ... if taken).
        compare (list[str]): folders of other evaluations to plot as references.
        latency (bool): also time each exit.

    Returns:
        list[dict]: the rows.
    """
    run_dir, model_file = resolve_test_paths(cfg, cfg_path)
    check_evaluation_inputs(cfg)  # before anything is written
    if ctx.is_main:
        out_dir = out_dir or free_directory(os.path.join(run_dir, 'sweep'))
        check_writable(out_dir, '--out')
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.MODEL_FILE = model_file
    cfg.freeze()
    criterion = criterion or cfg.MASK.CRIT
    references = [read_compare(d) for d in compare]
    setup_logger(None, None, 'sweep', ctx.is_main)  # console only, until the weights load
    apply_cudnn(cfg)
    model, weights = load_model(cfg, cfg_path, ctx.device)
    stem = os.path.splitext(os.path.basename(cfg_path))[0]
    setup_logger(out_dir or run_dir, stem, 'sweep', ctx.is_main)
    if not model.use_masks:
        logger.warning('MASK.USE is off: the threshold does not apply to this model; '
                       'writing its single point')
        points = []
    else:
        points = thresholds_with_reference(thresholds, criterion)
    dataset = datasets.build_dataset(cfg, cfg.DATASET.TEST_SET, train=False)
    loader = eval_loader(dataset, cfg.TEST.BATCH_SIZE_PER_GPU, ctx, cfg.WORKERS, cfg.PIN_MEMORY,
                         cfg.TRAIN.IGNORE_LABEL)
    if ctx.is_main:
        logger.info(f'sweeping {criterion} {points or "(unmasked)"} on {dataset}, weights '
                    f'{weights}, {ctx.world_size} process(es)')
    start = time.perf_counter()
    rows = sweep_thresholds(model, loader, points, criterion, cfg.DATASET.NUM_CLASSES,
                            cfg.TRAIN.IGNORE_LABEL, ctx, latency)
    seconds = time.perf_counter() - start
    if ctx.is_main:
        meta = {'cfg': cfg_path, 'weights': weights, 'test_set': cfg.DATASET.TEST_SET,
                'criterion': criterion if model.use_masks else None,
                'masked': bool(model.use_masks), 'seconds': seconds,
                'processes': ctx.world_size, 'device': device_name(ctx.device),
                'tf32': tf32_flags()}
        title = sweep_title(cfg, cfg_path, model, weights, len(dataset))
        paths = write_sweep(rows, out_dir, references, title, meta)
        logger.info('\n' + sweep_table(rows))
        logger.info(f'swept {len(rows)} point(s) in {seconds:.1f} s; wrote '
                    + ', '.join(paths.values()))
    return rows
