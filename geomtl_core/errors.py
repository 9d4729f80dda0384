"""The one base class of errors caused by a user's input (files, coordinates, options, configs).

The ``geomtl`` command line prints these as one line (exit status 2); any other exception is a bug
and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input: an unreadable or malformed file, invalid coordinates, an invalid option or config value."""
