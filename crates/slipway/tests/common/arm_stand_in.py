#!/usr/bin/env python3
"""A stand-in for Azure Resource Manager's resource group API (no real Azure
can run here), over https on 127.0.0.1 with a test CA.

Serves api-version 2021-04-01 of PUT/GET/HEAD/DELETE
/subscriptions/{s}/resourcegroups/{rg} as ARM documents them: PUT answers
201 (new) or 200 with the group; DELETE answers 202 with a Location that
answers 202 once and then 200; a missing group is 404 ResourceGroupNotFound.
Every request needs `Authorization: Bearer standin-token-…` (the Entra
stand-in's tokens), else 401 InvalidAuthenticationToken. A group whose name
ends in `-refused` is refused with 403 AuthorizationFailed.

Usage: arm_stand_in.py CERT KEY LOG — prints the port on its first line
and appends one JSON line per request to LOG.
"""
import http.server
import json
import re
import ssl
import sys
import threading

cert, key, log_path = sys.argv[1:4]
groups = {}
pending = {}
lock = threading.Lock()
GROUP = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/?]+)$")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=None, headers=()):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status, code, message):
        self.answer(status, {"error": {"code": code, "message": message}})

    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        auth = self.headers.get("authorization") or ""
        with lock, open(log_path, "a") as log:
            log.write(json.dumps({"method": self.command, "path": path, "query": query,
                                  "auth": auth, "body": body.decode(errors="replace")}) + "\n")
        if not auth.startswith("Bearer standin-token-"):
            return self.error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if path.startswith("/operationresults/"):
            name = path.rsplit("/", 1)[1]
            with lock:
                polls = pending.get(name)
                if polls is None:
                    return self.error(404, "NotFound", "no such operation")
                if polls > 0:
                    pending[name] = polls - 1
                    return self.answer(202, None, [("Location", self.location(name)), ("Retry-After", "0")])
                del pending[name]
                groups.pop(name, None)
            return self.answer(200)
        m = GROUP.match(path.lower())
        if not m or "api-version=2021-04-01" not in query:
            return self.error(400, "InvalidApiVersionParameter", "expected a resource group path and api-version=2021-04-01")
        sub, name = m.groups()
        gid = "/subscriptions/%s/resourceGroups/%s" % (sub, name)
        with lock:
            exists = name in groups
        if self.command == "PUT":
            if name.endswith("-refused"):
                return self.error(403, "AuthorizationFailed",
                                  "The client does not have authorization to perform action 'Microsoft.Resources/subscriptions/resourcegroups/write' over scope '%s'." % gid)
            doc = json.loads(body)
            group = {"id": gid, "name": name, "type": "Microsoft.Resources/resourceGroups",
                     "location": doc["location"], "tags": doc.get("tags", {}),
                     "properties": {"provisioningState": "Succeeded"}}
            with lock:
                groups[name] = group
            return self.answer(200 if exists else 201, group)
        if not exists:
            return self.error(404, "ResourceGroupNotFound", "Resource group '%s' could not be found." % name)
        if self.command in ("GET", "HEAD"):
            with lock:
                return self.answer(200 if self.command == "GET" else 204, groups[name])
        if self.command == "DELETE":
            with lock:
                pending[name] = 1
            return self.answer(202, None, [("Location", self.location(name)), ("Retry-After", "0")])
        return self.error(405, "MethodNotAllowed", self.command)

    def location(self, name):
        return "https://127.0.0.1:%d/operationresults/%s?api-version=2021-04-01" % (self.server.server_port, name)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_port, flush=True)
server.serve_forever()
