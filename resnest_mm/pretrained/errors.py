"""The errors of checkpoint finding, reading, recognising and loading (one-line messages)."""

class CheckpointNotFoundError(FileNotFoundError):
    """No file for a checkpoint path or name, and it could not be downloaded."""


class UnsafeCheckpointError(RuntimeError):
    """The file holds pickled Python objects beyond tensors and plain data."""


class CorruptCheckpointError(RuntimeError):
    """The file is truncated, damaged or not a checkpoint at all."""


class ChecksumMismatchError(RuntimeError):
    """The file's SHA-256 does not start with the hash in its name."""


class UnknownLayoutError(ValueError):
    """The keys match none of the known ResNeSt layouts."""


class WeightMismatchError(RuntimeError):
    """Checkpoint and model disagree on backbone keys or shapes."""
