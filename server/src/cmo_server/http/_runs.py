"""The runs endpoints: list, one run, its steps, its export, and the actions on it.

Each makes the engine call its gRPC method makes, with the same field checks (and the same
limits), and answers in the SDK's shapes (see `_json`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from cmo import RunStatus
from cmo_server.api import check_id, check_range, check_text
from cmo_server.domain import Namespace, NewSignal, Run, Step
from cmo_server.engine import Engine
from cmo_server.errors import InvalidArgument
from cmo_server.http._calls import NO_STORE, Call, optional_int, optional_time, text_field
from cmo_server.http._json import history_json, run_json, step_json
from cmo_server.progress import Explainer, Progress
from cmo_server.store._pages import encode_id_page_token, encode_run_page_token
from cmo_server.verification import CHECKS, verify_history

__all__ = ["RunEndpoints"]

MAX_PAGE = 1000
"""Largest page of runs or steps, as ListRuns and GetHistory allow."""
DEFAULT_PAGE = 50
SEARCH_PAGES = 10
"""Pages of MAX_PAGE runs whose id has the prefix that a search with a time window reads per call
at most; it answers where it stopped, and the next call goes on from there."""
MAX_REASON = 4096
"""Longest reason of a cancel or a terminate, as CancelRun and TerminateRun allow."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _status(raw: str) -> RunStatus | None:
    if not raw:
        return None
    try:
        return RunStatus[raw.upper()] if not raw.isdigit() else RunStatus(int(raw))
    except (KeyError, ValueError):
        names = ", ".join(s.name for s in RunStatus)
        raise InvalidArgument("status", f"{raw[:20]!r} is not a run status ({names})") from None


def _json_bytes(field: str, value: Any) -> bytes:
    """A JSON value as the bytes a gRPC request would carry (the engine checks and canonicalises them)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except ValueError:
        raise InvalidArgument(field, "is not valid JSON (NaN or infinity)") from None


class RunEndpoints:
    """Runs: read them, and act on them."""

    def __init__(self, engine: Engine, explainer: Explainer | None) -> None:
        self._engine = engine
        self._explainer = explainer

    async def _progress(self, namespace: Namespace, runs: list[Run]) -> dict[str, Progress]:
        return {} if self._explainer is None else await self._explainer.explain(namespace, runs)

    async def list_runs(self, call: Call) -> dict[str, Any]:
        """ListRuns, plus a time window (`after`, `before`); `q` searches by id prefix (in id order)."""
        namespace = call.resolve_namespace()
        graph_id = check_id("graph_id", call.query("graph_id"), required=False)
        status = _status(call.query("status"))
        limit = check_range("page_size", optional_int(call, "page_size", DEFAULT_PAGE), 1, MAX_PAGE)
        prefix = check_id("q", call.query("q"), required=False)
        after, before = optional_time(call, "after"), optional_time(call, "before")
        if prefix:
            return await self._search(call, namespace, prefix, graph_id, status, limit, after, before)
        token = call.query("page_token")
        if not token and before is not None:
            # Runs are listed newest first from a token: one just past `before` starts there.
            token = encode_run_page_token(_us(before), "")
        runs, token = await self._engine.list_runs(
            namespace, graph_id=graph_id, status=status, limit=limit, page_token=token
        )
        found = runs
        if after is not None and runs and runs[-1].created_at < after:
            found, token = [r for r in runs if r.created_at >= after], ""  # older ones still: the window is over
        return await self._page(namespace, found, token, len(runs))

    async def _search(
        self,
        call: Call,
        namespace: Namespace,
        prefix: str,
        graph_id: str,
        status: RunStatus | None,
        limit: int,
        after: datetime | None,
        before: datetime | None,
    ) -> dict[str, Any]:
        """The runs whose id starts with `prefix`, in id order, read through the store's index on ids.

        Without a time window that is one page of the index; with one, the window is applied to
        what the index gives, in pages of MAX_PAGE: at most SEARCH_PAGES of them per call, which
        then answers where it stopped.
        """
        token = call.query("page_token")
        size = MAX_PAGE if after is not None or before is not None else limit
        found: list[Run] = []
        scanned = 0
        for _ in range(SEARCH_PAGES):
            runs, next_token = await self._engine.list_runs(
                namespace, graph_id=graph_id, status=status, limit=size, page_token=token, id_prefix=prefix
            )
            for i, run in enumerate(runs):
                scanned += 1
                if (after is not None and run.created_at < after) or (before is not None and run.created_at >= before):
                    continue
                found.append(run)
                if len(found) == limit:
                    return await self._page(
                        namespace,
                        found,
                        next_token if i == len(runs) - 1 else encode_id_page_token(run.run_id),
                        scanned,
                    )
            token = next_token
            if not token:
                break
        return await self._page(namespace, found, token, scanned)

    async def _page(self, namespace: Namespace, runs: list[Run], token: str, scanned: int) -> dict[str, Any]:
        progress = await self._progress(namespace, runs)
        return {
            "runs": [run_json(r, progress.get(r.run_id)) for r in runs],
            "next_page_token": token,
            "scanned": scanned,
        }

    async def get_run(self, call: Call) -> dict[str, Any]:
        """GetRun: the run with what it waits for."""
        namespace = call.resolve_namespace()
        run = await self._engine.get_run(namespace, check_id("run_id", call.path("run_id")))
        progress = await self._progress(namespace, [run])
        return run_json(run, progress.get(run.run_id))

    async def history(self, call: Call) -> dict[str, Any]:
        """GetHistory: a page of steps with their activities."""
        namespace = call.resolve_namespace()
        run_id = check_id("run_id", call.path("run_id"))
        limit = check_range("page_size", optional_int(call, "page_size", MAX_PAGE), 1, MAX_PAGE)
        raw = call.query("page_token")
        after = -1
        if raw:
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
                raise InvalidArgument("page_token", "is not a token this server issued")
            after = int(raw)
        # One step more than asked for tells whether there is a next page, so that the page does not
        # make a last call for an empty one (GetHistory's token only says the page was full).
        steps = await self._engine.get_history(namespace, run_id, after=after, limit=limit + 1)
        token = str(steps[limit - 1].step_index) if len(steps) > limit else ""
        return {"steps": [step_json(s) for s in steps[:limit]], "next_page_token": token}

    async def export(self, call: Call) -> Response:
        """GetRun and every page of GetHistory: the document `cmoctl runs export` writes, as a download."""
        namespace = call.resolve_namespace()
        run_id = check_id("run_id", call.path("run_id"))
        run = await self._engine.get_run(namespace, run_id)
        progress = await self._progress(namespace, [run])
        steps = await self._all_steps(namespace, run_id)
        document = history_json(run, progress.get(run_id), steps)
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
        filename = f"run-{FILENAME_UNSAFE.sub('_', run_id)}.json"
        headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'}
        return Response(text.encode(), media_type="application/json", headers=headers)

    async def verify(self, call: Call) -> dict[str, Any]:
        """GetRun, GetGraph and every page of GetHistory: the history replayed through its graph version."""
        namespace = call.resolve_namespace()
        run_id = check_id("run_id", call.path("run_id"))
        run = await self._engine.get_run(namespace, run_id)
        graph = await self._engine.graph(namespace, run.graph_id, run.graph_version)
        outcome = verify_history(graph, run, await self._all_steps(namespace, run_id))
        divergence = outcome.divergence
        return {
            "ok": outcome.ok,
            "graph_id": outcome.graph_id,
            "graph_version": outcome.graph_version,
            "steps": outcome.steps,
            "checks": list(CHECKS),
            "divergence": None
            if divergence is None
            else {"step_index": divergence.step_index, "check": divergence.check, "message": divergence.message},
        }

    async def _all_steps(self, namespace: Namespace, run_id: str) -> list[Step]:
        steps: list[Step] = []
        while True:
            page = await self._engine.get_history(
                namespace, run_id, after=steps[-1].step_index if steps else -1, limit=MAX_PAGE
            )
            steps += page
            if len(page) < MAX_PAGE:
                return steps

    async def signal(self, call: Call) -> dict[str, Any]:
        """SignalRun: `{"name": ..., "payload": <any JSON>, "request_id": ...}`."""
        namespace = call.resolve_namespace()
        body = await call.body()
        signal = NewSignal(
            namespace=namespace,
            run_id=check_id("run_id", call.path("run_id")),
            name=check_id("name", text_field(body, "name")),
            payload=_json_bytes("payload", body.get("payload")),
            request_id=check_id("request_id", text_field(body, "request_id"), required=False),
        )
        outcome = await self._engine.signal_run(signal)
        return {"run": run_json(outcome.run), "delivered": outcome.delivered}

    async def cancel(self, call: Call) -> dict[str, Any]:
        """CancelRun: `{"reason": ...}`."""
        namespace = call.resolve_namespace()
        body = await call.body()
        reason = check_text("reason", text_field(body, "reason"), MAX_REASON)
        run = await self._engine.cancel_run(namespace, check_id("run_id", call.path("run_id")), reason=reason)
        return {"run": run_json(run)}

    async def terminate(self, call: Call) -> dict[str, Any]:
        """TerminateRun: `{"reason": ...}`."""
        namespace = call.resolve_namespace()
        body = await call.body()
        reason = check_text("reason", text_field(body, "reason"), MAX_REASON)
        run = await self._engine.terminate_run(namespace, check_id("run_id", call.path("run_id")), reason=reason)
        return {"run": run_json(run)}

    async def fork(self, call: Call) -> dict[str, Any]:
        """ForkRun: `{"from_step": N, "state": {...} (optional: the step's own), "new_run_id": ...}`."""
        namespace = call.resolve_namespace()
        body = await call.body()
        from_step = body.get("from_step")
        if not isinstance(from_step, int) or isinstance(from_step, bool):
            raise InvalidArgument("from_step", "must be a step index (an integer)")
        state = body.get("state")
        if state is not None and not isinstance(state, dict):
            raise InvalidArgument("state", f"must be a JSON object, got {type(state).__name__}")
        run, created = await self._engine.fork_run(
            namespace,
            check_id("run_id", call.path("run_id")),
            from_step=check_range("from_step", from_step, 0, 2**31 - 2),
            new_run_id=check_id("new_run_id", text_field(body, "new_run_id"), required=False),
            state=b"" if state is None else _json_bytes("state", state),
        )
        return {"run": run_json(run), "created": created}
