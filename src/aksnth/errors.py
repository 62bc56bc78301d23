"""The project's own error tree.

Library errors (httpx2, yaml) and the Kubernetes API's error answers are translated into these at the
edge modules, with the original chained as ``__cause__``; everything above the edges catches only
these.
"""

from __future__ import annotations


class AksnthError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(AksnthError):
    """A flag, environment variable, config file or template is wrong. The CLI exits with code 2."""


class ImdsError(AksnthError):
    """Talking to the Instance Metadata Service failed."""


class ImdsUnavailable(ImdsError):
    """IMDS did not answer, or answered with a status that means "try again later"."""

    def __init__(self, message: str, *, status: int | None = None, retry_after_seconds: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_seconds = retry_after_seconds


class ImdsDocumentError(ImdsError):
    """IMDS answered, but the document is not a valid Scheduled Events document."""


class KubeError(AksnthError):
    """A Kubernetes API request failed."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class NodeNotFound(KubeError):
    """The node this handler runs for does not exist (any more)."""


class WriteConflict(KubeError):
    """An optimistic-concurrency write lost a race (HTTP 409); re-read and retry."""


class EvictionBlocked(KubeError):
    """An eviction was refused for now (HTTP 429), usually by a PodDisruptionBudget."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None, budget: str | None = None):
        super().__init__(message, status=429)
        self.retry_after_seconds = retry_after_seconds
        self.budget = budget  # the PodDisruptionBudget that refused, when the API server names it


class KubeUnavailable(KubeError):
    """The API server could not be reached or answered 5xx; transient."""


class KubeForbidden(KubeError):
    """RBAC denied the request (HTTP 403): a deployment problem, not a transient one."""


class NotifyError(AksnthError):
    """A notification could not be delivered. Never fatal: the drain goes on regardless."""


class TemplateError(ConfigError):
    """A payload template does not parse or does not render; carries the position when known."""

    def __init__(
        self, message: str, *, name: str = "template", line: int | None = None, column: int | None = None
    ):
        where = name if line is None else f"{name}:{line}:{column or 1}"
        super().__init__(f"{where}: {message}")
        self.name = name
        self.line = line
        self.column = column
