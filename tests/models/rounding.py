"""How far a float32 run of a network may be from its exact result, estimated in float64.

Tests that hold float32 results to a reference need a tolerance that no summation order
can break (oneDNN's AVX2, AVX-512 and SSE4.1 kernels, thread counts, the original's
machine) and that is still tight enough to catch a wrong layer. A fixed relative
tolerance is neither: the gradients of a deep BatchNorm network are ill-conditioned
(BatchNorm divides by small standard deviations, ReLUs switch on the sign of values
that rounding can flip), so some tensors lose 1e-3 of their size in float32 while others
keep 1e-7.

:class:`RoundingNoise` measures that conditioning with Monte Carlo arithmetic (Parker,
1997): a float64 copy of the network runs with random relative errors added where a
float32 run rounds, and the spread of a few such runs around the unperturbed float64
run (the exact result, to 1e-16) is the size of a float32 run's error. The error model
is the probabilistic one of Higham and Mary (2019): the rounding error of an n-term
float32 sum grows like sqrt(n)·u, u = 2^-24, rather than the worst case n·u. So:

- a convolution output, a sum of ``in_channels/groups * kh * kw`` terms, gets a relative
  error ``sqrt(n)·u·z``, z standard normal per element; the gradient flowing back to
  its input (``out_channels/groups * kh * kw / stride^2`` terms) likewise;
- a parameter gradient, a sum over the N·H·W output pixels (times the 7x7 RBF taps and
  the channels for a masked convolution's scalar ``Lambda``), likewise;
- BatchNorm's output and the gradient flowing back to its input get ``u·z`` (one rounding);
- under bfloat16 autocast (``rounded_inputs``) a convolution reads its input and weights
  rounded to bfloat16 and sums in float32: each term carries two roundings, which add
  up with random signs to about ``2u`` of the output, so its output gets ``2u·z``.

Single operations need no such model: :func:`sum_error_bound` is the worst case of one
float32 sum.

The noise is seeded, so the bound is the same on every machine up to float64 rounding.
A float32 run is held to SAFETY x the largest deviation of SAMPLES such runs: the model
is statistical (sqrt(n)·u), and real summation orders (long sequential chains, other
blockings) can be a few times less favourable. On oneDNN's AVX-512, AVX2 and SSE4.1
kernels, with 1 or 2 threads, and for the original's reference data, the errors of the
reference network (tests/models/test_reference.py) are at most 1.3x that deviation.
"""
import copy
import math

import torch
import torch.nn as nn

from models.masked_conv import RBF_SIZE

SAMPLES = 4
SAFETY = 4
U = 2.0 ** -24  # unit roundoff of float32
BF16_U = 2.0 ** -8  # unit roundoff of bfloat16 (8 significant bits)


class _RelativeNoise(torch.autograd.Function):
    """Identity that multiplies its value by (1 + forward·z) and its gradient by
    (1 + backward·z), z standard normal per element."""

    @staticmethod
    def forward(ctx, x, forward, backward, generator):
        ctx.backward_size, ctx.generator = backward, generator
        return _perturb(x, forward, generator)

    @staticmethod
    def backward(ctx, grad):
        return _perturb(grad, ctx.backward_size, ctx.generator), None, None, None


def _perturb(x, size, generator):
    if not size:
        return x.clone()
    return x * (1 + size * torch.randn(x.shape, generator=generator, dtype=x.dtype))


def _terms_per_output(module):
    kh, kw = module.kernel_size
    forward = module.in_channels // module.groups * kh * kw
    backward = module.out_channels // module.groups * kh * kw // (module.stride[0] *
                                                                    module.stride[1])
    return forward, max(1, backward)


class RoundingNoise:
    """Hooks that add rounding errors to a float64 network (module doc), while in a
    ``with`` block.

    Args:
        model (nn.Module): a float64 model; its ReLUs are made out-of-place (the hooks
            need each module's own output), which changes no value.
        seed (int): seed of the noise.
        unit_roundoff (float): u of the arithmetic to model; default float32's.
        rounded_inputs (bool): convolutions round their inputs to ``unit_roundoff`` and
            sum in float32 (autocast), instead of summing at that precision.
    """

    def __init__(self, model, seed, unit_roundoff=U, rounded_inputs=False):
        self.model, self.seed, self.u, self.rounded_inputs = \
            model, seed, unit_roundoff, rounded_inputs
        self.handles = []

    def __enter__(self):
        self.generator = torch.Generator().manual_seed(self.seed)
        u = self.u
        for module in self.model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
            elif isinstance(module, nn.Conv2d):
                forward, backward = _terms_per_output(module)
                if self.rounded_inputs:
                    forward = backward = 4  # two roundings per term: 2u
                self._hook(module, u * math.sqrt(forward), u * math.sqrt(backward))
            elif isinstance(module, nn.BatchNorm2d):
                self._hook(module, u, u)
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _hook(self, module, forward, backward):
        noise, gen = _RelativeNoise.apply, self.generator
        self.handles.append(module.register_forward_pre_hook(
            lambda m, args: (noise(args[0], 0.0, backward, gen),)))

        def output(m, args, out):
            m.rounding_output_size = out.numel()  # read by the parameter hooks below
            return noise(out, forward, 0.0, gen)

        self.handles.append(module.register_forward_hook(output))
        for p in module.parameters(recurse=False):
            self.handles.append(p.register_hook(
                lambda g, p=p, m=module: _perturb(g, self.u * math.sqrt(
                    _terms_per_parameter(p, m.rounding_output_size)), gen)))


def _terms_per_parameter(p, output_size):
    """Terms summed into one element of ``p``'s gradient: the output pixels of its channel
    (weights, biases), or every output value times the 7x7 RBF taps (scalar Lambda)."""
    return output_size // p.shape[0] if p.dim() else output_size * RBF_SIZE ** 2


def spread(exact, samples):
    """Largest |sample - exact| over the samples, for each key of the dict ``exact``."""
    return {k: max((s[k] - v).abs().max().item() for s in samples) for k, v in exact.items()}


def exact_and_spread(run, model, **noise):
    """``run`` (a float64 model -> dict of tensors) on a float64 copy of ``model`` (or on
    ``model`` itself if it is float64; its gradients are reset), as it is (the exact
    result) and with SAMPLES seeds of rounding errors (``noise``: arguments of
    :class:`RoundingNoise`): (exact dict, spread dict)."""
    is_float64 = all(p.dtype == torch.float64 for p in model.parameters())
    twin = model if is_float64 else copy.deepcopy(model).double()

    def fresh_run():
        for p in twin.parameters():  # gradients of one run only
            p.grad = None
        return run(twin)

    exact = fresh_run()
    samples = []
    for seed in range(SAMPLES):
        with RoundingNoise(twin, seed, **noise):
            samples.append(fresh_run())
    return exact, spread(exact, samples)


def within_reach(got, exact, spread):
    """Whether float32 ``got`` is within SAFETY x ``spread`` of ``exact`` (float64)."""
    return (got.double() - exact).abs().max().item() <= SAFETY * spread


def bilinear_error_bound(x, u=U):
    """Worst-case error of a bilinear resize of ``x`` (any size, half-pixel centres): each
    output is a convex combination of four inputs (weights in [0, 1] summing to 1: a few
    u of max|x|), at weights from source coordinates up to the input size, each off by
    up to size·u (moving the output by up to that times twice max|x|):
    (8 + 2·size)·u·max|x|."""
    return (8 + 2 * max(x.shape[-2:])) * u * x.abs().max().item()


def sum_error_bound(terms, abs_sum, u=U):
    """Worst-case error of a float32 sum of ``terms`` terms whose absolute values sum to
    ``abs_sum``, in any order: gamma_n·abs_sum, gamma_n = n·u / (1 - n·u) (Higham,
    Accuracy and Stability of Numerical Algorithms, 2002, section 3.1)."""
    return terms * u / (1 - terms * u) * abs_sum
