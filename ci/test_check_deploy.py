"""Tests of ci/check_deploy.py: the repository's files pass, and each kind of breakage is caught.

    python3 -m unittest discover -s ci -p 'test_*.py'
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_deploy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FILES = ("README.md", "docker-compose.yml", "Dockerfile", ".dockerignore", "flake.nix", "Cargo.lock")
HAVE_NIX = shutil.which("nix-instantiate") is not None


class CheckDeployTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        for name in FILES:
            shutil.copy(REPO / name, self.root / name)
        shutil.copytree(REPO / "deploy", self.root / "deploy")
        # The Rust workspace is only looked at as a build context.
        (self.root / "src").mkdir()
        (self.root / "migration").mkdir()
        # prometheus/ and grafana/ belong to another part of the repository: use the real ones
        # where they exist, stubs where they do not yet.
        for rel, stub in (
            ("prometheus/prometheus.yml", "scrape_configs: [{job_name: gantry-api}, {job_name: gantry-workers}]\n"),
            ("prometheus/alerts.yml", "groups: []\n"),
        ):
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / rel).is_file():
                shutil.copy(REPO / rel, target)
            else:
                target.write_text(stub)
        for rel in ("grafana/provisioning", "grafana/dashboards"):
            if (REPO / rel).is_dir():
                shutil.copytree(REPO / rel, self.root / rel)
            else:
                (self.root / rel).mkdir(parents=True)

    def tearDown(self) -> None:
        self.tmp.cleanup()

    # helpers ---------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        found = check_deploy.check(self.root)
        if not HAVE_NIX:
            found = [p for p in found if "nix-instantiate not found" not in p]
        return found

    def compose(self, mutate) -> None:
        path = self.root / "docker-compose.yml"
        doc = yaml.safe_load(path.read_text())
        mutate(doc)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def realm(self, mutate) -> None:
        path = self.root / "deploy/keycloak/gantry-realm.json"
        doc = json.loads(path.read_text())
        mutate(doc)
        path.write_text(json.dumps(doc))

    def assertProblem(self, fragment: str) -> None:
        found = self.problems()
        self.assertTrue(any(fragment in p for p in found), f"no problem mentions {fragment!r}; got {found}")

    # the repository ------------------------------------------------------------------------------
    def test_repository_files_pass(self) -> None:
        self.assertEqual(self.problems(), [])

    def test_documented_variables_come_from_the_readme(self) -> None:
        patterns = check_deploy.documented_variables(REPO / "README.md")
        names = ["DATABASE_URL", "KEYCLOAK_JWKS_URI", "GANTRY_QUEUE_PROBE_CONCURRENCY"]
        for name in names:
            self.assertTrue(any(p.match(name) for p in patterns), name)
        self.assertFalse(any(p.match("GANTRY_TYPO") for p in patterns))

    def test_interpolation_defaults(self) -> None:
        self.assertEqual(check_deploy.resolve("a${X:-b}c${Y-d}${Z}$$"), "abcd$")

    # compose -----------------------------------------------------------------------------------
    def test_missing_service(self) -> None:
        self.compose(lambda d: d["services"].pop("grafana"))
        self.assertProblem("service 'grafana' is missing")

    def test_dependency_without_healthcheck(self) -> None:
        self.compose(lambda d: d["services"]["redis"].pop("healthcheck"))
        self.assertProblem("depends_on redis: redis has no healthcheck")

    def test_dependency_without_healthy_condition(self) -> None:
        def mutate(d):
            d["services"]["gantry-api"]["depends_on"]["postgres"]["condition"] = "service_started"
        self.compose(mutate)
        self.assertProblem("condition is 'service_started'")

    def test_undocumented_variable(self) -> None:
        self.compose(lambda d: d["services"]["gantry-workers"]["environment"].update(GANTRY_TYPO="1"))
        self.assertProblem("GANTRY_TYPO is not a variable the binary documents")

    def test_missing_and_wrong_production_variables(self) -> None:
        def mutate(d):
            env = d["services"]["gantry-api"]["environment"]
            env.pop("KEYCLOAK_ISSUER")
            env["GANTRY_ENV"] = "development"
        self.compose(mutate)
        self.assertProblem("environment lacks KEYCLOAK_ISSUER")
        self.assertProblem("GANTRY_ENV='development'")

    def test_database_password_mismatch(self) -> None:
        def mutate(d):
            d["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "other"
        self.compose(mutate)
        self.assertProblem("password does not match")

    def test_jwks_host_is_not_a_service(self) -> None:
        def mutate(d):
            d["services"]["gantry-api"]["environment"]["KEYCLOAK_JWKS_URI"] = (
                "http://keycloack:8080/realms/gantry/protocol/openid-connect/certs"
            )
        self.compose(mutate)
        self.assertProblem("KEYCLOAK_JWKS_URI points at host 'keycloack'")

    def test_duplicate_host_port(self) -> None:
        self.compose(lambda d: d["services"]["grafana"].update(ports=["8000:3000"]))
        self.assertProblem("host port 8000/tcp is also published by gantry-api")

    def test_api_port_differs_from_rocket_port(self) -> None:
        self.compose(lambda d: d["services"]["gantry-api"].update(ports=["8001:8001"]))
        self.assertProblem("publishes container port 8001 but gantry listens on ROCKET_PORT=8000")

    def test_workers_not_scalable(self) -> None:
        self.compose(lambda d: d["services"]["gantry-workers"].update(container_name="w", ports=["8002:8000"]))
        self.assertProblem("has container_name")
        self.assertProblem("publishes host ports")

    def test_missing_bind_mount_source(self) -> None:
        shutil.rmtree(self.root / "grafana/dashboards")
        self.assertProblem("bind-mounted path ./grafana/dashboards does not exist")

    def test_short_stop_grace_period(self) -> None:
        self.compose(lambda d: d["services"]["gantry-workers"].pop("stop_grace_period"))
        self.assertProblem("stop_grace_period")

    def test_grafana_provisioning_points_nowhere(self) -> None:
        datasources = self.root / "grafana/provisioning/datasources"
        datasources.mkdir(parents=True, exist_ok=True)
        (datasources / "zz-test.yml").write_text(
            "apiVersion: 1\ndatasources:\n  - name: P\n    type: prometheus\n    url: http://localhost:9090\n"
        )
        dashboards = self.root / "grafana/provisioning/dashboards"
        dashboards.mkdir(parents=True, exist_ok=True)
        (dashboards / "zz-test.yml").write_text(
            "apiVersion: 1\nproviders:\n  - name: d\n    options:\n      path: /dashboards\n"
        )
        self.assertProblem("url http://localhost:9090 is no compose service")
        self.assertProblem("dashboard provider path /dashboards is not a mounted directory")

    def test_keycloak_healthcheck_with_curl(self) -> None:
        def mutate(d):
            d["services"]["keycloak"]["healthcheck"]["test"] = ["CMD", "curl", "-f", "http://localhost:8080/"]
        self.compose(mutate)
        self.assertProblem("which the Keycloak image does not have")

    # Dockerfile --------------------------------------------------------------------------------
    def test_root_user(self) -> None:
        path = self.root / "Dockerfile"
        path.write_text(path.read_text().replace("USER 10001:10001", "USER root"))
        self.assertProblem("final stage runs as USER root")

    def test_no_user(self) -> None:
        path = self.root / "Dockerfile"
        path.write_text(path.read_text().replace("USER 10001:10001\n", ""))
        self.assertProblem("final stage has no USER")

    def test_curl_healthcheck_needs_curl_in_image(self) -> None:
        path = self.root / "Dockerfile"
        path.write_text(path.read_text().replace("ca-certificates curl", "ca-certificates"))
        self.assertProblem("uses curl but the Dockerfile's final stage does not install it")

    def test_dockerignore_hides_copied_path(self) -> None:
        path = self.root / ".dockerignore"
        path.write_text(path.read_text().replace("!migration/\n", ""))
        self.assertProblem("excludes migration/Cargo.toml")

    # realm -------------------------------------------------------------------------------------
    def test_temporary_password(self) -> None:
        self.realm(lambda r: r["users"][0]["credentials"][0].update(temporary=True))
        self.assertProblem("user alice: password is not explicitly non-temporary")

    def test_user_without_names(self) -> None:
        self.realm(lambda r: r["users"][0].pop("lastName"))
        self.assertProblem("user alice: has no lastName")

    def test_admin_without_role(self) -> None:
        self.realm(lambda r: r["users"][1].pop("realmRoles"))
        self.assertProblem("user admin: lacks realm role gantry-admin")

    def test_no_audience_mapper(self) -> None:
        self.realm(lambda r: r["clients"][0].update(protocolMappers=[]))
        self.assertProblem("no oidc-audience-mapper adds 'gantry'")

    def test_declared_client_scopes_suppress_builtins(self) -> None:
        self.realm(lambda r: r.update(clientScopes=[{"name": "gantry-extra"}]))
        self.assertProblem("declares clientScopes without 'basic'")

    def test_missing_default_scope(self) -> None:
        self.realm(lambda r: r["clients"][0]["defaultClientScopes"].remove("roles"))
        self.assertProblem("defaultClientScopes lacks 'roles'")

    # flake -------------------------------------------------------------------------------------
    @unittest.skipUnless(HAVE_NIX, "nix-instantiate is not installed")
    def test_flake_syntax_error(self) -> None:
        path = self.root / "flake.nix"
        path.write_text(path.read_text().replace("inputs = {", "inputs = {{", 1))
        self.assertProblem("flake.nix: does not parse")


if __name__ == "__main__":
    unittest.main()
