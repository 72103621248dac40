from .resnest import ResNeSt, ResNeStBottleneck
from .split_attention import RadixSoftmax, SplitAttentionConv2d
from .sync_bn import CPUSyncBatchNorm

__all__ = [
    'CPUSyncBatchNorm', 'RadixSoftmax', 'ResNeSt', 'ResNeStBottleneck', 'SplitAttentionConv2d',
]
