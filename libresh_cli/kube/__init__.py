"""The Kubernetes adapter: the only package that imports the kubernetes client.

Import the submodules (`libresh_cli.kube.client`) where they are needed: importing them costs
the kubernetes client's start-up time, which `libresh --help` must not pay.
"""
