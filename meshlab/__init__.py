"""meshlab: build each stage of a service mesh for real, from edge proxy to multi-cluster."""
