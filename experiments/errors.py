"""The one exception type that reaches users as a single line instead of a traceback."""


class UserError(Exception):
    """Something the user can fix (a name, a file, an option): the message says what and how.

    The command-line entry points print ``error: <message>`` and exit with status 2.
    """
