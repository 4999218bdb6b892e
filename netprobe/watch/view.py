"""What the operator sees during a drill.

On a terminal: a rich `Live` view with each group's active line, each lane's
state with a sparkline of recent RTT and loss, and the event log. Otherwise
(cron, CI, a pipe): the events as plain lines, as they happen.
"""

from __future__ import annotations

from collections import deque

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from netprobe.diagnosis.model import State
from netprobe.watch.timeline import Cycle, Event, Sample, Timeline

BLOCKS = "▁▂▃▄▅▆▇█"
STATE_STYLE = {State.UP: "green", State.DEGRADED: "yellow", State.DOWN: "bold red",
               State.UNKNOWN: "dim"}
SPARK_WIDTH = 30
EVENT_LINES = 12


def sparkline(samples: list[Sample], width: int = SPARK_WIDTH) -> Text:
    """Recent RTTs as bars scaled to the largest; a lost probe is a red ×, an
    unmeasured one a grey ·, so loss stands out from a slow answer."""
    recent = samples[-width:]
    rtts = [s.rtt_ms for s in recent if s.rtt_ms is not None]
    top = max(rtts) if rtts else 1.0
    text = Text()
    for s in recent:
        if s.state == State.DOWN:
            text.append("×", style="bold red")
        elif s.state == State.UNKNOWN or s.rtt_ms is None:
            text.append("·", style="dim")
        else:
            level = min(len(BLOCKS) - 1, int(s.rtt_ms / top * (len(BLOCKS) - 1))) if top else 0
            text.append(BLOCKS[level], style=STATE_STYLE[s.state])
    return text


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


class PlainView:
    """Event lines on a stream that is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()  # a pipe reader sees each event as it happens

    def start(self, timeline: Timeline) -> None:
        self._print(f"watching {len(timeline.lanes)} probes and {len(timeline.groups)} "
                    f"group(s) every {timeline.interval_s * 1000:.0f} ms")
        for note in timeline.notes:
            self._print(f"note: {note}")

    def cycle(self, cycle: Cycle, events: list[Event]) -> None:
        for e in events:
            self._print(e.line())

    def finish(self, timeline: Timeline) -> None:
        pass


class LiveView:
    """The live terminal view, redrawn after every cycle."""

    def __init__(self, console: Console, duration_s: float) -> None:
        self.console = console
        self.duration_s = duration_s
        self.timeline: Timeline | None = None
        self.history: dict[str, deque[Sample]] = {}
        self.active: dict[str, str | None] = {}
        self.events: deque[Event] = deque(maxlen=EVENT_LINES)
        self.last: Cycle | None = None
        self.slow = 0
        self._live: Live | None = None

    def start(self, timeline: Timeline) -> None:
        self.timeline = timeline
        for lane in timeline.lanes:
            self.history[lane.name] = deque(maxlen=SPARK_WIDTH)
        self._live = Live(self.render(), console=self.console, refresh_per_second=8,
                          transient=False)
        self._live.start()

    def cycle(self, cycle: Cycle, events: list[Event]) -> None:
        self.last = cycle
        self.slow += 1 if cycle.skipped_slots else 0
        for s in cycle.samples:
            self.history.setdefault(s.lane, deque(maxlen=SPARK_WIDTH)).append(s)
        if self.timeline:
            for g in self.timeline.groups:
                line = cycle.active_line(g.name)
                if line is not None or g.name not in self.active:
                    self.active[g.name] = line
        self.events.extend(events)
        if self._live is not None:
            self._live.update(self.render())

    def finish(self, timeline: Timeline) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()
            self._live = None

    def render(self) -> Group:
        tl = self.timeline
        head = Text()
        elapsed = self.last.t_s if self.last else 0.0
        head.append("netprobe watch  ", style="bold")
        head.append(f"{elapsed:6.1f} s of {self.duration_s:.0f} s   ")
        head.append(f"cycle {self.last.index + 1 if self.last else 0}   ")
        if self.last is not None:
            head.append(f"last cycle {self.last.duration_s * 1000:.0f} ms   ")
        if self.slow:
            head.append(f"{self.slow} slow cycle(s)", style="yellow")
        head.append("   Ctrl-C ends the drill", style="dim")
        parts: list = [head]
        if tl is not None and tl.groups:
            groups = Table(box=None, pad_edge=False, show_edge=False)
            groups.add_column("group", style="bold")
            groups.add_column("active line")
            groups.add_column("preferred")
            groups.add_column("failback")
            for g in tl.groups:
                active = self.active.get(g.name)
                style = "green" if active and active == g.preferred else \
                    "yellow" if active else "dim"
                groups.add_row(Text(g.name), Text(active or "unknown", style=style),
                               Text(g.preferred or "-"), g.failback)
            parts.append(groups)
        lanes = Table(box=None, pad_edge=False, show_edge=False)
        for col in ("lane", "state", "rtt", "loss"):
            lanes.add_column(col, justify="right" if col in ("rtt", "loss") else "left")
        lanes.add_column(f"last {SPARK_WIDTH} probes")
        for lane in (tl.lanes if tl else ()):
            hist = list(self.history.get(lane.name, ()))
            last = hist[-1] if hist else None
            state = last.state if last else State.UNKNOWN
            measured = [s for s in hist if s.state != State.UNKNOWN]
            lost = sum(1 for s in measured if s.state == State.DOWN)
            loss = f"{lost / len(measured):.0%}" if measured else "-"
            lanes.add_row(Text(lane.label), Text(str(state), style=STATE_STYLE[state]),
                          _ms(last.rtt_ms if last else None), loss, sparkline(hist))
        parts.append(lanes)
        log = Text("\n".join(e.line() for e in self.events) or "(no events yet)")
        parts.append(Panel(log, title="events", title_align="left", border_style="dim"))
        return Group(*parts)
