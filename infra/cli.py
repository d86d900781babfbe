"""The `product-status` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from infra import cli_audit, cli_tokens
from infra.logs import configure_logging
from infra.settings import Settings, SettingsError, load_settings
from infra.workers import workers_count

if TYPE_CHECKING:
    from infra.bootstrap import Services
    from infra.http_server import ServerLimits


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class _BesideTheApi(NamedTuple):
    """A worker `serve` runs in its own process unless `--no-<name>` leaves it to
    another command."""

    name: str
    help: str
    start: Callable[[Services], None]

    @property
    def flag(self) -> str:
        return f"--no-{self.name}"

    @property
    def dest(self) -> str:
        return f"no_{self.name.replace('-', '_')}"


_BESIDE_THE_API = (
    _BesideTheApi("projectors", "do not run the projectors here (a separate `project` runs "
                  "them)", lambda services: services.start_projections()),
    _BesideTheApi("relay", "do not run the NATS relay here (a separate `publish` runs it)",
                  lambda services: services.start_relay()),
    _BesideTheApi("deliver", "do not deliver to integrations here (a separate `deliver` "
                  "does)", lambda services: services.start_delivery()),
    _BesideTheApi("timers", "do not act on deadlines here (auto-resolve, maintenance start "
                  "and end); another `serve` does", lambda services: services.start_timers()),
)


def _work_until_stopped(services: Services, start: Callable[[], None],
                        report: Callable[[], None] | None = None) -> None:
    """A worker command's life: starts its work and the heartbeat, reports every 30 s,
    and closes everything on SIGINT or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        start()
        services.start_heartbeat()
        while not stop.wait(30):
            if report is not None:
                report()
    finally:
        services.close()


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from infra.http_server import ServerLimits
    from infra.serving_limits import open_files_limit
    from infra.workers import metrics_directory, reuse_port_socket, run_workers

    open_files = open_files_limit()
    try:
        limits = ServerLimits.from_settings(settings, open_files)
    except SettingsError as error:
        print(f"product-status: bad setting: {error}", file=sys.stderr)
        return 2
    if args.workers == 1:
        return _serve_one(settings, args, limits, open_files, 0, None)
    try:  # the port is taken: said once, before any worker starts
        reuse_port_socket(settings.host, settings.port).close()
    except OSError as error:
        print(f"product-status: cannot listen on {settings.host}:{settings.port}: {error}",
              file=sys.stderr)
        return 3
    with metrics_directory():  # so that /metrics counts every worker's requests
        return run_workers(args.workers, lambda index: _serve_one(
            settings, args, limits, open_files, index,
            reuse_port_socket(settings.host, settings.port)))


def _serve_one(settings: Settings, args: argparse.Namespace, limits: ServerLimits,
               open_files: int, index: int, sock: socket.socket | None) -> int:
    """One API process; the first (`index` 0) runs the work beside the API too."""
    from api.app import create_app
    from infra.bootstrap import bootstrap
    from infra.http_server import Server, server_config
    from infra.metrics import process_exited

    services = bootstrap(settings)
    for option in _BESIDE_THE_API:
        if index == 0 and not getattr(args, option.dest):
            option.start(services)
    if not settings.api_tokens:
        logging.getLogger("product_status").warning(
            "API_TOKENS is not set: reads are public and every write will be refused (401)"
        )
    logging.getLogger("product_status").info(
        "at most %d connections and %d live event streams (open-files limit %d); "
        "request heads within %d s", limits.connections,
        settings.event_stream_limit(open_files), open_files, limits.header_timeout)
    try:
        server = Server(server_config(create_app(services), settings, limits))
        # uvicorn waits for open responses before shutting down; live streams never end alone.
        services.store_watch.close_when(lambda: server.should_exit)
        # uvicorn shuts down on SIGINT or SIGTERM, then raises the signal again: end here,
        # through `finally`, rather than with a traceback or no clean-up at all.
        signal.signal(signal.SIGTERM, _interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=None if sock is None else [sock])
        if not server.started:
            return 3  # could not start (e.g. the port is taken), as uvicorn.run says
    finally:
        services.close()
        process_exited(os.getpid())
    return 0


def _events(settings: Settings, args: argparse.Namespace) -> int:
    from domain.incident import event_type_named
    from infra.bootstrap import bootstrap

    try:
        types = [event_type_named(name) for name in args.type]
    except ValueError as error:
        print(f"product-status events: --type: {error}", file=sys.stderr)
        return 2
    services = bootstrap(settings)
    out = sys.stdout.buffer
    after, remaining = args.after, args.limit
    try:
        while remaining is None or remaining > 0:
            batch = min(500, remaining) if remaining is not None else 500
            events = services.event_log.read(after, batch, types, args.subject, args.actor)
            for event in events:
                out.write(event.document + b"\n")
            out.flush()
            if len(events) < batch:
                break
            after = events[-1].position
            if remaining is not None:
                remaining -= len(events)
    finally:
        services.close()
    return 0


def _project(settings: Settings, _: argparse.Namespace) -> int:

    from infra.bootstrap import bootstrap

    services = bootstrap(settings)
    log = logging.getLogger("product_status.projector")
    log.info("projecting %s", ", ".join(p.name for p in services.projector.projections))
    _work_until_stopped(services, services.start_projections,
                        lambda: log.info("positions %s", services.projector.positions()))
    return 0


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from infra.bootstrap import bootstrap
    from infra.relay import read_status

    services = bootstrap(settings)
    if args.status or services.relay is None:
        try:
            if services.relay is None and not args.status:
                print("product-status publish: CLOUDEVENT_BROKER_URL is not set",
                      file=sys.stderr)
                return 2
            status = read_status(services.database, services.event_log)
            print(json.dumps(status.as_dict()) if args.json else status.describe())
            return 0
        finally:
            services.close()
    _work_until_stopped(services, services.start_relay)  # it logs its status every 30 s
    return 0


def _deliver(settings: Settings, _: argparse.Namespace) -> int:

    from infra.bootstrap import bootstrap

    services = bootstrap(settings)
    log = logging.getLogger("product_status.integrations")
    log.info("delivering to integrations")
    _work_until_stopped(services, services.start_delivery, lambda: log.info(
        "following %d integrations", len(services.deliverers.running())))
    return 0


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from infra.bootstrap import bootstrap
    from infra.rebuild import progress_bar, rebuild

    services = bootstrap(settings)
    try:
        known = {p.name: p for p in services.projector.projections}
        if args.name is not None and args.name not in known:
            print(f"product-status projections rebuild: unknown projection {args.name!r}; "
                  f"known: {', '.join(known)}", file=sys.stderr)
            return 2
        chosen = [p for name, p in known.items() if args.name in (None, name)]
        rebuild(services.projector, chosen, progress_bar(args.name or "all read models"))
    finally:
        services.close()
    return 0


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="product-status",
        description="Incident management with an event-sourced CloudEvents log. "
        "Settings come from the environment (DATABASE_URL, HOST, PORT, API_TOKENS, ...).",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the HTTP API",
                                description="Serve the HTTP API on HOST:PORT.")
    for option in _BESIDE_THE_API:
        serve.add_argument(option.flag, action="store_true", help=option.help)
    serve.add_argument("--workers", type=workers_count, default=1, metavar="N",
                       help="API processes answering on the one port (SO_REUSEPORT; "
                       "default 1); only the first runs the work beside the API")
    serve.set_defaults(run=_serve)
    project = commands.add_parser(
        "project", help="run the projectors only",
        description="Follow the event store and keep the read tables up to date. Several may "
        "run against one PostgreSQL: one works on each read model at a time, another takes "
        "over if it stops.")
    project.set_defaults(run=_project)
    publish = commands.add_parser(
        "publish", help="run the NATS relay only",
        description="Publish every stored CloudEvent to NATS JetStream (CLOUDEVENT_BROKER_URL), "
        "subject <CLOUDEVENT_TOPIC>.<short type>, from the relay's saved position. Several may "
        "run against one store: one publishes, the others stand by and take over if it stops.")
    publish.add_argument("--status", action="store_true",
                         help="print the relay's position, the store's head, the lag and "
                         "whether a relay is running, then exit")
    publish.add_argument("--json", action="store_true", help="with --status: one JSON object")
    publish.set_defaults(run=_publish)
    deliver = commands.add_parser(
        "deliver", help="deliver to integrations only",
        description="Deliver matching events to every enabled integration (webhooks, Slack, "
        "PagerDuty, email), each from its saved position. Several may run against one "
        "store: each integration is delivered by one of them, the others stand by.")
    deliver.set_defaults(run=_deliver)
    projections = commands.add_parser("projections", help="manage the read models")
    projection_commands = projections.add_subparsers(dest="action", required=True,
                                                     metavar="ACTION")
    rebuild = projection_commands.add_parser(
        "rebuild", help="rebuild read models from position 0",
        description="Replay every stored event into read tables built aside, then swap them "
        "in. Safe while the server runs: readers see the old tables until the swap.")
    rebuild.add_argument("name", nargs="?", help="one read model (default: all)")
    rebuild.set_defaults(run=_rebuild)
    events = commands.add_parser(
        "events",
        help="print stored CloudEvents as JSON lines",
        description="Print the stored CloudEvents, in store order, one JSON document a line.",
    )
    events.add_argument("--after", type=_non_negative, default=0,
                        help="start after this store position (default 0)")
    events.add_argument("--type", action="append", default=[],
                        help="only this event type, full or short (repeatable)")
    events.add_argument("--subject", help="only this incident id")
    events.add_argument("--actor", help="only events of commands issued by this token name "
                        "(or `system`, the service's own)")
    events.add_argument("--limit", type=_non_negative, default=None,
                        help="print at most this many events")
    events.set_defaults(run=_events)
    cli_tokens.add_parser(commands)
    cli_audit.add_parser(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"product-status: bad setting: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    code: int = args.run(settings, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
