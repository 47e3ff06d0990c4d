"""Exceptions the model layer raises for bad input, with messages meant for end users."""


class ClipsearchError(Exception):
    """Base class: every error a user can cause. The CLI prints its message on one line."""

    code = "clipsearch_error"


class ModelSpecError(ClipsearchError, ValueError):
    """A model spec that names no loadable model."""

    code = "invalid_model_spec"


class CheckpointError(ClipsearchError):
    """A checkpoint directory that is missing files or does not match its config."""

    code = "invalid_checkpoint"


class ImageLoadError(ClipsearchError, ValueError):
    """Bytes or a file that cannot be decoded as a supported image."""

    code = "invalid_image"

    def __init__(self, message: str, code: str = "invalid_image") -> None:
        super().__init__(message)
        self.code = code
