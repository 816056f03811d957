"""The AsyncAPI CLI (npm @asyncapi/cli, a devDependency) finds docs/asyncapi.yaml valid, so
a broken document fails the suite even when pytest runs without `make test`.

Skipped only where node_modules lacks the CLI (`make test` installs it); in CI (CI=true)
that is a failure. The CLI runs as `make test` runs it: no analytics, no update check,
no stdin, so it neither phones home nor waits for anyone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .validate import DOCUMENT, ROOT

ASYNCAPI = ROOT / "node_modules" / ".bin" / "asyncapi"
ANALYTICS = Path(__file__).with_name("asyncapi-analytics.json")  # says: disabled
MISSING = "node_modules/.bin/asyncapi not installed: run make test (or npm ci)"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ASYNCAPI_METRICS_CONFIG_PATH": str(ANALYTICS),
        "ASYNCAPI_SKIP_NEW_VERSION_CHECK": "true",
    }
    return subprocess.run(
        [str(ASYNCAPI), "validate", str(path), "--fail-severity", "warn"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


needs_cli = pytest.mark.skipif(
    not ASYNCAPI.exists() and os.environ.get("CI") != "true", reason=MISSING
)


@needs_cli
def test_the_document_is_valid_asyncapi() -> None:
    assert ASYNCAPI.exists(), MISSING
    out = validate(DOCUMENT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid" in out.stdout


@needs_cli
def test_the_cli_refuses_a_broken_document(tmp_path: Path) -> None:
    # So that the test above could fail: an operation that points at no message.
    assert ASYNCAPI.exists(), MISSING
    text = DOCUMENT.read_text(encoding="utf-8")
    good = "$ref: '#/channels/metrics/messages/metrics.update'"
    assert good in text
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(text.replace(good, "$ref: '#/channels/metrics/messages/nope'", 1))
    out = validate(broken)
    assert out.returncode != 0
    assert "does not exist" in out.stdout + out.stderr
