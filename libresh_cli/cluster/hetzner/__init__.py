"""`libresh cluster create|scale|status|destroy` on Hetzner Cloud: an HA k3s cluster (servers
with embedded etcd, agents) from a cluster file, one module a verb (create, scale, status,
destroy), as hetzner-k3s has one manager a verb.

Every step looks first and makes only what is missing, found by the cluster's labels: a
re-run repairs, and a run cut off anywhere resumes. Cloud resources are made concurrently
where they do not depend on each other; k3s goes on the first server (`cluster-init`), then
every other server and agent joins at the same time.

create.py runs the steps, each in a module of its own: catalog.py (the file checked against
the project), resources.py (SSH key, network, firewall, placement group, load balancer),
servers.py, hosts.py (SSH, cloud-init, preflight), install.py (k3s on each node); report.py
is what it is asked and what it reports; local.py what libresh keeps on this machine for a
cluster.
"""
