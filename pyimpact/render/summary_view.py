"""The end-of-trace summary for a terminal (80 columns), from `summarise()`'s dict.

Every line and cell is a rich ``Text`` built by ``plain``/``_line``: nothing
here is parsed as markup, so a process named ``[/oops]`` is shown, escaped
like any other string from another process, instead of raising MarkupError.
"""
from __future__ import annotations

import signal as _signal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..formats import human_bytes, human_duration, millis
from .text import clean, plain


def _line(*parts) -> Text:
    """A Text from (text, style) pairs or plain strings, each escaped."""
    t = Text()
    for part in parts:
        text, style = part if isinstance(part, tuple) else (part, "")
        t.append(clean(text), style=style)
    return t


def _row(t: Table, *cells) -> None:
    t.add_row(*(plain(c) for c in cells))


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _exit_text(e: dict) -> str:
    if e.get("signal"):
        try:
            return f"killed by {_signal.Signals(e['signal']).name}"
        except ValueError:
            return f"killed by signal {e['signal']}"
    return "exit code ?" if e.get("exit_code") is None else f"exit code {e['exit_code']}"


def _fold_senders(signals: list) -> list:
    """One row per (signal, target, result); many senders (SIGCHLD from each
    child, say) are counted rather than listed."""
    groups = {}
    for g in signals:
        key = (g["signal"], g["target_tid"], g["result"])
        groups.setdefault(key, []).append(g)
    rows = []
    for (sig, target, result), items in groups.items():
        senders = {(g["sender_pid"], g["sender"]) for g in items}
        who = (f"{clean(items[0]['sender'])} ({items[0]['sender_pid']})" if len(senders) == 1
               else f"{len(senders)} processes")
        rows.append((sig, who, str(target), result, str(sum(g["count"] for g in items))))
    return sorted(rows, key=lambda r: -int(r[4]))


def render_summary(s: dict, console: Console) -> None:
    lost = s["lost_total"]
    targets = ", ".join(str(p) for p in s["targets"]) or "all processes"
    console.print(_line(("pyimpact trace", "bold"), f" of {targets}: {human_duration(s['duration_s'])}, "
                        f"ended: {s['end_reason']}"))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["events"]["by_kind"].items(), key=lambda kv: -kv[1]))
    console.print(_line(f"events: {s['events']['total']}" + (f" ({kinds})" if kinds else "")))
    if lost:
        console.print(_line((f"LOST: {lost} events", "bold red"),
                            f" ({s['lost']}); enlarge --buffer-pages or trace fewer processes"))
    else:
        console.print(_line("lost: 0"))
    for item in s["unavailable"]:
        console.print(_line(("not observed:", "yellow"), f" {item['what']}: {item['why']}"))

    if s["processes"]:
        t = Table(title="processes", title_justify="left", box=None, pad_edge=False)
        for col in ("pid", "name", "threads", "events"):
            t.add_column(col, justify="right" if col != "name" else "left")
        for p in s["processes"][:10]:
            _row(t, p["pid"], p["name"], p["threads"], p["events"])
        console.print(t)

    f = s["forks"]
    if f["processes"] or f["threads"] or s["exits"]:
        console.print(_line(f"forks: {f['processes']} processes, {f['threads']} threads; "
                            f"execs: {len(s['execs'])}; process exits: {len(s['exits'])}"))
        codes = {}
        for e in s["exits"]:
            codes[_exit_text(e)] = codes.get(_exit_text(e), 0) + 1
        if codes:
            console.print(_line("  exits: " + ", ".join(f"{k} ×{v}" for k, v in sorted(codes.items()))))

    if s["signals"]:
        t = Table(title="signals sent", title_justify="left", box=None, pad_edge=False)
        for col in ("signal", "sender", "target tid", "result", "count"):
            t.add_column(col)
        for row in _fold_senders(s["signals"])[:10]:
            _row(t, *row)
        console.print(t)

    fx = s["futex"]
    if fx["waits"] or fx["wakes"] or fx.get("wakes_woke_nobody"):
        idle = f" (+{fx['wakes_woke_nobody']} that woke nobody, counted)" if fx.get("wakes_woke_nobody") else ""
        console.print(_line(f"futex: {fx['waits']} waits ({millis(fx['wait_ms'])} waited), {fx['wakes']} wakes{idle}"))
        t = Table(box=None, pad_edge=False)
        for col in ("pid", "address", "waits", "waited ms", "max ms", "wakes", "woken"):
            t.add_column(col, justify="right")
        for a in fx["addresses"][:5]:
            _row(t, a["pid"], f"{a['uaddr']:#x}", a["waits"], f"{a['wait_ms']:.1f}",
                 f"{a['max_wait_ms']:.1f}", a["wakes"], a["woken"])
        console.print(t)

    if s["slow_syscalls"]:
        t = Table(title="slow syscalls", title_justify="left", box=None, pad_edge=False)
        for col in ("syscall", "count", "total ms", "max ms"):
            t.add_column(col, justify="right" if col != "syscall" else "left")
        for x in s["slow_syscalls"][:8]:
            _row(t, x["syscall"], x["count"], f"{x['total_ms']:.1f}", f"{x['max_ms']:.1f}")
        console.print(t)

    b = s["block_io"]
    if b["requests"]:
        lat = b["latency"]
        console.print(_line(f"block I/O: {b['requests']} requests ({b['read_requests']} read, "
                            f"{b['write_requests']} write), {human_bytes(b['bytes'])}; latency ms "
                            f"p50 {_ms(lat['p50_ms'])} p95 {_ms(lat['p95_ms'])} p99 {_ms(lat['p99_ms'])} "
                            f"max {_ms(lat['max_ms'])}"))
