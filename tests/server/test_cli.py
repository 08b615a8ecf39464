"""The ``fieldpush`` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import httpx

from fieldpush.cli.records import SHOWN_REFUSALS
from fieldpush.identity.auth import TokenVerifier
from fieldpush.settings import Settings, load_settings
from tests.support.cli import ServeProcess, fieldpush_command, run
from tests.support.scrape import families
from tests.support.timing import scaled

SECRET = "an-operator-secret-of-at-least-32-bytes!"


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "token", "publish", "records", "users", "tokens"):
        assert command in result.stdout


def test_token_is_signed_with_the_configured_secret() -> None:
    result = run(
        "token",
        "--user",
        "alice",
        "--role",
        "sales",
        "--teams",
        "north,east",
        "--ttl",
        "120",
        env={"FIELDPUSH_JWT_SECRET": SECRET},
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    identity = TokenVerifier(load_settings(environ={"FIELDPUSH_JWT_SECRET": SECRET})).verify(token)
    assert (identity.user, identity.role, identity.teams) == (
        "alice",
        "sales",
        frozenset({"north", "east"}),
    )


def test_token_refuses_an_unknown_role() -> None:
    result = run("token", "--user", "alice", "--role", "king")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_token_refuses_a_user_id_the_server_would_refuse() -> None:
    result = run("token", "--user", "al ice", "--role", "sales")
    assert result.returncode == 2 and "spaces" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_works_with_a_config_meant_for_a_public_address() -> None:
    """Only serving refuses the dev secret on a public address; minting does not listen."""
    result = run("token", "--user", "alice", "--role", "sales", env={"FIELDPUSH_HOST": "0.0.0.0"})
    assert result.returncode == 0, result.stderr


def test_serve_refuses_the_dev_secret_on_a_public_address() -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", "0", env={"FIELDPUSH_JWT_SECRET": ""})
    assert result.returncode == 2
    assert "development JWT secret" in result.stderr and "--dev" in result.stderr


def test_serve_refuses_a_webhook_url_without_its_secret() -> None:
    env = {"FIELDPUSH_WEBHOOK_URL": "https://crm.example.com/hook", "FIELDPUSH_WEBHOOK_SECRET": ""}
    result = run("serve", "--port", "0", env=env)
    assert result.returncode == 2
    assert "webhook_secret" in result.stderr
    env["FIELDPUSH_WEBHOOK_SECRET"] = "short-but-secret"
    result = run("serve", "--port", "0", env=env)
    assert result.returncode == 2 and "at least 32 bytes" in result.stderr
    assert "short-but-secret" not in result.stderr


def test_serve_publish_and_config_file(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "fp.toml"
    config.write_text(
        f'[server]\njwt_secret = "{SECRET}"\nnode_id = "from-file"\nheartbeat_s = 7\n'
    )
    server = ServeProcess(
        "--config", str(config), "--port", "0", env={"FIELDPUSH_NODE_ID": "from-env"}
    ).start()
    try:
        health = httpx.get(server.url + "/healthz").json()
        assert health["node"] == "from-env"  # the environment overrides the file
        published = run(
            "publish",
            "--config",
            str(config),
            "--url",
            server.url,
            "--channel",
            "team:north",
            "--kind",
            "note",
            "--data",
            '{"x": 1}',
        )
        assert published.returncode == 0, published.stdout + published.stderr
        reply = json.loads(published.stdout)
        assert set(reply["offsets"]) == {"team:north"}
    finally:
        assert server.stop() == 0
    assert "backend memory" in server.output
    assert SECRET not in server.output


def test_settings_precedence(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "fp.toml"
    config.write_text("[server]\nport = 9001\nheartbeat_s = 5\nhistory_max_events = 10\n")
    settings = load_settings(
        config_path=config,
        environ={"FIELDPUSH_HEARTBEAT_S": "6", "FIELDPUSH_PORT": "9002"},
        overrides={"port": 9003},
    )
    assert (settings.port, settings.heartbeat_s, settings.history_max_events) == (9003, 6.0, 10)
    assert load_settings(config_path=config, environ={}).port == 9001
    assert Settings().port == 8080


def test_settings_errors_say_what_is_wrong(tmp_path: object) -> None:
    from pathlib import Path

    import pytest

    from fieldpush.errors import ConfigError

    config = Path(str(tmp_path)) / "fp.toml"
    config.write_text("[server]\nhartbeat_s = 5\n")
    with pytest.raises(ConfigError, match="unknown setting 'hartbeat_s'"):
        load_settings(config_path=config, environ={})
    with pytest.raises(ConfigError, match="FIELDPUSH_PORT"):
        load_settings(config_path=None, environ={"FIELDPUSH_PORT": "eighty"})
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_settings(environ={"FIELDPUSH_JWT_SECRET": "short"})
    with pytest.raises(ConfigError, match="log_level must be one of"):
        load_settings(environ={"FIELDPUSH_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.write_text("[server\n")
        load_settings(config_path=config, environ={})
    assert "Secret('**********')" in repr(load_settings(environ={}))


def test_serve_refuses_a_broken_schema_naming_file_record_and_field(tmp_path: Path) -> None:
    schema = tmp_path / "schema.toml"
    schema.write_text(
        '[types.device]\nscope = "owner"\n'
        '[types.device.fields]\nowner = { type = "string" }\n'
        'serial = { type = "string", rule = "locked" }\n'
    )
    result = run("serve", "--port", "0", env={"FIELDPUSH_SCHEMA_PATH": str(schema)})
    assert result.returncode == 2
    assert f"{schema}: device.serial: a locked field needs roles" in result.stderr
    mappings = tmp_path / "mappings.toml"
    mappings.write_text('[phone.customer.pref]\nfield = "colour"\n')
    result = run("serve", "--port", "0", env={"FIELDPUSH_MAPPINGS_PATH": str(mappings)})
    assert result.returncode == 2
    assert (
        "phone.customer.pref: maps to 'colour', which is not a field of customer" in result.stderr
    )


def test_the_readme_example_file_imports() -> None:
    """The README's tour imports config/customers.example.jsonl: it must load."""
    example = Path(__file__).resolve().parents[2] / "config" / "customers.example.jsonl"
    server = ServeProcess("--port", "0").start()
    try:
        result = run("records", "import", str(example), "--url", server.url)
        assert result.returncode == 0, result.stderr
        assert "3 record(s) written, 0 unchanged, 0 refused" in result.stdout
    finally:
        assert server.stop() == 0, server.output


def _mutations(url: str) -> dict[str, int]:
    """``fieldpush_mutations_total`` by status, from the node's /metrics."""
    text = httpx.get(url + "/metrics").text
    return {
        sample.labels["status"]: int(sample.value)
        for sample in families(text)["fieldpush_mutations"].samples
    }


def test_records_import_a_second_time_reports_every_record_unchanged(tmp_path: Path) -> None:
    lines = [
        {
            "type": "customer",
            "rid": "c1",
            "fields": {"name": "ACME", "owner": "alice", "budget": "900"},
        },
        {"type": "device", "rid": "d1", "fields": {"serial": "12345678", "owner": "alice"}},
        {"type": "device", "rid": "d2", "fields": {"serial": "12-34"}},
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n\n")
    server = ServeProcess("--port", "0").start()
    try:
        result = run("records", "import", str(path), "--url", server.url)
        assert result.returncode == 1, result.stderr
        assert "2 record(s) written, 0 unchanged, 2 refused" in result.stdout
        assert f"{path}:3: rejected: serial must match" in result.stderr
        assert f"{path}:4: not JSON" in result.stderr
        again = run("records", "import", str(path), "--url", server.url)
        assert "0 record(s) written, 2 unchanged, 2 refused" in again.stdout, again.stdout
        assert _mutations(server.url) == {"applied": 2, "unchanged": 2, "rejected": 2}
        token = run("token", "--user", "crm", "--role", "service").stdout.strip().splitlines()[-1]
        feed = httpx.get(
            server.url + "/v1/changes", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert [(c["type"], c["rid"]) for c in feed["changes"]] == [
            ("customer", "c1"),
            ("device", "d1"),
        ]
        assert feed["changes"][0]["fields"]["budget"] == {"old": None, "new": "900"}
        path.write_text(json.dumps({**lines[0], "fields": {"name": "ACME", "budget": "950"}}))
        changed = run("records", "import", str(path), "--url", server.url)
        assert "1 record(s) written, 0 unchanged, 0 refused" in changed.stdout
    finally:
        assert server.stop() == 0, server.output


def _customers(count: int) -> str:
    return "".join(
        json.dumps({"type": "customer", "rid": f"c{i}", "fields": {"name": f"Customer {i}"}}) + "\n"
        for i in range(count)
    )


def test_records_import_redraws_its_progress_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(_customers(3000))
    server = ServeProcess("--port", "0").start()
    try:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [*fieldpush_command(), "records", "import", str(path), "--url", server.url,
             "--batch", "100"],
            stdout=subprocess.PIPE, stderr=follower, text=True,
        )  # fmt: skip
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        os.close(leader)
        stdout, _ = process.communicate(timeout=scaled(30))
        assert process.returncode == 0, shown
        assert "3000 record(s) written" in stdout
        assert b"\r" in shown and b"records, " in shown and b"/s" in shown, shown
        assert b"left" in shown and shown.endswith(b"\r\n"), shown
    finally:
        assert server.stop() == 0, server.output


def test_records_import_writes_plain_progress_lines_to_a_pipe_or_none(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(_customers(1000))
    server = ServeProcess("--port", "0").start()
    try:
        url = ("--url", server.url, "--batch", "100")
        piped = run("records", "import", str(path), *url, "--progress-every", "0")
        assert piped.returncode == 0, piped.stderr
        progress = piped.stderr.splitlines()
        assert len(progress) >= 10 and all(re.fullmatch(r"[\d,]+ records, .*", p) for p in progress)
        assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
        quiet = run("records", "import", str(path), *url, "--progress-every", "0", "--quiet")
        assert quiet.returncode == 0 and quiet.stderr == ""
        assert "0 record(s) written, 1000 unchanged, 0 refused" in quiet.stdout
        default = run("records", "import", str(path), *url)
        assert default.stderr == ""  # a quick import: no line due within 10 s
    finally:
        assert server.stop() == 0, server.output


def test_records_import_refuses_hostile_lines_by_number_and_loads_the_rest(
    tmp_path: Path,
) -> None:
    good = {"type": "customer", "rid": "ok", "fields": {"name": "Good Ltd"}}
    hostile = [
        "{broken",
        json.dumps({"type": "customer", "rid": "big", "fields": {"name": "x" * 300_000}}),
        json.dumps(
            {
                "type": "customer",
                "rid": "ctl",
                "fields": {"name": "a\x1b[2J\u2028b", "budget": "\x07"},
            }
        ),
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"type": "customer", "rid": "num", "fields": {"name": "N", "budget": 10**30}}),
        json.dumps({"type": "customer", "rid": "deep", "fields": {"name": {"a": [1, {"b": 2}]}}}),
        json.dumps(["not", "a", "record"]),
        json.dumps(good),
    ]
    hostile += [json.dumps({"type": "lorry", "rid": f"l{i}", "fields": {}}) for i in range(60)]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(hostile) + "\n")
    server = ServeProcess("--port", "0").start()
    try:
        result = run("records", "import", str(path), "--url", server.url)
        assert result.returncode == 1
        assert "1 record(s) written, 0 unchanged, 67 refused" in result.stdout, result.stdout
        errors = result.stderr.splitlines()
        assert errors[0] == f"{path}:1: not JSON: " + (
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        )
        assert errors[1] == f"{path}:2: line is longer than 262144 bytes"
        assert errors[2].startswith(f"{path}:3: rejected: budget must be")
        assert "\x1b" not in result.stderr and "\x07" not in result.stderr
        assert "\u2028" not in result.stderr
        assert errors[3].startswith(f"{path}:4: not JSON")
        assert errors[4].startswith(f"{path}:5: rejected: budget must be")
        assert errors[5].startswith(f"{path}:6: rejected: name must be a string")
        assert errors[6] == f'{path}:7: expected {{"type": ..., "rid": ..., "fields": {{...}}}}'
        assert len(errors) == SHOWN_REFUSALS + 1
        assert errors[-1] == f"{path}: ... and {67 - SHOWN_REFUSALS} more refused line(s)"
        assert all(len(line) < 500 for line in errors)
    finally:
        assert server.stop() == 0, server.output


def test_a_reader_that_goes_away_is_no_traceback() -> None:
    """``fieldpush token ... | true``: the pipe is closed before the token is written."""
    import subprocess

    from tests.support.cli import fieldpush_command

    command = " ".join([*fieldpush_command(), "token", "--user", "a", "--role", "sales"])
    for _ in range(3):
        done = subprocess.run(
            ["bash", "-c", command + " | true"], check=False, capture_output=True, text=True
        )
        assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
