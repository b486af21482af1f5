"""The one exception type the command line turns into a one-line error."""


class UnetlabError(Exception):
    """A problem in the user's input or environment, stated in one line."""
