"""Observability: Prometheus metrics, the health/metrics HTTP server and structured logs."""
