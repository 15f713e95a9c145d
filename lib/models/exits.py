"""Exit heads: the HRNet segmentation head and the redesigned (flex) heads of ADP-C.

A head maps the concatenated multi-resolution features (C channels at 1/4 resolution)
to class logits at 1/4 resolution. Module indices inside each ``nn.Sequential`` are part
of the checkpoint format, so the layer order below is fixed.
"""
import torch.nn as nn

from .hrnet import batch_norm


def _classifier(conv, in_channels, num_classes, kernel_size):
    if kernel_size not in (1, 3):
        raise ValueError(f'EXIT.FINAL_CONV_KERNEL must be 1 or 3, got {kernel_size}')
    return conv(in_channels, num_classes, kernel_size=kernel_size,
                padding=1 if kernel_size == 3 else 0, bias=True)


def original_head(in_channels, num_classes, final_kernel=1, conv=nn.Conv2d):
    """HRNet head: 1x1 conv C->C (bias), BN, ReLU, classifier C->classes (bias)."""
    return nn.Sequential(
        conv(in_channels, in_channels, kernel_size=1, bias=True),
        batch_norm(in_channels),
        nn.ReLU(inplace=True),
        _classifier(conv, in_channels, num_classes, final_kernel))


def flex_head(in_channels, inter_channels, num_classes, depth, final_kernel=1, conv=nn.Conv2d):
    """Redesigned head (ADP-C paper, Sec. 3.2): enlarge the receptive field cheaply.

    ``depth`` "down" blocks [AvgPool 2x2, 1x1 conv (bias), BN, ReLU] reach 1/2^depth of the
    input resolution, ``depth - 1`` "up" blocks [bilinear x2, 1x1 conv I->I (bias), BN,
    ReLU] come back up, and a last bilinear x2 precedes the classifier. Exits 1, 2, 3 use
    depth 3, 2, 1.

    Args:
        in_channels (int): C, channels of the exit input.
        inter_channels (int): I, EXIT.INTER_CHANNEL.
        num_classes (int): classifier outputs.
        depth (int): number of down blocks.
        final_kernel (int): EXIT.FINAL_CONV_KERNEL, 1 or 3.
        conv (callable): convolution type.
    """
    layers = []
    channels = in_channels
    for _ in range(depth):
        layers += [nn.AvgPool2d(2, 2), conv(channels, inter_channels, kernel_size=1, bias=True),
                   batch_norm(inter_channels), nn.ReLU(inplace=True)]
        channels = inter_channels
    for _ in range(depth - 1):
        layers += [nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
                   conv(inter_channels, inter_channels, kernel_size=1, bias=True),
                   batch_norm(inter_channels), nn.ReLU(inplace=True)]
    layers += [nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
               _classifier(conv, inter_channels, num_classes, final_kernel)]
    return nn.Sequential(*layers)


def make_exit(exit_type, exit_number, in_channels, num_classes, inter_channels=64,
              final_kernel=1, conv=nn.Conv2d):
    """Head of exit ``exit_number`` (1-3) of type 'original' or 'flex' (EXIT.TYPE)."""
    if exit_type == 'original':
        return original_head(in_channels, num_classes, final_kernel, conv)
    if exit_type == 'flex':
        if exit_number not in (1, 2, 3):
            raise ValueError(f'flex heads exist for exits 1-3, not exit {exit_number}')
        return flex_head(in_channels, inter_channels, num_classes, depth=4 - exit_number,
                         final_kernel=final_kernel, conv=conv)
    raise ValueError(f"EXIT.TYPE must be 'original' or 'flex', got {exit_type!r}")
