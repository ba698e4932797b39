"""libresh: a self-hosting platform on Kubernetes, installed and kept alive from the shell."""

__version__ = "0.1.0"
