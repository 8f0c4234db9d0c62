"""The real-browser tests: JupyterLab on loopback driven by Debian's chromium (Playwright)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in a real Chromium (needs /usr/bin/chromium)"
    )
