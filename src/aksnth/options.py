"""Every option of the handler, once: flag name, type, default, environment variable, config-file keys.

The Go original's flags keep their names, defaults (except ``-period`` and ``-webhook.insecureSkip``,
see docs/flags.md) and environment variables; its ``-config`` file keys are the lower-cased Go field
names, listed in ``config_keys`` where they differ from our own key (the flag name, lower-cased, with
dots and dashes removed). ``--help`` and docs/flags.md follow the order of this table.
"""

from __future__ import annotations

from aksnth.config import (
    ADVISORY_VERSION_AUTO,
    DEFAULT_ALERT_MESSAGE,
    DEFAULT_APPROVAL_LOAD_BALANCER_WAIT_SECONDS,
    DEFAULT_ENDPOINT,
    DEFAULT_FIRST_REQUEST_TIMEOUT_SECONDS,
    DEFAULT_TELEGRAM_API_URL,
    DEFAULT_WEB_ADDRESS,
)
from aksnth.flags import Kind, Option

GENERAL = "General"
IMDS = "Azure IMDS"
RESPONSE = "Node response"
NOTIFICATIONS = "Notifications"
TELEGRAM = "Telegram"
WEBHOOK = "Webhook"
WEB = "Web/metrics"
LOGGING = "Logging"
GROUPS = (GENERAL, IMDS, RESPONSE, NOTIFICATIONS, TELEGRAM, WEBHOOK, WEB, LOGGING)

DEFAULT_EVENT_TYPES = ("Reboot,Redeploy,Preempt,Terminate",)
DEFAULT_LAST_RESORT_EVENT_TYPES = ("Preempt,Terminate",)

# Companions (``Option.needs``): what an option qualifies. Given without it, the option would silently
# do nothing (the Go original ignored it), so it is refused at start-up; cli.py says when each is set.
NEEDS_TAINT = "-taint.node"
NEEDS_WEBHOOK = "-webhook.url or -webhook.url-file"
NEEDS_TELEGRAM = "Telegram (a token and -telegram.chatID)"
NEEDS_NOTIFICATION = "a notification (a webhook, Telegram, or webhooks in the -config file)"
COMPANIONS = (NEEDS_TAINT, NEEDS_WEBHOOK, NEEDS_TELEGRAM, NEEDS_NOTIFICATION)

OPTIONS: tuple[Option, ...] = (
    # General
    Option(
        name="config",
        kind=Kind.STRING,
        default="",
        env="CONFIG",
        group=GENERAL,
        usage="YAML config file; its keys override flags and environment variables",
        config_keys=("configfile",),
        in_config=False,
    ),
    Option(
        name="node",
        kind=Kind.STRING,
        default="",
        env="MY_NODE_NAME",
        group=GENERAL,
        usage="name of the Kubernetes node this handler runs on (required)",
        config_keys=("nodename",),
    ),
    Option(
        name="kubeconfig",
        kind=Kind.STRING,
        default="",
        group=GENERAL,
        usage="kubeconfig file; empty means the in-cluster configuration",
        config_keys=("kubeconfigfile",),
    ),
    Option(
        name="kube.requestTimeout",
        kind=Kind.DURATION,
        default=10.0,
        group=GENERAL,
        usage="timeout of each Kubernetes API request",
    ),
    Option(
        name="resource.name",
        kind=Kind.STRING,
        default="",
        group=GENERAL,
        usage="Azure resource name of this VM; empty means derived from the node's spec.providerID "
        "(or from IMDS compute metadata while the node cannot be read)",
    ),
    Option(
        name="gracePeriodSeconds",
        kind=Kind.INT,
        default=10,
        group=GENERAL,
        usage="seconds the process takes to shut down after SIGTERM",
    ),
    Option(
        name="exitAfterNodeDrain",
        kind=Kind.BOOL,
        default=False,
        group=GENERAL,
        usage="exit with code 0 once the node is drained",
    ),
    Option(
        name="dryRun",
        kind=Kind.BOOL,
        default=False,
        group=GENERAL,
        usage="log, record events and notify, but change nothing on the node or its pods",
    ),
    Option(
        name="sentry.dsn",
        kind=Kind.STRING,
        default="",
        group=GENERAL,
        usage="accepted for compatibility; Sentry is not supported (a warning is logged)",
        secret=True,
    ),
    Option(
        name="version",
        kind=Kind.BOOL,
        default=False,
        group=GENERAL,
        usage="print the version and exit",
        in_config=False,
    ),
    # Azure IMDS
    Option(
        name="endpoint",
        kind=Kind.STRING,
        default=DEFAULT_ENDPOINT,
        group=IMDS,
        usage="Scheduled Events URL of the Instance Metadata Service",
    ),
    Option(
        name="period",
        kind=Kind.DURATION,
        default=1.0,
        group=IMDS,
        usage="poll interval (at least 200ms: IMDS allows 5 requests per second per VM)",
    ),
    Option(
        name="request.timeout",
        kind=Kind.DURATION,
        default=5.0,
        group=IMDS,
        usage="timeout of each IMDS request",
    ),
    Option(
        name="request.firstTimeout",
        kind=Kind.DURATION,
        default=DEFAULT_FIRST_REQUEST_TIMEOUT_SECONDS,
        group=IMDS,
        usage="timeout of IMDS requests until Scheduled Events has answered once (Azure: the first call "
        "can take up to 2 minutes); at least -request.timeout",
    ),
    Option(
        name="advisory.apiVersion",
        kind=Kind.STRING,
        default=ADVISORY_VERSION_AUTO,
        group=IMDS,
        usage="api-version read every fifth -period beside -endpoint for advisory events (Spot rebalance "
        "recommendations): auto (the newest IMDS names, if newer than -endpoint's), off, or a version",
    ),
    Option(
        name="eventTypes",
        kind=Kind.LIST,
        default=DEFAULT_EVENT_TYPES,
        group=IMDS,
        usage="event types to drain for, comma-separated: Freeze, Reboot, Redeploy, Preempt, Terminate, "
        "SpotRebalanceRecommendation (an advisory otherwise only gets a PreferNoSchedule taint)",
    ),
    Option(
        name="drainOnFreezeEvent",
        kind=Kind.BOOL,
        default=False,
        group=IMDS,
        usage="also act on Freeze events (adds Freeze to -eventTypes)",
    ),
    Option(
        name="approveEvents",
        kind=Kind.BOOL,
        default=False,
        group=IMDS,
        usage="approve the event (POST StartRequests) once the node is drained, so Azure proceeds early; "
        "an event that lists other VMs waits until each of their nodes is drained too",
    ),
    Option(
        name="approveEvents.loadBalancerWait",
        kind=Kind.DURATION,
        default=DEFAULT_APPROVAL_LOAD_BALANCER_WAIT_SECONDS,
        group=IMDS,
        usage="with -approveEvents: the approval waits this long after the handler put the "
        "ToBeDeletedByClusterAutoscaler taint on (-taint.toBeDeleted), so that Azure's load-balancer "
        "probe of kube-proxy's /healthz (every 5 s, out after 2 failures) has taken the node out before "
        "the VM goes; never past the event's start; 0 approves as soon as the node is drained",
    ),
    # Node response
    Option(
        name="taint.node",
        kind=Kind.BOOL,
        default=False,
        group=RESPONSE,
        usage="taint the node aks-node-termination-handler/<event type>=<event id> before draining",
    ),
    Option(
        name="taint.effect",
        kind=Kind.STRING,
        default="NoSchedule",
        group=RESPONSE,
        usage="effect of that taint: NoSchedule, PreferNoSchedule or NoExecute (applied after the drain)",
        needs=NEEDS_TAINT,
    ),
    Option(
        name="podGracePeriodSeconds",
        kind=Kind.INT,
        default=-1,
        group=RESPONSE,
        usage="grace period given to evicted pods; -1 means each pod's own",
    ),
    Option(
        name="nodeGracePeriodSeconds",
        kind=Kind.INT,
        default=120,
        group=RESPONSE,
        usage="seconds after which the drain reports how it went; evictions go on until the event's "
        "deadline, and no pod is stopped before its last chance",
    ),
    Option(
        name="disableEviction",
        kind=Kind.BOOL,
        default=False,
        group=RESPONSE,
        usage="delete pods instead of evicting them (bypasses PodDisruptionBudgets)",
    ),
    Option(
        name="lastResort",
        kind=Kind.BOOL,
        default=True,
        group=RESPONSE,
        usage="when a PodDisruptionBudget still refuses a pod's eviction at its last chance before the VM "
        "goes, delete the pod with its shortened grace period, so it stops gracefully "
        "(for -lastResort.eventTypes)",
    ),
    Option(
        name="lastResort.eventTypes",
        kind=Kind.LIST,
        default=DEFAULT_LAST_RESORT_EVENT_TYPES,
        group=RESPONSE,
        usage="event types the last-resort stop applies to, comma-separated: Freeze, Reboot, Redeploy, "
        "Preempt, Terminate, SpotRebalanceRecommendation",
    ),
    Option(
        name="surgeDeployments",
        kind=Kind.BOOL,
        default=False,
        group=RESPONSE,
        usage="when a PodDisruptionBudget refuses a pod's eviction, or no other replica of its Deployment "
        "is Ready on another node, start a rollout of that Deployment (as kubectl rollout restart does) "
        "so that a replacement is Ready on another node first; needs deployments patch (chart value "
        "surgeDeployments=true)",
    ),
    Option(
        name="excludeFromLoadBalancers",
        kind=Kind.BOOL,
        default=True,
        group=RESPONSE,
        usage="label the node node.kubernetes.io/exclude-from-external-load-balancers during the event",
    ),
    Option(
        name="taint.toBeDeleted",
        kind=Kind.BOOL,
        default=True,
        group=RESPONSE,
        usage="on Preempt and Terminate, also taint the node ToBeDeletedByClusterAutoscaler:NoSchedule, "
        "so that kube-proxy fails its /healthz and load balancers leave the node before its pods stop",
    ),
    Option(
        name="uncordonAfterEvent",
        kind=Kind.BOOL,
        default=True,
        group=RESPONSE,
        usage="give the node back (uncordon, remove our taint and label) when the VM survives the event",
    ),
    Option(
        name="readiness.interval",
        kind=Kind.DURATION,
        default=0.0,
        group=RESPONSE,
        usage="check this often whether this node would drain within a Spot eviction's notice, exposed as "
        "metrics (0 turns it off; at least 10s)",
    ),
    # Notifications
    Option(
        name="notify.drainFinished",
        kind=Kind.BOOL,
        default=False,
        group=NOTIFICATIONS,
        usage="notify a second time when the drain has finished, with its result",
        needs=NEEDS_NOTIFICATION,
    ),
    # Telegram
    Option(
        name="telegram.token",
        kind=Kind.STRING,
        default="",
        env="TELEGRAM_TOKEN",
        group=TELEGRAM,
        usage="Telegram bot token (prefer the environment variable or -telegram.token-file)",
        secret=True,
    ),
    Option(
        name="telegram.token-file",
        kind=Kind.STRING,
        default="",
        env="TELEGRAM_TOKEN_FILE",
        group=TELEGRAM,
        usage="file holding the Telegram bot token (trailing newline ignored); wins over -telegram.token",
    ),
    Option(
        name="telegram.chatID",
        kind=Kind.STRING,
        default="",
        env="TELEGRAM_CHATID",
        group=TELEGRAM,
        usage="Telegram chat ID (an integer; required with a token)",
    ),
    Option(
        name="telegram.apiURL",
        kind=Kind.STRING,
        default=DEFAULT_TELEGRAM_API_URL,
        group=TELEGRAM,
        usage="Telegram Bot API base URL",
        needs=NEEDS_TELEGRAM,
    ),
    Option(
        name="telegram.http-proxy",
        kind=Kind.STRING,
        default="",
        env="TELEGRAM_HTTP_PROXY",
        group=TELEGRAM,
        usage="http(s) proxy for Telegram requests; user:password@ in the URL is allowed",
        secret=True,
        needs=NEEDS_TELEGRAM,
    ),
    Option(
        name="alert.message",
        kind=Kind.STRING,
        default=DEFAULT_ALERT_MESSAGE,
        group=TELEGRAM,
        usage="Telegram message template",
        needs=NEEDS_TELEGRAM,
    ),
    # Webhook
    Option(
        name="webhook.url",
        kind=Kind.STRING,
        default="",
        env="WEBHOOK_URL",
        group=WEBHOOK,
        usage="send notifications to this http(s) URL",
        secret=True,
    ),
    Option(
        name="webhook.url-file",
        kind=Kind.STRING,
        default="",
        env="WEBHOOK_URL_FILE",
        group=WEBHOOK,
        usage="file holding the webhook URL (a trailing newline is ignored); wins over -webhook.url",
    ),
    Option(
        name="webhook.method",
        kind=Kind.STRING,
        default="POST",
        group=WEBHOOK,
        usage="HTTP method of the webhook request",
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.contentType",
        kind=Kind.STRING,
        default="application/json",
        group=WEBHOOK,
        usage="Content-Type header of the webhook request",
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.header",
        kind=Kind.LIST,
        default=(),
        group=WEBHOOK,
        usage='extra request header "Name: value"; repeat the flag for more headers',
        config_keys=("webhookheaders",),
        secret=True,  # an Authorization header carries a credential
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.timeout",
        kind=Kind.DURATION,
        default=30.0,
        group=WEBHOOK,
        usage="timeout of each webhook attempt, from connecting to the end of the answer",
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.retries",
        kind=Kind.INT,
        default=3,
        group=WEBHOOK,
        usage="retries on connection errors, 429 and 5xx answers, with backoff",
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.template",
        kind=Kind.STRING,
        default="",
        env="WEBHOOK_TEMPLATE",
        group=WEBHOOK,
        usage="request body template (Go template syntax)",
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.template-file",
        kind=Kind.STRING,
        default="",
        env="WEBHOOK_TEMPLATE_FILE",
        group=WEBHOOK,
        usage="file holding the request body template, read at start-up; wins over -webhook.template",
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.insecureSkip",
        kind=Kind.BOOL,
        default=False,
        group=WEBHOOK,
        usage="skip TLS certificate verification of the webhook (logged as a warning)",
        config_keys=("webhookinsecure",),
        needs=NEEDS_WEBHOOK,
    ),
    Option(
        name="webhook.http-proxy",
        kind=Kind.STRING,
        default="",
        env="WEBHOOK_HTTP_PROXY",
        group=WEBHOOK,
        usage="http(s) proxy for webhook requests; user:password@ in the URL is allowed",
        config_keys=("webhookproxy",),
        secret=True,
        needs=NEEDS_WEBHOOK,
    ),
    # Web/metrics
    Option(
        name="web.address",
        kind=Kind.STRING,
        default=DEFAULT_WEB_ADDRESS,
        group=WEB,
        usage="listen address of the metrics and health server",
        config_keys=("webhttpaddress",),
    ),
    # Logging
    Option(
        name="log.level",
        kind=Kind.STRING,
        default="INFO",
        group=LOGGING,
        usage="log level: debug, info, warning, error",
    ),
    Option(
        name="log.pretty",
        kind=Kind.BOOL,
        default=False,
        group=LOGGING,
        usage="human-readable logs instead of JSON",
    ),
)

BY_NAME = {option.name: option for option in OPTIONS}
