"""Errors that the command line shows to users as one clear message, without a traceback.

Every error names the thing at fault (file and line, config key, folder) so the user can fix it.
"""


class MmlubenchError(Exception):
    """Base of all errors caused by bad input or environment, not by a bug."""


class ConfigError(MmlubenchError):
    """A config file or command-line value is unknown, of the wrong type or impossible."""


class DataError(MmlubenchError):
    """An MMLU file is missing or malformed."""


class ModelError(MmlubenchError):
    """The model or tokenizer folder is missing or unusable."""


class RunError(MmlubenchError):
    """A run cannot go on (numerical fault, question that cannot fit, mismatching resume)."""


class DownloadError(MmlubenchError):
    """The Hugging Face Hub (or the mirror in HF_ENDPOINT) cannot be reached or refuses a file."""


class OutputError(MmlubenchError):
    """A file mmlubench writes cannot be written: a link or a non-file in its place, a folder
    that is not there, no permission, a full disk."""
