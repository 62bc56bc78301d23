"""aks-node-termination-handler: gracefully handle Azure VM shutdown within Kubernetes."""

__version__ = "0.1.0"
