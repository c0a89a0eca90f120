"""``portkit top``: the Textual application (imports textual: load it only to run it).

Layout: listening ports (top left), counts by state with their history and the
ephemeral range (top right), connections (bottom), a filter line shown by ``/``.

Each refresh takes a snapshot through the injected provider (in a worker thread,
so a slow read never freezes the keys) and hands the tables rows keyed by socket
(protocol, both ends, inode). Cells are rebuilt only for sockets that changed; the
table keeps its sort column, keeps the cursor on the same socket (and that socket
on the same screen line) and redraws only the lines on screen, so the sort order,
the selection and the scroll position survive every refresh and nothing
flickers. :mod:`portkit.tui.table` says why the tables are not Textual's DataTable.
"""

from __future__ import annotations

import contextlib
import gc
import time
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from portkit.errors import ParseError, PortkitError
from portkit.render import safe
from portkit.render.sockets import service_ports
from portkit.tui import view
from portkit.tui.rates import Rates, RateTracker, snapshot_rates
from portkit.tui.table import SocketTable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from portkit.exporter.snapshot import Snapshot

__all__ = ["INTERVALS", "DetailsScreen", "TopApp"]

#: The refresh intervals ``+`` and ``-`` step through, in seconds.
INTERVALS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: Where a connection's CONTAINER text sits among its cells.
_CONTAINER = [key for key, _, _ in view.CONN_COLUMNS].index("container")


def _default_scope(ips: Iterable[str]) -> str:
    from portkit.render.see import scope_words

    return scope_words(ips)


def _default_names(ports: dict[str, set[int]]) -> dict[str, dict[int, str]]:
    from portkit.registry import service_names

    return {proto: service_names(p, proto) for proto, p in ports.items()}


def _default_details(pid: int) -> list[str]:
    """Lines about process ``pid`` from /proc (name, user, command line, start)."""
    from portkit.see import process_info

    info = process_info([pid], full=True).get(pid)
    if info is None:
        return [f"process {pid} is gone"]
    started = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.started)) if info.started else "?"
    )
    return [
        f"pid      {pid}",
        f"name     {safe(info.name or '?')}",
        f"user     {safe(info.user or '?')} (uid {info.uid if info.uid is not None else '?'})",
        f"started  {started}",
        f"command  {safe(' '.join(info.cmdline)) or '?'}",
    ]


class DetailsScreen(ModalScreen[None]):
    """A process and its sockets; any of escape, enter or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    DetailsScreen { align: center middle; }
    DetailsScreen > VerticalScroll {
        width: 90%; height: 80%; border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self._title = title
        self._lines = lines

    def compose(self) -> ComposeResult:
        body = VerticalScroll(Static("\n".join(self._lines), id="details-body", markup=False))
        body.border_title = self._title
        body.border_subtitle = "esc: close"
        yield body


class TopApp(App[None]):
    """The live view.

    Args:
        provider: returns a fresh :class:`~portkit.exporter.snapshot.Snapshot` on
            each call (the real one reads the kernel; tests pass fixed data).
        interval: seconds between refreshes.
        threaded: take snapshots in a worker thread (False: in the event loop,
            which makes tests deterministic).
        names: ``{proto: ports}`` -> ``{proto: {port: service}}`` (registry lookup).
        scope: listening addresses -> bind scope text.
        details: pid -> lines of process details.
        title: shown in the header line.
    """

    TITLE = "portkit top"
    CSS = """
    Screen { layout: vertical; }
    #head { height: 1; padding: 0 1; background: $panel; color: $text; }
    #upper { height: 45%; min-height: 8; }
    #listeners { width: 3fr; border: round $primary; }
    #side { width: 2fr; }
    #states { height: 1fr; border: round $primary; padding: 0 1; }
    #ephemeral { height: auto; max-height: 8; border: round $primary; padding: 0 1; }
    #lower { height: 1fr; }
    #connections { width: 4fr; border: round $primary; }
    #processes { width: 1fr; min-width: 44; border: round $primary; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    SocketTable:focus { border: round $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("p,space", "pause", "Pause"),
        Binding("plus,equals_sign", "slower", "+Interval"),
        Binding("minus", "faster", "-Interval"),
        Binding("enter", "details", "Process"),
        Binding("tab", "focus_next", "Pane", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(
        self,
        provider: Callable[[], Snapshot],
        *,
        interval: float = 1.0,
        threaded: bool = True,
        names: Callable[[dict[str, set[int]]], dict[str, dict[int, str]]] | None = None,
        scope: Callable[[Iterable[str]], str] | None = None,
        details: Callable[[int], list[str]] | None = None,
        title: str = "portkit top",
    ) -> None:
        super().__init__()
        self.provider = provider
        self.interval = interval
        self.threaded = threaded
        self.names_for = names or _default_names
        self.scope = scope or _default_scope
        self.details_for = details or _default_details
        self.header_title = title
        self.paused = False
        self.history = view.History(60)
        self.filter = view.RowFilter()
        self.snapshot: Snapshot | None = None
        self.refreshes = 0
        self.rates = RateTracker()
        self.last_rates: Rates | None = None
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._shown_rates: dict[str, Any] = {}
        self._cells: dict[str, view.Row] = {}
        self._names: dict[str, dict[int, str]] = {}
        self._busy = False
        self._timer: Any = None
        self.last_error: str | None = None
        #: An owner was a container (or published for one): the CONTAINER columns are
        #: shown from then on (not toggled with every refresh).
        self.containers_seen = False

    # --- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(self.header_title, id="head", markup=False)
        with Horizontal(id="upper"):
            listeners = SocketTable(
                view.LISTEN_COLUMNS, sort="port", id="listeners", hidden=view.CONTAINER_COLUMNS
            )
            listeners.border_title = "Listening"
            yield listeners
            with Vertical(id="side"):
                states = Static("", id="states", markup=False)
                states.border_title = "States (last 60 refreshes)"
                yield states
                eph = Static("", id="ephemeral", markup=False)
                eph.border_title = "Ephemeral ports"
                yield eph
        with Horizontal(id="lower"):
            conns = SocketTable(
                view.CONN_COLUMNS, sort="state", id="connections", hidden=view.CONTAINER_COLUMNS
            )
            conns.border_title = "Connections"
            yield conns
            procs = SocketTable(view.PROC_COLUMNS, sort="sent", id="processes")
            procs.border_title = "Traffic by process"
            yield procs
        yield Input(placeholder=view.FILTER_HELP, id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#connections", SocketTable).focus()
        self.refresh_now()
        self._start_timer()

    def _start_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_interval(self.interval, self._tick, pause=self.paused)

    # --- refreshing --------------------------------------------------------------------

    def _tick(self) -> None:
        if self.paused or self._busy:
            return
        if self.threaded:
            self._busy = True
            self._read_in_thread()
        else:
            self.refresh_now()

    @work(thread=True, exclusive=True, group="snapshot")
    def _read_in_thread(self) -> None:
        try:
            snap = self.provider()
        except (PortkitError, OSError) as exc:
            self._from_thread(self._failed, str(exc))
            return
        self._from_thread(self.apply, snap)

    def _from_thread(self, callback: Callable[..., None], *args: Any) -> None:
        # The user may quit while a read is in flight: then there is nothing to update.
        with contextlib.suppress(RuntimeError):
            self.call_from_thread(callback, *args)

    def _alive(self) -> bool:
        """Whether the main screen is still there (a read may end as the app quits)."""
        try:
            return bool(self.screen.query("#connections"))
        except ScreenStackError:
            return False

    def _failed(self, message: str) -> None:
        self._busy = False
        self.last_error = message
        self.notify(message, severity="error", timeout=5)

    def refresh_now(self) -> None:
        """Take a snapshot in the event loop and show it."""
        try:
            snap = self.provider()
        except (PortkitError, OSError) as exc:
            self._failed(str(exc))
            return
        self.apply(snap)

    def apply(self, snap: Snapshot) -> None:
        """Show ``snap``: new rows to both tables, redraw the side panes."""
        self._busy = False
        if not self._alive():
            return  # quitting: the widgets are gone
        # Tens of thousands of new tuples would set off the cyclic collector again and
        # again mid-refresh (rows hold no cycles): let it run once afterwards instead.
        paused = gc.isenabled()
        gc.disable()
        try:
            self._apply(snap)
        except NoMatches:
            pass  # the app is quitting: its widgets are being removed
        finally:
            if paused:
                gc.enable()

    def _apply(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.refreshes += 1
        self.history.add(snap.stats)
        self._names = self.names_for(service_ports(snap.rows))
        self.last_rates = self._rates(snap)
        if snap.containers and not self.containers_seen:
            self.containers_seen = True
            for table in self.query(SocketTable):
                table.show_columns(frozenset())
        self._show_listeners(snap)
        self._show_processes()
        self._show_connections()
        self._show_side(snap)
        self._show_head()

    def _show_head(self) -> None:
        if self.snapshot is None:
            return
        shown = len(self._shown)
        text = view.summary(
            self.snapshot,
            interval=self.interval,
            paused=self.paused,
            shown=shown,
            rates=self.last_rates,
        )
        clock = (
            time.strftime(" · %H:%M:%S", time.localtime(self.snapshot.taken))
            if self.snapshot.taken
            else ""
        )
        self.query_one("#head", Static).update(f"{self.header_title} · {text}{clock}")

    def _show_side(self, snap: Snapshot) -> None:
        lines = [f"{name:<12}{count:>7}  {line}" for name, count, line in self.history.lines(24)]
        self.query_one("#states", Static).update("\n".join(lines) or "no sockets")
        self.query_one("#ephemeral", Static).update("\n".join(view.ephemeral_lines(snap.stats)))

    def _rates(self, snap: Snapshot) -> Rates | None:
        """The traffic since the last refresh, when the snapshot carries tcp_info (a
        provider with ``traffic=True``; fixed snapshots do not)."""
        return snapshot_rates(self.rates, snap, view.row_key)

    def _show_processes(self) -> None:
        table = self.query_one("#processes", SocketTable)
        rows = view.process_rows(self.last_rates.processes) if self.last_rates else {}
        table.set_rows(rows)
        table.border_title = f"Traffic by process ({len(rows)})"

    def _show_listeners(self, snap: Snapshot) -> None:
        table = self.query_one("#listeners", SocketTable)
        traffic = self.last_rates.ports if self.last_rates else None
        rows = view.listener_rows(
            snap.stats, self._names, self.scope, traffic, snap.port_containers
        )
        table.set_rows(rows)
        table.border_title = f"Listening ({len(rows)})"

    def _show_connections(self) -> None:
        """Move the filtered connections into the table, keyed by socket; texts and
        sort keys are built again only for sockets whose row changed."""
        if self.snapshot is None:
            return
        table = self.query_one("#connections", SocketTable)
        boxes = self.snapshot.containers
        wanted = view.connection_rows(self.snapshot.rows, self.filter, self._names, boxes)
        seen, cells, names = self._shown, self._cells, self._names
        rates = self.last_rates.sockets if self.last_rates else {}
        seen_rates = self._shown_rates
        fresh: dict[str, view.Row] = {}
        box = "-"
        for key, row in wanted.items():
            hit = cells.get(key)
            rate = rates.get(key)
            if boxes:
                box = view.owner_container(boxes, row)
            if (
                hit is None
                or seen.get(key) != row
                or seen_rates.get(key) != rate
                or hit[0][_CONTAINER] != box
            ):
                hit = view.connection_cells(row, names, rate, box)
            fresh[key] = hit
        self._cells = fresh
        self._shown = wanted
        self._shown_rates = rates
        table.set_rows(fresh)
        title = f"Connections ({len(wanted)})"
        if self.filter.active:
            title += f" · filter: {self.filter.text}"
        table.border_title = title

    # --- actions -------------------------------------------------------------------------

    @property
    def connections(self) -> SocketTable:
        return self.query_one("#connections", SocketTable)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        try:
            self.filter = view.RowFilter.parse(event.value)
        except ParseError as exc:
            event.input.border_title = str(exc)
            return
        event.input.border_title = None
        self._show_connections()
        self._show_head()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("shown")
        self.connections.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.filter = view.RowFilter()
        self._show_connections()
        self._show_head()
        self.connections.focus()

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort the connections by ``column`` (a :data:`~portkit.tui.view.CONN_COLUMNS`
        key); the same column again flips the order."""
        table = self.connections
        if reverse is None:
            reverse = not table.sort_reverse if column == table.sort_column else False
        table.sort_by(column, reverse)

    def action_sort(self) -> None:
        table = self.connections
        keys = table.shown_columns
        table.sort_by(keys[(keys.index(table.sort_column) + 1) % len(keys)], False)

    def action_reverse(self) -> None:
        table = self.connections
        table.sort_by(table.sort_column, not table.sort_reverse)

    @on(SocketTable.HeaderClicked, "#connections")
    def _header_clicked(self, event: SocketTable.HeaderClicked) -> None:
        self.sort_by(event.column)

    def action_pause(self) -> None:
        self.paused = not self.paused
        if self._timer is not None:
            if self.paused:
                self._timer.pause()
            else:
                self._timer.resume()
        self._show_head()

    def _set_interval(self, seconds: float) -> None:
        self.interval = seconds
        self._start_timer()
        self._show_head()

    def action_slower(self) -> None:
        bigger = [i for i in INTERVALS if i > self.interval]
        self._set_interval(bigger[0] if bigger else self.interval)

    def action_faster(self) -> None:
        smaller = [i for i in INTERVALS if i < self.interval]
        self._set_interval(smaller[-1] if smaller else self.interval)

    @on(SocketTable.Selected)
    def _row_selected(self, event: SocketTable.Selected) -> None:
        self.show_details(event.table, event.key)

    def action_details(self) -> None:
        focused = self.focused
        table = focused if isinstance(focused, SocketTable) else self.connections
        if table.cursor_key is not None:
            self.show_details(table, table.cursor_key)

    def show_details(self, table: SocketTable, key: str) -> None:
        """Details of the process owning row ``key`` (a connection or a listener)."""
        if self.snapshot is None:
            return
        pid: int | None = None
        if table.id == "connections":
            row = self._shown.get(key)
            pid = row[12] if row else None
        else:
            proto, _, port = key.partition(" ")
            pid = next(
                (
                    ls.pid
                    for ls in self.snapshot.stats.listeners
                    if ls.protocol.value == proto and str(ls.port) == port and ls.pid
                ),
                None,
            )
        if pid is None:
            self.notify("owner unknown (another user's process? run as root)", severity="warning")
            return
        self.push_screen(DetailsScreen(f"process {pid}", self._details(pid)))

    def _details(self, pid: int) -> list[str]:
        lines = list(self.details_for(pid))
        lines += self._container_lines(pid)
        rows = self.snapshot.rows if self.snapshot else []
        mine = [r for r in rows if pid in (r[15] or ((r[12],) if r[12] else ()))]
        counts: dict[str, int] = {}
        for r in mine:
            name = f"{r[0].value} {r[2].ss_name}"
            counts[name] = counts.get(name, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        lines += ["", f"sockets  {len(mine)}: {summary}"]
        for r in mine[:200]:
            far = view.address(r[5], r[6]) if r[5] is not None else "*"
            lines.append(
                f"  {r[0].value:<4} {r[2].ss_name:<11} {view.address(r[3], r[4]):<28} {far}"
            )
        if len(mine) > 200:
            lines.append(f"  ... and {len(mine) - 200} more")
        return lines

    def _container_lines(self, pid: int) -> list[str]:
        """What ``ls -p`` says of the process's container: the one it runs in, or each
        one it publishes ports for, with where the traffic goes, and the image."""
        boxes = (self.snapshot.containers if self.snapshot else None) or {}
        found = [b for k, b in boxes.items() if (k[0] if isinstance(k, tuple) else k) == pid]
        lines = []
        for box in dict.fromkeys(found):
            lines.append(f"container {safe(box.text())}")
            image = box.container.image if box.container is not None else None
            if image:
                lines.append(f"image     {safe(image)}")
        return lines
