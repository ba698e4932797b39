"""Curated infrastructure on k3s: components installed the k3s way (HelmChart and
HelmChartConfig objects that k3s' helm-controller acts on), checked and upgraded."""
