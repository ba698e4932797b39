"""Apps: the catalog, rendering, and the lifecycle of installed instances."""
