"""The magic and the form in a real IPython kernel, started by ``jupyter_client`` as
JupyterLab starts one, against the local emulator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bedrock_batch_nb.local import LocalBedrock

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
JOKE = "Tell me a joke about {topic} in less than 50 words.\n"


@pytest.mark.parametrize(
    ("load", "launch", "wait"),
    [
        (
            "%load_ext bedrock_batch_nb",
            f"%%bedrock_batch df --model {HAIKU} --out jokes --quiet "
            f"--records-per-job 100 --option poll_interval=0.05\n{JOKE}",
            "_ = jokes_run.wait(60)",  # (the magic binds `jokes` before wait() returns)
        ),
        (
            "from bedrock_batch_nb import form\n"
            "f = form(df, model=HAIKU, out='jokes', poll_interval=0.05)",
            "f.prompt.value = JOKE\nf.records_per_job.value = 100\nf.launch_button.click()\n"
            "assert f.problems == [], f.problems",
            "_ = f.wait(60)",  # (until the form has bound `jokes`)
        ),
    ],
    ids=["magic", "form"],
)
def test_a_fresh_kernels_first_run_is_not_held_up_by_a_full_garbage_collection(
    aws: LocalBedrock, tmp_path: Path, load: str, launch: str, wait: str
) -> None:
    """Loading the magic, or making a form, pays for the garbage collection that its
    imports made due: a full collection scans every object in the kernel while holding
    the GIL (~90 ms), and without this one fell into the first run's background thread
    and held the kernel's event loop.  From then to the first run's end, none may
    happen."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, **aws.env, "BEDROCK_BATCH_CACHE_DIR": str(tmp_path)}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:

        def execute(code: str) -> str:
            printed: list[str] = []

            def hook(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream":
                    printed.append(msg["content"]["text"])

            reply = client.execute_interactive(code, timeout=120, output_hook=hook)
            assert reply["content"]["status"] == "ok", reply["content"]
            return "".join(printed)

        execute(
            "import pandas as pd\n"
            "df = pd.DataFrame({'topic': [f'topic number {i}' for i in range(150)]})\n"
            f"HAIKU, JOKE = {HAIKU!r}, {JOKE!r}\n"
        )
        execute(
            f"{load}\n"
            "import gc, threading\n"
            "full = []\n"
            "gc.callbacks.append(lambda phase, info: full.append(threading.current_thread().name)"
            " if phase == 'start' and info['generation'] == 2 else None)\n"
        )
        execute(launch)
        execute(wait)
        assert execute("print(len(jokes), jokes['response'].notna().sum())") == "150 150\n"
        assert execute("print(full)") == "[]\n"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
