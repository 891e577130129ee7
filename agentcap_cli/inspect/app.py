"""The ``agentcap inspect`` terminal app (textual): levels as a table, a live preview, a filter.

Keys: ↑/↓/PgUp/PgDn move, Enter drills in, Esc clears the filter or walks back (quits at the top),
typing filters the rows (what a filter means: :mod:`agentcap_cli.inspect.query`), Backspace edits
the filter, q or Ctrl-C quits (q types into a filter that is not empty).
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Static

from agentcap_cli.inspect.data import Level, Row
from agentcap_cli.inspect.query import BodySearcher, fuzzy, parse

STYLES = {"header": "bold cyan", "text": "", "tool": "bold magenta", "meta": "dim", "error": "bold red"}
LOOKAHEAD = 50


def highlighted(row: Row, positions: list[int]) -> list[Text]:
    cells, offset, hit = [], 0, set(positions)
    for cell in row.cells:
        t = Text(cell)
        for i in range(len(cell)):
            if offset + i in hit:
                t.stylize("bold reverse", i, i + 1)
        cells.append(t)
        offset += len(cell) + 1
    return cells


class Frame:
    """One level on the stack, with the rows loaded so far and where the cursor was."""

    def __init__(self, level: Level) -> None:
        self.level = level
        self.rows: list[Row] = []
        self.source: Iterator[list[Row]] | None = level.chunks()
        self.cursor = 0
        self.bodies = BodySearcher(level.body_hits)

    def more(self) -> bool:
        if self.source is None:
            return False
        try:
            self.rows.extend(next(self.source))
            return True
        except StopIteration:
            self.source = None
            return False

    def all(self) -> None:
        while self.more():
            pass


class InspectApp(App):
    CSS = """
    #title { height: 1; background: $boost; padding: 0 1; }
    #filter { height: 1; padding: 0 1; color: $warning; }
    #body { height: 1fr; }
    #table { width: 3fr; }
    #preview-box { width: 2fr; border-left: solid $primary; }
    """
    BINDINGS = [Binding("ctrl+c", "quit", "quit", priority=True), Binding("enter", "drill", "open"),
                Binding("escape", "back", "back")]

    def __init__(self, top: Level) -> None:
        super().__init__()
        self.stack: list[Frame] = [Frame(top)]
        self.filter = ""
        self.shown: list[Row] = []

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        with Horizontal(id="body"):
            yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="preview-box"):
                yield Static(id="preview")
        yield Static(id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    @property
    def frame(self) -> Frame:
        return self.stack[-1]

    # -- painting -------------------------------------------------------------------------------

    def show(self, cursor: int = 0) -> None:
        frame = self.frame
        if not frame.rows:
            try:
                frame.more()
            except Exception as exc:  # a corrupt source: say so instead of crashing
                frame.rows.append(Row("!error", ("error: " + str(exc),) + ("",) * (len(frame.level.columns) - 1)))
                frame.source = None
        if self.filter:
            frame.all()
        table = self.query_one("#table", DataTable)
        table.clear(columns=True)
        table.add_columns(*frame.level.columns)
        self.shown = []
        rows = []
        query = parse(self.filter, {r.fields["task"] for r in frame.rows if "task" in r.fields})
        hits = frame.bodies.hits(query)
        for row in frame.rows:
            if not query.keeps(row.fields):
                continue
            pos = fuzzy(query.text, row.search)
            if pos is None and row.key not in hits:
                continue
            self.shown.append(row)
            rows.append(highlighted(row, pos or []) if self.filter else row.cells)
        table.add_rows(rows)
        crumbs = " › ".join(f.level.title for f in self.stack)
        self.query_one("#title", Static).update(Text(f"{crumbs}   ({len(self.shown)} rows"
                                                     f"{'+' if frame.source else ''})", style="bold"))
        said = f"filter: {self.filter}" + (f"   ({' '.join(f'{k}:{v}' for k, v in query.fields)})"
                                           if query.fields and ":" not in self.filter else "")
        self.query_one("#filter", Static).update(Text(said if self.filter else "type to filter (task:ID, repeat:N; "
                                                                                "text also searches the bodies)"))
        if self.shown:
            table.move_cursor(row=min(cursor, len(self.shown) - 1))
            self.preview(min(cursor, len(self.shown) - 1))
        else:
            self.query_one("#preview", Static).update(Text("no rows", style="dim"))
        table.focus()

    def preview(self, index: int) -> None:
        row = self.shown[index]
        try:
            lines = self.frame.level.preview(row.key) if row.key != "!error" else [("error", row.cells[0])]
        except Exception as exc:
            lines = [("error", f"cannot show this row: {exc}")]
        text = Text()
        for style, line in lines:
            text.append(line + "\n", style=STYLES.get(style, ""))
        self.query_one("#preview", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not self.shown or event.cursor_row >= len(self.shown):
            return
        self.frame.cursor = event.cursor_row
        self.preview(event.cursor_row)
        if not self.filter and event.cursor_row > len(self.shown) - LOOKAHEAD and self.frame.source is not None:
            before = len(self.frame.rows)
            if self.frame.more() and len(self.frame.rows) > before:
                table = self.query_one("#table", DataTable)
                new = self.frame.rows[before:]
                self.shown.extend(new)
                table.add_rows([r.cells for r in new])

    # -- keys -----------------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # the table took Enter
        self.frame.cursor = event.cursor_row
        self.action_drill()

    def action_drill(self) -> None:
        if not self.shown:
            return
        row = self.shown[self.frame.cursor]
        try:
            child = self.frame.level.child(row.key) if row.key != "!error" else None
        except Exception as exc:
            self.notify(f"cannot open {row.key}: {exc}", severity="error")
            return
        if child is None:
            return
        self.stack.append(Frame(child))
        self.filter = ""
        self.show()

    def action_back(self) -> None:
        if self.filter:
            self.filter = ""
            self.show(self.frame.cursor)
            return
        if len(self.stack) == 1:
            self.exit()
            return
        self.stack.pop()
        self.show(self.frame.cursor)

    def on_key(self, event: events.Key) -> None:
        if event.key == "backspace" and self.filter:
            self.filter = self.filter[:-1]
        elif event.key == "q" and not self.filter:
            self.exit()
            return
        elif event.character and event.character.isprintable() and len(event.character) == 1 and \
                event.key not in ("enter", "escape", "tab"):
            self.filter += event.character
        else:
            return
        event.stop()
        self.show()
