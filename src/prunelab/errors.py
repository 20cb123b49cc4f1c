"""Exceptions raised by prunelab. Every message names the bad value and what is allowed."""


class PrunelabError(Exception):
    """Base class for prunelab's own errors."""


class ConfigError(PrunelabError, ValueError):
    """A value passed by the user is outside what is allowed."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup (model, dataset, method, ...) failed."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(PrunelabError, FileNotFoundError):
    """Dataset files are missing and could not be downloaded."""


class ChecksumError(PrunelabError):
    """A file's sha256 does not match the expected value."""


class TrainingDivergedError(PrunelabError, RuntimeError):
    """The loss became NaN or infinite."""


def unknown_name(kind: str, name: object, allowed) -> UnknownNameError:
    import difflib

    allowed = sorted(allowed)
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}.{hint}")
