"""The hash chain beside the stored events: `audit verify` finds an altered, a removed and
an inserted event, and a rewritten chain against a recorded head."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from commands.application import NewIncident, NewUpdate
from domain.values import Status
from infra.audit_chain import GENESIS, Head, read_head, start_chain, verify
from infra.bootstrap import Services, bootstrap
from tests.conftest import READER, WRITER
from tests.processes import run_cli


def _history(services: Services) -> list[int]:
    """Five incidents, one resolved (two events in one save): the store's positions."""
    commands = services.commands
    ids = [commands.create(NewIncident(title=f"chained {n}")).incident_id for n in range(5)]
    commands.add_update(ids[2], NewUpdate(status=Status.RESOLVED, message="fixed"))
    return [e.position for e in services.event_log.read(0, 100)]


def _execute(services: Services, sql: str, params: tuple[object, ...] = ()) -> None:
    with services.database.transaction(write=True) as cursor:
        cursor.execute(sql, params)


def _env(services: Services) -> dict[str, str]:
    return {"DATABASE_URL": services.settings.database_url or ""}


def test_an_untouched_store_verifies_and_its_head_is_the_last_event(
    services: Services, http: httpx.Client,
) -> None:
    assert read_head(services.database) == Head(0, GENESIS)
    positions = _history(services)
    verdict = verify(services.event_log)
    assert verdict.finding is None
    assert verdict.checked == len(positions) == 7
    assert verdict.head.position == positions[-1]
    answer = http.get("/api/v1/audit/head", headers=READER)
    assert answer.status_code == 200
    assert answer.json() == {"position": positions[-1], "sha256": verdict.head.sha256}
    assert http.get("/api/v1/audit/head").status_code == 401
    result = run_cli("audit", "verify", "--json", env=_env(services))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    recorded = f"{positions[-1]}:{verdict.head.sha256}"
    assert run_cli("audit", "verify", "--head", recorded, env=_env(services)).returncode == 0


def test_an_altered_event_is_found_at_its_position(services: Services) -> None:
    positions = _history(services)
    table, column = services.event_log.table, services.event_log.position_column
    _execute(services, f"UPDATE {table} SET topic = topic || '' , state = ? WHERE {column} = ?",
             (b'{"forged": true}', positions[3]))
    assert verify(services.event_log).finding is not None
    result = run_cli("audit", "verify", env=_env(services))
    assert result.returncode == 1
    assert f"altered at position {positions[3]}" in result.stderr


def test_a_removed_event_is_found_at_its_position(services: Services) -> None:
    positions = _history(services)
    table, column = services.event_log.table, services.event_log.position_column
    _execute(services, f"DELETE FROM {table} WHERE {column} = ?", (positions[1],))
    result = run_cli("audit", "verify", "--json", env=_env(services))
    assert result.returncode == 1
    assert json.loads(result.stdout)["finding"] == {"kind": "removed", "position": positions[1]}


def test_an_inserted_event_is_found_at_its_position(services: Services) -> None:
    positions = _history(services)
    table = services.event_log.table
    _execute(services, f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
             "VALUES (?, 1, 'com.example.incident.created', ?)",
             ("incident-forged", b'{"specversion": "1.0"}'))
    inserted = services.event_log.last_position()
    assert inserted > positions[-1]
    finding = verify(services.event_log).finding
    assert finding is not None
    assert (finding.kind, finding.position) == ("inserted", inserted)
    assert f"inserted at position {inserted}" in run_cli("audit", "verify",
                                                         env=_env(services)).stderr


def test_a_rewritten_chain_is_found_against_the_recorded_head(services: Services) -> None:
    positions = _history(services)
    recorded = verify(services.event_log).head
    table, column = services.event_log.table, services.event_log.position_column
    # Remove the last event and its link: the rest of the chain is consistent...
    _execute(services, f"DELETE FROM {table} WHERE {column} = ?", (positions[-1],))
    _execute(services, "DELETE FROM audit_chain WHERE position = ?", (positions[-1],))
    assert verify(services.event_log).finding is None
    # ...but no longer has the head recorded elsewhere.
    result = run_cli("audit", "verify", "--head", f"{recorded.position}:{recorded.sha256}",
                     env=_env(services))
    assert result.returncode == 1
    assert f"head at position {positions[-1]}" in result.stderr
    bad = run_cli("audit", "verify", "--head", "12:nothex", env=_env(services))
    assert bad.returncode == 2
    assert "--head" in bad.stderr


def test_concurrent_commands_keep_one_chain(services: Services) -> None:
    incident = services.commands.create(NewIncident(title="busy")).incident_id

    def work(n: int) -> None:
        if n % 2:
            services.commands.create(NewIncident(title=f"parallel {n}"))
        else:
            services.commands.add_update(incident, NewUpdate(message=f"update {n}"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(80)))
    verdict = verify(services.event_log)
    assert verdict.finding is None
    assert verdict.checked == 81


def test_a_store_older_than_its_chain_gets_one_at_start(services: Services) -> None:
    positions = _history(services)
    _execute(services, "DROP TABLE audit_chain")
    start_chain(services.event_log)
    assert verify(services.event_log).finding is None
    again = bootstrap(services.settings)  # a restart keeps the chain as it is
    try:
        again.commands.create(NewIncident(title="after the restart"))
        verdict = verify(again.event_log)
    finally:
        again.close()
    assert verdict.finding is None
    assert verdict.checked == len(positions) + 1


def test_writes_over_http_are_chained(http: httpx.Client, services: Services) -> None:
    created = http.post("/api/v1/incidents", headers=WRITER, json={"title": "via HTTP"})
    assert created.status_code == 201
    head = http.get("/api/v1/audit/head", headers=READER).json()
    assert head["position"] == int(created.headers["Store-Position"])
    assert verify(services.event_log).head.sha256 == head["sha256"]
