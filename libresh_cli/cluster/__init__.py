"""Clusters: bootstrapping k3s on a host, and the kubeconfig that reaches it."""
