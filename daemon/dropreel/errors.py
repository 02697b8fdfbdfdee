"""The exceptions dropreel raises, each carrying the data a caller or an operator needs.

Provider failures form one tree, so nothing above the provider seam knows the HTTP library:
an answer that says no (ProviderError: retryable, refused, ambiguous by status), or no
usable answer at all (TransportFailure: NotSent, or ConnectionLost, which is ambiguous).
"""

from __future__ import annotations


class DropreelError(Exception):
    """Base of every error dropreel raises on purpose."""


class ConfigError(DropreelError):
    """The configuration cannot be used; the message names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config error: {key}: {problem}")
        self.key = key
        self.problem = problem


class StateError(Exception):
    """The state database cannot be used, with what to do about it.

    Not a DropreelError: nothing that handles a provider's or a job's failure may swallow it.
    """

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"state database {path}: {problem}")
        self.path = path
        self.problem = problem


class CommandError(DropreelError):
    """A command cannot do what was asked (no such job, wrong state); exit status 1."""


class CopyRefused(DropreelError):
    """A file that cannot be copied in as a job file, with the reason in words."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class JobFileRejected(DropreelError):
    """A job file that cannot become a job, with the reason in words."""

    def __init__(self, file_name: str, reason: str) -> None:
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = reason


class ProviderError(DropreelError):
    """The provider answered, and the answer means the call did not do what was asked."""

    def __init__(self, request: str, status_code: int, message: str) -> None:
        super().__init__(f"{request} -> HTTP {status_code}: {message}")
        self.request = request
        self.status_code = status_code
        self.message = message


class RequestRefused(ProviderError):
    """A 4xx that retrying cannot fix (bad model, bad parameters, no credit)."""


class ResultUrlRefused(RequestRefused):
    """A result URL answered 4xx: presigned URLs expire, so ask REST for a fresh one."""


class RangeNotSatisfiable(ResultUrlRefused):
    """416 to a resumed download: the server says where its file ends, if it says."""

    def __init__(self, request: str, message: str, total: int | None) -> None:
        super().__init__(request, 416, message)
        self.total = total


class AuthRefused(ProviderError):
    """401/403: the API key is missing, wrong or lacks rights."""


class RetryableProviderError(ProviderError):
    """429 or 503: the request was provably not accepted; come back later."""

    def __init__(
        self, request: str, status_code: int, message: str, retry_after_s: float | None
    ) -> None:
        super().__init__(request, status_code, message)
        self.retry_after_s = retry_after_s


class AmbiguousAnswer(ProviderError):
    """A 5xx other than 503: a gateway may answer so after the provider acted on the request.

    For a read, retry; for a POST, the generation may exist and be billed, so it is settled
    like a lost answer, never resent.
    """


class GenerationUnknown(ProviderError):
    """The provider answers 404 for a generation we created: it is terminal, outcome unknown."""


class TransportFailure(DropreelError):
    """No usable answer came back from the provider (or a result host)."""

    def __init__(self, request: str, detail: str) -> None:
        super().__init__(f"{request}: {detail}" if request else detail)
        self.request = request
        self.detail = detail


class NotSent(TransportFailure):
    """The request provably never reached the provider (no connection; it could not even be
    encoded): sending it again cannot pay twice."""


class ConnectionLost(TransportFailure):
    """The request may have reached the provider and no answer came back intact (a reset, a
    cut body, a time-out after sending): for a POST, ambiguous."""


class ReadStalled(ConnectionLost):
    """Nothing arrived within the read time-out (an idle stream, a stalled download)."""


class MalformedAnswer(ConnectionLost):
    """The provider answered, but the answer could not be understood."""

    def __init__(self, detail: str) -> None:
        super().__init__("", detail)
