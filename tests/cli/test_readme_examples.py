"""The README's curl examples, run as written against a demo server: every one answers data.

`gateway seed-demo` prints the ids of the first demo office; the examples read
them from shell variables, so a newcomer's first queries answer with data of the
office their key reads (not null or NOT_FOUND from the other office's ids).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from waiting import eventually_blocking

ROOT = Path(__file__).resolve().parent.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Querying the screens")
    section = readme[start : readme.index("\n## ", start + 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("q '")]


def test_every_readme_example_answers_data_for_the_demo_office(tmp_path: Path) -> None:
    # given a demo database, the ids seed-demo prints, a key for the same office, and a server
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_PURGE_INTERVAL_SECONDS": "0",
    }
    gateway = [sys.executable, "-m", "gateway.cli"]
    seeded = subprocess.run(
        [*gateway, "seed-demo", "--emails", "120"],
        env=env,
        cwd=tmp_path,  # noqa: S603
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    ids = dict(line.split("=", 1) for line in seeded.splitlines() if "=" in line)
    key = (
        subprocess.run(
            [*gateway, "create-api-key", "--tenant", "Demo Accountants"],
            env=env,
            cwd=tmp_path,  # noqa: S603
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = _free_port()
    server = subprocess.Popen(
        [*gateway, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,  # noqa: S603
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            assert server.poll() is None, "gateway serve exited"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        eventually_blocking(up, what="gateway serve answering /healthz", every=0.1)
        examples = _examples()
        # when: each example, as a newcomer pastes it, with `q` pointing at this server
        q = (
            f'q() {{ curl -s http://127.0.0.1:{port}/graphql -H "Authorization: Bearer $KEY" '
            "-H 'Content-Type: application/json' -d \"$1\"; echo; }"
        )
        answers = []
        for example in examples:
            script = f"{q}\n{example}\n"
            done = subprocess.run(
                ["bash", "-c", script],
                env={**env, "KEY": key, **ids},  # noqa: S603, S607
                check=True,
                capture_output=True,
                text=True,
            )
            answers.append((example, json.loads(done.stdout)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    # then: the ids belong to the demo office, and every example answers data without errors
    assert set(ids) == {"EMAIL", "FAILED_EMAIL", "RELATION"}
    assert len(examples) >= 6
    for example, answer in answers:
        assert "errors" not in answer, (example, answer)
        assert answer["data"] and all(value is not None for value in answer["data"].values()), (example, answer)
    details = next(a for e, a in answers if "FAILED_EMAIL" in e)
    assert details["data"]["email"]["details"]["status"] == "DELIVERY_FAILED"
    assert details["data"]["email"]["details"]["failure"]["reason"]
