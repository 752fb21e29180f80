"""How `cmoctl` prints: tables fitted to a terminal or one row a line, JSON or YAML, progress.

A table on a terminal fits its width; piped, it is plain text with one row a line, so that
`cmoctl runs list | grep WAITING` finds each run whole. Progress shows on a terminal's stderr
only: piped output has nothing but the data.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import click
import yaml
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

__all__ = ["FORMATS", "console", "emit", "emit_list", "output_option", "print_table", "stepping", "working"]

FORMATS = ("table", "json", "yaml")
F = TypeVar("F", bound=Callable[..., Any])


def output_option(command: F) -> F:
    """`--output table|json|yaml` (`-o`) and its synonym `--json`, given to the command as `output`."""

    @functools.wraps(command)
    def with_output(*args: Any, output: str, as_json: bool, **kwargs: Any) -> Any:
        return command(*args, output="json" if as_json else output, **kwargs)

    with_json = click.option("--json", "as_json", is_flag=True, help="Same as --output json.")(with_output)
    return cast(
        F,
        click.option(
            "--output",
            "-o",
            type=click.Choice(FORMATS),
            default="table",
            show_default=True,
            help="How to print it: a table (one row a line when piped), JSON or YAML.",
        )(with_json),
    )


def console() -> Console:
    """Standard output: piped, lines are not folded to a width."""
    out = Console()
    return out if out.is_terminal else Console(soft_wrap=True)


def emit(output: str, document: Any) -> None:
    """One JSON-shaped document as JSON (indented) or YAML."""
    if output == "yaml":
        click.echo(_yaml(document), nl=False)
    else:
        click.echo(json.dumps(document, indent=2))


def emit_list(output: str, documents: Sequence[Any]) -> None:
    """Documents as JSON lines (one a line) or as one YAML list."""
    if output == "yaml":
        if documents:
            click.echo(_yaml(list(documents)), nl=False)
        return
    for document in documents:
        click.echo(json.dumps(document))


def _yaml(document: Any) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False))


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
    *,
    keep: Sequence[str] = (),
    out: Console | None = None,
) -> None:
    """A table: on a terminal fitted to its width (columns but those in `keep` fold); piped, one row a line.

    Cells are printed as they are (no markup); a `Text` cell may carry a style, for terminals.
    """
    out = out or console()
    cells = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]
    if out.is_terminal:
        table = Table(box=box.SIMPLE_HEAD)
        for name in headers:
            if name in keep:
                table.add_column(name, no_wrap=True, min_width=32)
            else:
                table.add_column(name, overflow="fold")
        for row in cells:
            table.add_row(*row)
        out.print(table)
        return
    plain = [list(headers), *([cell.plain.replace("\n", " ") for cell in row] for row in cells)]
    widths = [max(len(row[i]) for row in plain) for i in range(len(headers))]
    for line in plain:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@contextlib.contextmanager
def working(text: str) -> Iterator[None]:
    """A spinner saying `text` on stderr while a long call runs, if stderr is a terminal."""
    err = Console(stderr=True)
    if not err.is_terminal:
        yield
        return
    with err.status(text):
        yield


class _Steps:
    """Counts the items of a bulk action on a progress bar (or nowhere, when stderr is piped)."""

    def __init__(self, progress: Progress | None, total: int, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total) if progress is not None else None

    def advance(self) -> None:
        """One more item done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)


@contextlib.contextmanager
def stepping(total: int, description: str, *, show: bool = True) -> Iterator[_Steps]:
    """A progress bar of `total` items on stderr, if it is a terminal; lines printed meanwhile go above it."""
    err = Console(stderr=True)
    if not (show and err.is_terminal):
        yield _Steps(None, total, description)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    # Standard output goes above the bar only when it is the terminal too, never into a pipe's place.
    with Progress(*columns, console=err, transient=True, redirect_stdout=sys.stdout.isatty()) as progress:
        yield _Steps(progress, total, description)
