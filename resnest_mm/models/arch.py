"""Blocks per stage of each ResNeSt depth: the one table the backbone, the checkpoint reports,
the benchmark and the tests read. It imports nothing, so any layer of the package may read it."""

STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    14: (1, 1, 1, 1),
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
    269: (3, 30, 48, 8),
}
