"""What a user sees when their input is wrong.

Every error here carries one line that says what is wrong and what to do. The CLI prints that
line and exits with code 2; the Python API raises these (each is also a ValueError or a
FileNotFoundError, so plain `except ValueError` keeps working).
"""


class CnnlabError(Exception):
    """Base class of every error caused by user input (bad names, files, numbers)."""


class ConfigError(CnnlabError, ValueError):
    """A config value, recipe, flag or run directory that cannot be used."""


class ModelError(CnnlabError, ValueError):
    """An unknown model name, or a model that cannot take the requested input."""


class DataNotFoundError(CnnlabError, FileNotFoundError):
    """A data set that is not on disk and could not be downloaded."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise print its args tuple
        return str(self.args[0]) if self.args else ""


class DataFormatError(CnnlabError, ValueError):
    """A data file that exists but is truncated, corrupt or of the wrong shape."""


class CheckpointError(CnnlabError, ValueError):
    """A checkpoint that is missing, corrupt, unsafe, or for another model."""


class RunFolderError(CnnlabError, ValueError):
    """A run folder that is missing, incomplete, or holds a damaged config.json or metrics."""


def first_line(err: BaseException, limit: int = 120) -> str:
    """The first line of a library's error message, at most `limit` characters (its type's
    name when it has no message): the part that fits in cnnlab's one-line errors. A longer
    line ends at a word boundary, with "…" to show it was cut."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    line = text.splitlines()[0].rstrip()
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]  # room for the "…"
    if not line[limit - 1].isspace() and " " in cut:  # the cut falls in a word: end before it
        cut = cut[: cut.rindex(" ")]
    # a lone word longer than the limit is cut where it must be
    return cut.rstrip(" ,;:(") + "…"
