"""I/O: the Kubernetes API, Prometheus, audit records. No decisions are made here."""
