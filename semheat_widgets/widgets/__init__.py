"""Jupyter widgets: heatmap (Altair JupyterChart), concept picker, image grid, detail view,
explorer and monitor panel (anywidget + ipywidgets)."""

from .compare import CompareView
from .detail import DetailView
from .explorer import Explorer
from .grid import ImageGrid
from .heatmap import HeatmapView
from .monitor_panel import MonitorPanel
from .picker import ConceptPicker

__all__ = ["CompareView", "ConceptPicker", "DetailView", "Explorer", "HeatmapView", "ImageGrid",
           "MonitorPanel"]
