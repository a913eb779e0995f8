"""Static checks of the deployment files in docker/ (compose stack, image, instance, Helm values).

Everything here runs without a Docker engine. When ``docker compose version`` works, the compose
file is also rendered by Docker Compose itself; the YAML checks run unconditionally.
"""

from __future__ import annotations

import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_TEMPLATE = DOCKER / "env.example"
DOCKERFILE = DOCKER / "Dockerfile"
CODE_SERVICE = "usdcop-code"
PROXY = "proxy"
READONLY_WEB = "dagster-webserver-readonly"
APP_SERVICES = (CODE_SERVICE, "dagster-webserver", READONLY_WEB, "dagster-daemon", "streamlit")
SECRET_NAME = re.compile(r"PASSWORD|SECRET", re.I)
# ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:?msg}, ${VAR?msg}, ${VAR:+x}, ${VAR+x}; "$$" is a literal "$".
INTERP = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
REQUIRED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}$")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict:
    return _compose()["services"]


def _template() -> dict[str, str]:
    """KEY=value lines of docker/env.example (comments and blanks skipped)."""
    env = {}
    for line in ENV_TEMPLATE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"env.example: malformed line {line!r}"
        env[key.strip()] = value.strip()
    return env


def _uncommented(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _interpolations(text: str):
    return [m for m in INTERP.finditer(_uncommented(text).replace("$$", ""))]


def _interpolate(node, env: dict[str, str]):
    """Docker Compose's variable substitution on the parsed file (the subset this file uses): every
    string scalar is interpolated after YAML parsing, like compose does; raises like compose."""

    def sub(m):
        name, op, arg = m["name"], m["op"], m["arg"]
        value = env.get(name)
        if op == ":?" and not value or op == "?" and value is None:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op == ":-" and not value or op == "-" and value is None:
            return arg
        return value or ""

    if isinstance(node, dict):
        return {k: _interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, env) for v in node]
    if isinstance(node, str):
        return "$".join(INTERP.sub(sub, part) for part in node.split("$$"))
    return node


def _filled_env() -> dict[str, str]:
    """The template with every empty secret filled in, as a user would."""
    env = _template()
    for key, value in env.items():
        if SECRET_NAME.search(key) and not value:
            env[key] = secrets.token_hex(16)
    return env


def _command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _option(cmd: list[str], *flags: str) -> str | None:
    for i, arg in enumerate(cmd):
        if arg in flags and i + 1 < len(cmd):
            return cmd[i + 1]
    return None


def _volumes(service: dict):
    """(source, target, is_bind) of each volume entry, short or long syntax."""
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            yield v.get("source"), v["target"], v.get("type") == "bind"
        else:
            parts = v.split(":")
            if len(parts) == 1:
                yield None, parts[0], False  # anonymous volume
            else:
                src = parts[0]
                yield src, parts[1], src.startswith((".", "/", "~"))


# --- compose: structure ------------------------------------------------------------------------


def test_compose_has_the_stack():
    services = _services()
    expected = {PROXY, "timescaledb", "dagster-postgres", "minio", "minio-init", *APP_SERVICES}
    assert expected <= set(services), expected - set(services)


def test_every_service_has_an_image_or_a_build_that_exists():
    for name, svc in _services().items():
        assert svc.get("image") or svc.get("build"), f"{name}: neither image nor build"
        image = svc.get("image", "")
        if image and not svc.get("build"):
            # third-party images are pinned (no implicit or floating latest)
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: unpinned image {image}"
        build = svc.get("build")
        if build:
            build = {"context": build} if isinstance(build, str) else build
            context = (DOCKER / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    # the app services share one image, built from docker/Dockerfile
    app = [_services()[s] for s in APP_SERVICES]
    assert len({s["image"] for s in app}) == 1


def test_env_files_and_variables_come_from_the_template():
    template = _template()
    for name, svc in _services().items():
        files = svc.get("env_file") or []
        for entry in [files] if isinstance(files, (str, dict)) else files:
            path = entry["path"] if isinstance(entry, dict) else entry
            # docker/.env is never committed: only the template has to exist
            assert Path(path).name == ".env", f"{name}: env_file {path} is not docker/.env"
    assert ENV_TEMPLATE.is_file()
    used = {m["name"] for m in _interpolations(COMPOSE.read_text())}
    assert used, "compose.yaml uses no variables at all"
    missing = used - set(template)
    assert not missing, f"variables used by compose.yaml but not in env.example: {sorted(missing)}"
    # The template ships no secret: every password/secret/key value is empty.
    for key, value in template.items():
        if SECRET_NAME.search(key) or key.endswith(("_KEY", "_KEYS")):
            assert value == "", f"env.example: {key} must be empty in the template"


def test_no_literal_secrets_and_required_interpolation():
    text = COMPOSE.read_text()
    for m in _interpolations(text):
        if SECRET_NAME.search(m["name"]):
            assert m["op"] == ":?" and m["arg"].strip(), f"${{{m['name']}}} must be ${{{m['name']}:?message}}"
    for name, svc in _services().items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert isinstance(value, str) and REQUIRED.match(value), (
                    f"{name}: {key}={value!r} is not ${{VAR:?message}}"
                )
            if isinstance(value, str) and "://" in value and "@" in value:
                # a URL with credentials: its password must be one required ${...} interpolation
                found = []
                flat = INTERP.sub(lambda m: found.append(m.group(0)) or f"\x00{len(found) - 1}\x00", value)
                userinfo = flat.split("://", 1)[1].split("@", 1)[0]
                assert ":" in userinfo, f"{name}: {key} has credentials without a password interpolation"
                password = userinfo.split(":", 1)[1]
                m = re.fullmatch(r"\x00(\d+)\x00", password)
                assert m, f"{name}: {key} embeds a literal password"
                original = found[int(m.group(1))]
                assert REQUIRED.match(original) and SECRET_NAME.search(original), f"{name}: {key} password {original}"
    # the healthchecks/entrypoints read passwords from the container's env ($$VAR), not from text
    assert not re.search(r"(?i)password\s*[=:]\s*['\"]?[A-Za-z0-9]{4,}", _uncommented(text).replace("$$", "")), (
        "literal password in compose.yaml"
    )


def test_missing_password_fails_loudly_and_filled_env_resolves():
    # As shipped (empty passwords) the stack refuses to start, naming the variable.
    with pytest.raises(ValueError, match="PASSWORD"):
        _interpolate(_compose(), _template())
    env = _filled_env()
    rendered = _interpolate(_compose(), env)
    code_env = rendered["services"][CODE_SERVICE]["environment"]

    from usdcop_assets.core.settings import parse_lake_url, parse_warehouse_url

    lake = parse_lake_url(code_env["USDCOP_LAKE_URL"])
    assert lake.scheme == "s3" and lake.root == env["LAKE_BUCKET"] and lake.prefix == "lake"
    warehouse = parse_warehouse_url(code_env["USDCOP_WAREHOUSE_URL"])
    assert warehouse.host == "timescaledb" and warehouse.password == env["WAREHOUSE_WRITER_PASSWORD"]
    assert warehouse.get_driver_name() == "psycopg"  # COPY staging needs psycopg 3
    # The lake's S3 client reads the standard AWS variables (lake/store.py): the lake writer's credentials.
    store = (ROOT / "usdcop_assets" / "storage" / "lake" / "store.py").read_text()
    assert "AWS_ENDPOINT_URL" in store
    assert code_env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert code_env["AWS_ACCESS_KEY_ID"] == env["LAKE_WRITER_USER"]
    assert code_env["AWS_SECRET_ACCESS_KEY"] == env["LAKE_WRITER_PASSWORD"]
    assert rendered["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == env["MINIO_ROOT_PASSWORD"]
    init_env = rendered["services"]["minio-init"]["environment"]
    assert (init_env["LAKE_WRITER_USER"], init_env["LAKE_WRITER_PASSWORD"]) == (
        env["LAKE_WRITER_USER"],
        env["LAKE_WRITER_PASSWORD"],
    )
    # Same credentials on both sides of each database: the writer roles the init script creates.
    ts_env = rendered["services"]["timescaledb"]["environment"]
    assert ts_env["POSTGRES_PASSWORD"] == env["WAREHOUSE_ADMIN_PASSWORD"]
    assert (ts_env["APP_DB_WRITER_USER"], ts_env["APP_DB_WRITER_PASSWORD"]) == (warehouse.username, warehouse.password)
    assert warehouse.username == env["WAREHOUSE_WRITER_USER"]
    dpg_env = rendered["services"]["dagster-postgres"]["environment"]
    assert dpg_env["POSTGRES_PASSWORD"] == env["DAGSTER_PG_ADMIN_PASSWORD"]
    assert (dpg_env["APP_DB_WRITER_USER"], dpg_env["APP_DB_WRITER_PASSWORD"]) == (
        code_env["DAGSTER_PG_USER"],
        code_env["DAGSTER_PG_PASSWORD"],
    )
    assert code_env["DAGSTER_EVENT_BATCH_SIZE"] == "5000"
    # Market/macro keys are optional: empty in the template means the synthetic sources.
    assert code_env["TWELVEDATA_API_KEYS"] == "" and code_env["FRED_API_KEY"] == ""


def test_mounts_volumes_and_ports():
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    seen_ports: dict[tuple[str, int], str] = {}
    for name, svc in compose["services"].items():
        for src, target, is_bind in _volumes(svc):
            assert target.startswith("/"), f"{name}: mount target {target} is not absolute"
            if is_bind:
                host = (DOCKER / src).resolve() if not src.startswith("/") else Path(src)
                assert host.exists(), f"{name}: bind-mounted host path {host} does not exist"
            elif src:
                assert src in declared, f"{name}: named volume {src} is not declared"
        for port in svc.get("ports", []):
            assert isinstance(port, str), f"{name}: port {port!r} must be a quoted string"
            m = re.fullmatch(r"(?:(?P<ip>[\d.]+):)?(?P<host>\d+):(?P<container>\d+)(?:/(?:tcp|udp))?", port)
            assert m, f"{name}: malformed port {port!r}"
            host_port, container_port = int(m["host"]), int(m["container"])
            assert 0 < host_port < 65536 and 0 < container_port < 65536, port
            key = (m["ip"] or "0.0.0.0", host_port)
            clash = [k for k in seen_ports if k[1] == host_port and "0.0.0.0" in (k[0], key[0]) or k == key]
            assert not clash, f"{name}: host port {host_port} already published by {seen_ports[clash[0]]}"
            seen_ports[key] = name
        for port in svc.get("expose", []):
            assert 0 < int(port) < 65536
    published = {p for _, p in seen_ports}
    assert {443, 80} <= published  # the proxy: the UIs are reachable only through it


def test_depends_on_and_healthchecks():
    services = _services()
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name
            condition = spec.get("condition", "service_started")
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}, condition
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy but it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is one-shot: restart must be 'no'"
    for name in ("timescaledb", "dagster-postgres", "minio", *APP_SERVICES):
        test = services[name]["healthcheck"]["test"]
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck {test}"
    # start order: bucket before code, code server before webserver/daemon, databases first
    assert services[CODE_SERVICE]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["depends_on"][CODE_SERVICE]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["dagster-postgres"]["condition"] == "service_healthy"
    # the bucket the init job creates is the lake's bucket
    entry = services["minio-init"]["entrypoint"]
    mounts = {target: src for src, target, bind in _volumes(services["minio-init"]) if bind}
    init = (DOCKER / mounts[entry[-1]]).read_text()
    assert "mc mb" in init and "LAKE_BUCKET" in init


def test_webserver_and_daemon_talk_to_the_code_server():
    services = _services()
    code_cmd = _command(services[CODE_SERVICE])
    assert code_cmd[:3] == ["dagster", "code-server", "start"]
    assert _option(code_cmd, "-m", "--module-name") == "usdcop_assets.defs.definitions"
    assert _option(code_cmd, "-h", "--host") == "0.0.0.0"
    code_port = int(_option(code_cmd, "-p", "--port"))
    location = _option(code_cmd, "--location-name")
    # the code server's own healthcheck probes that port
    health = services[CODE_SERVICE]["healthcheck"]["test"]
    assert "grpc-health-check" in health and str(code_port) in health
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] == CODE_SERVICE and int(grpc["port"]) == code_port
    assert grpc["location_name"] == location == "usdcop_assets"
    for name in ("dagster-webserver", READONLY_WEB, "dagster-daemon"):
        cmd = _command(services[name])
        ws_path = _option(cmd, "-w", "--workspace")
        assert ws_path, f"{name}: no -w workspace"
        mounts = {target: src for src, target, bind in _volumes(services[name]) if bind}
        assert (DOCKER / mounts[ws_path]).resolve() == (DOCKER / "workspace.yaml").resolve(), f"{name}: {ws_path}"
        assert "-m" not in cmd and "-f" not in cmd  # no user code loaded in these processes
    web = _command(services["dagster-webserver"])
    assert web[0] == "dagster-webserver" and _option(web, "-p", "--port") == "3000"
    assert _command(services["dagster-daemon"])[:2] == ["dagster-daemon", "run"]
    st = _command(services["streamlit"])
    assert st[:3] == ["streamlit", "run", "streamlit_app/app.py"] and (ROOT / st[2]).is_file()


def test_instance_env_reaches_every_dagster_process():
    services = _services()
    instance_yaml = (DOCKER / "dagster.yaml").read_text()
    needed = set(re.findall(r"env:\s*([A-Z_][A-Z0-9_]*)", instance_yaml))
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD"} <= needed
    assert set(re.findall(r"env:\s*([A-Z_][A-Z0-9_]*)", (DOCKER / "dagster-readonly.yaml").read_text())) == needed
    for name in (CODE_SERVICE, "dagster-webserver", READONLY_WEB, "dagster-daemon", "streamlit"):
        env = services[name]["environment"]
        assert needed <= set(env), f"{name} lacks {needed - set(env)}"
        assert env["DAGSTER_PG_HOST"] == "dagster-postgres"
    for name in (CODE_SERVICE, "streamlit"):  # the processes that read the stores
        assert {"USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "AWS_ENDPOINT_URL"} <= set(services[name]["environment"])


# --- image -------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile():
    ins = _dockerfile_instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    runs = [rest for op, rest in ins if op == "RUN"]
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    project = next(i for i, r in enumerate(runs) if "-c constraints.txt ." in r)
    assert torch < project and "download.pytorch.org/whl/cpu" in runs[torch]
    constraints = (ROOT / "constraints.txt").read_text()
    torch_pin = re.search(r"torch==([\w.]+)", runs[torch]).group(1)
    assert f"torch=={torch_pin}" in constraints, "the CPU wheel must match constraints.txt"
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for op, rest in ins:
        if op == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY source {src} missing"
                assert f"!{src.rstrip('/')}" in ignore or f"!{src.rstrip('/')}/" in ignore, (
                    f"{src} excluded from the build context"
                )
    copied = {src.rstrip("/") for op, rest in ins if op == "COPY" for src in rest.split()[:-1]}
    assert {
        "usdcop_assets",
        "streamlit_app",
        "sql",
        "workspace.yaml",
        "pyproject.toml",
        "constraints.txt",
        "docker/dagster.yaml",
    } <= copied
    env = " ".join(rest for op, rest in ins if op == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    assert any(op == "COPY" and rest.endswith("${DAGSTER_HOME}/dagster.yaml") for op, rest in ins)
    user = [rest for op, rest in ins if op == "USER"]
    assert user and user[-1] not in ("root", "0"), "the image must run as a non-root user"
    # local state and the secrets file never enter the build context
    assert (
        ignore[[line.strip() for line in ignore].index("**")]
        and "!docker/.env" not in ignore
        and "!.venv" not in ignore
    )
    cmd = next(rest for op, rest in reversed(ins) if op == "CMD")
    import json

    assert json.loads(cmd) == _command(_services()[CODE_SERVICE])


# --- instance config ---------------------------------------------------------------------------


def test_docker_instance_config_validates(tmp_path, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import DagsterPostgresStorage as PostgresStorage

    shutil.copy(DOCKER / "dagster.yaml", tmp_path / "dagster.yaml")
    for key, value in {
        "DAGSTER_PG_HOST": "dagster-postgres",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USER": "dagster",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "")  # trust auth: an empty value is accepted
    config, custom_class = dagster_instance_config(str(tmp_path))  # raises on a schema error
    assert custom_class is None
    storage = config["storage"]["postgres"]
    assert storage["postgres_db"]["scheme"] == "postgresql+psycopg2"
    processed = process_config(PostgresStorage.config_type(), storage)
    assert processed.success, processed.errors
    from dagster_postgres.utils import pg_url_from_config

    # empty password: left out of the URL (trust/peer auth, or a password from ~/.pgpass / PGPASSWORD)
    assert pg_url_from_config(processed.value) == "postgresql+psycopg2://dagster@dagster-postgres:5432/dagster"
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "s3cr@t")
    processed = process_config(PostgresStorage.config_type(), storage)
    assert pg_url_from_config(processed.value) == "postgresql+psycopg2://dagster:s3cr%40t@dagster-postgres:5432/dagster"
    # An unset variable (as opposed to empty) fails loudly.
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    assert not process_config(PostgresStorage.config_type(), storage).success
    # The run queue keeps its limits.
    coord = config["run_coordinator"]
    assert coord["class"] == QueuedRunCoordinator.__name__
    processed = process_config(QueuedRunCoordinator.config_type(), coord["config"])
    assert processed.success, processed.errors
    assert processed.value["max_concurrent_runs"] >= 1
    assert {"key": "usdcop/launched_by", "value": "usdcop backfill", "limit": 1} in processed.value[
        "tag_concurrency_limits"
    ]


# --- Helm --------------------------------------------------------------------------------------


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))
    else:
        yield path, node


@pytest.mark.parametrize(
    "name, launcher", [("values-k8s.yaml", "K8sRunLauncher"), ("values-celery.yaml", "CeleryK8sRunLauncher")]
)
def test_helm_values(name, launcher):
    values = yaml.safe_load((DOCKER / "helm" / name).read_text())
    assert values["runLauncher"]["type"] == launcher
    key = {"K8sRunLauncher": "k8sRunLauncher", "CeleryK8sRunLauncher": "celeryK8sRunLauncher"}[launcher]
    assert key in values["runLauncher"]["config"]
    uds = values["dagster-user-deployments"]
    assert uds["enabled"] is True
    [dep] = uds["deployments"]
    args = dep.get("codeServerArgs") or dep.get("dagsterApiGrpcArgs")
    assert _option(args, "-m") == "usdcop_assets.defs.definitions" and dep["port"] == 4000
    assert dep["image"]["repository"] and dep["image"]["tag"] not in (None, "", "latest")
    assert {e["name"] for e in dep["env"]} >= {"USDCOP_LAKE_URL", "DAGSTER_EVENT_BATCH_SIZE"}
    assert dep["envSecrets"], "the platform's secrets come from a Kubernetes Secret"
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]
    coord = values["dagsterDaemon"]["runCoordinator"]
    assert coord["type"] == "QueuedRunCoordinator"
    limits = coord["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {"key": "usdcop/launched_by", "value": "usdcop backfill", "limit": 1} in limits
    if launcher == "CeleryK8sRunLauncher":
        assert values["redis"]["enabled"] or values["rabbitmq"]["enabled"], "Celery needs a broker"
        queues = values["runLauncher"]["config"][key]["workerQueues"]
        assert "dagster" in {q["name"] for q in queues}  # the default queue must exist
        assert values["generateCeleryConfigSecret"] is False and values["global"]["celeryConfigSecretName"]
    for path, value in _walk(values):
        if SECRET_NAME.search(path[-1]) and not path[-1].endswith("SecretName") and not isinstance(value, bool):
            assert value in (None, ""), f"{name}: literal secret at {'.'.join(path)}"
        if isinstance(value, str) and "://" in value and "@" in value:
            assert ":" not in value.split("://", 1)[1].split("@", 1)[0], (
                f"{name}: credentials in a URL at {'.'.join(path)}"
            )


# --- Docker Compose itself, where it exists ----------------------------------------------------


def _compose_cli() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


COMPOSE_TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}  # and x-* extensions


def _compose_config_problems(compose: dict, env: dict[str, str]) -> list[str]:
    """What `docker compose config` refuses (or renders empty) that the checks above do not already cover:
    unknown top-level keys, a service without an image or a build, a named volume or network not declared,
    a variable neither in docker/env.example nor given a default, anything left un-interpolated."""
    problems = [
        f"unknown top-level key {k!r}" for k in compose if k not in COMPOSE_TOP_LEVEL and not k.startswith("x-")
    ]
    declared_volumes, declared_networks = set(compose.get("volumes") or {}), set(compose.get("networks") or {})
    for name, svc in compose["services"].items():
        if not (svc.get("image") or svc.get("build")):
            problems.append(f"{name}: neither image nor build")
        for src, _target, bind in _volumes(svc):
            if src and not bind and src not in declared_volumes:
                problems.append(f"{name}: named volume {src!r} is not declared")
        nets = svc.get("networks") or []
        for net in nets if isinstance(nets, list) else list(nets):
            if net not in declared_networks:
                problems.append(f"{name}: network {net!r} is not declared")
    for m in _interpolations(COMPOSE.read_text()):
        if m["name"] not in env and m["op"] not in (":-", "-"):
            problems.append(f"${{{m['name']}}} is not in docker/env.example and has no default")
    rendered = yaml.safe_dump(_interpolate(compose, env))
    problems += [f"left un-interpolated: {m.group(0)}" for m in INTERP.finditer(rendered)]
    return problems


def test_docker_compose_config(tmp_path):
    """`docker compose config` when the plugin exists; without it, the same refusals checked on the parsed file."""
    if not _compose_cli():
        assert _compose_config_problems(_compose(), _filled_env()) == []
        with pytest.raises(ValueError, match=r"required variable \w*PASSWORD\w* is missing a value"):
            _interpolate(_compose(), _template())  # as shipped, empty passwords: compose refuses to render
        return
    filled = tmp_path / "filled.env"
    filled.write_text("".join(f"{k}={v}\n" for k, v in _filled_env().items()))
    ok = subprocess.run(
        ["docker", "compose", "--env-file", str(filled), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    empty = subprocess.run(
        ["docker", "compose", "--env-file", str(ENV_TEMPLATE), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert empty.returncode != 0 and "PASSWORD" in empty.stderr, empty.stderr


# --- exposure, secrets and least privilege ---------------------------------------------------------

LOOPBACK = {"127.0.0.1", "::1", "[::1]"}
# a variable holding a credential: passwords, secrets, bcrypt hashes, API keys
CREDENTIAL = re.compile(r"PASSWORD|SECRET|_HASH$|_KEYS?$", re.I)
OPTIONAL_CREDENTIALS = {"TWELVEDATA_API_KEYS", "FRED_API_KEY"}  # empty = the synthetic sources


def _port_host_ip(port) -> str:
    """The host address a published port binds (compose: all interfaces when none is given)."""
    if isinstance(port, dict):
        return str(port.get("host_ip") or "0.0.0.0")
    m = re.fullmatch(r"(?:(?P<ip>\[[^\]]+\]|[\d.]+):)?(?:\d+):\d+(?:/(?:tcp|udp))?", str(port))
    assert m, f"malformed port {port!r}"
    return m["ip"] or "0.0.0.0"


def _exposure_problems(compose: dict) -> list[str]:
    return [
        f"{name} publishes {port!r} beyond 127.0.0.1"
        for name, svc in compose["services"].items()
        if name != PROXY
        for port in svc.get("ports", [])
        if _port_host_ip(port) not in LOOPBACK
    ]


def _literal_secret_problems(compose: dict) -> list[str]:
    """Environment entries that carry a credential as literal text instead of one ${VAR:?...} from docker/.env."""
    problems = []
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        for key, value in env.items():
            text = "" if value is None else str(value)
            refs = list(INTERP.finditer(text.replace("$$", "")))
            credential_refs = [m for m in refs if CREDENTIAL.search(m["name"])]
            if CREDENTIAL.search(key) or credential_refs:
                if CREDENTIAL.search(key) and not refs:
                    problems.append(f"{name}: {key} has a literal value")
                for m in credential_refs or refs:
                    optional = m["name"] in OPTIONAL_CREDENTIALS and m["op"] == ":-" and not m["arg"]
                    if not (optional or (m["op"] == ":?" and m["arg"].strip())):
                        problems.append(
                            f"{name}: {key} uses ${{{m['name']}{m['op'] or ''}{m['arg'] or ''}}}, not a required "
                            "variable"
                        )
                if (
                    CREDENTIAL.search(key)
                    and refs
                    and "://" not in text
                    and INTERP.sub("", text.replace("$$", "")).strip()
                ):
                    problems.append(f"{name}: {key} mixes literal text into a credential")
    return problems


def test_only_the_proxy_publishes_ports_beyond_loopback():
    compose = _compose()
    assert _exposure_problems(compose) == []
    proxy_ports = {str(p).rsplit(":", 1)[-1] for p in compose["services"][PROXY]["ports"]}
    assert proxy_ports == {"443", "80"}
    for name in ("dagster-webserver", READONLY_WEB, "streamlit", CODE_SERVICE, "dagster-postgres"):
        assert not compose["services"][name].get("ports"), f"{name} must not publish a port (the proxy reaches it)"
    # the check itself catches the finding it guards against: a UI published on all interfaces
    opened = yaml.safe_load(COMPOSE.read_text())
    opened["services"]["dagster-webserver"]["ports"] = ["3000:3000"]
    opened["services"]["streamlit"]["ports"] = [{"target": 8501, "published": 8501}]
    assert _exposure_problems(opened) == [
        "dagster-webserver publishes '3000:3000' beyond 127.0.0.1",
        "streamlit publishes {'target': 8501, 'published': 8501} beyond 127.0.0.1",
    ]


def test_no_credential_has_a_literal_value():
    assert _literal_secret_problems(_compose()) == []
    planted = yaml.safe_load(COMPOSE.read_text())
    planted["services"]["streamlit"]["environment"]["AWS_SECRET_ACCESS_KEY"] = "minio123"
    planted["services"][PROXY]["environment"]["VIEWER_PASSWORD_HASH"] = "${VIEWER_PASSWORD_HASH:-$2a$14$abc}"
    planted["services"][CODE_SERVICE]["environment"]["USDCOP_WAREHOUSE_URL"] = (
        "postgresql+psycopg://u:${WAREHOUSE_WRITER_PASSWORD-x}@h/db"
    )
    assert [p.split(" ", 2)[:2] for p in _literal_secret_problems(planted)] == [
        ["proxy:", "VIEWER_PASSWORD_HASH"],
        ["usdcop-code:", "USDCOP_WAREHOUSE_URL"],
        ["streamlit:", "AWS_SECRET_ACCESS_KEY"],
    ]


# Which credentials each service may hold (docs/deployment.md): every other secret stays out of it.
ALLOWED_SECRETS = {
    PROXY: {"OPERATOR_PASSWORD_HASH", "VIEWER_PASSWORD_HASH"},
    "timescaledb": {"WAREHOUSE_ADMIN_PASSWORD", "WAREHOUSE_WRITER_PASSWORD", "WAREHOUSE_READER_PASSWORD"},
    "dagster-postgres": {"DAGSTER_PG_ADMIN_PASSWORD", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_READER_PASSWORD"},
    "minio": {"MINIO_ROOT_PASSWORD"},
    "minio-init": {"MINIO_ROOT_PASSWORD", "LAKE_WRITER_PASSWORD", "LAKE_READER_PASSWORD"},
    CODE_SERVICE: {
        "DAGSTER_PG_PASSWORD",
        "LAKE_WRITER_PASSWORD",
        "WAREHOUSE_WRITER_PASSWORD",
        "TWELVEDATA_API_KEYS",
        "FRED_API_KEY",
    },
    # the live bar process writes the lake, the warehouse and the Dagster records, and asks the bar vendor; no FRED key
    "usdcop-live": {"DAGSTER_PG_PASSWORD", "LAKE_WRITER_PASSWORD", "WAREHOUSE_WRITER_PASSWORD", "TWELVEDATA_API_KEYS"},
    "dagster-webserver": {"DAGSTER_PG_PASSWORD"},
    "dagster-daemon": {"DAGSTER_PG_PASSWORD"},
    READONLY_WEB: {"DAGSTER_PG_READER_PASSWORD"},
    "streamlit": {"DAGSTER_PG_READER_PASSWORD", "LAKE_READER_PASSWORD", "WAREHOUSE_READER_PASSWORD"},
}


def test_each_service_holds_only_the_credentials_it_needs():
    env = _template()
    for key in env:
        if CREDENTIAL.search(key):
            env[key] = f"{key.lower()}-{secrets.token_hex(8)}"  # a distinct, recognisable value per secret
    rendered = _interpolate(_compose(), env)
    secrets_in = {}
    for name, svc in rendered["services"].items():
        text = yaml.safe_dump(svc)
        secrets_in[name] = {key for key, value in env.items() if CREDENTIAL.search(key) and value in text}
    assert secrets_in == {name: ALLOWED_SECRETS.get(name, set()) for name in rendered["services"]}
    # the read-only processes reach every store as their read-only identity
    st = rendered["services"]["streamlit"]["environment"]
    ro = rendered["services"][READONLY_WEB]["environment"]
    from usdcop_assets.core.settings import parse_warehouse_url

    assert parse_warehouse_url(st["USDCOP_WAREHOUSE_URL"]).username == env["WAREHOUSE_READER_USER"]
    assert st["AWS_ACCESS_KEY_ID"] == env["LAKE_READER_USER"]
    assert st["DAGSTER_PG_USER"] == ro["DAGSTER_PG_USER"] == env["DAGSTER_PG_READER_USER"]
    assert st["DAGSTER_HOME"] == ro["DAGSTER_HOME"] == "/opt/dagster/readonly_home"
    for name in ("streamlit", READONLY_WEB):
        mounts = {target: src for src, target, bind in _volumes(_services()[name]) if bind}
        assert mounts["/opt/dagster/readonly_home/dagster.yaml"] == "./dagster-readonly.yaml"
    # both databases create the roles the services use, from one script
    for name in ("timescaledb", "dagster-postgres"):
        mounts = {target: src for src, target, bind in _volumes(_services()[name]) if bind}
        script = (DOCKER / mounts["/docker-entrypoint-initdb.d/10-roles.sh"]).read_text()
        assert "/usdcop-initdb/roles.sql" in script and mounts["/usdcop-initdb/roles.sql"] == "./initdb/roles.sql"


def _caddy_blocks(text: str) -> dict[str, str]:
    """Top-level Caddyfile blocks by their label (global options under '')."""
    blocks, depth, label, body = {}, 0, None, []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if not line:
            continue
        if depth == 0 and line.endswith("{"):
            label, body = line[:-1].strip(), []
        elif depth > 0:
            body.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and label is not None:
            blocks[label] = "\n".join(body[:-1])
            label = None
    return blocks


def _handles(site: str) -> dict[str, str]:
    """handle blocks of a site: matcher name (or '' for the fallback) -> body."""
    out, current, depth, body = {}, None, 0, []
    for line in site.splitlines():
        if depth == 0 and line.startswith("handle"):
            current, body = line[len("handle") :].strip(" {"), []
        elif current is not None:
            body.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and current is not None:
            out[current] = "\n".join(body[:-1])
            current = None
    return out


def test_the_proxy_authenticates_every_route_over_tls_and_routes_operators_apart():
    services = _services()
    proxy = services[PROXY]
    assert proxy["image"].startswith("caddy:") and not proxy["image"].endswith(":latest")
    mounts = {target: src for src, target, bind in _volumes(proxy) if bind}
    caddyfile = (DOCKER / mounts["/etc/caddy/Caddyfile"]).read_text()
    blocks = _caddy_blocks(caddyfile)
    assert "admin off" in blocks[""]  # no admin API listening
    site = blocks["{$PROXY_HOSTNAME}"]  # a host name: automatic HTTPS (no http:// site, no auto_https off)
    assert "auto_https off" not in caddyfile and "tls off" not in caddyfile and "http://" not in caddyfile
    assert "{$VIEWER_USER} {$VIEWER_PASSWORD_HASH}" in blocks["(viewers)"] and "{$OPERATOR_USER}" in blocks["(viewers)"]
    assert (
        "{$VIEWER_USER}" not in blocks["(operators)"]
        and "{$OPERATOR_USER} {$OPERATOR_PASSWORD_HASH}" in blocks["(operators)"]
    )
    handles = _handles(site)
    assert set(handles) == {"@ops", "@dagster", ""}
    assert "@ops path /ops /ops/*" in site and "@dagster path /dagster /dagster/*" in site
    upstream = {h: re.search(r"reverse_proxy\s+([\w-]+):(\d+)", body).groups() for h, body in handles.items()}
    auth = {h: re.search(r"import\s+(\w+)", body).group(1) for h, body in handles.items()}
    assert auth == {"@ops": "operators", "@dagster": "viewers", "": "viewers"}
    assert upstream == {
        "@ops": ("dagster-webserver", "3000"),
        "@dagster": (READONLY_WEB, "3001"),
        "": ("streamlit", "8501"),
    }
    # each upstream listens where the proxy sends it, under the path prefix it is routed by
    full, ro = _command(services["dagster-webserver"]), _command(services[READONLY_WEB])
    assert (
        _option(full, "-p", "--port") == "3000"
        and _option(full, "--path-prefix", "-l") == "/ops"
        and "--read-only" not in full
    )
    assert (
        _option(ro, "-p", "--port") == "3001"
        and _option(ro, "--path-prefix", "-l") == "/dagster"
        and "--read-only" in ro
    )
    assert "--server.port=8501" in _command(services["streamlit"])
    for name, port in (("dagster-webserver", "3000"), (READONLY_WEB, "3001"), ("streamlit", "8501")):
        assert [str(p) for p in services[name].get("expose", [])] == [port]
    # the proxy's users and hashes come from docker/.env with no default
    for var in ("PROXY_HOSTNAME", "OPERATOR_USER", "OPERATOR_PASSWORD_HASH", "VIEWER_USER", "VIEWER_PASSWORD_HASH"):
        assert REQUIRED.match(proxy["environment"][var]), var
        assert f"{{${var}}}" in caddyfile


@pytest.mark.parametrize("name", ["values-k8s.yaml", "values-celery.yaml"])
def test_helm_values_add_a_read_only_webserver_behind_authenticated_ingresses(name):
    values = yaml.safe_load((DOCKER / "helm" / name).read_text())
    assert values["dagsterWebserver"]["enableReadOnly"] is True
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert values["ingress"]["enabled"] is False  # docker/helm/ingress.yaml: one Ingress per audience
    ingresses = list(yaml.safe_load_all((DOCKER / "helm" / "ingress.yaml").read_text()))
    backends = {}
    for ing in ingresses:
        ann = ing["metadata"]["annotations"]
        assert (
            ann["nginx.ingress.kubernetes.io/auth-type"] == "basic" and ann["nginx.ingress.kubernetes.io/auth-secret"]
        )
        assert ann["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
        hosts = {r["host"] for r in ing["spec"]["rules"]}
        assert hosts <= {h for t in ing["spec"]["tls"] for h in t["hosts"]} and all(
            t["secretName"] for t in ing["spec"]["tls"]
        )
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backends[path["backend"]["service"]["name"]] = ann["nginx.ingress.kubernetes.io/auth-secret"]
    assert backends == {
        "usdcop-dagster-webserver": "usdcop-operators",
        "usdcop-dagster-webserver-read-only": "usdcop-viewers",
    }
