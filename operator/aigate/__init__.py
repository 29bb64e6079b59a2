"""aigate: a Kubernetes operator that puts AI models into production under governance."""

__version__ = "0.1.0"
