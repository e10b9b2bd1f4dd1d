"""What every section of the panel shares: layouts and styles, small widget helpers, and ``Section``.

A section is one part of the panel (models, instances, monitoring, deployments, the request log). It owns its
widgets, shows them in ``box``, and on every refresh gets the workspace's ``Overview`` in ``sync``; it reads
anything else it needs (an instance's metrics, an orchestrator's deployments) through ``panel.workspace``.
Buttons call the panel's actions (``panel.act``), which run one at a time with the progress view showing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets
from ipywidgets.widgets.widget_bool import CheckboxStyle
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

if TYPE_CHECKING:
    from ..resources import Overview
    from .panel import Panel

LINK_STYLE = "color: var(--jp-content-link-color, #1976d2); text-decoration: underline"
ERROR_COLOUR = "#c62828"
WARN_COLOUR = "#ef6c00"
OK_COLOUR = "#2e7d32"
MUTED = "opacity: .65"


class Shared:
    """Layouts and styles shared by every cell and button of one panel. Each is a widget model of its
    own in ipywidgets; sharing them keeps a panel at a few dozen models instead of hundreds, and lets
    ``Panel.close`` close them once, after the rows that use them."""

    def __init__(self):
        self.cell_layout = widgets.Layout(width="auto")
        self.cell_style = HTMLStyle()
        # buttons never shrink below their text (a squeezed button reads "Refr...")
        self.button_layout = widgets.Layout(width="auto", flex="0 0 auto")
        self.button_style = widgets.ButtonStyle()
        self.runtime_layout = widgets.Layout(width="7.5em", flex="0 0 auto")
        self.runtime_style = DescriptionStyle(description_width="initial")
        self.port_layout = widgets.Layout(width="5.5em", flex="0 0 auto")
        self.number_layout = widgets.Layout(width="9.5em", flex="0 0 auto")  # "rows" + 7 digits
        self.number_style = DescriptionStyle(description_width="2.7em")
        self.port_style = TextStyle()
        self.check_style = CheckboxStyle()
        self.controls_layout = widgets.Layout(width="auto", flex_flow="row wrap", align_items="center", grid_gap="4px")
        self.wide_layout = widgets.Layout(width="100%")

    def cell(self, value: str = "") -> widgets.HTML:
        return widgets.HTML(value, layout=self.cell_layout, style=self.cell_style)

    def wide_cell(self, value: str = "") -> widgets.HTML:
        """A cell as wide as the output area (a plot scales down to it)."""
        return widgets.HTML(value, layout=self.wide_layout, style=self.cell_style)

    def button(self, description: str, tooltip: str, style: str = "") -> widgets.Button:
        return widgets.Button(
            description=description,
            tooltip=tooltip,
            button_style=style,
            layout=self.button_layout,
            style=self.button_style,
        )

    def close(self) -> None:
        for w in vars(self).values():
            w.close()


def close_widget(widget) -> None:
    """Close a widget with its own layout and style (ipywidgets' close() leaves those open)."""
    for part in ("layout", "style"):
        sub = getattr(widget, part, None)
        if isinstance(sub, widgets.Widget):
            sub.close()
    widget.close()


def grid(columns: str) -> widgets.GridBox:
    """A table whose columns fit the output area: ``columns`` is a CSS grid-template-columns; cells wrap
    their text before the table grows past the notebook's width."""
    return widgets.GridBox(
        layout=widgets.Layout(grid_template_columns=columns, grid_gap="4px 12px", align_items="center", width="100%")
    )


def put(widget, **values) -> None:
    """Assign only what changed: a refresh then sends nothing for rows that did not change."""
    for key, value in values.items():
        if getattr(widget, key) != value:
            setattr(widget, key, value)


def heading(shared: Shared, text: str) -> widgets.HTML:
    return shared.cell(f"<h3 style='margin: 6px 0 2px'>{text}</h3>")


class Section:
    """One part of the panel. Subclasses set ``box`` (what the panel shows) and implement ``sync``."""

    box: widgets.Box

    def __init__(self, panel: Panel):
        self.panel = panel
        self.shared = panel.shared

    def sync(self, overview: Overview) -> None:
        """Show what ``overview`` says (called on every refresh, under the panel's lock)."""
        raise NotImplementedError

    def enable(self, busy: bool) -> None:
        """Disable the section's buttons while an action runs (``busy``), enable them after."""

    def close(self) -> None:
        """Close every widget the section made (shared layouts and styles are the panel's)."""


class TableSection(Section):
    """A section that is a table: a title, a header row, one row object per item (kept across refreshes, so a
    refresh sends only what changed), and a line shown when there is nothing. A row has ``widgets`` (its
    cells, in the order of the headers) and ``close()``."""

    TITLE = ""
    HEADERS: tuple[str, ...] = ()
    COLUMNS = ""  # CSS grid-template-columns
    EMPTY = ""

    def __init__(self, panel: Panel):
        super().__init__(panel)
        shared = self.shared
        self.rows: dict = {}
        self.headers = [shared.cell(f"<b>{h}</b>") for h in self.HEADERS]
        self.grid = grid(self.COLUMNS)
        self.empty = widgets.HTML(f"<i>{self.EMPTY}</i>")
        self.title = heading(shared, self.TITLE)
        self.box = widgets.VBox([self.title, self.grid, self.empty])
        self._own = [self.box, self.title, self.grid, self.empty, *self.headers]

    def sync_rows(self, items, key, make, update) -> None:
        """Rows for ``items`` in their order: ``key(item)`` names a row, ``make(key)`` makes a new one,
        ``update(row, item)`` fills it; rows of items gone are closed."""
        rows = {}
        for item in items:
            k = key(item)
            row = self.rows.pop(k, None) or make(k)
            update(row, item)
            rows[k] = row
        for gone in self.rows.values():
            gone.close()
        self.rows = rows
        children = tuple(self.headers + [w for r in rows.values() for w in r.widgets]) if rows else ()
        if self.grid.children != children:
            self.grid.children = children
        put(self.empty.layout, display="none" if rows else "")

    def close(self) -> None:
        for row in self.rows.values():
            row.close()
        self.rows = {}
        for w in self._own:
            close_widget(w)
