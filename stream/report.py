"""``python -m stream.report EVENTS.jsonl``: people over time from a run's events, as tables and a chart.

Reads an ``--events`` file (or several, e.g. one per camera; ``-`` for standard input), counts people per time
window with the one counting rule of :mod:`stream.counts`, and writes next to ``--out``:

* ``counts.csv`` (or ``.parquet`` with ``--format parquet``): one row per window and camera, plus
  ``camera = all`` over all cameras: people, labelled, estimating (and its share), per age group, per
  gender, mean and median dwell. ``pandas.read_csv(...)`` reads it as it is.
* ``counts.png``: people arriving per window by age group, by gender, and per camera, for a shop manager.

Exit codes: 0 ok, 2 bad input (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn

from stream.counts import (
    AGE_COLUMNS,
    ALL_CAMERAS,
    REPORT_WINDOW,
    EventsCounter,
    parse_window,
    table_bytes,
    table_format,
)
from stream.types import AGE_GROUPS

EXIT_OK, EXIT_BAD_INPUT = 0, 2
# Ordered groups get ordered colours (young light to old dark); "estimating" is grey in every chart.
ESTIMATING_COLOUR = "#b0b0b0"
UNDECIDED_COLOUR = "#707070"  # labelled, but no one age group: darker than "estimating", outside the group ramp
# Gender colours outside the age groups' palette, so the two charts never look alike.
GENDER_COLOURS = {"female": "#e66101", "male": "#0571b0", "gender_unknown": ESTIMATING_COLOUR}
GENDER_LABELS = {"female": "female", "male": "male", "gender_unknown": "unknown / estimating"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def age_colours() -> list[tuple[float, float, float, float]]:
    """One colour per age group, in :data:`AGE_GROUPS` order (the same in every chart)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis_r"]
    return [cmap(0.08 + 0.84 * i / (len(AGE_GROUPS) - 1)) for i in range(len(AGE_GROUPS))]


def read_events(paths: Sequence[str], counter: EventsCounter | None = None) -> EventsCounter:
    """Count the people of one or more events files.

    Raises:
        ValueError: A file cannot be read, or a line is not a JSON object (the message names file and line).
    """
    counter = counter if counter is not None else EventsCounter()
    for path in paths:
        try:
            if path == "-":
                _read_lines(sys.stdin, "<stdin>", counter)
            else:
                if Path(path).exists() and not Path(path).is_file() and not Path(path).is_dir():
                    # A FIFO or a device (/dev/zero) may never end: read standard input as '-' instead.
                    raise ValueError(f"{path} is not a regular file (a FIFO or device); give a file, or - for "
                                     "standard input")
                with open(path, encoding="utf-8") as handle:
                    _read_lines(handle, path, counter)
        except OSError as error:
            raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a text (JSON Lines) file") from None
    counter.finish()
    return counter


def _read_lines(handle: IO[str] | Iterable[str], name: str, counter: EventsCounter) -> None:
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            # A run killed mid-write may leave a cut last line; anything else is not an events file.
            if line.endswith("\n"):
                raise ValueError(f"{name}:{number}: not a JSON line (is it an --events file?)") from None
            continue
        if not isinstance(event, dict):
            raise ValueError(f"{name}:{number}: expected a JSON object per line")
        counter.add(event)


def plot(rows: list[dict[str, Any]], totals: list[dict[str, Any]], path: Path, window_s: float,
         title: str = "Visitors") -> None:
    """A PNG with people per window by age group, by gender, and per camera.

    Args:
        rows: :meth:`~stream.counts.PeopleCounter.rows` (windows without arrivals are drawn as zero).
        totals: :meth:`~stream.counts.PeopleCounter.totals` (the per-camera bars and their stay).
        path: The PNG.
        window_s: The rows' window.
        title: The chart's title.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display; chosen here, never at import
    import matplotlib.pyplot as plt

    across = _every_window([r for r in rows if r["camera"] == ALL_CAMERAS], window_s)
    per_camera = {r["camera"]: r for r in totals if r["camera"] != ALL_CAMERAS}
    cameras = sorted(per_camera)
    colours = age_colours()
    starts = [datetime.fromisoformat(r["window_start"]) for r in across]
    span_days = (starts[-1] - starts[0]).days if starts else 0
    fmt = "%d %b %H:%M" if span_days >= 1 else "%H:%M" if window_s >= 60 else "%H:%M:%S"
    labels = [s.strftime(fmt) for s in starts]
    x = list(range(len(across)))
    total = sum(r["people"] for r in across)
    estimating = sum(r["estimating"] for r in across)
    window_text = _window_text(window_s)

    heights = [3, 2, max(1.2, 0.45 * len(cameras))]
    fig, axes = plt.subplots(3, 1, figsize=(12, 12), gridspec_kw={"height_ratios": heights})
    end = datetime.fromtimestamp(starts[-1].timestamp() + window_s, UTC) if starts else None
    when = f"{starts[0]:%d %b %Y %H:%M} to {end:%H:%M} UTC" if starts else "no people counted"
    fig.suptitle(f"{title}: {total} people, {len(cameras)} camera(s), {when}\n"
                 f"{estimating} ({estimating / total:.0%}) left before their age and gender were estimated"
                 if total else f"{title}: no people counted", fontsize=14)

    ax = axes[0]
    bottom = [0] * len(across)
    for group, column, colour in zip(AGE_GROUPS, AGE_COLUMNS, colours):
        values = [r[column] for r in across]
        ax.bar(x, values, bottom=bottom, color=colour, label=group, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    values = [r["estimating"] for r in across]
    ax.bar(x, values, bottom=bottom, color=ESTIMATING_COLOUR, label="estimating", width=0.8)
    bottom = [b + v for b, v in zip(bottom, values)]
    ax.bar(x, [r["age_undecided"] for r in across], bottom=bottom, color=UNDECIDED_COLOUR, label="age undecided",
           width=0.8)
    ax.set_title(f"People arriving per {window_text}, by age group (all cameras)")
    ax.set_ylabel(f"people per {window_text}")
    ax.legend(title="age group", ncol=10, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    _time_axis(ax, x, labels)

    ax = axes[1]
    width = 0.27
    for k, (column, gender_colour) in enumerate(GENDER_COLOURS.items()):
        ax.bar([i + (k - 1) * width for i in x], [r[column] for r in across], width=width, color=gender_colour,
               label=GENDER_LABELS[column])
    ax.set_title(f"People arriving per {window_text}, by gender (all cameras)")
    ax.set_ylabel(f"people per {window_text}")
    ax.legend(loc="upper right", frameon=False)
    _time_axis(ax, x, labels)
    ax.set_xlabel("window start (UTC)")

    ax = axes[2]
    left = [0] * len(cameras)
    stacks: list[tuple[str, str, Any]] = [*zip(AGE_GROUPS, AGE_COLUMNS, colours),
                                          ("estimating", "estimating", ESTIMATING_COLOUR),
                                          ("age undecided", "age_undecided", UNDECIDED_COLOUR)]
    for group, column, colour in stacks:
        values = [per_camera[c][column] for c in cameras]
        ax.barh(range(len(cameras)), values, left=left, color=colour, label=group)
        left = [a + v for a, v in zip(left, values)]
    for i, camera in enumerate(cameras):
        dwell = per_camera[camera]["dwell_median_s"]
        text = f" {left[i]} people" + (f", median stay {_duration(dwell)}" if dwell is not None else "")
        ax.text(left[i], i, text, va="center", fontsize=10)
    ax.set_yticks(range(len(cameras)), cameras)
    ax.invert_yaxis()
    ax.set_xlabel("people (whole period)")
    ax.set_title("People per camera, by age group")
    ax.set_xlim(0, max(left, default=1) * 1.35 + 1)
    ax.spines[["top", "right"]].set_visible(False)

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _every_window(rows: list[dict[str, Any]], window_s: float) -> list[dict[str, Any]]:
    """``rows`` with the windows between them that had no arrivals filled in as zeros (so time reads evenly)."""
    if not rows:
        return rows
    by_start = {datetime.fromisoformat(r["window_start"]).timestamp(): r for r in rows}
    first, last = min(by_start), max(by_start)
    count = round((last - first) / window_s) + 1
    empty = {key: 0 for key in rows[0] if isinstance(rows[0][key], int)}
    filled = []
    for k in range(count):
        start = first + k * window_s
        row = by_start.get(start)
        if row is None:
            stamp = datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds")
            row = {**rows[0], **empty, "window_start": stamp, "dwell_mean_s": None, "dwell_median_s": None}
        filled.append(row)
    return filled


def _time_axis(ax: Any, x: list[int], labels: list[str]) -> None:
    step = max(1, len(x) // 16)  # at most ~16 labels: readable at any run length
    ax.set_xticks(x[::step], labels[::step], rotation=0)
    pad = max(0, 5 - len(x)) / 2  # a few windows are drawn as bars, not as wide blocks
    ax.set_xlim(-0.6 - pad, len(x) - 0.4 + pad)
    ax.spines[["top", "right"]].set_visible(False)
    ax.yaxis.get_major_locator().set_params(integer=True)


def _window_text(window_s: float) -> str:
    if window_s % 3600 == 0:
        return "hour" if window_s == 3600 else f"{window_s / 3600:g} hours"
    if window_s % 60 == 0:
        return "minute" if window_s == 60 else f"{window_s / 60:g} minutes"
    return f"{window_s:g} s"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m stream.report", description="People over time from a run's events: a table "
                     "(CSV or Parquet) and a chart (PNG).")
    parser.add_argument("events", nargs="+", help="--events JSONL file(s) of python -m stream (- for stdin)")
    parser.add_argument("--window", default=REPORT_WINDOW,
                        help=f"window: 1min, 15min, 1h or seconds (default {REPORT_WINDOW})")
    parser.add_argument("--out", default=".", help="folder for counts.csv|parquet and counts.png (default .)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="table format (default csv)")
    parser.add_argument("--title", default="Visitors", help="chart title (default Visitors)")
    return parser


def _check_outputs(outputs: Sequence[Path], events: Sequence[str]) -> None:
    """Refuse an output that is one of the events files read (``report counts.csv --out .`` would replace it)."""
    from stream.sinks.base import same_file

    for output in outputs:
        for path in events:
            if path != "-" and same_file(output, Path(path)):
                raise ValueError(f"{output} is the input {path}; writing it would destroy the input. Choose another "
                                 "--out folder")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        window_s = parse_window(args.window)
        out = Path(args.out)
        table = out / f"counts.{args.format}"
        table_format(table)
        _check_outputs([table, out / "counts.png"], args.events)
        counter = read_events(args.events).counter
        rows = counter.rows(window_s)
        out.mkdir(parents=True, exist_ok=True)
        table.write_bytes(table_bytes(rows, args.format))
        plot(rows, counter.totals(), out / "counts.png", window_s, args.title)
    except OSError as error:
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        sys.stderr.write(f"error: {where}{error.strerror or error}\n")
        return EXIT_BAD_INPUT
    except ValueError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_BAD_INPUT
    across = [r for r in rows if r["camera"] == ALL_CAMERAS]
    print(f"{sum(r['people'] for r in across)} people in {len(across)} window(s) of {args.window}; "
          f"wrote {table} and {out / 'counts.png'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
