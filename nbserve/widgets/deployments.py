"""The Deployments section (nbserve.deploy): a table read on every refresh and one row of controls acting on
the deployment chosen in the dropdown. Its widgets are made when the first deployment shows up: a panel of a
workspace without deployments keeps its few dozen widget models."""

from __future__ import annotations

import html

import ipywidgets as widgets

from .base import Section, close_widget, heading, put


class DeploymentsSection(Section):
    def __init__(self, panel):
        super().__init__(panel)
        self.box = widgets.VBox(layout=widgets.Layout(display="none"))
        self.widgets: list = []
        self.buttons: list = []
        self.split: dict = {}  # deployment name -> split between versions now

    def _build(self) -> None:
        panel, shared = self.panel, self.shared
        self.title = heading(shared, "Deployments")
        self.table = shared.cell()
        self.choice = widgets.Dropdown(options=[], layout=widgets.Layout(width="160px", flex="0 0 auto"))
        self.replicas = widgets.BoundedIntText(
            value=1, min=0, max=1000, layout=widgets.Layout(width="70px", flex="0 0 auto")
        )
        self.model = widgets.Text(placeholder="NAME:VERSION", layout=widgets.Layout(width="140px", flex="0 0 auto"))
        self.scale = shared.button("Scale", "set the number of replicas")
        self.update = shared.button("Update", "roll every replica to the model version typed beside", "primary")
        self.rollback = shared.button("Rollback", "roll back to the version served before the last update")
        # shown only while the chosen deployment is split between versions (nbserve deploy split)
        self.end_split = shared.button("End split", "serve the version of the largest weight alone")
        put(self.end_split.layout, display="none")
        self.logs = shared.button("Logs", "show the replicas' log tail")
        self.remove = shared.button("Remove", "remove the deployment and its replicas", "danger")
        self.scale.on_click(lambda _: panel.scale_deployment(self.choice.value, self.replicas.value))
        self.update.on_click(lambda _: panel.update_deployment(self.choice.value, self.model.value.strip()))
        self.rollback.on_click(lambda _: panel.rollback_deployment(self.choice.value))
        self.end_split.on_click(lambda _: panel.end_deployment_split(self.choice.value))
        self.choice.observe(lambda _: self._show_end_split(), names="value")
        self.logs.on_click(lambda _: panel.show_deployment_logs(self.choice.value))
        self.remove.on_click(lambda _: panel.remove_deployment(self.choice.value))
        self.buttons = [self.scale, self.update, self.rollback, self.end_split, self.logs, self.remove]
        self.controls = widgets.HBox(
            [self.choice, self.replicas, self.scale, self.model, *self.buttons[1:]], layout=shared.controls_layout
        )
        self.box.children = [self.title, self.table, self.controls]
        self.widgets = [self.controls, self.title, self.table, self.choice, self.replicas, self.model, *self.buttons]

    def sync(self, overview) -> None:
        try:
            deployments = self.panel.workspace.deployments()
        except Exception:  # an orchestrator that fails or stops answering must not take the panel down
            return
        if not deployments and not self.widgets:
            return
        if not self.widgets:
            self._build()
        from ..deploy_commands import rows

        put(self.box.layout, display="" if deployments else "none")
        put(self.table, value=f"<pre style='margin: 0; white-space: pre-wrap'>{html.escape(rows(deployments))}</pre>")
        names = [d.name for d in deployments]
        if list(self.choice.options) != names:
            self.choice.options = names
        self.split = {d.name: bool(d.split_weights) for d in deployments}
        self._show_end_split()

    def _show_end_split(self) -> None:
        put(self.end_split.layout, display="" if self.split.get(self.choice.value) else "none")

    def enable(self, busy: bool) -> None:
        for b in self.buttons:
            put(b, disabled=busy)

    def close(self) -> None:
        for w in [*self.widgets, self.box]:
            close_widget(w)
