"""Mermaid flowcharts of pathway declarations (``zorgpad.engine.render.graph.to_mermaid``)."""

from __future__ import annotations

import re

import pytest
from example_pathway import ExampleAcp, ExampleAcpV2
from zorgpad.engine import GP, HOME_CARE, Criterion, Handover, Pathway, Step, days, defn, weeks
from zorgpad.engine.render.graph import to_mermaid

#: A node definition: an id followed by a Mermaid shape opener.
_NODE = re.compile(r"^\s{4}([A-Za-z0-9_-]+)(\(\(|\[\[|\[|\{\{|>|\(\[)")


DECEASED = Criterion("deceased", "Patient", present="deceased[x]")


def _lines(chart: str) -> list[str]:
    return chart.splitlines()


def _node_ids(chart: str) -> list[str]:
    return [m.group(1) for line in _lines(chart) if (m := _NODE.match(line)) and "-->" not in line
            and "==>" not in line and "-.-" not in line]


@defn(id="graph-join", version="1")
class Join(Pathway):
    """A pathway whose last step waits for two others."""

    left = Step("Left", owner=GP, due=days(1))
    right = Step('Ask "how are you"', owner=HOME_CARE, offset=weeks(2))
    both = Step("Both done", owner=GP, after=(left, right))


class TestFlowchart:
    """Every step is drawn with its timing, and every ``after=`` becomes an edge."""

    def test_the_chart_is_a_top_down_flowchart_ending_in_a_newline(self) -> None:
        """The text starts with ``flowchart TD`` and ends with a newline (so it prints cleanly)."""
        chart = to_mermaid(ExampleAcp)

        actual = (chart.splitlines()[0], chart.endswith("\n"))

        assert ("flowchart TD", True) == actual

    @pytest.mark.parametrize("pathway", [ExampleAcp, ExampleAcpV2, Join])
    def test_every_step_is_drawn_once(self, pathway: type[Pathway]) -> None:
        """Each step id defines exactly one node, and there are no nodes for steps that do not exist."""
        ids = _node_ids(to_mermaid(pathway))

        actual = sorted(i for i in ids if i in {s.id for s in pathway.steps})

        assert sorted(s.id for s in pathway.steps) == actual

    def test_the_start_node_names_the_pathway_and_its_enrol_criterion(self) -> None:
        """The start node shows the title, ``id version`` and the enrol criterion."""
        start = _lines(to_mermaid(ExampleAcp))[1]

        expected = ('    pathway-start(("Example proactive care planning pathway used by the engine tests<br/>'
                    'example-acp 1.0.0<br/>enrol when: surprise-question-no"))')
        assert expected == start

    def test_each_after_reference_becomes_an_edge(self) -> None:
        """``after=`` draws predecessor --> step; a step with an offset labels its edge with the wait."""
        lines = _lines(to_mermaid(ExampleAcp))

        actual = [line.strip() for line in lines if re.match(r"^\s{4}[\w-]+ --> ", line)]

        expected = ["pathway-start --> register", "register --> conversation", "conversation --> share",
                    "conversation --> |after 3 months| review"]
        assert expected == actual

    def test_a_step_waiting_for_two_steps_gets_two_edges(self) -> None:
        """``after=(left, right)`` draws an edge from each; steps without predecessors hang off start."""
        lines = {line.strip() for line in _lines(to_mermaid(Join))}

        actual = {"left --> both", "right --> both", "pathway-start --> left",
                  "pathway-start --> |after 2 weeks| right"} - lines

        assert set() == actual

    def test_the_node_shows_owner_deadline_guard_and_done_criterion(self) -> None:
        """Node labels carry the owner role, due, only_if and done_when."""
        lines = _lines(to_mermaid(ExampleAcp))

        expected = [
            '    conversation["<b>Hold the ACP conversation</b><br/>owner: gp<br/>due: 28 days<br/>'
            'done when: acp-recorded"]',
            '    share[["<b>Share emergency agreements with the out-of-hours GP post</b><br/>owner: gp<br/>'
            'due: 2 days<br/>only if: sharing-consent"]]',
        ]
        assert expected == [line for line in lines if line.startswith(("    conversation[", "    share["))]

    def test_reminders_escalations_repeats_and_exit_are_drawn(self) -> None:
        """Reminder and escalation side nodes, the repeat loop and the exit node appear."""
        lines = {line.strip() for line in _lines(to_mermaid(ExampleAcp))}

        expected = {
            'conversation-remind>"remind 2x every 1 week"]',
            "conversation -.-> conversation-remind",
            'conversation-escalate{{"escalate to coordinator 3 weeks after due"}}',
            "conversation -.-> conversation-escalate",
            "review -. every 3 months .-> review",
            'pathway-exit(("exit when: deceased"))',
        }
        assert set() == expected - lines

    def test_double_quotes_in_titles_cannot_break_the_label(self) -> None:
        """A ``"`` in a step title is drawn as ``'``, so the quoted Mermaid label stays closed."""
        right = [line for line in _lines(to_mermaid(Join)) if line.startswith("    right[")]

        expected = ["    right[\"<b>Ask 'how are you'</b><br/>owner: home-care\"]"]
        assert expected == right

    def test_the_same_declaration_draws_the_same_chart(self) -> None:
        """Drawing is deterministic: two calls give identical text."""
        first = to_mermaid(ExampleAcp, highlight="share")

        actual = to_mermaid(ExampleAcp, highlight="share")

        assert first == actual

    @pytest.mark.parametrize("name", ["start", "exit"])
    def test_a_step_named_like_a_built_in_node_gets_its_own_node(self, name: str) -> None:
        """A step called ``start`` or ``exit`` gets its own node: every node id is defined once."""
        first = Step("First", owner=GP)
        namespace = {"__doc__": "Names that collide with the chart's own nodes.", "exit_when": DECEASED,
                     name: first, "later": Step("Later", owner=GP, after=first)}
        pathway = defn(id=f"collide-{name}", version="1")(type("Colliding", (Pathway,), namespace))
        ids = _node_ids(to_mermaid(pathway))

        actual = sorted({i for i in ids if ids.count(i) > 1})

        assert [] == actual


class TestHandoverAndHighlight:
    """Handover steps get a receiver node; ``highlight`` marks the current step."""

    def test_a_handover_step_points_to_the_receiving_role(self) -> None:
        """A handover draws a thick edge to a node named after the receiving role."""
        lines = {line.strip() for line in _lines(to_mermaid(ExampleAcp))}

        expected = 'share ==>|handover| share-to(["Huisartsenpost (out-of-hours GP post)"])'
        assert expected in lines

    def test_only_handover_steps_have_a_receiver_node(self) -> None:
        """Steps without a handover get no ``==>|handover|`` edge and a plain box shape."""
        chart = to_mermaid(ExampleAcp)

        actual = sorted(line.split()[0] for line in _lines(chart) if "==>|handover|" in line)

        assert ["share"] == actual

    def test_a_handover_to_another_role_names_that_role(self) -> None:
        """The receiver node shows the display of the role the step is handed to."""
        step = Step("Hand to home care", owner=GP, handover=Handover(to=HOME_CARE))
        pathway = defn(id="graph-handover", version="1")(type("HandToHomeCare", (Pathway,), {
            "__doc__": "Hand over to home care.", "hand": step}))

        actual = [line.strip() for line in _lines(to_mermaid(pathway)) if "==>" in line]

        assert ['hand ==>|handover| hand-to(["Thuiszorg / wijkverpleging (home care)"])'] == actual

    def test_highlight_adds_a_class_for_the_current_step(self) -> None:
        """``highlight=`` ends the chart with a classDef and a ``class STEP current`` line."""
        lines = _lines(to_mermaid(ExampleAcp, highlight="conversation"))

        expected = ["    classDef current fill:#ffe08a,stroke:#b07d00,stroke-width:3px",
                    "    class conversation current"]
        assert expected == lines[-2:]

    def test_without_highlight_no_step_is_marked(self) -> None:
        """Without ``highlight`` there is no class line at all."""
        lines = _lines(to_mermaid(ExampleAcp))

        actual = [line for line in lines if line.strip().startswith(("class ", "classDef "))]

        assert [] == actual

    def test_highlight_changes_nothing_else(self) -> None:
        """The highlighted chart is the plain chart plus the two class lines."""
        plain = _lines(to_mermaid(ExampleAcp))

        actual = _lines(to_mermaid(ExampleAcp, highlight="review"))[:-2]

        assert plain == actual
