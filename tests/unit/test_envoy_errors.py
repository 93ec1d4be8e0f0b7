"""Envoy's validate-mode complaints become one readable line with the field path and Envoy's reason."""

from meshlab.envoy.validate import error_line

ROUTE_WITHOUT_CLUSTER = """[2026-12-02 03:21:09.053][11091][critical][main] [source/server/config_validation/server.cc:76] \
error initializing configuration 'bad.yaml': goo.gle/debugstr  
stat_prefix: "x"
route_config {
  virtual_hosts {
    name: "a"
  }
}
: Proto constraint validation failed (HttpConnectionManagerValidationError.RouteConfig: embedded message failed \
validation | caused by RouteConfigurationValidationError.VirtualHosts[0]: embedded message failed validation | caused \
by VirtualHostValidationError.Routes[0]: embedded message failed validation | caused by RouteValidationError.Route: \
embedded message failed validation | caused by field: "cluster_specifier", reason: is required)
"""


def test_a_route_without_a_cluster_names_the_field_and_envoys_reason():
    line = error_line(ROUTE_WITHOUT_CLUSTER)
    assert line == "at route_config.virtual_hosts[0].routes[0].route.cluster_specifier: is required"
    assert "goo.gle" not in line and "\n" not in line


def test_a_plain_complaint_is_kept():
    out = "[x][1][critical][main] [a.cc:1] error initializing configuration 'c.yaml': unknown cluster 'nope'\n"
    assert error_line(out) == "unknown cluster 'nope'"
