"""Colours and words for the parts of a diagram (one place, so every diagram agrees)."""

FONT = "Helvetica"

ROLE_FILL = {
    "edge": "#cfe2f3",
    "router": "#fce5cd",
    "node": "#d9ead3",
    "sidecar": "#e4d9f5",
    "gateway": "#f8d7e8",
    "control-plane": "#fff2a8",
}
ROLE_NAME = {
    "edge": "edge proxy",
    "router": "router",
    "node": "node proxy",
    "sidecar": "sidecar",
    "gateway": "gateway",
    "control-plane": "control plane",
}
OTHER_PROXY_FILL = "#eeeeee"
APP_FILL = "#ffffff"
NODE_FILL = "#f6f6f6"
LINE = "#555555"
DOWN = "#cc0000"
DOWN_FILL = "#f4cccc"
CONFIG = "#b08d00"
FAILOVER = "#1f5fa8"  # a call made only after failover


def role_fill(role: str) -> str:
    """The fill colour of a proxy by role."""
    return ROLE_FILL.get(role, OTHER_PROXY_FILL)


def role_name(role: str) -> str:
    """How a role is written in a label."""
    return ROLE_NAME.get(role, role or "proxy")
