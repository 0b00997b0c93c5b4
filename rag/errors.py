"""Domain errors. Interfaces (HTTP, CLI) map each one to a status and a stable code."""

from __future__ import annotations


class LoreError(Exception):
    """Base class. `code` is stable and safe to show to a client; the message is a sentence."""

    code = "lore_error"


class ConfigError(LoreError):
    code = "bad_config"


class EmbedderChanged(ConfigError):
    """A collection was built with another embedder than the one asked to read or write
    it: its vectors don't compare with this one's. Mid-request, it means the collection
    was switched to another embedder (`lore reindex`) since the request chose one, and
    choosing again (`Lore.for_collection`) is the remedy."""


class ModelMissing(LoreError):
    """A model file is absent or fails its checksum. The message names the file and the fix."""

    code = "model_missing"


class ModelInstallError(LoreError):
    code = "model_install_failed"


class NotFound(LoreError):
    code = "not_found"


class Forbidden(LoreError):
    code = "forbidden"


class InvalidInput(LoreError):
    code = "invalid_input"


class UnsupportedFile(LoreError):
    code = "unsupported_file"


class ParseError(LoreError):
    code = "parse_failed"


class LimitExceeded(LoreError):
    code = "limit_exceeded"


class StoreUnavailable(LoreError):
    """A store Lore needs (the Chroma server, the database) cannot be reached; the
    request may succeed after `retry_after_s` seconds."""

    code = "store_unavailable"
    retry_after_s = 5


class StoreInUse(StoreUnavailable):
    """An embedded vector store (a Chroma folder) is open in another process; one
    process at a time may hold it."""

    code = "store_in_use"


class StoreDamaged(StoreUnavailable):
    """A file of the data directory is damaged (truncated, overwritten): the message
    names it and the fix. Retrying does not help; mending it does."""

    code = "store_damaged"

    @classmethod
    def file(cls, path: object, detail: object) -> StoreDamaged:
        return cls(
            f"{path} is damaged ({detail}). Run `lore doctor` to see what else is, then "
            "`lore doctor --repair` (it rebuilds the keyword index and mends the vector "
            "store's agreement with the manifest), or restore the data directory from a "
            "backup (`lore restore`)."
        )


class DiskFull(LoreError):
    """The disk of the data directory is full, or under its reserve (min_free_mb)."""

    code = "disk_full"


class DatabaseUnavailable(StoreUnavailable):
    """The PostgreSQL server of `database_url` cannot be reached or went away mid-request."""

    code = "database_unavailable"


class SchemaMismatch(ConfigError):
    """The database's schema is not the one this release of Lore was written for; the
    message names the command that fixes it."""

    code = "schema_mismatch"


class GenerationFailed(LoreError):
    """The chat model could not produce an answer (for example, its server is down)."""

    code = "generation_failed"


class GenerationInterrupted(GenerationFailed):
    """A reply broke off after it had begun (its server went away mid-way). Nothing of it
    can be taken back; a caller that has shown none of it may ask again."""


class ModelServerUnavailable(GenerationFailed):
    """A model server could not be reached, or answered that it cannot serve now (502,
    503, 504, 429), or its reply broke off: another server may take the same request.
    When no server could, the request may succeed after `retry_after_s` seconds."""

    code = "model_unavailable"
    retry_after_s = 5


class ModelServerStalled(ModelServerUnavailable):
    """A model server took the request and then sent nothing for the read timeout: the
    time an answer may take is spent, so no other server is tried."""


class EmptyDocument(ParseError):
    """The file has no text: zero bytes, only whitespace, or pages with nothing to read."""

    code = "empty"


class EncryptedDocument(ParseError):
    """The file is password-protected."""

    code = "encrypted"


class MalformedDocument(ParseError):
    """The file is damaged or is not what its name says."""

    code = "malformed"


class Unauthorized(LoreError):
    """No API key, or one that is malformed, unknown or revoked."""

    code = "unauthorized"


class Busy(LoreError):
    """The server is at capacity (the generation queue is full); try again after a pause."""

    code = "busy"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(LoreError):
    """This key has made more requests than its rate allows; try again after a pause."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuthThrottled(RateLimited):
    """This client address has failed authentication too often; keys are not checked
    from it until the pause is over (a guess that happens to be right fails too)."""

    code = "auth_throttled"


class TimedOut(LoreError):
    """Generation ran past its wall-clock limit."""

    code = "timeout"
