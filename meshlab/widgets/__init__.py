"""Notebook widgets: step through the stages, and drive a running lab while watching it."""

from meshlab.widgets.explorer import StageExplorer
from meshlab.widgets.live import LiveView

__all__ = ["LiveView", "StageExplorer"]
