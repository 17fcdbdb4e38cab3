"""Observability of every service process: Prometheus metrics (metrics.py), OpenTelemetry traces and JSON logs."""
