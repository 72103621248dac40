"""Short demo of the backbone: build ResNeSt-50 from a config, count it, run it on an image."""

import time

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.registry import MODELS

import resnest_mm  # noqa: F401  (registers resnest_mm.ResNeSt)


def main() -> None:
    torch.manual_seed(0)
    cfg = dict(type='resnest_mm.ResNeSt', depth=50, stem_channels=64, frozen_stages=1)
    model = MODELS.build(cfg).eval()
    model.init_weights()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    image = torch.randn(1, 3, 224, 224)
    flops = FlopAnalyzer(model, (image,)).total() / 1e9
    with torch.no_grad():
        model(image)
        start = time.perf_counter()
        outs = model(torch.randn(1, 3, 512, 512))
        elapsed = time.perf_counter() - start
    print(f'ResNeSt-50 backbone: {params:.2f} M parameters (published 25.43 M), '
          f'{flops:.2f} GMACs at 224x224')
    for i, out in enumerate(outs):
        print(f'  stage {i + 1}: {tuple(out.shape)}')
    print(f'  one 512x512 image in {elapsed * 1000:.0f} ms on {torch.get_num_threads()} threads')


if __name__ == '__main__':
    main()
