"""Hostile links vs a class: heavy accepted settings and default pages at once, one server.

    python bench/load_cap.py [--heavy 10] [--default 10] [--query "..."] [--distinct]
    python bench/load_cap.py --heavy 0 --default 30                       # a class of 30
    python bench/load_cap.py --heavy 0 --default 30 --class-page lr-curve \
        --class-query "quiz=best_lr&present=true"                         # ... by a quiz link
    python bench/load_cap.py --taskset 0 --cold                           # a small box, cold
    python bench/load_cap.py --quota 0.5                                  # half a core's time

Starts a fresh server (the README's command, 127.0.0.1, a free port, bench/hooks on PYTHONPATH
to count trainings), opens Home once (Streamlit's first-run page list), then opens at once
``--heavy`` sessions of the heaviest accepted request (``--query``, the corner walk's worst by
default) and ``--default`` sessions of the default LR sensitivity page. Each session is a plain
websocket client speaking Streamlit's protocol (what the browser sends: a rerun with the page
and its query string; what it gets: every delta until the script finished), so the time
measured is the server's, not 20 browsers' on the same 2 cores. Every session must end its run
with its charts and no exception; the default sessions must have their charts within 10 s of
opening. Prints first / median / last per group, the server's CPU time and RSS, and the
trainings it ran. Bounded: every session gives up after ``--timeout`` seconds.

``--class-page`` / ``--class-query`` make the "default" sessions a class's link instead (a quiz's
first content is its question: the charts wait for the reveal); ``--cold`` skips the first visit
to Home (a deep link is the server's first request); ``--taskset CPUS`` runs the server on those
CPUs only (``0``: one core, a small box), ``--quota CORES`` in a CPU quota as a container's
(``bench/in_quota.sh``: ``0.5``, half a core's time; root only); ``--first`` and ``--finished``
are the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402
from load import HOOKS, cpu_seconds, trainings  # noqa: E402
from memory import rss_mb  # noqa: E402

# the corner walk's heaviest accepted request (bench/cost.py): every depth, activation and BN
# placement on the LR sensitivity page, at the most epochs the cap accepts (4)
EVERY_MODEL = "&".join(
    [f"depths={d}" for d in range(1, 9)]
    + [f"act={a}" for a in ("tanh", "relu", "sigmoid", "leaky_relu")]
    + [f"bn={b}" for b in ("no+BN", "BN+pre", "BN+post")]
)
HEAVY = "lr-sensitivity", EVERY_MODEL + "&epochs=4"
DEFAULT = "lr-sensitivity", ""
TARGET_S = 10.0


async def session(base: str, page: str, query: str, timeout: float) -> dict:
    """Opens one page like a browser tab; returns when its script run finished."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    t0 = time.monotonic()
    out = {"charts": 0, "exceptions": [], "finished": None, "first_chart": None}
    out |= {"bytes": 0, "chart_bytes": 0}  # what the server sent this session; charts' specs
    ws_url = base.replace("http", "ws") + "/_stcore/stream"
    async with websockets.connect(
        ws_url, subprotocols=["streamlit"], origin=base, max_size=2**27, open_timeout=timeout
    ) as ws:
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
        await ws.send(msg.SerializeToString())
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            out["bytes"] += len(raw)
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element.WhichOneof("type") or ""
                body = getattr(getattr(fwd.delta.new_element, element, None), "body", "")
                question = "Predict first" in body or "The article's three claims" in body
                if "vega_lite" in element:
                    out["chart_bytes"] += len(raw)
                if "vega_lite" in element or question:  # a chart, a quiz's question, Home's claims
                    out["charts"] += 1
                    out["first_chart"] = out["first_chart"] or time.monotonic() - t0
                if element == "exception":
                    out["exceptions"].append(fwd.delta.new_element.exception.message)
            if kind == "page_not_found":
                out["exceptions"].append("page not found")
            if kind == "script_finished":
                out["finished"] = time.monotonic() - t0
                break
    return out


def summary(name: str, results: list[dict], key: str) -> str:
    times = sorted(r[key] for r in results if r[key] is not None)
    if not times:
        return f"{name}: none finished"
    return (
        f"{name} ({len(results)} sessions, {key.replace('_', ' ')}): first {times[0]:.1f} s, "
        f"median {statistics.median(times):.1f} s, last {times[-1]:.1f} s; "
        f"{len(times)}/{len(results)} done"
    )


async def main(
    heavy: int,
    default: int,
    page: str,
    query: str,
    timeout: float,
    distinct: bool,
    lesson: tuple[str, str] = DEFAULT,
    cold: bool = False,
    taskset: str = "",
    quota: str = "",
    first_s: float = TARGET_S,
    finished_s: float | None = None,
) -> int:
    page, q = page or HEAVY[0], query or HEAVY[1]
    # --distinct: every heavy session a different request (its own training, the same cost):
    # the data's noise moves (0.010, 0.011, ...)
    queries = [f"{q}&noise={0.01 + k / 1000:g}" if distinct else q for k in range(heavy)]
    started = time.monotonic()
    with harness.serve(env=HOOKS, prefix=harness.confined(taskset, quota)) as (url, proc, log):
        healthy = time.monotonic() - started  # the process started, imported, answered /health
        if not cold:
            await session(url, "", "", timeout)  # Home once: Home's claims trained
        before = len(trainings(log))
        cpu0, load0 = cpu_seconds(proc.pid), os.getloadavg()[0]
        jobs = [session(url, page, hq, timeout) for hq in queries]
        jobs += [session(url, *lesson, timeout) for _ in range(default)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        cpu = cpu_seconds(proc.pid) - cpu0
        rss, peak = rss_mb(proc.pid)
        ran = trainings(log)[before:]
    broken = [r for r in results if isinstance(r, BaseException)]
    ok_results = [r for r in results if not isinstance(r, BaseException)]
    heavy_r, default_r = ok_results[:heavy], ok_results[heavy:]
    print(
        f"server {url}; {os.cpu_count()} cores; load average before {load0:.1f}; healthy "
        f"{healthy:.1f} s after its start (the times below count from each session's opening)"
    )
    print(f"heavy: /{page}?{q}" + (" with noise = 0.010, 0.011, … (distinct)" if distinct else ""))
    print(summary("heavy", heavy_r, "finished"))
    where = f"/{lesson[0]}" + (f"?{lesson[1]}" if lesson[1] else "")
    print(f"class link: {where}" + (" (cold: no visit before)" if cold else ""))
    print(summary("class", default_r, "first_chart"))
    print(summary("class", default_r, "finished"))
    if default_r:
        sent = statistics.median(r["bytes"] for r in default_r) / 1e3
        specs = statistics.median(r["chart_bytes"] for r in default_r) / 1e3
        print(f"sent to each class session: {sent:.0f} kB, of which chart specs {specs:.0f} kB")
    bad = [r for r in ok_results if r["exceptions"] or not r["charts"] or r["finished"] is None]
    print(
        f"sessions failed: {len(broken)} (connection) + {len(bad)} (exception, no chart or "
        f"unfinished); trainings run: {len(ran)} ({len(set(ran))} distinct); server CPU "
        f"{cpu:.1f} s; RSS {rss:.0f} MB (peak {peak:.0f} MB); load average after "
        f"{os.getloadavg()[0]:.1f}"
    )
    for r in bad[:3]:
        print("  e.g.", r)
    late = [r for r in default_r if (r["first_chart"] or 1e9) > first_s]
    slow = [r for r in default_r if finished_s and (r["finished"] or 1e9) > finished_s]
    ok = not broken and not bad and not late and not slow
    targets = f"first content ≤ {first_s:g} s"
    targets += f", finished ≤ {finished_s:g} s" if finished_s else ""
    print(
        f"OK ({targets})"
        if ok
        else f"FAILED ({targets}: {len(late)} late first, {len(slow)} late finished)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heavy", type=int, default=10)
    parser.add_argument("--default", type=int, default=10)
    parser.add_argument("--page", default="", help="the heavy sessions' page (URL path)")
    parser.add_argument("--query", default="", help="the heavy sessions' query string")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--distinct", action="store_true", help="each heavy session a different request"
    )
    parser.add_argument("--class-page", default=DEFAULT[0], help="the class's page (URL path)")
    parser.add_argument("--class-query", default=DEFAULT[1], help="the class's query string")
    parser.add_argument("--cold", action="store_true", help="no visit to Home before")
    parser.add_argument("--taskset", default="", help="run the server on these CPUs, e.g. 0")
    parser.add_argument("--quota", default="", help="the server's CPU quota in cores, e.g. 0.5")
    parser.add_argument("--first", type=float, default=TARGET_S, help="first-content target (s)")
    parser.add_argument("--finished", type=float, default=None, help="whole-page target (s)")
    args = parser.parse_args()
    sys.exit(
        asyncio.run(
            main(
                args.heavy,
                args.default,
                args.page,
                args.query,
                args.timeout,
                args.distinct,
                (args.class_page, args.class_query),
                args.cold,
                args.taskset,
                args.quota,
                args.first,
                args.finished,
            )
        )
    )
