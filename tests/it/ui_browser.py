#!/usr/bin/env python3
"""Drive the dashboard in a real headless Chromium over the Chrome DevTools Protocol.

Started by tests/it/ui_browser.rs with a running server. Standard library only: a minimal
WebSocket client (RFC 6455, text frames, client masking) talks CDP to the page target.

Arguments (environment): ZADIG_UI_BASE (server URL), ZADIG_UI_ADMIN_TOKEN, ZADIG_UI_USER_TOKEN
(a user without rights), ZADIG_UI_WORKFLOW (a workflow whose `slow` job prints lines slowly
and whose second stage waits for the admin's approval), ZADIG_UI_TICKER (a workflow whose
`tick` job prints `tick 1` … `tick 40` a quarter second apart), CHROMIUM (browser binary),
ZADIG_UI_SCREENSHOTS (directory for screenshots; optional). Exits non-zero on the first
failed check, naming it.
"""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

BASE = os.environ["ZADIG_UI_BASE"].rstrip("/")
ADMIN = os.environ["ZADIG_UI_ADMIN_TOKEN"]
USER = os.environ["ZADIG_UI_USER_TOKEN"]
WORKFLOW = os.environ["ZADIG_UI_WORKFLOW"]
TICKER = os.environ["ZADIG_UI_TICKER"]
CHROMIUM = os.environ.get("CHROMIUM", "chromium")
SHOTS = os.environ.get("ZADIG_UI_SCREENSHOTS", "")


def log(msg):
    print(f"[ui-browser] {msg}", flush=True)


def fail(msg):
    log(f"FAILED: {msg}")
    sys.exit(1)


# --- the API, as a client of the OpenAPI would use it --------------------------------------
def api(method, path, body=None, token=ADMIN):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


# --- a minimal WebSocket client ------------------------------------------------------------
class WebSocket:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head!r}")

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def send(self, text):
        payload = text.encode()
        header = bytearray([0x81])  # FIN + text
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + masked)

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:  # ping → pong
                continue
            message += data
            if b0 & 0x80:
                return message.decode()


class CdpError(Exception):
    """A DevTools command failed (e.g. evaluating while the page navigates)."""


# --- the browser ---------------------------------------------------------------------------
class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="zadig-ui-chromium-")
        args = [
            CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
            "--window-size=1280,900", "--hide-scrollbars", "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root (CI).
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if self.proc.poll() is not None:
                fail(f"chromium exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            if time.time() > deadline:
                fail("chromium did not open its DevTools port within 30 s")
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.cmd("Page.enable")
        self.cmd("Runtime.enable")
        # Every page records what its Content-Security-Policy blocked (see assert_clean).
        self.cmd("Page.addScriptToEvaluateOnNewDocument", source=(
            "window.__csp = []; document.addEventListener('securitypolicyviolation', function (e) {"
            " window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });"))
        self.viewport(1280, 900, False)

    def close(self):
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - best effort
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def cmd(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def viewport(self, width, height, mobile):
        self.cmd("Emulation.setDeviceMetricsOverride", width=width, height=height,
                 deviceScaleFactor=1, mobile=mobile)

    def js(self, expression):
        r = self.cmd("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise CdpError(f"script failed: {expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, what, expression, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                if self.js(expression):
                    return
            except CdpError:
                pass  # the page is between documents; ask again
            time.sleep(0.1)
        fail(f"timed out waiting for {what} ({expression}); page: {self.text()[:1500]}")

    def go(self, path, base=None):
        self.cmd("Page.navigate", url=(base or BASE) + path)
        self.wait_loaded()

    def wait_loaded(self):
        time.sleep(0.15)
        self.wait("the page to load", "document.readyState === 'complete'")

    def path(self):
        return self.js("location.pathname + location.search")

    def text(self):
        return self.js("document.body ? document.body.innerText : ''") or ""

    def click(self, selector):
        """Click like a user: focus the element and press it, then wait for the next page."""
        found = self.js(f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                        f"if(!e) return false; window.__before_click = true; e.focus(); e.click();"
                        f" return true;}})()")
        if not found:
            fail(f"no element {selector} on {self.path()}: {self.text()[:1500]}")
        self.wait(f"the page after clicking {selector}", "window.__before_click !== true")
        self.wait_loaded()

    def exists(self, selector):
        return self.js(f"document.querySelector({json.dumps(selector)}) !== null")

    def screenshot(self, name):
        if not SHOTS:
            return
        os.makedirs(SHOTS, exist_ok=True)
        size = self.cmd("Page.getLayoutMetrics")["cssContentSize"]
        width = self.js("window.innerWidth")
        height = min(int(size["height"]), 2400)
        shot = self.cmd("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        with open(os.path.join(SHOTS, name), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        log(f"screenshot {name} ({width}x{height})")


class Proxy:
    """A TCP proxy in front of the server whose open connections can be cut (a network drop)."""

    def __init__(self, target):
        t = urllib.parse.urlparse(target)
        self.target = (t.hostname, t.port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.base = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open = []


def assert_clean(b, where):
    """Nothing injected ran, and the page needed nothing its CSP blocks."""
    blocked = b.js("window.__csp || []")
    if blocked:
        fail(f"{where}: the Content-Security-Policy blocked {blocked}")
    if b.js("window.__xss !== undefined"):
        fail(f"{where}: injected markup ran (window.__xss = {b.js('window.__xss')})")


def sign_in(b, token):
    b.go("/ui/")
    if not b.path().startswith("/ui/login"):
        fail(f"/ui/ without a session did not lead to the sign-in page: {b.path()}")
    b.js(f"document.getElementById('token').value = {json.dumps(token)}")
    b.click("form[action='/ui/login'] button[type=submit]")
    b.wait("the plan list", "location.pathname === '/ui/plans'")


def sign_out(b):
    b.click("#sign-out")
    b.wait("the sign-in page", "location.pathname === '/ui/login'")
    b.go("/ui/plans")
    if not b.path().startswith("/ui/login"):
        fail(f"after signing out /ui/plans is still shown: {b.path()}")


def main():
    b = Browser()
    try:
        run(b)
    except CdpError as e:
        fail(str(e))
    finally:
        b.close()
    log("all checks passed")


def run(b):
    log("sign in as admin")
    sign_in(b, ADMIN)

    log("create a plan through the API and see it in the list")
    plan_id = api("POST", "/openapi/release_plan/v1", {
        "name": "Spring release", "manager": "admin", "manager_identity_type": "system",
        "description": "Ship the spring train: build, approve, release.",
        "jobs": [
            {"name": "Build and ship", "type": "workflow",
             "spec": {"workflow_key": WORKFLOW, "project_key": "demo", "parameters": [],
                      "inputs": [{"job_name": j, "job_type": "freestyle", "parameters": {}}
                                 for j in ("slow", "lint", "ship")]}},
            {"name": "Announce", "type": "text", "spec": {"content": "Post the release notes in #releases"}},
        ],
    })["id"]
    b.go("/ui/plans")
    if "Spring release" not in b.text():
        fail(f"the new plan is not in the list: {b.text()[:1500]}")
    assert_clean(b, "the plan list")

    log("move the plan on with the status buttons and execute the workflow job")
    b.click(f"a[href='/ui/plans/{plan_id}']")
    b.click("button[data-action='status-finish_planning']")
    b.click("button[data-action='status-executing']")
    b.wait("executing", "document.getElementById('plan-status').innerText.includes('executing')")
    b.click("button[data-action='execute']")
    b.wait("the task link", "document.querySelector(\"a[href*='/tasks/']\") !== null")

    log("open the task and watch the log of the slow job follow live")
    b.click("a[href*='/tasks/']")
    task_path = b.js("location.pathname")
    task_id = int(task_path.rsplit("/", 1)[1])
    b.go(f"{task_path}?job=slow")
    b.wait("the log to follow the SSE route", "!!document.getElementById('log-text').dataset.events")
    b.wait("line 3 in the live log", "document.getElementById('log-text').textContent.includes('line 3')")
    detail = api("GET", f"/openapi/workflows/custom/task?taskId={task_id}&workflowKey={WORKFLOW}")
    slow = next(j for s in detail["stages"] for j in s["jobs"] if j["name"] == "slow")
    shown = b.js("document.getElementById('log-text').textContent")
    if slow["status"] != "running" or "line 12" in shown:
        fail(f"the log lines did not appear before the job ended (job {slow['status']}): {shown!r}")
    log(f"live log shows {shown.count('line ')} lines while the job is {slow['status']}")
    b.wait("line 6 in the live log", "document.getElementById('log-text').textContent.includes('line 6')")
    assert_clean(b, "the task page")
    b.screenshot("task-live-log.png")

    log("approve the waiting stage with the button and see the task go on")
    b.wait("the approve button", "document.querySelector(\"button[data-action='approve-stage']\") !== null", 60)
    b.js("document.querySelector('.vote input[name=comment]').value = 'Looks good'")
    b.click("button[data-action='approve-stage']")
    b.wait("the task to pass", "document.getElementById('task-status').dataset.status === 'passed'", 60)
    b.wait("the log to end", "document.getElementById('log-state').innerText.includes('ended')")

    b.go(f"/ui/plans/{plan_id}")
    b.wait("the job done", "document.body.innerText.includes('done')", 30)
    assert_clean(b, "the plan page")
    b.screenshot("plan-detail.png")
    b.viewport(390, 844, True)
    b.go("/ui/plans")
    b.screenshot("plans-phone.png")
    b.viewport(1280, 900, False)

    reconnect(b)
    injected_markup(b)

    log("sign out")
    sign_out(b)

    log("a user without rights: no execute button, and 403 posting the form anyway")
    sign_in(b, USER)
    b.go(f"/ui/plans/{plan_id}")
    if "Announce" not in b.text():
        fail(f"the plan is not shown to the user: {b.text()[:1500]}")
    if b.exists("button[data-action='execute']") or b.exists("button[data-action^='status-']"):
        fail("a user without rights sees execute or status buttons")
    plan = api("GET", f"/openapi/release_plan/v1/{plan_id}")
    job = next(j for j in plan["jobs"] if j["name"] == "Announce")
    status = b.js(
        "fetch('/ui/plans/%s/jobs/%s/execute', {method: 'POST', body: new URLSearchParams("
        "{csrf: document.querySelector('input[name=csrf]').value, remark: 'sneaky'})})"
        ".then(function (r) { return r.status; })" % (plan_id, job["id"]))
    if status != 403:
        fail(f"posting the execute form without rights answered {status}, not 403")
    if api("GET", f"/openapi/release_plan/v1/{plan_id}")["jobs"][1]["status"] != "todo":
        fail("the job changed although the post was refused")
    sign_out(b)


def reconnect(b):
    log("the live log survives a dropped connection: every line once")
    proxy = Proxy(BASE)
    task = api("POST", "/openapi/workflows/custom/task", {
        "project_key": "demo", "workflow_key": TICKER, "parameters": [],
        "inputs": [{"job_name": "tick", "job_type": "freestyle", "parameters": {}}]})["task_id"]
    # The cookie is the host's, whatever the port: the page through the proxy is signed in.
    b.go(f"/ui/workflows/{TICKER}/tasks/{task}?job=tick", proxy.base)
    b.wait("tick 5 in the live log", "document.getElementById('log-text').textContent.includes('tick 5\\n')")
    proxy.cut()
    b.wait("the log to end", "document.getElementById('log-state').innerText.includes('ended')", 60)
    shown = b.js("document.getElementById('log-text').textContent")
    full = urllib.request.urlopen(urllib.request.Request(
        f"{BASE}/openapi/logs/log/v4/workflow/{TICKER}/{task}/tick",
        headers={"Authorization": f"Bearer {ADMIN}"}), timeout=30).read().decode()
    if shown != full:
        fail(f"after a reconnect the page shows {shown!r}, the log is {full!r}")
    assert_clean(b, "the reconnected log")


def injected_markup(b):
    log("markup in names, descriptions and log lines is shown as text and never runs")
    x = "<script>window.__xss=1</script>\"><img src=x onerror=\"window.__xss=2\">"
    api("POST", "/api/aslan/workflow/v4", {
        "name": "markup", "display_name": x, "project": "demo", "description": x,
        "concurrency_limit": -1,
        "stages": [{"name": x, "parallel": False, "jobs": [{
            "name": "say", "display_name": x, "type": "freestyle",
            "spec": {"properties": {"timeout": 5}, "steps": [{"name": "s", "type": "shell",
                     "spec": {"script": "echo '" + x + "'; sleep 2; echo '" + x + "'"}}]}}]}]})
    task = api("POST", "/openapi/workflows/custom/task", {
        "project_key": "demo", "workflow_key": "markup", "parameters": [],
        "inputs": [{"job_name": "say", "job_type": "freestyle", "parameters": {}}]})["task_id"]
    # While the job runs, its second line comes by the stream; then the page as rendered.
    b.go(f"/ui/workflows/markup/tasks/{task}?job=say")
    b.wait("both lines", "document.getElementById('log-text').textContent.split(%s).length === 3"
           % json.dumps(x), 30)
    for path in ["/ui/workflows", "/ui/workflows/markup", f"/ui/workflows/markup/tasks/{task}?job=say"]:
        b.go(path)
        if x not in b.text():
            fail(f"{path} does not show the markup as text: {b.text()[:1500]}")
        time.sleep(0.3)  # an injected image's error handler would have run by now
        assert_clean(b, path)


if __name__ == "__main__":
    main()
