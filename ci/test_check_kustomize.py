"""Tests of ci/check_kustomize.py: the repository's package passes, and breakages are caught.

    python3 -m unittest discover -s ci -p 'test_*.py'
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kustomize  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HAVE_TOOLS = (shutil.which("kubectl") or shutil.which("kustomize")) and shutil.which("kubernetes-validate")


@unittest.skipUnless(HAVE_TOOLS, "needs kubectl (or kustomize) and kubernetes-validate")
class CheckKustomizeTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        shutil.copy(REPO / "README.md", self.root / "README.md")
        shutil.copytree(REPO / "deploy", self.root / "deploy")

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def problems(self) -> list[str]:
        checker = check_kustomize.Checker(self.root, self.root / "out")
        checker.run()
        return checker.problems

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        self.assertIn(old, text)
        path.write_text(text.replace(old, new, 1))

    def test_repository_package_passes(self) -> None:
        self.assertEqual(self.problems(), [])

    def test_rbac_drift_is_caught(self) -> None:
        self.edit("deploy/kubernetes/gantry-rbac.yaml", '"watch", "create"', '"create"')
        self.assertTrue(any("rules differ" in p for p in self.problems()))

    def test_wrong_probe_is_caught(self) -> None:
        self.edit("deploy/kustomize/components/roles/codegen-runner/deployment.yaml",
                  "path: /health/ready", "path: /ready")
        self.assertTrue(any("readinessProbe must GET /health/ready" in p for p in self.problems()))

    def test_unknown_field_fails_strict_validation(self) -> None:
        self.edit("deploy/kustomize/base/service.yaml", "  type: ClusterIP", "  type: ClusterIP\n  typo: 1")
        self.assertTrue(any("kubernetes-validate" in p for p in self.problems()))

    def test_scaled_object_on_wrong_queue_is_caught(self) -> None:
        self.edit("deploy/kustomize/components/keda/codegen-runner/scaledobject.yaml",
                  'queue="codegen"', 'queue="codgen"')
        self.assertTrue(any("no trigger on gantry_queue_depth" in p for p in self.problems()))

    def test_undocumented_setting_is_caught(self) -> None:
        self.edit("deploy/kustomize/README.md", "| `GANTRY_LOG` |", "| log |")
        self.assertTrue(any("does not document GANTRY_LOG" in p for p in self.problems()))


if __name__ == "__main__":
    unittest.main()
