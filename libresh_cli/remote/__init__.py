"""Running scripts on the machine that becomes a cluster node: over SSH, or right here."""
