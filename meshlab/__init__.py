"""meshlab: build each stage of a service mesh for real, from edge proxy to multi-cluster."""

from .backends.base import Availability, MeshlabError, NodeInfo, PodInfo, ProxyInfo
from .checks.base import CheckResult, check, show_hint
from .lab import Lab
from .stages import documents as stage_documents
from .stages.info import STAGES
from .traffic import TrafficResult

__version__ = "0.1.0"

__all__ = [
    "Availability",
    "CheckResult",
    "Lab",
    "MeshlabError",
    "NodeInfo",
    "PodInfo",
    "ProxyInfo",
    "STAGES",
    "TrafficResult",
    "check",
    "show_hint",
    "stage_documents",
    "__version__",
]
