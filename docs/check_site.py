"""Check the built documentation in a real browser: headless Chromium over its DevTools protocol.

    python docs/check_site.py [docs/_build/html] [--chromium /usr/bin/chromium]

Serves the built site on a loopback ``http.server`` (127.0.0.1, a free port), loads every HTML
page in headless Chromium (the distribution's ``chromium`` package; no browser is downloaded)
and fails, with one line per problem, on

- a console error or an uncaught exception on a page (including resources that failed to load);
- a broken internal link: a link to a page of the site that does not exist, or to an anchor
  (``#id``) that the target page does not have;
- an image that did not render (``naturalWidth == 0`` once the page has loaded);
- mathematics that MathJax did not typeset (a ``.math`` element left as TeX source).

Needs ``websocket-client`` (in the ``docs`` extra). Exit status 0 when every page is clean, 1
when something is broken, 2 when Chromium cannot be started.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

# Resolves once MathJax (if the page loads it) has typeset the page.
_MATH_DONE = """(window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise.then(() => true) : true"""
# Collected from each page once loaded and typeset: images, links, element ids, unrendered math.
_PAGE_PROBE = """(() => ({
  math: document.querySelectorAll('.math').length,
  raw_math: Array.from(document.querySelectorAll('.math'))
    .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60)),
  images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src,
                                                  complete: i.complete, width: i.naturalWidth})),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id)
    .concat(Array.from(document.querySelectorAll('a[name]')).map(a => a.name)),
}))()"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(root):
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Browser:
    """A headless Chromium process and one page, driven over the DevTools websocket."""

    FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", "--remote-debugging-port=0")

    def __init__(self, executable, profile, *, timeout=60):
        try:
            import websocket  # websocket-client
        except ImportError as exc:
            raise RuntimeError("needs websocket-client: pip install '.[docs]'") from exc
        self.timeout = timeout
        self.next_id = 0
        self.events = []
        self.process = subprocess.Popen(
            [executable, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.socket = None
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{executable} did not start its DevTools endpoint")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
                targets = json.load(reply)
            page = next(t for t in targets if t.get("type") == "page")
            self.socket = websocket.create_connection(page["webSocketDebuggerUrl"],
                                                      timeout=timeout)
            self._timed_out = websocket.WebSocketTimeoutException
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def _receive(self, timeout):
        """The next message, or None when none comes within ``timeout`` seconds."""
        self.socket.settimeout(timeout)
        try:
            return json.loads(self.socket.recv())
        except self._timed_out:
            return None

    def call(self, method, **params):
        """Send a DevTools command and return its result; events met meanwhile are kept."""
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive(self.timeout)
            if message is None:
                raise TimeoutError(f"{method}: no answer from Chromium in {self.timeout} s")
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method):
        """Wait for the event ``method`` and remove it; the other events stay for the caller."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            message = self._receive(left) if left > 0 else None
            if message is None:
                raise TimeoutError(f"no {method} from Chromium in {self.timeout} s")
            self.events.append(message)

    def drain(self, seconds):
        """Collect the events arriving within ``seconds`` (late console messages)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = self._receive(left)
            if message is None:
                return
            self.events.append(message)

    def close(self):
        try:
            if self.socket is not None:
                self.socket.close()
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


def _console_errors(events):
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append("uncaught: " + details.get("exception", {}).get(
                "description", details.get("text", "")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())
    return errors


def check(root, executable, *, settle=0.1):
    """Load every page under ``root``; return (pages, internal links, images, formulas, problems)."""
    root = Path(root).resolve()
    # the site's pages; _static/ holds the theme's templates and _sources/ the reST sources
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                   if p.relative_to(root).parts[0] not in ("_static", "_sources"))
    if not pages:
        raise FileNotFoundError(f"{root}: no HTML pages (build the site first)")
    server = _serve(root)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems, ids, links, n_images, n_math = [], {}, [], 0, 0
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(executable, profile)
        try:
            for page in pages:
                browser.events.clear()
                browser.call("Page.navigate", url=base + page)
                browser.wait_for("Page.loadEventFired")
                browser.call("Runtime.evaluate", expression=_MATH_DONE, awaitPromise=True)
                browser.drain(settle)
                probe = browser.call("Runtime.evaluate", expression=_PAGE_PROBE,
                                     returnByValue=True)["result"]["value"]
                problems += [f"{page}: {e}" for e in _console_errors(browser.events)]
                for image in probe["images"]:
                    n_images += 1
                    if not image["complete"] or image["width"] == 0:
                        problems.append(f"{page}: image not rendered: {image['src']}")
                n_math += probe["math"]
                problems += [f"{page}: math not rendered: {tex}" for tex in probe["raw_math"]]
                ids[page] = set(probe["ids"])
                links += [(page, href) for href in probe["links"]]
        finally:
            browser.close()
            server.shutdown()
    n_internal = 0
    for page, href in links:
        if not href.startswith(base):
            continue  # external (or mailto:) links are not this check's business
        n_internal += 1
        parsed = urllib.parse.urlsplit(href)
        target = urllib.parse.unquote(parsed.path[1:]) or "index.html"
        if target.endswith("/"):
            target += "index.html"
        if not (root / target).is_file():
            problems.append(f"{page}: broken link to {target}")
        elif parsed.fragment and target in ids and parsed.fragment not in ids[target]:
            problems.append(f"{page}: link to {target}#{parsed.fragment}: no such anchor")
    return len(pages), n_internal, n_images, n_math, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", default=str(Path(__file__).parent / "_build" / "html"))
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM") or
                        shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args(argv)
    if not args.chromium:
        print("check_site: no chromium found (apt-get install chromium, or --chromium PATH)",
              file=sys.stderr)
        return 2
    try:
        pages, n_links, n_images, n_math, problems = check(args.site, args.chromium)
    except (RuntimeError, OSError) as exc:
        print(f"check_site: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    print(f"check_site: {pages} pages, {n_links} internal links, {n_images} images, "
          f"{n_math} formulas, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
