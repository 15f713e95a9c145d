"""HRNet v2 building blocks: residual blocks, multi-resolution modules, transitions.

The layer structure and module names follow HRNet-Semantic-Segmentation so that released
checkpoints load. Every constructor takes ``conv``, the convolution type to build
(``nn.Conv2d`` or a masked convolution), the way torchvision's ResNet takes ``norm_layer``.
"""
import torch.nn as nn

from .resize import upsample_to

BN_MOMENTUM = 0.01


def batch_norm(channels):
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


def conv3x3(conv, in_channels, out_channels, stride=1):
    return conv(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(conv, in_channels, out_channels, stride=1):
    return conv(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (HRNet branches)."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None, conv=nn.Conv2d):
        super().__init__()
        self.conv1 = conv3x3(conv, in_channels, channels, stride)
        self.bn1 = batch_norm(channels)
        self.conv2 = conv3x3(conv, channels, channels)
        self.bn2 = batch_norm(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection (HRNet layer1)."""

    expansion = 4

    def __init__(self, in_channels, channels, stride=1, downsample=None, conv=nn.Conv2d):
        super().__init__()
        self.conv1 = conv1x1(conv, in_channels, channels)
        self.bn1 = batch_norm(channels)
        self.conv2 = conv3x3(conv, channels, channels, stride)
        self.bn2 = batch_norm(channels)
        self.conv3 = conv1x1(conv, channels, channels * self.expansion)
        self.bn3 = batch_norm(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS = {'BASIC': BasicBlock, 'BOTTLENECK': Bottleneck}


def make_layer(block, in_channels, channels, num_blocks, stride=1, conv=nn.Conv2d):
    """A sequence of ``num_blocks`` residual blocks; the first gets a 1x1 conv+BN
    downsample when its input and output shapes differ."""
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(conv, in_channels, out_channels, stride),
                                   batch_norm(out_channels))
    layers = [block(in_channels, channels, stride, downsample, conv=conv)]
    layers += [block(out_channels, channels, conv=conv) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches at 1/4, 1/8, ... resolution followed by an all-to-all fusion.

    Fusion into branch i sums branch i, every lower-resolution branch j > i through a
    1x1 conv+BN and bilinear upsampling, and every higher-resolution branch j < i through
    i - j strided 3x3 conv+BN(+ReLU) steps, then applies ReLU.

    Args:
        block (type): BasicBlock or Bottleneck.
        num_blocks (list[int]): blocks per branch.
        in_channels (list[int]): input channels per branch.
        channels (list[int]): block width per branch (output = width * expansion).
        conv (callable): convolution type.
    """

    def __init__(self, block, num_blocks, in_channels, channels, conv=nn.Conv2d):
        super().__init__()
        if not len(num_blocks) == len(in_channels) == len(channels):
            raise ValueError(f'NUM_BLOCKS {num_blocks}, input channels {in_channels} and '
                             f'NUM_CHANNELS {channels} must have one entry per branch')
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            make_layer(block, c_in, c, n, conv=conv)
            for c_in, c, n in zip(in_channels, channels, num_blocks))
        self.out_channels = [c * block.expansion for c in channels]
        self.fuse_layers = self._make_fuse_layers(conv) if self.num_branches > 1 else None
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self, conv):
        channels = self.out_channels
        fuse_layers = []
        for i in range(self.num_branches):
            row = []
            for j in range(self.num_branches):
                if j > i:
                    row.append(nn.Sequential(conv1x1(conv, channels[j], channels[i]),
                                             batch_norm(channels[i])))
                elif j == i:
                    row.append(None)
                else:
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out = channels[i] if last else channels[j]
                        step = [conv3x3(conv, channels[j], out, stride=2), batch_norm(out)]
                        if not last:
                            step.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*step))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        return nn.ModuleList(fuse_layers)

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_branches):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = y + upsample_to(row[j](xs[j]), xs[i].shape[-2:])
                else:
                    y = y + row[j](xs[j])
            fused.append(self.relu(y))
        return fused


def make_transition(pre_channels, cur_channels, conv=nn.Conv2d):
    """Adapters from one stage's branches to the next stage's.

    An existing branch whose width changes gets a 3x3 conv+BN+ReLU (None otherwise); a new
    branch is made from the *last* previous branch by strided 3x3 conv+BN+ReLU steps.
    """
    layers = []
    for i, out in enumerate(cur_channels):
        if i < len(pre_channels):
            if out == pre_channels[i]:
                layers.append(None)
            else:
                layers.append(nn.Sequential(conv3x3(conv, pre_channels[i], out),
                                            batch_norm(out), nn.ReLU(inplace=True)))
        else:
            steps = []
            for j in range(i + 1 - len(pre_channels)):
                c_in = pre_channels[-1]
                c_out = out if j == i - len(pre_channels) else c_in
                steps.append(nn.Sequential(conv3x3(conv, c_in, c_out, stride=2),
                                           batch_norm(c_out), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def apply_transition(transition, branches):
    """Run ``make_transition``'s adapters: new branches read the last old branch."""
    return [branches[i] if layer is None else layer(branches[min(i, len(branches) - 1)])
            for i, layer in enumerate(transition)]


def make_stage(num_modules, block, num_blocks, in_channels, channels, conv=nn.Conv2d):
    """``num_modules`` HighResolutionModules in a row; returns (stage, output channels)."""
    modules = []
    for _ in range(num_modules):
        modules.append(HighResolutionModule(block, num_blocks, in_channels, channels, conv))
        in_channels = modules[-1].out_channels
    return nn.Sequential(*modules), in_channels
