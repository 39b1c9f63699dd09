"""User-facing errors: one clear sentence each, printed by the CLI and recipes without a traceback."""


class KappsError(Exception):
    """A mistake in what the user asked for; its message is one sentence that says what to fix."""


class DataError(KappsError):
    """A data source that is unknown, missing or malformed."""


class ModelError(KappsError):
    """A model name, file or run folder that cannot be used."""


class ExportError(KappsError):
    """An export that cannot be written or whose artifact failed verification."""


class OptionError(KappsError):
    """A recipe or command option with a value outside its range."""


class OutputError(KappsError):
    """An output file or folder that cannot be written."""
