"""A small conversational agent for ate's `process` sandbox class.

It keeps the conversation in memory (kept across suspend/resume only by Full snapshots,
which CRIU takes) and a notes file in its durable dir (kept by Data and Full snapshots).
Standard library only; it listens on $PORT inside its own network namespace.

    POST /chat    body: a message   -> the agent's reply; the turn is remembered in memory
    GET  /history                   -> the conversation so far, one turn per line
    POST /notes   body: a line      -> appended to $NOTES_DIR/notes.txt
    GET  /notes                     -> the notes file
    GET  /                          -> who am I, how many turns, how many notes
    GET  /readyz                    -> 200 once serving
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))
NOTES_DIR = os.environ.get("NOTES_DIR", "/data")
NOTES = os.path.join(NOTES_DIR, "notes.txt")

conversation = []
lock = threading.Lock()


def identity():
    """The actor this process serves now: the read-only file is rebound on every start
    or restore, while the environment is that of the process's first start."""
    try:
        with open("/ate/actor", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"atespace": os.environ.get("ATE_ATESPACE", ""), "id": os.environ.get("ATE_ACTOR_ID", "")}


def notes():
    try:
        with open(NOTES, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def reply_to(message):
    words = len(message.split())
    return f"turn {len(conversation) // 2 + 1}: you said {words} word{'s' if words != 1 else ''}: {message}"


class Agent(BaseHTTPRequestHandler):
    def send(self, status, text, content_type="text/plain; charset=utf-8"):
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length).decode("utf-8", "replace").strip()

    def do_GET(self):
        if self.path == "/readyz":
            self.send(200, "ok\n")
        elif self.path == "/history":
            with lock:
                self.send(200, "".join(f"{t}\n" for t in conversation))
        elif self.path == "/notes":
            self.send(200, notes())
        elif self.path == "/":
            me = identity()
            with lock:
                turns = len(conversation) // 2
            info = {"actor": me.get("id"), "atespace": me.get("atespace"), "turns": turns,
                    "notes": len(notes().splitlines()), "pid": os.getpid()}
            self.send(200, json.dumps(info) + "\n", "application/json")
        else:
            self.send(404, "not found\n")

    def do_POST(self):
        if self.path == "/chat":
            message = self.body()
            with lock:
                answer = reply_to(message)
                conversation.append(f"> {message}")
                conversation.append(answer)
            self.send(200, answer + "\n")
        elif self.path == "/notes":
            line = self.body()
            os.makedirs(NOTES_DIR, exist_ok=True)
            with open(NOTES, "a", encoding="utf-8") as f:
                f.write(line + "\n")
            self.send(200, f"{len(notes().splitlines())} notes\n")
        else:
            self.send(404, "not found\n")

    def log_message(self, fmt, *args):
        sys.stderr.write(fmt % args + "\n")


if __name__ == "__main__":
    print(f"py-agent listening on port {PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Agent).serve_forever()
