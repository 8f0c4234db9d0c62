"""The form notebook in a real JupyterLab in a real Chromium.

JupyterLab is started on 127.0.0.1 with a random token and port, over a temporary copy of
``notebooks/form.ipynb``; Debian's chromium (Playwright cannot download its own browser
here) runs the notebook's cells up to the form, clicks Preview and Launch, and checks that
the preview table, the live progress and the final result table render.

Chromium is required: without it the test fails with a message saying how to install it
(``apt-get install -y chromium``; ``.ci/run`` does).  Set ``CHROMIUM`` to use another
binary, or ``SKIP_BROWSER_TESTS=1`` to skip on a machine that cannot have one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "form.ipynb"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
STARTUP_SECONDS = 90
FORM_CELL_TIMEOUT_MS = 120_000
KERNEL_TIMEOUT_MS = 90_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def form_cell_index() -> int:
    """Position of the cell that displays the form (the one that calls ``form(``)."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and "form(" in "".join(cell["source"]):
            return i
    raise AssertionError("notebooks/form.ipynb has no cell that calls form(")


@pytest.fixture(scope="module")
def chromium() -> str:
    if os.environ.get("SKIP_BROWSER_TESTS") == "1":
        pytest.skip("SKIP_BROWSER_TESTS=1")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"No Chromium at {CHROMIUM}: install it (Debian: apt-get install -y chromium), "
            "set CHROMIUM=/path/to/chromium, or SKIP_BROWSER_TESTS=1 to skip this test.",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab on loopback over a copy of the form notebook; yields its base URL."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false"})
    )
    settings = root / ".settings"
    token = secrets.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.allow_root=True",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=None",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"JupyterLab did not start:\n{(root / 'lab.log').read_text()[-3000:]}"
                    ) from None
                time.sleep(0.3)
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
    finally:
        try:
            request = urllib.request.Request(
                f"{base}/api/shutdown?token={token}", method="POST", data=b""
            )
            urllib.request.urlopen(request, timeout=5).close()
            proc.wait(15)
        except Exception:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def test_form_previews_launches_and_shows_the_result(
    chromium: str, jupyterlab: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(jupyterlab)
            cells = page.locator(".jp-NotebookPanel .jp-Cell")
            expect(cells.first).to_be_visible(timeout=60_000)
            # Wait for the kernel: cells run before it is ready are silently not run.
            kernel_idle = page.get_by_role("button", name=re.compile(r"Python 3.*\| Idle"))
            expect(kernel_idle).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
            # Run the cells up to and including the one that shows the form, as a user
            # would: select the first cell and press Shift+Enter on each.
            cells.first.click()
            page.keyboard.press("Escape")
            for _ in range(form_cell_index() + 1):
                page.keyboard.press("Shift+Enter")
            form = page.locator(".bedrock-batch-form")
            expect(form).to_be_visible(timeout=FORM_CELL_TIMEOUT_MS)
            expect(form.locator("textarea").first).to_have_value(
                "Tell me a joke about {topic} in less than 50 words."
            )

            form.get_by_role("button", name="Preview").click()
            preview = form.locator(".bedrock-batch-preview table")
            expect(preview).to_be_visible(timeout=30_000)
            expect(preview).to_contain_text("Tell me a joke about cats #0 in less than 50 words.")
            expect(form.locator(".bedrock-batch-messages")).to_contain_text("Nothing was submitted")

            form.get_by_role("button", name="Launch").click()
            progress = form.locator(".bedrock-batch-progress")
            expect(progress).to_be_visible(timeout=30_000)
            expect(progress.locator(".widget-progress, .progress").first).to_be_visible()
            result = form.locator(".bedrock-batch-result table")
            expect(result).to_be_visible(timeout=60_000)
            expect(result).to_contain_text("Local reply to: Tell me a joke about cats #0")
            expect(form.locator(".bedrock-batch-result")).to_contain_text("bound to jokes")
            expect(progress.locator(".bedrock-batch-jobs")).to_contain_text("Completed")
            expect(progress.locator(".bedrock-batch-timeline")).to_be_visible()
            expect(progress).to_contain_text("120/120")
            page.screenshot(path=str(tmp_path / "form.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
