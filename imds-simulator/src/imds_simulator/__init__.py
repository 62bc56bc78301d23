"""A simulator of the Azure Instance Metadata Service's Scheduled Events, for testing any handler.

``ImdsSimulator`` is the server (in a background thread) with its Python control API; ``main`` is the
``imds-simulator`` command line. See ``README.md`` beside this package.
"""

from imds_simulator.simulator import (
    COMPUTE_PATH,
    CONTROL_PREFIX,
    EVENT_TYPES,
    LATEST_SCHEDULED_EVENTS_VERSION,
    MIN_NOTICE_SECONDS,
    SCHEDULED_EVENTS_PATH,
    STARTED_SECONDS,
    Fault,
    ImdsSimulator,
    RecordedRequest,
    SimulatorError,
    main,
    parse_duration,
)

__all__ = [
    "COMPUTE_PATH",
    "CONTROL_PREFIX",
    "EVENT_TYPES",
    "LATEST_SCHEDULED_EVENTS_VERSION",
    "MIN_NOTICE_SECONDS",
    "SCHEDULED_EVENTS_PATH",
    "STARTED_SECONDS",
    "Fault",
    "ImdsSimulator",
    "RecordedRequest",
    "SimulatorError",
    "main",
    "parse_duration",
]
