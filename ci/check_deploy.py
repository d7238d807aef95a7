#!/usr/bin/env python3
"""Static checks of Gantry's deployment files, without Docker or Nix evaluation.

    python3 ci/check_deploy.py [--root DIR]

Checks docker-compose.yml, Dockerfile, .dockerignore, deploy/keycloak/gantry-realm.json and
flake.nix against each other and against the binary's documented configuration (the README's
Configuration table). Prints one line per problem and exits 1 if there is any, else prints a
summary and exits 0.

Needs Python 3.11+ with PyYAML (`python3 -m pip install pyyaml`) and, for flake.nix,
`nix-instantiate` (Debian: `apt-get install nix-bin`); a missing tool is reported as a problem.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # reported by main(), so the message is one clear line
    yaml = None

REQUIRED_SERVICES = (
    "postgres",
    "redis",
    "keycloak",
    "gantry-api",
    "gantry-workers",
    "prometheus",
    "grafana",
)
# Variables a production gantry process must have (README "Operations"), and fixed values.
REQUIRED_GANTRY_ENV = ("DATABASE_URL", "REDIS_URL", "KEYCLOAK_ISSUER", "GANTRY_ENV", "ROCKET_ADDRESS")
FIXED_GANTRY_ENV = {"GANTRY_ENV": "production", "ROCKET_ADDRESS": "0.0.0.0"}
DEFAULT_ROCKET_PORT = 8000
DEFAULT_AUDIENCE = "gantry"
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
# Client scopes that put sub (basic), preferred_username (profile), email (email) and
# realm_access.roles (roles) into Keycloak 25+ access tokens.
REQUIRED_CLIENT_SCOPES = ("basic", "profile", "email", "roles")
DEMO_USERS = {"alice": False, "admin": True}  # username -> must hold gantry-admin
ADMIN_ROLE = "gantry-admin"
CONSOLE_CLIENT = "gantry-console"  # src/api/console.rs CONSOLE_CLIENT_ID
REALM_FILE = "deploy/keycloak/gantry-realm.json"
KEYCLOAK_IMPORT_DIR = "/opt/keycloak/data/import"

_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def resolve(value) -> str:
    """A compose value with `${VAR:-default}` replaced by its default (`$$` is a literal `$`)."""
    text = str(value)
    placeholder = "\x00"
    text = text.replace("$$", placeholder)

    def sub(m: re.Match) -> str:
        if m.group(2) in (":-", "-"):
            return m.group(3)
        return ""  # ${VAR}, ${VAR:?err} or $VAR without a default: empty unless set

    return _INTERP.sub(sub, text).replace(placeholder, "$")


def env_map(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            name, _, value = str(item).partition("=")
            out[name] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def duration_seconds(text: str) -> float | None:
    total, pos = 0.0, 0
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip()):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos == 0 and text.strip().isdigit():
        return float(text.strip())
    return total if pos == len(text.strip()) and pos else None


def documented_variables(readme: Path) -> list[re.Pattern]:
    """The `| `NAME` |` rows of the README's Configuration table, as patterns (<NAME> = any)."""
    text = readme.read_text(encoding="utf-8")
    section = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.S | re.M)
    body = section.group(1) if section else ""
    names = re.findall(r"^\|\s*`([A-Z0-9_<>]+)`\s*\|", body, re.M)
    patterns = []
    for name in names:
        regex = re.sub(r"<[A-Z_]+>", "[A-Z0-9_]+", re.escape(name).replace(r"\<", "<").replace(r"\>", ">"))
        patterns.append(re.compile(f"^{regex}$"))
    return patterns


class Checker:
    def __init__(self, root: Path):
        self.root = root
        self.problems: list[str] = []
        self.notes: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    # ----------------------------------------------------------------------------- compose
    def check_compose(self) -> dict | None:
        path = self.root / "docker-compose.yml"
        if not path.is_file():
            self.problem("docker-compose.yml", "missing")
            return None
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            self.problem("docker-compose.yml", f"does not parse: {str(err).splitlines()[0]}")
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
            self.problem("docker-compose.yml", "has no services mapping")
            return None
        services: dict = doc["services"]
        for name in REQUIRED_SERVICES:
            if name not in services:
                self.problem("docker-compose.yml", f"service {name!r} is missing")

        declared_volumes = set((doc.get("volumes") or {}).keys())
        published: dict[str, str] = {}
        for name, svc in services.items():
            where = f"docker-compose.yml services.{name}"
            if not isinstance(svc, dict):
                self.problem(where, "is not a mapping")
                continue
            self._check_volumes(where, svc, declared_volumes)
            self._check_depends_on(where, svc, services)
            for host_port in self._host_ports(where, svc):
                if host_port in published:
                    self.problem(where, f"host port {host_port} is also published by {published[host_port]}")
                else:
                    published[host_port] = name
            if "build" in svc:
                self._check_build(where, svc)

        gantry = {n: s for n, s in services.items() if isinstance(s, dict) and self._is_gantry(s)}
        for name in ("gantry-api", "gantry-workers"):
            if name in services and name not in gantry:
                self.problem(f"docker-compose.yml services.{name}", "does not run the gantry image (build: .)")
        patterns = documented_variables(self.root / "README.md") if (self.root / "README.md").is_file() else []
        if not patterns:
            self.problem("README.md", "no Configuration table found (| `NAME` | rows)")
        for name, svc in gantry.items():
            self._check_gantry_service(name, svc, services, patterns)
        if "gantry-workers" in gantry:
            self._check_scalable("gantry-workers", gantry["gantry-workers"])
        if "keycloak" in services and isinstance(services["keycloak"], dict):
            self._check_keycloak_service(services["keycloak"], gantry)
        if "prometheus" in services and isinstance(services["prometheus"], dict):
            self._check_prometheus(services["prometheus"])
        if "grafana" in services and isinstance(services["grafana"], dict):
            self._check_grafana(services["grafana"], services)
        return doc

    @staticmethod
    def _is_gantry(svc: dict) -> bool:
        build = svc.get("build")
        context = build.get("context", ".") if isinstance(build, dict) else build
        if context is not None and str(context).rstrip("/") in (".", "./"):
            return True
        return str(svc.get("image", "")).split(":")[0].endswith("gantry")

    def _bind_mounts(self, svc: dict) -> list[tuple[str, str]]:
        mounts = []
        for vol in svc.get("volumes") or []:
            if isinstance(vol, dict):
                if vol.get("type") == "bind":
                    mounts.append((resolve(vol.get("source", "")), str(vol.get("target", ""))))
                continue
            parts = resolve(vol).split(":")
            if len(parts) >= 2 and parts[0].startswith((".", "/", "~")):
                mounts.append((parts[0], parts[1]))
        return mounts

    def _check_volumes(self, where: str, svc: dict, declared: set) -> None:
        for vol in svc.get("volumes") or []:
            if isinstance(vol, dict):
                if vol.get("type") == "volume" and vol.get("source") not in declared:
                    self.problem(where, f"named volume {vol.get('source')!r} is not declared under volumes:")
                continue
            source = resolve(vol).split(":")[0]
            if not source.startswith((".", "/", "~")) and ":" in str(vol) and source not in declared:
                self.problem(where, f"named volume {source!r} is not declared under volumes:")
        for source, _target in self._bind_mounts(svc):
            if source.startswith(("/", "~")):
                self.problem(where, f"bind mount {source} is outside the repository")
                continue
            if not (self.root / source).exists():
                self.problem(where, f"bind-mounted path {source} does not exist")

    def _check_depends_on(self, where: str, svc: dict, services: dict) -> None:
        deps = svc.get("depends_on")
        if deps is None:
            return
        if isinstance(deps, list):
            self.problem(where, "depends_on is a list: use the long form with condition: service_healthy")
            deps = {d: {} for d in deps}
        for dep, spec in deps.items():
            condition = (spec or {}).get("condition")
            if condition != "service_healthy":
                self.problem(where, f"depends_on {dep}: condition is {condition!r}, not service_healthy")
            target = services.get(dep)
            if not isinstance(target, dict):
                self.problem(where, f"depends_on {dep}: no such service")
            elif not self._has_healthcheck(target):
                self.problem(where, f"depends_on {dep}: {dep} has no healthcheck")

    @staticmethod
    def _has_healthcheck(svc: dict) -> bool:
        hc = svc.get("healthcheck")
        if not isinstance(hc, dict) or hc.get("disable"):
            return False
        test = hc.get("test")
        return bool(test) and test != ["NONE"]

    def _host_ports(self, where: str, svc: dict) -> list[str]:
        out = []
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                if port.get("published") is not None:
                    out.append(f"{resolve(port['published'])}/{port.get('protocol', 'tcp')}")
                continue
            text = resolve(port)
            proto = "tcp"
            if "/" in text:
                text, proto = text.split("/", 1)
            parts = text.split(":")
            if len(parts) == 1:
                self.problem(where, f"port {port!r} publishes a random host port; give host:container")
                continue
            out.append(f"{parts[-2]}/{proto}")
        return out

    @staticmethod
    def _container_ports(svc: dict) -> list[int]:
        out = []
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                out.append(int(resolve(port.get("target", 0))))
            else:
                out.append(int(resolve(port).split("/")[0].split(":")[-1]))
        return out

    def _check_build(self, where: str, svc: dict) -> None:
        build = svc["build"]
        context = resolve(build.get("context", ".") if isinstance(build, dict) else build)
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        if not (self.root / context).is_dir():
            self.problem(where, f"build context {context} does not exist")
        elif not (self.root / context / dockerfile).is_file():
            self.problem(where, f"build context {context} has no {dockerfile}")

    def _check_gantry_service(self, name: str, svc: dict, services: dict, patterns) -> None:
        where = f"docker-compose.yml services.{name}"
        env = env_map(svc)
        for var in REQUIRED_GANTRY_ENV:
            if var not in env or not resolve(env[var]):
                self.problem(where, f"environment lacks {var} (needed in production)")
        for var, value in FIXED_GANTRY_ENV.items():
            if var in env and resolve(env[var]) != value:
                self.problem(where, f"{var}={env[var]!r}, expected {value!r}")
        for var in env:
            if var.startswith("ROCKET_"):
                continue
            if patterns and not any(p.match(var) for p in patterns):
                self.problem(where, f"{var} is not a variable the binary documents (README Configuration)")

        db = resolve(env.get("DATABASE_URL", ""))
        if db and not db.startswith(("postgres://", "postgresql://")):
            self.problem(where, f"DATABASE_URL is not postgres:// ({db.split(':')[0]})")
        self._check_url_service(where, "DATABASE_URL", db, services)
        self._check_url_service(where, "REDIS_URL", resolve(env.get("REDIS_URL", "")), services)
        self._check_database_credentials(where, db, services.get("postgres"))
        if "KEYCLOAK_JWKS_URI" in env and "KEYCLOAK_ISSUER" not in env:
            self.problem(where, "KEYCLOAK_JWKS_URI is set but KEYCLOAK_ISSUER is not (the binary refuses this)")
        self._check_url_service(where, "KEYCLOAK_JWKS_URI", resolve(env.get("KEYCLOAK_JWKS_URI", "")), services)

        port_text = resolve(env.get("ROCKET_PORT", str(DEFAULT_ROCKET_PORT)))
        try:
            port = int(port_text)
        except ValueError:
            self.problem(where, f"ROCKET_PORT={port_text!r} is not a port")
            port = DEFAULT_ROCKET_PORT
        for container_port in self._container_ports(svc):
            if container_port != port:
                self.problem(where, f"publishes container port {container_port} but gantry listens on ROCKET_PORT={port}")
        if name == "gantry-api" and not svc.get("ports"):
            self.problem(where, f"publishes no port (expected {port}:{port})")

        if not self._has_healthcheck(svc):
            self.problem(where, "has no healthcheck")
        else:
            test = svc["healthcheck"]["test"]
            text = " ".join(map(str, test)) if isinstance(test, list) else str(test)
            if "/health/ready" not in text:
                self.problem(where, "healthcheck does not probe /health/ready")
            m = re.search(r"https?://[^/:\s]+:(\d+)/health", text)
            if m and int(m.group(1)) != port:
                self.problem(where, f"healthcheck probes port {m.group(1)} but ROCKET_PORT={port}")
            if re.search(r"(^|\s)curl(\s|$)", text) and not self._runtime_has("curl"):
                self.problem(where, "healthcheck uses curl but the Dockerfile's final stage does not install it")

        command = svc.get("command")
        args = command if isinstance(command, list) else str(command or "").split()
        if not any(a in ("--server", "--all-workers") or str(a).startswith("--workers") for a in args):
            self.problem(where, "command chooses no role (--server, --workers NAMES or --all-workers)")

        grace = duration_seconds(str(svc.get("stop_grace_period", "10s")))
        shutdown = duration_seconds(resolve(env.get("GANTRY_SHUTDOWN_TIMEOUT", ""))) or DEFAULT_SHUTDOWN_TIMEOUT_S
        if grace is None or grace <= shutdown:
            self.problem(
                where,
                f"stop_grace_period {svc.get('stop_grace_period', '10s (default)')} is not longer than "
                f"GANTRY_SHUTDOWN_TIMEOUT ({shutdown:g}s): in-flight work would be killed",
            )

    def _check_url_service(self, where: str, var: str, url: str, services: dict) -> None:
        m = re.match(r"^[a-z]+://(?:[^@/]*@)?([^:/?]+)", url)
        if not m:
            return
        host = m.group(1)
        if host in ("localhost", "127.0.0.1") and var != "KEYCLOAK_ISSUER":
            self.problem(where, f"{var} points at {host}, which inside a container is the container itself")
        elif "." not in host and host not in services and host not in ("localhost",):
            self.problem(where, f"{var} points at host {host!r}, which is no compose service")

    def _check_database_credentials(self, where: str, url: str, postgres) -> None:
        if not isinstance(postgres, dict):
            return
        m = re.match(r"^postgres(?:ql)?://([^:@/]+)(?::([^@/]*))?@[^/]+/([^?]+)", url)
        if not m:
            return
        penv = {k: resolve(v) for k, v in env_map(postgres).items()}
        user = penv.get("POSTGRES_USER", "postgres")
        database = penv.get("POSTGRES_DB", user)
        if m.group(1) != user:
            self.problem(where, f"DATABASE_URL user {m.group(1)!r} is not POSTGRES_USER {user!r}")
        if m.group(2) is not None and m.group(2) != penv.get("POSTGRES_PASSWORD", ""):
            self.problem(where, "DATABASE_URL password does not match postgres' POSTGRES_PASSWORD (with defaults)")
        if m.group(3) != database:
            self.problem(where, f"DATABASE_URL database {m.group(3)!r} is not POSTGRES_DB {database!r}")

    def _check_scalable(self, name: str, svc: dict) -> None:
        where = f"docker-compose.yml services.{name}"
        if "container_name" in svc:
            self.problem(where, "has container_name, so it cannot be scaled (--scale)")
        if svc.get("ports"):
            self.problem(where, "publishes host ports, so a second replica could not start")

    def _check_keycloak_service(self, svc: dict, gantry: dict) -> None:
        where = "docker-compose.yml services.keycloak"
        image = str(svc.get("image", ""))
        m = re.match(r"^quay\.io/keycloak/keycloak:(\d+)\.\d+\.\d+$", image)
        if not m:
            self.problem(where, f"image {image!r} is not a pinned quay.io/keycloak/keycloak:X.Y.Z")
        elif m.group(1) != "26":
            self.problem(where, f"image {image!r} is not Keycloak 26")
        command = svc.get("command")
        args = command if isinstance(command, list) else str(command or "").split()
        if "--import-realm" not in args:
            self.problem(where, "command lacks --import-realm")
        if not any(t == f"{KEYCLOAK_IMPORT_DIR}/{Path(REALM_FILE).name}" or t == KEYCLOAK_IMPORT_DIR
                   for s, t in self._bind_mounts(svc) if s.lstrip("./").startswith(("deploy/keycloak",))):
            self.problem(where, f"does not mount ./{REALM_FILE} into {KEYCLOAK_IMPORT_DIR}/")
        if not self._has_healthcheck(svc):
            self.problem(where, "has no healthcheck")
        else:
            test = svc["healthcheck"]["test"]
            text = " ".join(map(str, test)) if isinstance(test, list) else str(test)
            if re.search(r"(^|\s)(curl|wget)(\s|$)", text):
                self.problem(where, "healthcheck uses curl/wget, which the Keycloak image does not have")
        hostname = resolve(env_map(svc).get("KC_HOSTNAME", ""))
        for name, gsvc in gantry.items():
            issuer = resolve(env_map(gsvc).get("KEYCLOAK_ISSUER", ""))
            if hostname.startswith("http") and issuer and not issuer.startswith(hostname.rstrip("/") + "/realms/"):
                self.problem(where, f"KC_HOSTNAME {hostname} does not match {name}'s KEYCLOAK_ISSUER {issuer}")
            if issuer:
                origin = re.match(r"^https?://[^/]+", issuer)
                port = re.search(r":(\d+)$", origin.group(0)) if origin else None
                if port and re.match(r"^https?://(localhost|127\.0\.0\.1)", issuer):
                    if port.group(1) not in [p.split("/")[0] for p in self._host_ports(where, svc)]:
                        self.problem(where, f"{name}'s KEYCLOAK_ISSUER uses host port {port.group(1)}, which keycloak does not publish")

    def _check_prometheus(self, svc: dict) -> None:
        where = "docker-compose.yml services.prometheus"
        command = svc.get("command") or []
        args = command if isinstance(command, list) else str(command).split()
        config = next((a.split("=", 1)[1] for a in args if str(a).startswith("--config.file=")), None)
        if config is None:
            self.problem(where, "command lacks --config.file=")
            return
        for source, target in self._bind_mounts(svc):
            target = target.rstrip("/")
            if config == target or config.startswith(target + "/"):
                host = self.root / source / config[len(target):].lstrip("/") if config != target else self.root / source
                if not host.is_file():
                    self.problem(where, f"--config.file={config} is ./{host.relative_to(self.root)}, which does not exist")
                else:
                    text = host.read_text(encoding="utf-8")
                    for needed in ("gantry-api", "gantry-workers"):
                        if needed not in text:
                            self.problem(f"{host.relative_to(self.root)}", f"scrapes no {needed} target")
                return
        self.problem(where, f"--config.file={config} is not inside a bind mount")

    def _check_grafana(self, svc: dict, services: dict) -> None:
        """Provisioning files (when present) must point at compose services and mounted paths."""
        mounts = self._bind_mounts(svc)
        provisioning = next((self.root / s for s, t in mounts if t.rstrip("/") == "/etc/grafana/provisioning"), None)
        if provisioning is None or not provisioning.is_dir():
            return
        targets = [t.rstrip("/") for _s, t in mounts]
        for path in sorted(provisioning.rglob("*.y*ml")):
            rel = path.relative_to(self.root)
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as err:
                self.problem(str(rel), f"does not parse: {str(err).splitlines()[0]}")
                continue
            for source in doc.get("datasources") or []:
                url = str(source.get("url", ""))
                m = re.match(r"^https?://([^:/]+)", url)
                if m and m.group(1) not in services:
                    self.problem(str(rel), f"datasource {source.get('name')!r} url {url} is no compose service")
            for provider in doc.get("providers") or []:
                folder = str((provider.get("options") or {}).get("path", ""))
                if folder and not any(folder == t or folder.startswith(t + "/") for t in targets):
                    self.problem(str(rel), f"dashboard provider path {folder} is not a mounted directory")

    # ----------------------------------------------------------------------------- Dockerfile
    def _final_stage(self) -> list[tuple[str, str]] | None:
        path = self.root / "Dockerfile"
        if not path.is_file():
            return None
        text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
        stages: list[list[tuple[str, str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            word = word.upper()
            if word == "FROM":
                stages.append([])
            if stages:
                stages[-1].append((word, rest.strip()))
        return stages[-1] if stages else []

    def _runtime_has(self, program: str) -> bool:
        stage = self._final_stage() or []
        return any(w == "RUN" and re.search(rf"\b{re.escape(program)}\b", rest) for w, rest in stage)

    def check_dockerfile(self) -> None:
        stage = self._final_stage()
        if stage is None:
            self.problem("Dockerfile", "missing")
            return
        if not stage:
            self.problem("Dockerfile", "has no FROM")
            return
        text = (self.root / "Dockerfile").read_text(encoding="utf-8")
        froms = re.findall(r"^FROM\s+(\S+)", text, re.M | re.I)
        if len(froms) < 2:
            self.problem("Dockerfile", "is not multi-stage (builder + runtime)")
        users = [rest for w, rest in stage if w == "USER"]
        if not users:
            self.problem("Dockerfile", "final stage has no USER (it would run as root)")
        elif users[-1].split(":")[0] in ("root", "0"):
            self.problem("Dockerfile", f"final stage runs as USER {users[-1]}")
        if not any(w == "ENTRYPOINT" and "gantry" in rest for w, rest in stage):
            self.problem("Dockerfile", "final stage has no ENTRYPOINT running gantry")
        for word, rest in stage:
            if word in ("ENV", "ARG") and re.search(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY)\w*\s*=", rest, re.I):
                self.problem("Dockerfile", f"{word} {rest.split('=')[0]} bakes a secret into the image")
        env = " ".join(rest for w, rest in stage if w == "ENV")
        if "ROCKET_ADDRESS=0.0.0.0" not in env:
            self.problem("Dockerfile", "final stage does not set ROCKET_ADDRESS=0.0.0.0")
        expose = " ".join(rest for w, rest in stage if w == "EXPOSE")
        port = re.search(r"ROCKET_PORT=(\d+)", env)
        if port and port.group(1) not in expose.replace("/tcp", "").split():
            self.problem("Dockerfile", f"EXPOSE does not include ROCKET_PORT {port.group(1)}")
        if "cargo build" in text and "--locked" not in text:
            self.problem("Dockerfile", "cargo build without --locked")
        if len(froms) >= 2:
            distro = re.compile(r"(bookworm|bullseye|trixie|jammy|noble|alpine)")
            releases = {m.group(1) if (m := distro.search(f)) else None for f in froms}
            if None not in releases and len(releases) > 1:
                self.problem("Dockerfile", f"builder and runtime use different distributions {sorted(releases)} (glibc mismatch)")

        ignore = self.root / ".dockerignore"
        if not ignore.is_file():
            self.problem(".dockerignore", "missing (target/, .env and .git would enter the build context)")
        else:
            lines = [l.strip() for l in ignore.read_text(encoding="utf-8").splitlines() if l.strip() and not l.startswith("#")]
            whitelist = lines and lines[0] == "*"
            if whitelist:
                included = {l[1:].strip("/") for l in lines if l.startswith("!")}
                for copied in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M):
                    for src in copied.split()[:-1]:
                        top = src.strip("./").split("/")[0]
                        if top and top not in included:
                            self.problem(".dockerignore", f"excludes {src}, which the Dockerfile copies")
            else:
                for needed in ("target", ".env", ".git"):
                    if not any(l.strip("/") in (needed, f"**/{needed}") for l in lines):
                        self.problem(".dockerignore", f"does not exclude {needed}")

    # ----------------------------------------------------------------------------- realm
    def check_realm(self, compose: dict | None) -> None:
        path = self.root / REALM_FILE
        if not path.is_file():
            self.problem(REALM_FILE, "missing")
            return
        try:
            realm = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            self.problem(REALM_FILE, f"does not parse: {err}")
            return
        if realm.get("realm") != "gantry":
            self.problem(REALM_FILE, f"realm is {realm.get('realm')!r}, not 'gantry'")
        if realm.get("enabled") is not True:
            self.problem(REALM_FILE, "realm is not enabled")
        if realm.get("accessTokenLifespan") != 300:
            self.problem(REALM_FILE, f"accessTokenLifespan is {realm.get('accessTokenLifespan')!r}, not 300")
        roles = {r.get("name") for r in (realm.get("roles") or {}).get("realm", [])}
        if ADMIN_ROLE not in roles:
            self.problem(REALM_FILE, f"realm role {ADMIN_ROLE!r} is missing")
        if "clientScopes" in realm:
            names = {s.get("name") for s in realm["clientScopes"]}
            for scope in REQUIRED_CLIENT_SCOPES:
                if scope not in names:
                    self.problem(REALM_FILE, f"declares clientScopes without {scope!r}: Keycloak then creates none of its built-in scopes")

        audience = DEFAULT_AUDIENCE
        if compose:
            for svc in compose.get("services", {}).values():
                if isinstance(svc, dict) and self._is_gantry(svc):
                    audience = resolve(env_map(svc).get("KEYCLOAK_AUDIENCE", audience))
                    issuer = resolve(env_map(svc).get("KEYCLOAK_ISSUER", ""))
                    if issuer and not issuer.rstrip("/").endswith(f"/realms/{realm.get('realm')}"):
                        self.problem(REALM_FILE, f"realm {realm.get('realm')!r} does not match KEYCLOAK_ISSUER {issuer}")
                    jwks = resolve(env_map(svc).get("KEYCLOAK_JWKS_URI", ""))
                    if jwks and f"/realms/{realm.get('realm')}/protocol/openid-connect/certs" not in jwks:
                        self.problem(REALM_FILE, f"realm {realm.get('realm')!r} does not match KEYCLOAK_JWKS_URI {jwks}")
        clients = {c.get("clientId"): c for c in realm.get("clients") or []}
        client = clients.get("gantry")
        if client is None:
            self.problem(REALM_FILE, "client 'gantry' is missing")
        else:
            where = f"{REALM_FILE} client gantry"
            for flag in ("enabled", "publicClient", "directAccessGrantsEnabled", "standardFlowEnabled"):
                if client.get(flag) is not True:
                    self.problem(where, f"{flag} is not true")
            if not any(str(u).startswith("http://localhost:") for u in client.get("redirectUris") or []):
                self.problem(where, "has no http://localhost:* redirect URI")
            mappers = [m for m in client.get("protocolMappers") or [] if m.get("protocolMapper") == "oidc-audience-mapper"]
            if not any((m.get("config") or {}).get("included.client.audience") == audience
                       and str((m.get("config") or {}).get("access.token.claim")) == "true" for m in mappers):
                self.problem(where, f"no oidc-audience-mapper adds {audience!r} to access tokens (KEYCLOAK_AUDIENCE)")
            scopes = client.get("defaultClientScopes")
            if scopes is not None:
                for scope in REQUIRED_CLIENT_SCOPES:
                    if scope not in scopes:
                        self.problem(where, f"defaultClientScopes lacks {scope!r}")
        console = clients.get(CONSOLE_CLIENT)
        if console is None:
            self.problem(REALM_FILE, f"client {CONSOLE_CLIENT!r} (the console's log-in) is missing")
        else:
            where = f"{REALM_FILE} client {CONSOLE_CLIENT}"
            for flag, wanted in (("enabled", True), ("publicClient", True), ("standardFlowEnabled", True),
                                 ("directAccessGrantsEnabled", False), ("implicitFlowEnabled", False)):
                if console.get(flag) is not wanted:
                    self.problem(where, f"{flag} is not {str(wanted).lower()} (authorization code + PKCE only)")
            if (console.get("attributes") or {}).get("pkce.code.challenge.method") != "S256":
                self.problem(where, "does not require PKCE S256")
            if not any(str(u).startswith(f"http://localhost:{DEFAULT_ROCKET_PORT}/console/")
                       for u in console.get("redirectUris") or []):
                self.problem(where, f"has no http://localhost:{DEFAULT_ROCKET_PORT}/console/ redirect URI")
            mappers = [m for m in console.get("protocolMappers") or [] if m.get("protocolMapper") == "oidc-audience-mapper"]
            if not any((m.get("config") or {}).get("included.client.audience") == audience for m in mappers):
                self.problem(where, f"no oidc-audience-mapper adds {audience!r} to access tokens (KEYCLOAK_AUDIENCE)")
        users = {u.get("username"): u for u in realm.get("users") or []}
        for username, is_admin in DEMO_USERS.items():
            user = users.get(username)
            where = f"{REALM_FILE} user {username}"
            if user is None:
                self.problem(REALM_FILE, f"demo user {username!r} is missing")
                continue
            if user.get("enabled") is not True:
                self.problem(where, "is not enabled")
            if user.get("emailVerified") is not True or not user.get("email"):
                self.problem(where, "has no verified email")
            # Keycloak 24+'s user profile requires these; without them the password grant answers
            # "Account is not fully set up".
            for attr in ("firstName", "lastName"):
                if not user.get(attr):
                    self.problem(where, f"has no {attr} (the password grant would fail: account not fully set up)")
            if user.get("requiredActions"):
                self.problem(where, f"has required actions {user['requiredActions']} (the password grant would fail)")
            passwords = [c for c in user.get("credentials") or [] if c.get("type") == "password"]
            if not passwords or passwords[0].get("value") != username:
                self.problem(where, f"password is not {username!r}")
            elif passwords[0].get("temporary") is not False:
                self.problem(where, "password is not explicitly non-temporary")
            has_admin = ADMIN_ROLE in (user.get("realmRoles") or [])
            if has_admin != is_admin:
                self.problem(where, f"{'lacks' if is_admin else 'holds'} realm role {ADMIN_ROLE}")

    # ----------------------------------------------------------------------------- flake
    def check_flake(self) -> None:
        path = self.root / "flake.nix"
        if not path.is_file():
            self.problem("flake.nix", "missing")
            return
        nix = shutil.which("nix-instantiate")
        if nix is None:
            self.problem("flake.nix", "cannot be checked: nix-instantiate not found (apt-get install -y nix-bin)")
        else:
            run = subprocess.run([nix, "--parse", str(path)], capture_output=True, text=True)
            if run.returncode != 0:
                first = (run.stderr.strip().splitlines() or ["(no output)"])[0]
                self.problem("flake.nix", f"does not parse: {first}")
        text = path.read_text(encoding="utf-8")
        if "./Cargo.lock" not in text:
            self.problem("flake.nix", "does not use ./Cargo.lock (cargoLock.lockFile)")
        lock = self.root / "Cargo.lock"
        if lock.is_file():
            git = sorted(set(re.findall(r'^source = "git\+([^"#?]+)', lock.read_text(encoding="utf-8"), re.M)))
            if git and "outputHashes" not in text:
                self.problem("flake.nix", f"Cargo.lock has git dependencies ({', '.join(git)}): cargoLock needs outputHashes")

    def run(self) -> list[str]:
        compose = self.check_compose()
        self.check_dockerfile()
        self.check_realm(compose)
        self.check_flake()
        return self.problems


def check(root: Path) -> list[str]:
    return Checker(root).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    if yaml is None:
        print("ci/check_deploy.py: PyYAML is not installed (python3 -m pip install pyyaml)")
        return 2
    problems = check(args.root)
    for line in problems:
        print(line)
    if problems:
        print(f"check_deploy: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_deploy: docker-compose.yml, Dockerfile, .dockerignore, realm and flake.nix are consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
