"""One validated, immutable settings object, split by concern.

``aksnth.cli`` builds it from flags, environment variables and the ``-config`` file; every component
receives only its own part. Pure: no I/O here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aksnth.model import FATAL_EVENT_TYPES, EventType

DEFAULT_ENDPOINT = "http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01"
DEFAULT_ALERT_MESSAGE = "Draining node={{ .NodeName }}, type={{ .Event.EventType }}"
DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
DEFAULT_WEB_ADDRESS = ":17923"
# "You should expect a delayed response in your first call of up to two minutes" (Scheduled Events for
# Linux VMs, "Enabling and disabling Scheduled Events"): until IMDS has answered once, a request may
# take that long, and a margin.
DEFAULT_FIRST_REQUEST_TIMEOUT_SECONDS = 150.0
# How long an approval waits after the ToBeDeletedByClusterAutoscaler taint went on: cloud-provider-azure
# probes kube-proxy's /healthz every 5 s and takes a node out after 2 failures (its defaults).
DEFAULT_APPROVAL_LOAD_BALANCER_WAIT_SECONDS = 10.0
# -advisory.apiVersion: ask IMDS for its newest versions, or never read advisories.
ADVISORY_VERSION_AUTO = "auto"
ADVISORY_VERSION_OFF = "off"
API_VERSION_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# The original's behaviour: every type but Freeze; Freeze joins with -drainOnFreezeEvent.
DEFAULT_EVENT_TYPES = frozenset(
    {EventType.REBOOT, EventType.REDEPLOY, EventType.PREEMPT, EventType.TERMINATE}
)
# The last-resort stop by default: the events after which the VM does not come back, so that honouring
# a PodDisruptionBudget to the end buys nothing and costs the pod's graceful shutdown.
DEFAULT_LAST_RESORT_EVENT_TYPES = FATAL_EVENT_TYPES


class Secret:
    """A string that must never be logged: ``repr`` and ``str`` hide it, ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class TaintEffect(enum.StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    level: str = "INFO"
    pretty: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeSettings:
    #: A kubeconfig file, or the files of KUBECONFIG (merged as kubectl merges them); empty: in-cluster.
    kubeconfig: str | tuple[str, ...] = ""
    context: str = ""  # a context of the kubeconfig file; empty: its current context
    node_name: str
    request_timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ImdsSettings:
    endpoint: str = DEFAULT_ENDPOINT
    poll_interval_seconds: float = 1.0
    request_timeout_seconds: float = 5.0
    # Until IMDS has answered a request for events once (the first call can take up to two minutes).
    first_request_timeout_seconds: float = DEFAULT_FIRST_REQUEST_TIMEOUT_SECONDS
    # The api-version read for advisory events (Spot rebalance recommendations) beside -endpoint:
    # "auto" (IMDS's newest, when newer than -endpoint's), "off", or a version such as 2099-01-01.
    advisory_api_version: str = ADVISORY_VERSION_AUTO

    @property
    def endpoint_api_version(self) -> str:
        """The api-version of -endpoint ("" when it has none)."""
        return dict(parse_qsl(urlsplit(self.endpoint).query, keep_blank_values=True)).get("api-version", "")

    def endpoint_at(self, api_version: str | None) -> str:
        """-endpoint with its api-version replaced (``None``: removed, which IMDS answers with a
        400 naming its newest versions)."""
        parts = urlsplit(self.endpoint)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api-version"]
        if api_version is not None:
            query.append(("api-version", api_version))
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def compute_url(self) -> str:
        """/metadata/instance/compute on the same host as the Scheduled Events endpoint."""
        scheme, _, rest = self.endpoint.partition("://")
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host}/metadata/instance/compute?api-version=2021-02-01"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseSettings:
    """What the node response does: consumed by ``aksnth.policy`` and the kube executors."""

    event_types: frozenset[EventType] = DEFAULT_EVENT_TYPES
    drain_on_freeze: bool = False
    taint_node: bool = False
    taint_effect: TaintEffect = TaintEffect.NO_SCHEDULE
    pod_grace_period_seconds: int = -1  # -1: each pod's own
    node_grace_period_seconds: int = 120  # drain timeout
    exclude_from_load_balancers: bool = True
    # The cluster autoscaler's taint on Preempt and Terminate: kube-proxy's /healthz then fails (KEP-3836).
    taint_to_be_deleted: bool = True
    uncordon_after_event: bool = True
    approve_events: bool = False
    # After our ToBeDeletedByClusterAutoscaler taint went on, the approval waits this long (bounded by the
    # event's start), so that the load balancer has taken the node out before the VM goes.
    approve_load_balancer_wait_seconds: float = DEFAULT_APPROVAL_LOAD_BALANCER_WAIT_SECONDS
    disable_eviction: bool = False
    # Delete pods a PodDisruptionBudget still protects at their last chance, for these event types.
    last_resort: bool = True
    last_resort_event_types: frozenset[EventType] = DEFAULT_LAST_RESORT_EVENT_TYPES
    # Roll a Deployment out (surge) when a budget refuses its pod's eviction (aksnth.kube.surge).
    surge_deployments: bool = False
    dry_run: bool = False
    exit_after_node_drain: bool = False
    resource_name: str = ""  # empty: derived from the node's spec.providerID

    @property
    def selected_event_types(self) -> frozenset[EventType]:
        if self.drain_on_freeze:
            return self.event_types | {EventType.FREEZE}
        return self.event_types

    def last_resort_for(self, event_type: EventType) -> bool:
        """Whether a drain for this event type ends with the last-resort stop (``-lastResort``)."""
        return self.last_resort and event_type in self.last_resort_event_types


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    url: Secret  # may carry credentials
    method: str = "POST"
    content_type: str = "application/json"
    timeout_seconds: float = 30.0
    template: str = ""  # the body template text (from -webhook.template or the file)
    template_name: str = "webhook.template"  # file name or flag name, for error positions
    insecure_skip_verify: bool = False
    http_proxy: Secret = field(default_factory=lambda: Secret(""))
    retries: int = 3
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TelegramSettings:
    token: Secret
    chat_id: int
    message_template: str = DEFAULT_ALERT_MESSAGE
    api_url: str = DEFAULT_TELEGRAM_API_URL
    http_proxy: Secret = field(default_factory=lambda: Secret(""))
    timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifySettings:
    webhooks: tuple[WebhookSettings, ...] = ()
    telegram: TelegramSettings | None = None
    notify_on_drain_finished: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks) or self.telegram is not None

    @property
    def own_templates(self) -> bool:
        """Whether a template is the user's: a webhook body template, or an -alert.message other than
        the default. Only those can fail the start-up check (the defaults are known to render)."""
        telegram = self.telegram is not None and self.telegram.message_template != DEFAULT_ALERT_MESSAGE
        return telegram or any(hook.template for hook in self.webhooks)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    address: str = DEFAULT_WEB_ADDRESS


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadinessSettings:
    """The optional periodic drain-readiness check of the handler's own node."""

    interval_seconds: float = 0.0  # 0: off (no API request while idle)

    @property
    def enabled(self) -> bool:
        return self.interval_seconds > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    log: LogSettings = field(default_factory=LogSettings)
    kube: KubeSettings
    imds: ImdsSettings = field(default_factory=ImdsSettings)
    response: ResponseSettings = field(default_factory=ResponseSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    web: WebSettings = field(default_factory=WebSettings)
    readiness: ReadinessSettings = field(default_factory=ReadinessSettings)
    grace_period_seconds: float = 10.0  # shutdown grace of the process
    sentry_dsn: Secret = field(default_factory=lambda: Secret(""))
