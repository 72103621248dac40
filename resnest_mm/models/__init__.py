from .resnest import ResNeSt, ResNeStBottleneck
from .split_attention import RadixSoftmax, SplitAttentionConv2d

__all__ = ['RadixSoftmax', 'ResNeSt', 'ResNeStBottleneck', 'SplitAttentionConv2d']
