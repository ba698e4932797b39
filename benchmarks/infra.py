"""Infrastructure footprint: the memory requests each profile's components ask for (declared in
the pinned data: chart values and manifests), and the total beside the target — the `single`
profile must stay at or under 512 MiB so a 2 GiB server keeps room for apps. On a cluster,
`libresh infra status -o json` reports the same sum from the running workloads.

    .venv/bin/python benchmarks/infra.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from libresh_cli.infra.footprint import SINGLE_TARGET_MIB, declared_requests
from libresh_cli.infra.profile import load_profile, profile_names

MIB = 1024**2


def main() -> None:
    for name in profile_names():
        requests = declared_requests(load_profile(name))
        print(f"profile {name}")
        for component, value in requests.items():
            print(f"  {component:<34} {value / MIB:6.0f} MiB")
        total = sum(requests.values()) / MIB
        target = f" (target <= {SINGLE_TARGET_MIB} MiB: " + (
            "met)" if total <= SINGLE_TARGET_MIB else "NOT met)"
        )
        print(f"  {'total':<34} {total:6.0f} MiB{target if name == 'single' else ''}")


if __name__ == "__main__":
    main()
