"""The lab cluster: a real Kubernetes control plane with kwok-simulated nodes on 127.0.0.1."""
