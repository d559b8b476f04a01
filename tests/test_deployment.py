"""The deployment files, checked statically (no container engine runs on these machines) -- and their commands
for real: compose.yaml and the Containerfile reference paths that exist, publish ports on 127.0.0.1 only,
keep state in one volume at ALLELE_HOME, and run commands of ours; the health check and the backup commands of
docs/home-server.md are run against a real engine."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cli import WIDE, allele, as_json, assert_ok, flat

from allele.kernel.api.config import ApiConfig
from allele.kernel.paths import SOURCE_ROOT

COMPOSE = SOURCE_ROOT / "compose.yaml"
CONTAINERFILE = SOURCE_ROOT / "Containerfile"
HOME_SERVER = SOURCE_ROOT / "docs" / "home-server.md"
DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    assert found, "compose.yaml defines no service"
    return found


def with_defaults(text: str) -> str:
    """`${VAR:-default}` replaced by its default, as compose does with VAR unset."""
    def default(m: re.Match[str]) -> str:
        assert m.group(2) is not None, f"{m.group(0)} in compose.yaml has no default: unset, it is empty"
        return m.group(2)
    return DEFAULT.sub(default, text)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, f"{path} ends in a continuation line"
    out = []
    for entry in logical:
        word, _, rest = entry.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_words(test: list[str] | str) -> list[list[str]]:
    """The commands of a compose health check (`CMD` words, or each `&&` part of a `CMD-SHELL` line)."""
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    kind, *rest = test
    if kind == "CMD":
        return [rest]
    assert kind == "CMD-SHELL", f"health check {test} is neither CMD nor CMD-SHELL"
    return [shlex.split(part) for part in " ".join(rest).split("&&")]


# -- compose.yaml -------------------------------------------------------------------------------------------------


def test_compose_builds_from_the_containerfile() -> None:
    for name, service in services().items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == SOURCE_ROOT, f"service {name} builds from {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == CONTAINERFILE


def test_compose_keeps_state_in_one_declared_volume_at_allele_home() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        home = environment(service)["ALLELE_HOME"]
        mounts = [v.split(":") for v in service["volumes"]]
        named = {src: dst for src, dst, *_ in mounts}
        assert home in named.values(), f"service {name}: nothing is mounted at ALLELE_HOME={home}"
        for src in named:
            assert not src.startswith((".", "/")), f"service {name} bind-mounts {src}: state belongs in a volume"
            assert src in declared, f"service {name} uses volume {src}, not declared under volumes:"
    containerfile = dict(instructions(CONTAINERFILE))
    assert "/var/lib/allele" in containerfile["VOLUME"]
    for home in (environment(s)["ALLELE_HOME"] for s in services().values()):
        assert f"ALLELE_HOME={home}" in " ".join(a for i, a in instructions(CONTAINERFILE) if i == "ENV")


def test_compose_publishes_ports_on_localhost_only_unless_configured() -> None:
    published = 0
    for name, service in services().items():
        env = environment(service)
        for port in service.get("ports", []):
            parts = with_defaults(str(port)).split(":")
            assert len(parts) == 3, f"service {name} publishes {port} on every interface: bind it to 127.0.0.1"
            host_ip, host_port, container_port = parts
            assert host_ip == "127.0.0.1", f"service {name} publishes {port} on {host_ip}"
            assert int(host_port) > 0
            # the API inside the container listens on that port, on the container's interfaces
            assert container_port == env["ALLELE_API__PORT"]
            assert env["ALLELE_API__HOST"] == "0.0.0.0"
            ApiConfig.model_validate({"host": env["ALLELE_API__HOST"], "port": env["ALLELE_API__PORT"]})
            published += 1
    assert published, "compose.yaml publishes no port: the dashboard would be unreachable"


def test_compose_restarts_and_checks_health() -> None:
    for name, service in services().items():
        assert service["restart"] in ("unless-stopped", "always", "on-failure"), name
        check = service["healthcheck"]
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+[smh]", check[key]), f"service {name}: healthcheck {key} {check[key]!r}"
        for words in command_words(check["test"]):
            assert words[0] == "allele", f"service {name}: health check {words} is not a command of ours"


def test_compose_command_is_the_image_command() -> None:
    image_cmd = [json.loads(a) for i, a in instructions(CONTAINERFILE) if i == "CMD"]
    assert len(image_cmd) == 1
    for name, service in services().items():
        assert service.get("command", image_cmd[0]) == image_cmd[0], name


# -- Containerfile -------------------------------------------------------------------------------------------------


def test_containerfile_copies_only_paths_that_exist() -> None:
    stages: set[str] = set()
    copied = 0
    workdir = "/"
    for instruction, args in instructions(CONTAINERFILE):
        if instruction == "FROM":
            words = args.split()
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        elif instruction == "WORKDIR":
            workdir = args
        elif instruction in ("COPY", "ADD"):
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            *sources, _dest = [w for w in words if not w.startswith("--")]
            source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if source_stage is not None:
                assert source_stage in stages, f"COPY --from={source_stage}: no such build stage"
                continue
            for src in sources:
                assert src not in (".", "./"), "COPY . copies a developer's .allele/ (ledger, vault) into the image"
                assert (SOURCE_ROOT / src).exists(), f"Containerfile copies {src} (in {workdir}), which does not exist"
                copied += 1
    assert copied >= 5 and stages, (copied, stages)


def test_containerfile_runs_as_an_unprivileged_user_with_our_commands() -> None:
    steps = instructions(CONTAINERFILE)
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    run = " ".join(a for i, a in steps if i == "RUN")
    assert "allele build --bundled" in run and "pip install -e ." in run
    cmd = json.loads(next(a for i, a in steps if i == "CMD"))  # the exec (JSON array) form
    assert cmd[0] == "allele"
    assert_ok(allele(*cmd[1:], "--help", home=Path("/nonexistent")))


# -- for real ----------------------------------------------------------------------------------------------------


@pytest.fixture
def engine(built, tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A detached engine under its watchdog, stopped afterwards (killed if it does not stop)."""
    home = (tmp_path / "home").resolve()
    report: dict[str, Any] = as_json(allele("start", "--detach", "--speed", "20", "--json", home=home))
    try:
        yield home, report
    finally:
        allele("stop", home=home)
        for pid in (report["pid"], report["watchdog_pid"]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_health_check_passes_on_a_running_engine_and_fails_on_a_stopped_one(
        engine: tuple[Path, dict[str, Any]]) -> None:
    home, report = engine
    [service] = services().values()
    for words in command_words(service["healthcheck"]["test"]):
        proc = allele(*words[1:], home=home, columns=WIDE)
        assert_ok(proc)
        assert flat(proc.stdout).startswith("healthy:")
    assert f"engine (pid {report['pid']}) running" in flat(allele("status", "--check", "engine", home=home,
                                                                  columns=WIDE).stdout)
    assert f"watchdog (pid {report['watchdog_pid']}) running" in flat(
        allele("status", "--check", "watchdog", home=home, columns=WIDE).stdout)

    assert_ok(allele("stop", home=home))
    for what in ("engine", "watchdog"):
        proc = allele("status", "--check", what, home=home, columns=WIDE)
        assert proc.returncode == 1, proc
        assert flat(proc.stderr).startswith("error: unhealthy:"), proc.stderr
    bad = allele("status", "--check", "ledger", home=home, columns=WIDE)
    assert bad.returncode == 2 and "--check takes 'engine' or 'watchdog', not 'ledger'" in flat(bad.stderr)


def test_the_backup_commands_of_the_guide_copy_a_consistent_ledger_while_the_engine_trades(
        engine: tuple[Path, dict[str, Any]]) -> None:
    home, report = engine
    section = HOME_SERVER.read_text().split("## Back up", 1)[1]
    commands = re.findall(r"^podman exec allele (allele backup[^#\n]*?)\s*(?:#.*)?$", section, flags=re.M)
    assert commands, "the backup section shows no `allele backup` command"

    def fills(db: Path) -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0])

    deadline = time.monotonic() + 180
    while fills(home / "trading.db") == 0:
        assert time.monotonic() < deadline, "no fills within 180 s"
        time.sleep(0.3)
    for command in commands:
        args = command.split()[1:]
        done = allele(*args, "--json", home=home, columns=WIDE)
        assert done.returncode == 0, done.stderr
        copy = Path(json.loads(done.stdout)["path"]) / "trading.db"
        assert copy.parent.parent == home / "backups" and fills(copy) > 0
        with sqlite3.connect(copy) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        time.sleep(1.1)  # backup folders are named by the second
    os.kill(report["pid"], 0)  # the engine kept running (ProcessLookupError otherwise)


def test_the_home_server_guide_uses_real_commands() -> None:
    text = HOME_SERVER.read_text()
    commands = re.sub(r"podman exec (?:-\w+ )*allele ", "", text)  # the container is named allele too
    used = set(re.findall(r"(?:^|[\s`/])allele ([a-z][a-z-]+)", commands, flags=re.M))
    assert {"start", "stop", "status", "ui", "deploy"} <= used, used
    for sub in sorted(used):
        proc = allele(sub, "--help", home=Path("/nonexistent"))
        assert proc.returncode == 0, f"docs/home-server.md uses `allele {sub}`, which is not a command: {proc.stderr}"
    for option in ("--check", "--no-watchdog", "--detach", "--print-url"):
        assert option in text
    assert "sqlite" in text.lower() and "allele backup" in text
    for key in ("heartbeat_interval_s", "hang_timeout_s", "restart_command", "max_restarts"):
        assert key in text
