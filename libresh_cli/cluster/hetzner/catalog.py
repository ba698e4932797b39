"""The cluster file checked against the Hetzner project: locations, server types offered where
the file puts them, the image."""

from __future__ import annotations

from libresh_cli.cluster.spec import ClusterSpec
from libresh_cli.errors import BadInputError
from libresh_cli.hetzner.cloud import Catalog, HetznerCloud


def check_against_catalog(cloud: HetznerCloud, spec: ClusterSpec) -> Catalog:
    """Locations, server types and the image as Hetzner knows them."""
    catalog = cloud.catalog()
    problems = _unknown_names(spec, catalog)
    if spec.private_network is not None:
        zones = {catalog.locations[loc] for loc in spec.locations if loc in catalog.locations}
        if len(zones) > 1:
            problems.append(
                f"locations: {', '.join(spec.locations)} are in different network zones "
                f"({', '.join(sorted(zones))}); a private network spans one zone. Pick "
                "locations of one zone, or set private_network: none."
            )
    if problems:
        lines = "\n".join(f"- {p}" for p in problems)
        raise BadInputError(f"{spec.source} does not fit this Hetzner project:\n{lines}")
    for group in (spec.servers, spec.agents):
        architecture = catalog.server_types[group.server_type].architecture if group.count else ""
        if group.count and not cloud.image_exists(spec.image, architecture):
            raise BadInputError(
                f"{spec.source}: image: {spec.image} does not exist for "
                f"{architecture} servers ({group.server_type}).",
                hint="Use a system image name such as debian-12 or ubuntu-24.04.",
            )
    return catalog


def _unknown_names(spec: ClusterSpec, catalog: Catalog) -> list[str]:
    """Locations that do not exist; server types that do not exist, or are not offered (any
    more, or for now) in a location where this file puts one of its nodes. Server types are
    offered per location since 2025 (hetzner/cloud.py ServerTypeOffer); CX Gen 2 and CPX Gen 1
    were withdrawn from the EU at the end of 2025 (terraform-provider-hcloud#1233)."""
    problems = []
    for i, location in enumerate(spec.locations):
        if location not in catalog.locations:
            valid = ", ".join(sorted(catalog.locations))
            problems.append(f"locations[{i}]: {location!r} is not a location (valid: {valid})")
    offered = {
        name: offer
        for name, offer in catalog.server_types.items()
        if "available" in offer.locations.values()
    }
    for role, where, group in (
        ("server", "servers", spec.servers),
        ("agent", "agents", spec.agents),
    ):
        if not group.count:
            continue
        offer = catalog.server_types.get(group.server_type)
        if offer is None or group.server_type not in offered:
            valid = ", ".join(sorted(offered))
            problems.append(
                f"{where}.type: {group.server_type!r} is not a server type Hetzner offers "
                f"(valid: {valid})"
            )
            continue
        places = sorted({spec.location_of(role, i) for i in range(1, group.count + 1)})
        for place in (p for p in places if p in catalog.locations):
            state = offer.locations.get(place, "not offered")
            if state == "available":
                continue
            here = sorted(
                n
                for n, o in offered.items()
                if o.available_in(place) and o.architecture == offer.architecture
            )
            elsewhere = sorted(p for p, st in offer.locations.items() if st == "available")
            problems.append(
                f"{where}.type: {group.server_type} is {state} in {place}"
                f"{' (Hetzner no longer creates it there)' if state == 'deprecated' else ''}"
                f"{' for now' if state == 'sold out' else ''}; "
                f"{offer.architecture} types available in {place}: {', '.join(here) or 'none'}; "
                f"{group.server_type} is available in: {', '.join(elsewhere) or 'no location'}"
            )
    return problems
