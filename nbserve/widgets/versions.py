"""The Versions section: what each instance serves over time (issue 22). For every running instance with more to
say than its model: "following lr" while a kernel follows a variable into it, its split between versions (with
End split), the versions it served before (with Rollback), and, while a candidate shadows it, the two side by
side (requests compared, agreement, error, latency of each, a plot of both answers) with Promote and Discard."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..errors import NbserveError
from ..notebook_text import error_text
from .base import ERROR_COLOUR, MUTED, OK_COLOUR, Section, close_widget, heading, put
from .monitoring import image


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def comparison_table(summary: dict) -> str:
    """The live version and the candidate side by side: what each answered and how fast."""
    live, cand = summary.get("live") or "live", summary.get("candidate") or "candidate"
    lat = summary.get("latency_ms") or {}
    agreement = summary.get("agreement")
    colour = OK_COLOUR if agreement == 1.0 else ERROR_COLOUR if agreement is not None else "inherit"
    errors = summary.get("errors") or {}
    error = next(iter(errors.values()), None)
    copies = summary.get("copies") or {}
    rows = [
        ("version", html.escape(live), html.escape(cand)),
        ("requests compared", str(summary.get("requests", 0)), str(summary.get("requests", 0))),
        (
            "agreement",
            "",
            f"<b style='color: {colour}'>{'-' if agreement is None or agreement != agreement else f'{agreement:.1%}'}"
            f"</b> of {summary.get('rows', 0)} rows",
        ),
        ("mean |error|", "", "-" if not error or error.get("mean_abs") is None else f"{error['mean_abs']:.4g}"),
        ("max |error|", "", "-" if not error or error.get("max_abs") is None else f"{error['max_abs']:.4g}"),
        ("latency p50", _ms(lat.get("live", {}).get("p50")), _ms(lat.get("candidate", {}).get("p50"))),
        ("latency p99", _ms(lat.get("live", {}).get("p99")), _ms(lat.get("candidate", {}).get("p99"))),
        ("failed answers", "", str(summary.get("candidate_failures", 0))),
    ]
    body = "".join(
        f"<tr><th style='text-align: left; padding-right: 1em'>{name}</th><td style='padding-right: 1em'>{a}</td>"
        f"<td>{b}</td></tr>"
        for name, a, b in rows
    )
    note = ""
    if copies:
        note = (
            f"<br><small style='{MUTED}'>copies sent {copies.get('sent', 0)}, dropped {copies.get('dropped', 0)}, "
            f"failed {copies.get('failed', 0)} (share {copies.get('share', 1):.0%})</small>"
        )
    return f"<table aria-label='comparison of {html.escape(cand)} with {html.escape(live)}'>{body}</table>{note}"


class VersionCard:
    """One instance: its badges, Rollback / End split, and its shadow's comparison with Promote / Discard."""

    def __init__(self, section: VersionsSection, id: str):
        self.id = id
        panel, shared = section.panel, section.shared
        self.title = shared.cell()
        self.rollback = shared.button("Rollback", f"serve the version {id} served before, in place", "warning")
        self.end_split = shared.button("End split", f"serve one version at {id} again")
        # shown and hidden on their own: the shared layouts would hide every button and box of the panel
        self.end_split.layout = widgets.Layout(width="auto", flex="0 0 auto")
        self.promote = shared.button("Promote", f"serve the candidate's version at {id}, in place", "success")
        self.discard = shared.button("Discard", f"stop and remove {id}'s shadow candidate", "danger")
        self.rollback.on_click(lambda _: panel.rollback_instance(id))
        self.end_split.on_click(lambda _: panel.end_split(id))
        self.promote.on_click(lambda _: panel.promote_candidate(id))
        self.discard.on_click(lambda _: panel.discard_candidate(id))
        self.table = shared.wide_cell()
        self.plot = shared.wide_cell()
        self.summary: dict | None = None
        self.error: str | None = None
        self.actions = widgets.HBox([self.rollback, self.end_split], layout=shared.controls_layout)
        self.shadow_actions = widgets.HBox(
            [self.promote, self.discard],
            layout=widgets.Layout(width="auto", flex_flow="row wrap", align_items="center", grid_gap="4px"),
        )
        self.box = widgets.VBox([self.title, self.actions, self.table, self.plot, self.shadow_actions])
        self.buttons = [self.rollback, self.end_split, self.promote, self.discard]
        self.inst = None

    def update(self, workspace, inst) -> None:
        self.inst = inst
        badges = []
        if inst.following:
            badges.append(
                f"<span class='nbserve-following' style='color: {OK_COLOUR}'>following "
                f"{html.escape(inst.following)}</span>"
            )
        if inst.split_weights:
            total = sum(inst.split_weights.values()) or 1
            badges.append(
                "split " + " · ".join(f"{html.escape(m)} {w / total:.0%}" for m, w in inst.split_weights.items())
            )
        if inst.history:
            badges.append(f"<span style='{MUTED}'>served before: {html.escape(', '.join(inst.history[-3:]))}</span>")
        shadow = inst.shadowed_by
        if shadow:
            badges.append(f"shadowed by {html.escape(shadow['model'])} ({shadow['share']:.0%} of requests)")
        put(
            self.title,
            value=f"<b>{html.escape(inst.id)}</b> · {html.escape(inst.model)}"
            + (" · " + " · ".join(badges) if badges else ""),
        )
        put(self.end_split.layout, display="" if inst.split_weights else "none")
        put(self.shadow_actions.layout, display="" if shadow else "none")
        if shadow:
            self._comparison(workspace, inst)
        else:
            self.summary = None
            put(self.table, value="")
            put(self.plot, value="")
        self.enable(False)

    def _comparison(self, workspace, inst) -> None:
        from .. import plots  # matplotlib: loaded once a candidate shadows

        try:
            frame = workspace.comparison(inst.id)
            self.summary = workspace.comparison(inst.id, summary=True)
            self.error = None
        except NbserveError as exc:
            self.error = error_text(exc)
            put(self.table, value=f"<span style='color: {ERROR_COLOUR}'>{html.escape(self.error)}</span>")
            return
        put(self.table, value=comparison_table(self.summary))
        plot = plots.comparison(frame, self.summary["live"], self.summary["candidate"])
        put(self.plot, value=image(plot))

    def enable(self, busy: bool) -> None:
        inst = self.inst
        put(self.rollback, disabled=busy or not (inst and inst.history))
        for button in (self.end_split, self.promote, self.discard):
            put(button, disabled=busy)

    def close(self) -> None:
        for w in [self.title, self.table, self.plot, *self.buttons]:
            w.close()
        self.end_split.layout.close()
        self.shadow_actions.layout.close()
        for w in (self.actions, self.box):
            close_widget(w)
        self.shadow_actions.close()


class VersionsSection(Section):
    def __init__(self, panel):
        super().__init__(panel)
        self.cards: dict[str, VersionCard] = {}
        self.title = heading(self.shared, "Versions")
        self.list = widgets.VBox()
        self.box = widgets.VBox([self.title, self.list], layout=widgets.Layout(display="none"))
        self._own = [self.box, self.title, self.list]

    @staticmethod
    def shows(inst) -> bool:
        """Whether an instance has more to say than its model (a candidate is shown within its instance)."""
        if inst.status != "running" or inst.candidate_of:
            return False
        return bool(inst.following or inst.split_weights or inst.shadowed_by or inst.history)

    def sync(self, overview) -> None:
        cards = {}
        for inst in overview.instances:
            if not self.shows(inst):
                continue
            card = self.cards.pop(inst.id, None) or VersionCard(self, inst.id)
            card.update(self.panel.workspace, inst)
            cards[inst.id] = card
        for gone in self.cards.values():
            gone.close()
        self.cards = cards
        children = tuple(c.box for c in cards.values())
        if self.list.children != children:
            self.list.children = children
        put(self.box.layout, display="" if cards else "none")

    def enable(self, busy: bool) -> None:
        for card in self.cards.values():
            card.enable(busy)

    def close(self) -> None:
        for card in self.cards.values():
            card.close()
        self.cards = {}
        for w in self._own:
            close_widget(w)
