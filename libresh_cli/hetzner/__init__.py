"""The Hetzner Cloud adapter: the one package that imports the hcloud SDK."""
