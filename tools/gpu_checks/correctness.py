"""Correctness of every MASK.EXECUTION mode on the device, against references that do
not share the code under test.

``reference``: W48 ADP-C or CA (tiny on the CPU), float32 on the device in 'dense',
'sparse' and 'auto', against the same weights run dense on the CPU with the same input
and the same masks: in float64 with fixed smooth-noise masks at the paper's densities,
and in float32 with the masks its own exits gave (one float64 forward of W48 at 512x1024
takes the CPU tens of seconds). The device's own confidence masks must equal the CPU's on
at least 99.9% of the pixels.

    Tolerance. A float32 run on the device differs from the exact result by rounding.
    So does each reference: the float64 run by nothing that counts here (its rounding
    is 2^29 times finer), the CPU's float32 run by as much as the device's, so that the
    two float32 runs may differ by the sum of their errors. The yardstick s_k of exit k
    is measured in the same run: the CPU's float32 dense run against the float64 one,
    with the fixed masks, as max |diff| over max |ref|: the error that float32 makes on
    this network, with these weights, on this input. A correct float32 run in another
    order (cuDNN's algorithms, the sparse engine's folded BatchNorm and gathered
    products, channels-last kernels) makes an error of the same kind but not the same
    size: cuDNN may run 3x3 convolutions as Winograd or FFT transforms, whose rounding
    error can exceed direct convolution's by about an order of magnitude. Exit k passes
    within 32 * max(s_k, 2^-23) (2^-23: float32's epsilon, should an exit's s_k be 0):
    a factor 2 for the sum of two errors, 16 for the order, and still far below what a
    wrong pixel index or a missing fill does (1e-1 of the scale or more on the CPU,
    where the tests inject both: 1e4 times the tolerance). TF32 is off for the
    comparison (cuDNN uses it by default on Ampere and newer GPUs; its 10-bit mantissas
    err by about 1e-3).

``autocast``: the same model briefly trained (see ``prepare.trained_model``), in each
mode under ``torch.autocast`` (float16 or bfloat16) against float32 on the device, with
the fixed masks on both sides. Every output must be finite (else the check reports an
overflow, with the first module whose output was not and the largest finite activation);
per exit, the logits must stay within 8 epsilons of the autocast type times the output's
scale (a correct run measures about 1 to 3: its error is a few roundings of the
largest values), and the masks the exit's logits give (MASK.CRIT at the model's
threshold) agree on at least 99%. The top class must agree with float32's at every
pixel where rounding cannot decide it: where float32's top-2 margin exceeds twice what
the logits may move (that bound times the float32 logits' largest |value|); at the
other pixels, near a tie, native and emulated kernels of the same type round to either
class (exit 1 of W48 in bfloat16 on an AMX CPU: 98.3% of all pixels, 99.2% under
``ONEDNN_MAX_CPU_ISA=AVX2``), so their agreement is reported only. Masks are
compared exit by exit, from the same upstream masks: run end to end with its own masks,
a pixel that rounding moves across the threshold in segment 1 changes the inputs of
segments 2 and 3 around it, so their agreement measures the model's sensitivity, not
the arithmetic; it is reported (``own_mask_agreement``) with the mask densities.
"""
import time

import torch

from models.sparse.benchmark import MODES, logit_size
from .faults import overflowing
from .prepare import PAPER_DENSITIES, ActivationRange, CheckFailed, decided_agreement, \
    load_cfg, mask_agreement, max_abs, moved, noise_masks, on_cpu, realistic_model, \
    relative_difference, run, scenes, threshold_for_density, trained_model

FLOAT32_EPS = 2.0 ** -23
REFERENCE_HEADROOM = 32  # tolerance = headroom * yardstick, derived in the module docstring
REFERENCE_MASK_AGREEMENT = 0.999
AUTOCAST_EPS_MULTIPLE = 8
AUTOCAST_MASK_AGREEMENT = 0.99



def tf32_off():
    """Full float32 for the rest of this check's process (each check has its own): the
    comparison with the CPU is of the engine, not of TF32's rounding."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

def _fail_on(faults, figures, shown=4):
    """Raise CheckFailed with the first ``shown`` faults, if there are any."""
    if faults:
        more = f' (+{len(faults) - shown} more)' if len(faults) > shown else ''
        raise CheckFailed('; '.join(faults[:shown]) + more, figures)


def _densities(masks, size):
    return [round(m.at(size).float().mean().item(), 4) for m in masks]


def check_reference(setup, variant):
    """Every mode on the device in float32 against dense runs on the CPU."""
    device = setup.device
    tf32_off()
    model = realistic_model(load_cfg(variant, setup), setup)
    x = scenes(1, setup.shape)
    model.mask_threshold = threshold_for_density(model, x.to(device), PAPER_DENSITIES[0])
    size = logit_size(setup.shape)
    fixed = noise_masks(setup.shape)

    start = time.perf_counter()
    ref_fixed = run(on_cpu(model, torch.float64), x.double(), 'dense', fixed)
    print(f'CPU float64 reference: {time.perf_counter() - start:.1f} s', flush=True)
    cpu32 = on_cpu(model, torch.float32)
    float32 = run(cpu32, x, 'dense', fixed)
    ref_own, ref_masks = run(cpu32, x, 'dense', own_masks=True)
    yardstick = [relative_difference(a, b) for a, b in zip(float32, ref_fixed)]
    tolerance = [REFERENCE_HEADROOM * max(s, FLOAT32_EPS) for s in yardstick]
    cpu_seconds = time.perf_counter() - start
    print(f'CPU references: {cpu_seconds:.1f} s; float32 yardstick per exit '
          + ', '.join(f'{s:.1e}' for s in yardstick), flush=True)

    figures = {'tf32': False, 'threshold': model.mask_threshold,
               'own_mask_density': _densities(ref_masks, size),
               'fixed_mask_density': _densities(fixed, size),
               'yardstick': yardstick, 'tolerance': tolerance,
               'max_abs_logit': max_abs(ref_fixed + ref_own),
               'cpu_reference_seconds': round(cpu_seconds, 2),
               'max_rel_diff': {}, 'worst_diff_over_tolerance': 0.0, 'mask_agreement': {}}
    faults = []
    xd = x.to(device)
    with ActivationRange(model) as watch:
        run(model, xd, 'dense', moved(fixed, device))
    figures['max_abs_activation'] = watch.max_abs
    for mode in MODES:
        outside = []  # (diff / tolerance, exit, mask set, diff) beyond the tolerance
        for masks, ref in (('fixed', ref_fixed), ('own', ref_own)):
            given = moved(fixed if masks == 'fixed' else ref_masks, device)
            for k, (got, want) in enumerate(zip(run(model, xd, mode, given), ref), start=1):
                diff = relative_difference(got, want)
                figures['max_rel_diff'][mode] = max(figures['max_rel_diff'].get(mode, 0), diff)
                ratio = diff / tolerance[k - 1]
                figures['worst_diff_over_tolerance'] = max(figures['worst_diff_over_tolerance'],
                                                           ratio)
                if not ratio <= 1:
                    outside.append((ratio, k, masks, diff))
        if outside:
            _, k, masks, diff = max(outside)
            reference = ('CPU float64 run (fixed masks)' if masks == 'fixed' else
                         "CPU float32 run (that run's own masks)")
            faults.append(f'{mode}: exit {k} differs from the {reference} by {diff:.2e} of its '
                          f'scale > tolerance {tolerance[k - 1]:.2e} ({len(outside)} of 8 '
                          'outputs outside)')
        _, own = run(model, xd, mode, own_masks=True)
        agreement = [mask_agreement(a, b, size) for a, b in zip(own, ref_masks)]
        figures['mask_agreement'][mode] = min(agreement)
        for j, value in enumerate(agreement, start=1):
            if value < REFERENCE_MASK_AGREEMENT:
                faults.append(f'{mode}: confidence mask of segment {j} agrees with the CPU '
                              f"reference's on {value:.2%} of the pixels < "
                              f'{REFERENCE_MASK_AGREEMENT:.1%}')
    _fail_on(faults, figures)
    summary = (f"worst diff {figures['worst_diff_over_tolerance']:.2f} of tolerance "
               f"(max {max(figures['max_rel_diff'].values()):.1e} of scale), masks "
               f"{min(figures['mask_agreement'].values()):.2%}, max |act| "
               f"{figures['max_abs_activation']:.3g}")
    return summary, figures


def _overflow_message(dtype, overflows, largest):
    """One message for the modes whose run under autocast ``dtype`` gave inf or NaN."""
    name = str(dtype).replace('torch.', '')
    modes = ', '.join(overflows)
    where = '; '.join(sorted(set(f'first in the output of {m}' for m in overflows.values())))
    return (f'overflow: {name} autocast gives inf/NaN in {modes} ({where}); largest finite '
            f'|activation| {largest:.3g}, largest {name} value {torch.finfo(dtype).max:.6g}')


def check_autocast(setup, dtype):
    """Every mode under autocast ``dtype`` (a torch dtype or its name) against float32 on
    the device."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    device = setup.device
    tf32_off()
    model = trained_model('w48_adpc', setup)
    if setup.fault == 'fp16-overflow' and dtype == torch.float16:
        overflowing(model)
    x = scenes(2, setup.shape).to(device)
    model.mask_threshold = threshold_for_density(model, x, PAPER_DENSITIES[0])
    size = logit_size(setup.shape)
    fixed = moved(noise_masks(setup.shape, batch=2), device)
    with ActivationRange(model) as watch:
        ref = run(model, x, 'dense', fixed)
    _, ref_own = run(model, x, 'dense', own_masks=True)
    bound = AUTOCAST_EPS_MULTIPLE * torch.finfo(dtype).eps
    name = str(dtype).replace('torch.', '')
    figures = {'dtype': name, 'overflow': False, 'max_abs_activation_float32': watch.max_abs,
               'max_abs_logit_float32': max_abs(ref), 'threshold': model.mask_threshold,
               'own_mask_density_float32': _densities(ref_own, size),
               'deviation_bound': bound, 'max_rel_deviation': {}, 'argmax_agreement': {},
               'decided_fraction': {}, 'undecided_argmax_agreement': {},
               'mask_agreement': {}, 'own_mask_agreement': {}, 'max_abs_activation': {}}
    faults, overflows = [], {}  # overflows: mode -> first module with inf/NaN
    for mode in MODES:
        try:
            with torch.autocast(device.type, dtype=dtype), ActivationRange(model) as watch:
                got = run(model, x, mode, fixed)
                _, own = run(model, x, mode, own_masks=True)
        except Exception as e:  # reported by mode; the other modes still run
            faults.append(f'{mode}: {type(e).__name__}: {e}')
            continue
        figures['max_abs_activation'][mode] = watch.max_abs
        if watch.first_nonfinite or not all(torch.isfinite(o).all() for o in got):
            overflows[mode] = watch.first_nonfinite or 'an exit'
            continue
        deviation = [relative_difference(a, b) for a, b in zip(got, ref)]
        argmax = [decided_agreement(a, b, bound * b.abs().max().item())
                  for a, b in zip(got, ref)]
        masks = [mask_agreement(model.segment_masks(a), model.segment_masks(b), size)
                 for a, b in zip(got[:-1], ref[:-1])]
        figures['max_rel_deviation'][mode] = max(deviation)
        figures['argmax_agreement'][mode] = min(a for a, _, _ in argmax)
        figures['decided_fraction'][mode] = [d for _, d, _ in argmax]
        figures['undecided_argmax_agreement'][mode] = [u for _, _, u in argmax]
        figures['mask_agreement'][mode] = min(masks)
        figures['own_mask_agreement'][mode] = [mask_agreement(a, b, size)
                                               for a, b in zip(own, ref_own)]
        for k, (d, (a, decided, _)) in enumerate(zip(deviation, argmax), start=1):
            if not d <= bound:
                faults.append(f'{mode}: exit {k} deviates from float32 by {d:.2e} of its '
                              f'scale > {AUTOCAST_EPS_MULTIPLE} {name} epsilons ({bound:.2e})')
            if a < 1:
                faults.append(f'{mode}: exit {k} top class differs from float32 at '
                              f'{1 - a:.2%} of the {decided:.1%} of the pixels whose float32 '
                              f'margin exceeds what {name} rounding may move')
        for j, a in enumerate(masks, start=1):
            if a < AUTOCAST_MASK_AGREEMENT:
                faults.append(f"{mode}: exit {j}'s mask agrees with float32's on {a:.2%} "
                              f'of the pixels < {AUTOCAST_MASK_AGREEMENT:.0%}')
    if overflows:
        figures['overflow'] = True
        faults.insert(0, _overflow_message(dtype, overflows,
                                           max(figures['max_abs_activation'].values())))
    _fail_on(faults, figures)
    decided = min(min(v) for v in figures['decided_fraction'].values())
    near_tie = min(min(v) for v in figures['undecided_argmax_agreement'].values())
    summary = (f"top class {min(figures['argmax_agreement'].values()):.2%} where decided "
               f"(>= {decided:.1%} of the pixels; near a tie {near_tie:.2%}), masks "
               f"{min(figures['mask_agreement'].values()):.2%}, max deviation "
               f"{max(figures['max_rel_deviation'].values()):.1e} of scale, max |act| "
               f"{max(figures['max_abs_activation'].values()):.3g}")
    return summary, figures
