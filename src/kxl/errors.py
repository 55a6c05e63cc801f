"""The one exception type that the CLI turns into a clear one-line error."""


class KxlError(Exception):
    """Bad input or config. The message is one line naming what, where and the fix."""
