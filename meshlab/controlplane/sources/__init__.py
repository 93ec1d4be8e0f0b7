"""Where the control plane's inputs come from: the local runtime's watch API, and the peers its remote secrets name."""

from __future__ import annotations

import os

from ...backends.base import MeshlabError
from .local import ENV, LocalWatch, api_address
from .peers import ClusterWatch, remote_secrets


def from_environment(environ=None, **options) -> LocalWatch:
    """The source this pod was given: the local runtime's API when MESHLAB_API is set."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV):
        return LocalWatch(api_address(environ[ENV]), **options)
    raise MeshlabError(f"no input for the control plane: {ENV} is not set",
                       "run it as a pod of a local lab, or pass --api ADDRESS")


__all__ = ["ENV", "ClusterWatch", "LocalWatch", "api_address", "from_environment", "remote_secrets"]
