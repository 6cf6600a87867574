"""Tracking, a service: MLflow runs (one parent per study, a nested run per trial), the write
spool, the sidecar process, the store template and per-step thinning (``conf/tracking``)."""
