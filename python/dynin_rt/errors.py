"""Exceptions with messages that name the fix."""


class DyninError(Exception):
    """Base class of dynin_rt errors."""


class CheckpointError(DyninError, ValueError):
    """A checkpoint directory or weight file is missing, malformed, or disagrees with its config."""


class TokenizerMissingError(DyninError, RuntimeError):
    """A text-level call was made on a checkpoint that has no tokenizer files."""


class Cancelled(DyninError):
    """A running generation was cancelled through its CancelToken (a client left, a deadline passed)."""
