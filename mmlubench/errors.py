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
            return (f"mmlubench: interrupted; run folder {self.run_dir} holds nothing to go on "
                    "with (no progress log): start the run again")
        return (f"mmlubench: interrupted; the answers so far are kept in {self.run_dir}; go "
                f"on with: mmlubench run --resume {self.run_dir}")
