"""Subscribers' mail: 1,000 confirmed subscribers and one incident update, delivered by
the subscribers' follower to a real SMTP server (aiosmtpd in a child process), beside raw
``aiosmtplib`` sends of the same messages to the same server.

On a fresh database (PostgreSQL: ``TEST_DATABASE_URL`` or a throwaway cluster, dropped
afterwards; ``--store sqlite``: a file in a temporary directory):

1. A sink (``python -m bench.subscribers _sink``) listens on a free loopback port and
   appends one line per accepted message (recipient, Message-ID) to a file before it
   answers 250, so what it accepted survives its death.
2. ``--subscribers`` subscribers are signed up and confirmed (through the store), an
   incident is declared, and the follower is started as ``serve`` starts it.
3. **Crash run**: one update; once about half the mail is in, the sink is killed
   (SIGKILL) and started again on the same port a second later. Checked: every
   subscriber got the update, and none twice.
4. **Rate run**: raw ``aiosmtplib`` sends first (the very messages the follower sends,
   to other recipients, one connection, one at a time), then a second update through the
   follower, timed from its commit to the last line in the sink. Printed: messages per
   second of each, and the ratio.

Run from the project root::

    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.subscribers --subscribers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import aiosmtplib

from bench.harness import PROJECT_ROOT, free_port, postgres_database
from commands.application import NewIncident, NewUpdate
from infra.bootstrap import Services, bootstrap
from infra.integrations.occurrences import IncidentStates
from infra.settings import load_settings
from infra.subscribers.delivery import SubscriberDelivery, mail_for
from tests.subscribers import confirmed_subscribers

# The sink (a child process).


def sink(port: int, out: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

    handle = out.open("a", buffering=1)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802
                              envelope: Envelope) -> str:
            content = envelope.content
            assert isinstance(content, bytes)
            head = content.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
            message_id = next((line.split(":", 1)[1].strip() for line in head.splitlines()
                               if line.lower().startswith("message-id:")), "-")
            for rcpt in envelope.rcpt_tos:
                handle.write(f"{rcpt}\t{message_id}\n")
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


def start_sink(port: int, out: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.subscribers", "_sink", str(port),
                             str(out)], cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the SMTP sink did not start")


def lines(out: Path, message_id: str) -> list[str]:
    if not out.exists():
        return []
    return [line.split("\t")[0] for line in out.read_text().splitlines()
            if line.endswith("\t" + message_id)]


def wait_lines(out: Path, message_id: str, count: int, timeout: float) -> float:
    """Waits until `count` lines of the message are in; returns when the last one came
    (the file's modification time, so the 50 ms polls, which read only what is new and
    leave the follower's process nearly idle, do not blur the figure)."""
    deadline = time.monotonic() + timeout
    offset, seen, suffix = 0, 0, ("\t" + message_id + "\n").encode()
    while True:
        with out.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
            modified = os.fstat(handle.fileno()).st_mtime
        complete = chunk[:chunk.rfind(b"\n") + 1]
        offset += len(complete)
        seen += sum(1 for line in complete.splitlines(keepends=True) if line.endswith(suffix))
        if seen >= count:
            return modified
        if time.monotonic() > deadline:
            raise RuntimeError(f"{seen} of {count} within {timeout} s")
        time.sleep(0.05)


# The run.


@contextlib.contextmanager
def database(store: str) -> Iterator[str]:
    if store == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
    else:
        with postgres_database() as url:
            yield url


def update(services: Services, incident: str, text: str) -> str:
    """Posts an update; returns the Message-ID its mail carries."""
    written = services.commands.add_update(incident, NewUpdate(public_message=text))
    assert written.position is not None
    stored = services.event_log.read(written.position - 1, 1)[0]
    states = IncidentStates(services.event_log, services.commands.mapper)
    occurrence = states.occurrence(stored)
    return f"<{occurrence.event_id}@bench.invalid>"


def raw_sends(services: Services, incident: str, port: int, count: int) -> float:
    """Raw aiosmtplib: the follower's own message for the incident's last event, to
    `count` other recipients over one connection; messages per second."""
    stored = services.event_log.read_all(incident)[-1]
    occurrence = IncidentStates(services.event_log, services.commands.mapper).occurrence(stored)
    template = services.subscribers.store.all()[0]
    handler = services.subscriber_mail.handler
    assert isinstance(handler, SubscriberDelivery)
    mails = [mail_for(occurrence, replace(template, email=f"raw{n}@bench.invalid"),
                      handler.context).mail for n in range(count)]

    async def send() -> float:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
        await smtp.connect()
        started = time.perf_counter()
        for mail in mails:
            assert mail is not None
            await smtp.send_message(mail)
        elapsed = time.perf_counter() - started
        await smtp.quit()
        return elapsed

    return count / asyncio.run(send())


def run(args: argparse.Namespace) -> None:
    count = args.subscribers
    with database(args.store) as url, tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "received.txt"
        port = free_port()
        settings = load_settings({"DATABASE_URL": url, "SMTP_URL": f"smtp://127.0.0.1:{port}",
                                  "EMAIL_FROM": "Status <status@bench.invalid>",
                                  "PUBLIC_BASE_URL": "https://status.bench.invalid"})
        sink_proc = start_sink(port, out)
        services = bootstrap(settings)
        try:
            addresses = confirmed_subscribers(services, count, name="subscriber",
                                              domain="bench.invalid")
            incident = services.commands.create(NewIncident(
                title="Checkout errors", public_message="Investigating")).incident_id
            services.start_delivery()
            time.sleep(1.0)  # the follower is at the head (the declaration predates them)

            # Crash run.
            message_id = update(services, incident, "Identified the cause")
            wait_lines(out, message_id, count // 2, 600)
            sink_proc.kill()
            sink_proc.wait()
            at_kill = len(lines(out, message_id))
            time.sleep(1.0)
            sink_proc = start_sink(port, out)
            wait_lines(out, message_id, count, 600)
            time.sleep(2.0)  # anything sent twice would arrive now
            got = Counter(lines(out, message_id))
            missing = set(addresses) - set(got)
            twice = [a for a, n in got.items() if n > 1]
            print(f"crash run: {count} subscribers, sink killed after {at_kill} messages; "
                  f"delivered {len(got)}, missing {len(missing)}, twice {len(twice)}")

            # Rate run.
            raw = raw_sends(services, incident, port, count)
            started = time.time()
            message_id = update(services, incident, "Fix deployed, monitoring")
            done = wait_lines(out, message_id, count, 600)
            rate = count / (done - started)
            print(f"{'case':34} {'messages':>8} {'msg/s':>8}")
            print(f"{'raw aiosmtplib, one connection':34} {count:8d} {raw:8.1f}")
            print(f"{'subscribers follower (commit->last)':34} {count:8d} {rate:8.1f}")
            print(f"ratio follower / raw: {rate / raw:.0%}")
            print(f"store: {args.store}; python {platform.python_version()}; "
                  f"{os.cpu_count()} cpus")
            if missing or twice:
                raise SystemExit("FAILED: not every subscriber got the update exactly once")
        finally:
            services.close()
            sink_proc.send_signal(signal.SIGTERM)
            sink_proc.wait(15)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.subscribers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["_sink"]:
        sink(int(argv[1]), Path(argv[2]))
        return
    run(parse_args(argv))


if __name__ == "__main__":
    main()
