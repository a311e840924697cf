"""A virtualised table for very large fleets.

Only the visible rows are ever rendered (Line API), rows are identified by key, a refresh diffs
the new rows against the old ones by object identity and repaints only what changed and is on
screen, and the cursor stays on the same row key across refreshes and filters. 100,000 rows cost
a list of references and an index, not 100,000 widgets or cells.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import is_not
from typing import Any, ClassVar, Generic, TypeVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

T = TypeVar("T")

# A cell renderer returns the text and an optional component class for its style.
Cell = tuple[str, str | None]


@dataclass(frozen=True)
class Column(Generic[T]):
    key: str
    label: str
    width: int
    render: Callable[[T], Cell]
    flex: int = 0  # share of the spare width
    align_right: bool = False
    min_table_width: int = 0  # the column is shown only when the table is at least this wide
    max_table_width: int = 0  # ... and, when set, narrower than this (a compact form of another column)
    priority: int = 0  # whose cut content gets the spare width first (higher first); cut last when narrow


def fit(text: str, width: int, right: bool = False) -> str:
    if width <= 0:
        return ""
    if cell_len(text) > width:
        if width == 1:
            return "…"
        out = []
        used = 0
        for ch in text:
            w = cell_len(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        return "".join(out) + "…" + " " * (width - 1 - used)
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def visible_columns(columns: Sequence[Column[T]], total: int) -> list[Column[T]]:
    return [c for c in columns if c.min_table_width <= total and (not c.max_table_width or total < c.max_table_width)]


def layout_widths(columns: Sequence[Column[Any]], total: int, natural: Mapping[str, int] | None = None) -> list[int]:
    """Column widths from their content and priority.

    With ``natural`` (the widest cell of each column, see VirtualTable.measure) a column takes what
    its content needs, from its ``width`` (the least it shows before it is cut) up; the spare width
    goes to the columns whose content is still cut, the highest ``priority`` first (``flex`` shares it
    among equals), and what is left stays blank at the right rather than padding a column. Without
    it, the spare width is shared by ``flex``. Too narrow: the lowest priority shrinks first, from the
    right, never below 3 cells."""
    gaps = max(0, len(columns) - 1)
    if natural is None:
        widths = [c.width for c in columns]
        spare = total - gaps - sum(widths)
        flex_total = sum(c.flex for c in columns)
        if spare > 0 and flex_total:
            given = 0
            flexible = [i for i, c in enumerate(columns) if c.flex]
            for n, i in enumerate(flexible):
                extra = spare * columns[i].flex // flex_total if n < len(flexible) - 1 else spare - given
                widths[i] += extra
                given += extra
            return widths
    else:
        need = [max(cell_len(c.label), natural.get(c.key, c.width)) for c in columns]
        widths = [min(c.width, n) for c, n in zip(columns, need, strict=True)]
        spare = total - gaps - sum(widths)
        for rank in sorted({c.priority for c in columns}, reverse=True):
            if spare <= 0:
                break
            cut = [i for i, c in enumerate(columns) if c.priority == rank and need[i] > widths[i]]
            while spare > 0 and cut:
                weights = [max(1, columns[i].flex) for i in cut]
                total_weight = sum(weights)
                round_spare = spare
                for i, w in zip(cut, weights, strict=True):
                    extra = min(need[i] - widths[i], max(1, round_spare * w // total_weight), spare)
                    widths[i] += extra
                    spare -= extra
                cut = [i for i in cut if need[i] > widths[i]]
    if spare < 0:
        # Too narrow: the lowest priority shrinks first, from the right, never below 3 cells.
        order = sorted(range(len(widths)), key=lambda i: (columns[i].priority, -i))
        for i in order:
            if spare >= 0:
                break
            give = min(widths[i] - 3, -spare)
            if give > 0:
                widths[i] -= give
                spare += give
    return widths


def ancestor_binds(widget: Widget, key: str) -> bool:
    """A container above ``widget`` on its screen binds ``key`` itself (the Fleet view's ``g``):
    then the list leaves that key to it."""
    node = widget.parent
    while node is not None and not isinstance(node, Screen):
        bindings = getattr(node, "_bindings", None)
        if bindings is not None and bindings.key_to_bindings.get(key):
            return True
        node = node.parent
    return False


class TableHeader(Widget):
    """The one-line column header above a VirtualTable."""

    DEFAULT_CSS = """
    TableHeader { height: 1; }
    """

    def __init__(self, table: VirtualTable[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        table.header = self

    def render_line(self, y: int) -> Strip:
        width = self.table.scrollable_content_region.width or self.size.width
        columns, widths = self.table.layout(width)
        text = " ".join(fit(c.label, w, c.align_right) for c, w in zip(columns, widths, strict=True))
        style = self.rich_style
        return Strip([Segment(fit(text, self.size.width), style)], self.size.width)


class VirtualTable(ScrollView, Generic[T], can_focus=True):
    """Rows are objects; ``key`` gives each its stable identity."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f,space", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "Top", show=False),
        Binding("end,G", "edge(1)", "Bottom", show=False),
        # `g` is the top of the list, except in views that group with it (Fleet, Services): there the
        # key goes on to the view (see check_action) and `home` is the top.
        Binding("g", "top", "Top", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "vtable--cursor",
        "vtable--dim",
        "vtable--healthy",
        "vtable--degraded",
        "vtable--unhealthy",
        "vtable--offline",
        "vtable--unknown",
        "vtable--accent",
        "vtable--error",
    }

    DEFAULT_CSS = """
    VirtualTable { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    class Highlighted(Message):
        def __init__(self, table: VirtualTable[Any], key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class Selected(Message):
        def __init__(self, table: VirtualTable[Any], key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    def __init__(
        self,
        columns: Sequence[Column[T]],
        key: Callable[[T], str],
        *,
        search: Callable[[T], str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.columns: list[Column[T]] = list(columns)
        self.key_of = key
        self.search_of = search  # the lower-case text a `/` text filter searches
        self.rows: list[T] = []
        self.index: dict[str, int] = {}  # key -> position in rows
        self.order: list[int] = []  # ascending positions of the rows that pass the filter
        self._texts: list[str | None] = []  # search texts, aligned with rows, filled lazily
        self._test: Callable[[int], bool] | None = None  # the filter, on a row position
        self.filter_words: tuple[str, ...] = ()
        self._matches: bytearray | None = bytearray()
        self._styles: dict[tuple[str, bool], tuple[Style, dict[str, Style]]] = {}
        self.cursor = 0
        self.cursor_key: str | None = None
        self.empty_text = "no rows"
        self.header: TableHeader | None = None
        self.natural: dict[str, int] = {}  # column key -> its widest cell (measured on a sample)
        self._layout: tuple[int, int, list[Column[T]], list[int]] | None = None
        self._natural_version = 0

    # ---- column widths ---------------------------------------------------------------------------
    MEASURE_SAMPLE: ClassVar[int] = 1000  # rows measured for the column widths (a large fleet is uniform)
    MEASURE_CHANGED: ClassVar[int] = 50  # changed rows measured on a refresh (widths seldom move)

    def measure(self, rows: Sequence[T], *, grow: bool = False) -> None:
        """The widest cell of each column over ``rows`` (a sample when there are many); ``grow``
        only widens (rows that changed in a refresh)."""
        step = max(1, len(rows) // self.MEASURE_SAMPLE)
        sample = rows[::step] if step > 1 else rows
        natural = dict(self.natural) if grow else {}
        for col in self.columns:
            render = col.render
            widest = max((cell_len(render(r)[0]) for r in sample), default=0)
            natural[col.key] = max(widest, natural.get(col.key, 0))
        if natural != self.natural:
            self.natural = natural
            self._natural_version += 1
            self.refresh()  # every line's widths move
            if self.header is not None:
                self.header.refresh()

    def layout(self, width: int) -> tuple[list[Column[T]], list[int]]:
        """The columns shown at this width and their widths (cached until the content changes)."""
        cached = self._layout
        if cached is not None and cached[0] == width and cached[1] == self._natural_version:
            return cached[2], cached[3]
        columns = visible_columns(self.columns, width)
        widths = layout_widths(columns, width, self.natural if self.natural else None)
        self._layout = (width, self._natural_version, columns, widths)
        return columns, widths

    # ---- data ----------------------------------------------------------------------------------
    def set_rows(self, rows: Sequence[T]) -> None:
        """Replace the rows. Unchanged rows (same object) cost nothing; the cursor keeps its key."""
        old = self.rows
        new = list(rows)
        same_layout = len(old) == len(new)
        changed: list[int] = []
        if same_layout:
            # The identity diff runs in C (compress/map): 100,000 unchanged rows cost ~2 ms.
            changed = list(compress(range(len(new)), map(is_not, old, new)))
            key_of = self.key_of
            for i in changed:
                if key_of(old[i]) != key_of(new[i]):
                    same_layout = False
                    break
        self.rows = new
        if not same_layout:
            self.measure(new)
            self.index = {self.key_of(r): i for i, r in enumerate(new)}
            # Rows that moved (a new sort order) but did not change keep their search texts.
            known = {id(r): t for r, t in zip(old, self._texts, strict=True) if t is not None}
            self._texts = [known.get(id(r)) for r in new] if known else [None] * len(new)
            self._recompute()
            return
        if not changed:
            return
        self.measure([new[i] for i in changed[: self.MEASURE_CHANGED]], grow=True)
        texts = self._texts
        for i in changed:
            texts[i] = None
        membership_changed = False
        test = self._test
        if test is not None:
            matches = self._matches
            if matches is None:
                matches = self._matches = bytearray(len(new))
                for i in self.order:
                    matches[i] = 1
            for i in changed:
                hit = 1 if test(i) else 0
                if matches[i] != hit:
                    matches[i] = hit
                    membership_changed = True
        if membership_changed:
            self._rebuild_order()
            return
        # Repaint only the changed rows that are on screen.
        top = int(self.scroll_offset.y)
        bottom = top + self.size.height
        for i in changed:
            d = self._display_position(i)
            if d is not None and top <= d < bottom:
                self.refresh_line(d)

    def text_of(self, i: int) -> str:
        text = self._texts[i]
        if text is None:
            assert self.search_of is not None
            text = self._texts[i] = self.search_of(self.rows[i])
        return text

    def index_search_texts(self, start: int = 0, chunk: int = 2000) -> None:
        """Fill missing search texts a chunk at a time on the UI thread, between other work, so the
        first `/` keystroke on a large fleet does not pay for it."""
        if self.search_of is None:
            return
        texts, rows, search = self._texts, self.rows, self.search_of
        end = min(len(rows), start + chunk)
        for i in range(start, end):
            if texts[i] is None:
                texts[i] = search(rows[i])
        if end < len(rows):
            self.set_timer(0.005, lambda: self.index_search_texts(end, chunk) if self._texts is texts else None)

    def set_filter(self, predicate: Callable[[T], bool] | None, *, positions: list[int] | None = None) -> None:
        """Filter by a predicate on the row objects (``None`` shows every row).

        ``positions``, when the caller already computed which rows pass (faster in bulk), must be
        ascending; the predicate still decides for rows that change later.
        """
        self.filter_words = ()
        if predicate is None:
            self._test = None
        else:
            # self.rows, not the list of the moment: a refresh replaces it
            self._test = lambda i: predicate(self.rows[i])
        if positions is not None and predicate is not None:
            self._matches = None
            self.order = positions
            self._order_changed()
            return
        self._recompute()

    def set_text_filter(self, text: str) -> None:
        """Rows whose search text contains every word. Typing more only re-tests the shown rows."""
        words = tuple(text.lower().split())
        if not words:
            self.set_filter(None)
            return
        narrowing = bool(self.filter_words) and len(words) >= len(self.filter_words) and all(
            w.__contains__(old) for w, old in zip(words, self.filter_words, strict=False)
        )
        self.filter_words = words
        text_of = self.text_of
        if len(words) == 1:
            word = words[0]
            self._test = lambda i: word in text_of(i)
        else:
            self._test = lambda i: all(w in text_of(i) for w in words)
        # The fast path: one comprehension over the search texts (no call per row).
        texts = self._texts
        if None in texts:
            self.index_search_texts(0, len(texts))
        scan = self.order if narrowing else range(len(texts))
        if len(words) == 1:
            order = [i for i in scan if word in texts[i]]  # type: ignore[operator]
        else:
            order = [i for i in scan if all(w in texts[i] for w in words)]  # type: ignore[operator]
        self._matches = None  # built when a refresh needs it
        self.order = order
        self._order_changed()

    def _recompute(self, candidates: Sequence[int] | None = None) -> None:
        n = len(self.rows)
        test = self._test
        if test is None:
            self._matches = bytearray(b"\x01") * n
            self.order = list(range(n))
        else:
            scan = range(n) if candidates is None else candidates
            matches = bytearray(n)
            order = []
            for i in scan:
                if test(i):
                    matches[i] = 1
                    order.append(i)
            self._matches = matches
            self.order = order
        self._order_changed()

    def _rebuild_order(self) -> None:
        m = self._matches
        assert m is not None
        self.order = list(range(len(self.rows))) if self._test is None else [i for i in range(len(m)) if m[i]]
        self._order_changed()

    def _order_changed(self) -> None:
        self.virtual_size = Size(0, len(self.order))
        self._restore_cursor()
        self.refresh()
        if self.header is not None:
            # The scrollbar may have appeared or gone: the header's widths follow the table's.
            self.call_after_refresh(self.header.refresh)

    def _display_position(self, row: int) -> int | None:
        """Where row position ``row`` is on screen (``order`` is ascending: a binary search)."""
        order = self.order
        if self._test is None:
            return row if row < len(order) else None
        d = bisect_left(order, row)
        return d if d < len(order) and order[d] == row else None

    def _restore_cursor(self) -> None:
        if not self.order:
            self.cursor = 0
            return
        if self.cursor_key is not None:
            row = self.index.get(self.cursor_key)
            if row is not None:
                d = self._display_position(row)
                if d is not None:
                    self.cursor = d
                    self._scroll_cursor_into_view()
                    return
        self.cursor = min(self.cursor, len(self.order) - 1)
        self.cursor_key = self.key_of(self.rows[self.order[self.cursor]])
        self._scroll_cursor_into_view()
        self.post_message(self.Highlighted(self, self.cursor_key))

    @property
    def current(self) -> T | None:
        if not self.order or self.cursor >= len(self.order):
            return None
        return self.rows[self.order[self.cursor]]

    @property
    def shown(self) -> int:
        return len(self.order)

    def visible_rows(self) -> list[T]:
        return [self.rows[i] for i in self.order]

    def narrow_by_words(self, positions: Sequence[int], words: Sequence[str]) -> list[int]:
        """The positions whose search text holds every word (ascending in, ascending out)."""
        texts = self._texts
        if None in texts:
            self.index_search_texts(0, len(texts))
        return [i for i in positions if all(w in texts[i] for w in words)]  # type: ignore[operator]

    def cursor_to_first(self) -> None:
        """The cursor on the first row shown (after a sort, a filter or a drill-down)."""
        self.cursor = 0
        self.cursor_key = self.key_of(self.rows[self.order[0]]) if self.order else None
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()
        self.post_message(self.Highlighted(self, self.cursor_key))

    def move_to_key(self, key: str) -> None:
        self.cursor_key = key
        self._restore_cursor()
        self.refresh()
        self.post_message(self.Highlighted(self, self.cursor_key))

    # ---- navigation ----------------------------------------------------------------------------
    def _move(self, to: int) -> None:
        if not self.order:
            return
        to = max(0, min(len(self.order) - 1, to))
        if to == self.cursor:
            return
        old = self.cursor
        self.cursor = to
        self.cursor_key = self.key_of(self.rows[self.order[to]])
        self.refresh_line(old)
        self.refresh_line(to)
        self._scroll_cursor_into_view()
        self.post_message(self.Highlighted(self, self.cursor_key))

    def _scroll_cursor_into_view(self) -> None:
        height = max(1, self.scrollable_content_region.height or self.size.height)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor + direction * max(1, self.size.height - 1))

    def action_edge(self, end: int) -> None:
        self._move(len(self.order) - 1 if end else 0)

    def action_top(self) -> None:
        self._move(0)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "top" and self._g_belongs_to_view():
            return False  # not handled here: the key reaches the view's own `g`
        return True

    def _g_belongs_to_view(self) -> bool:
        return ancestor_binds(self, "g")

    def on_click(self, event: Any) -> None:
        self._move(int(self.scroll_offset.y) + event.y)

    def key_enter(self) -> None:
        if self.cursor_key is not None and self.order:
            self.post_message(self.Selected(self, self.cursor_key))

    # ---- rendering -----------------------------------------------------------------------------
    def on_resize(self) -> None:
        self.virtual_size = Size(0, len(self.order))
        self._scroll_cursor_into_view()
        if self.header is not None:
            self.header.refresh()

    def _style_cache(self) -> tuple[Style, dict[str, Style]]:
        """The base and component styles, computed once per theme and focus state, not per line."""
        key = (self.app.theme, self.has_focus)
        hit = self._styles.get(key)
        if hit is None:
            component = {name: self.get_component_rich_style(name, partial=name != "vtable--cursor")
                         for name in self.COMPONENT_CLASSES}
            hit = self._styles[key] = (self.rich_style, component)
        return hit

    def notify_style_update(self) -> None:
        self._styles.clear()
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        d = int(self.scroll_offset.y) + y
        base, component = self._style_cache()
        if d >= len(self.order):
            if not self.order and y == 0:
                return Strip([Segment(fit(self.empty_text, width), base + component["vtable--dim"])])
            return Strip.blank(width, base)
        row = self.rows[self.order[d]]
        columns, widths = self.layout(width)
        is_cursor = d == self.cursor
        cursor_style = component["vtable--cursor"] if is_cursor else None
        segments: list[Segment] = []
        for n, (col, w) in enumerate(zip(columns, widths, strict=True)):
            if n:
                segments.append(Segment(" ", base if cursor_style is None else base + cursor_style))
            text, klass = col.render(row)
            style: Style = base
            if klass:
                style = style + component[klass]
            if cursor_style is not None:
                style = style + cursor_style
            segments.append(Segment(fit(text, w, col.align_right), style))
        used = sum(widths) + max(0, len(widths) - 1)
        if used < width:
            segments.append(Segment(" " * (width - used), base if cursor_style is None else base + cursor_style))
        return Strip(segments, width)
