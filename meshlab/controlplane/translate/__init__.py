"""Pure translators from Istio objects to Envoy resources, one small function per field family (like Istio's)."""
