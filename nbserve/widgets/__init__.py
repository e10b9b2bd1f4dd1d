"""``nbserve.panel()``: an ipywidgets panel of registered models and running instances.

One module per part: ``panel.py`` (the header, the actions, the refresh thread), ``models.py``,
``instances.py``, ``monitoring.py`` (traffic and drift plots, drawn by nbserve/plots.py), ``deployments.py``,
``request_log.py``; ``base.py`` holds what they share and ``Section``, the interface a new part implements
(add it to ``Panel.SECTIONS``). The panel is a thin face over a workspace: each refresh is one
``Workspace.overview()``, and every button calls one plain method of the panel.
"""

from .panel import MAX_AUTO_REFRESHING, REFRESH_SECONDS, Panel, panel

__all__ = ["MAX_AUTO_REFRESHING", "REFRESH_SECONDS", "Panel", "panel"]
