"""The one exception type that reaches users as a single line instead of a traceback."""


class UserError(Exception):
    """Something the user can fix (a name, a file, an option): the message says what and how.

    Every command prints ``error: <message>`` and exits with status 2
    (``experiments.common.command``).
    """
