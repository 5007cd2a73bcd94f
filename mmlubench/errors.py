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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run whose folder was claimed: the folder to go on with."""

    def __init__(self, run_dir: object, resumable: bool = True):
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.resumable = resumable

    def message(self) -> str:
        if not self.resumable:  # data parallel (no progress log), or nothing recorded yet
            return (
                f"mmlubench: interrupted; run folder {self.run_dir} holds nothing to go on "
                "with (no progress log): start the run again"
            )
        return (
            f"mmlubench: interrupted; the answers so far are kept in {self.run_dir}; go "
            f"on with: mmlubench run --resume {self.run_dir}"
        )


class OutputError(MmlubenchError):
    """A file mmlubench writes cannot be written: a link or a non-file in its place, a folder
    that is not there, no permission, a full disk (then `disk_full`)."""

    disk_full = False


def one_line(message: object) -> str:
    """A message as one line: line breaks folded into spaces, other control characters shown
    as escapes (a path or a parser's message may hold them)."""
    import re

    text = re.sub(r"\s*[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+\s*", " ", str(message)).strip()
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def short(value: object, limit: int = 80) -> str:
    """repr of a value for a message, bounded however large or deep the value is."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlevel, r.maxlist, r.maxdict = 3, 4, 4
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
