"""Hardware profiles of edge devices: one YAML file per device, data only (issue 3)."""
