"""Test agent for ate-process: a tiny HTTP server run inside a runc container.

Modes (argv[1]):
  serve         listen on $PORT; /count, /file, /tmpw, /tmpr, /fetch?url=, /direct?url=,
                /connect?host=&port=, /hog
  tick          serve, while a thread counts in memory and writes each count to
                $DATA_DIR/counter (write then rename, so the file always holds a whole
                count); /tick reports it as JSON, /tick-reset forgets the longest pause
  never-listen  print a line and sleep forever
  exit3         print a line and exit with status 3
"""
import http.server
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

DATA = os.environ.get("DATA_DIR", "/data")
count = 0
# The ticker's state: `memory` is the count, `written` the count the file was last set
# to, `gap` the longest time between two ticks (seconds), `mismatches` each tick that
# found the file not holding `written` (as [on file, written]).
ticks = {"memory": 0, "written": 0, "gap": 0.0, "mismatches": []}
TICK_PERIOD = 0.002


def ticker():
    path = os.path.join(DATA, "counter")
    tmp = path + ".tmp"
    prev = time.monotonic()
    while True:
        now = time.monotonic()
        ticks["gap"] = max(ticks["gap"], now - prev)
        prev = now
        try:
            with open(path) as f:
                on_file = int(f.read())
        except FileNotFoundError:
            on_file = 0
        if on_file != ticks["written"]:
            ticks["mismatches"].append([on_file, ticks["written"]])
        ticks["memory"] += 1
        with open(tmp, "w") as f:
            f.write(str(ticks["memory"]))
        os.replace(tmp, path)
        ticks["written"] = ticks["memory"]
        time.sleep(TICK_PERIOD)


def fetch(url, opener):
    try:
        with opener.open(url, timeout=5) as r:
            return f"{r.status} {r.read().decode()}"
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode().strip()}"
    except Exception as e:  # noqa: BLE001 - reported to the test
        return f"error {e}"


def tunnel(host, port):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode()
    if " 200 " not in status + " ":
        s.close()
        return status
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    body = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    s.close()
    return "tunnel " + body.split(b"\r\n\r\n", 1)[-1].decode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        path, _, query = self.path.partition("?")
        args = urllib.parse.parse_qs(query)
        if path == "/count":
            count += 1
            with open(os.path.join(DATA, "log.txt"), "a") as f:
                f.write(f"{count}\n")
            body = str(count)
        elif path == "/file":
            try:
                with open(os.path.join(DATA, "log.txt")) as f:
                    body = str(sum(1 for _ in f))
            except FileNotFoundError:
                body = "0"
        elif path == "/tmpw":
            with open("/tmp/scratch", "w") as f:
                f.write("kept in tmpfs")
            body = "ok"
        elif path == "/tmpr":
            with open("/tmp/scratch") as f:
                body = f.read()
        elif path == "/fetch":
            body = fetch(args["url"][0], urllib.request.build_opener())
        elif path == "/direct":
            body = fetch(args["url"][0], urllib.request.build_opener(urllib.request.ProxyHandler({})))
        elif path == "/connect":
            body = tunnel(args["host"][0], args["port"][0])
        elif path == "/tick":
            body = json.dumps({
                "memory": ticks["memory"],
                "written": ticks["written"],
                "gap_ms": int(ticks["gap"] * 1000),
                "mismatches": ticks["mismatches"][-20:],
            })
        elif path == "/tick-reset":
            ticks["gap"] = 0.0
            body = "ok"
        elif path == "/hog":
            hog = b"x" * (512 << 20)
            body = str(len(hog))
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print("request " + fmt % args, flush=True)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if mode == "never-listen":
        print("not listening on purpose", flush=True)
        while True:
            time.sleep(60)
    if mode == "exit3":
        print("about to fail", flush=True)
        print("fatal: giving up", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "tick":
        threading.Thread(target=ticker, daemon=True).start()
    port = int(os.environ["PORT"])
    server = http.server.HTTPServer(("0.0.0.0", port), Handler)
    print(f"listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
