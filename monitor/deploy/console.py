"""Where rendered events go: stdout for the story, stderr for complaints, a live line on a TTY.

Owns stream choice, flushing after every line (a CI runner killed mid-job must still show what
was printed) and erasing the live progress line before a regular line is written over it.
"""

from __future__ import annotations

import sys
from typing import TextIO

from monitor.deploy import render
from monitor.deploy.events import Event, Note, Refused, Retrying

_ERASE = "\r\x1b[2K"
_TO_STDERR = (Retrying, Refused, Note)


class Console:
    def __init__(
        self,
        *,
        json_mode: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        self.json_mode = json_mode
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        # The live line only where a person watches: never in CI logs, never mixed into JSON.
        self.live = (not json_mode and self._out.isatty()) if live is None else live
        self._live_shown = False

    def emit(self, event: Event) -> None:
        self._erase_live()
        if self.json_mode:
            self._write(self._out, [render.json_line(event)])
            if isinstance(event, Refused):
                # A refusal must be readable in a CI log even when stdout goes to a parser.
                self._write(self._err, render.text(event))
            return
        stream = self._err if isinstance(event, _TO_STDERR) else self._out
        self._write(stream, render.text(event))

    def show_live(self, line: str) -> None:
        if not self.live:
            return
        self._out.write(_ERASE + line)
        self._out.flush()
        self._live_shown = True

    def close(self) -> None:
        self._erase_live()

    def _erase_live(self) -> None:
        if self._live_shown:
            self._out.write(_ERASE)
            self._out.flush()
            self._live_shown = False

    @staticmethod
    def _write(stream: TextIO, lines: list[str]) -> None:
        for line in lines:
            stream.write(line + "\n")
        stream.flush()
