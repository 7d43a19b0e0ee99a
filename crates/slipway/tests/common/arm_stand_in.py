#!/usr/bin/env python3
"""A stand-in for Azure Resource Manager (no real Azure can run here), over
https with a test CA: the calls Slipway and the Azure CLI's ARM deployment
commands make, with ARM's documented shapes.

- Cloud metadata (`ARM_CLOUD_METADATA_URL`): GET /metadata/endpoints gives a
  cloud `AzureCloud` whose resource manager is this server.
- GET /subscriptions, GET /tenants (what `az login` lists).
- Resource groups, api-version 2021-04-01: PUT (201 new / 200), GET, HEAD
  (204/404), DELETE (202 + Location polled once with 202, then 200). A group
  whose name ends in `-refused` is refused with 403 AuthorizationFailed; one
  whose name ends in `-elsewhere` answers its DELETE with a Location on
  another host.
- Group deployments: POST …/deployments/N/validate, PUT (201 Accepted;
  404 ResourceGroupNotFound when the group is missing), GET (Running once,
  then Succeeded or Failed), GET …/deployments/N/operations. Outputs come
  from the template's `outputs`: `[parameters('p')]` is the parameter's
  value, anything else is taken literally; types are capitalised as ARM
  answers them and secure ones carry no value. A resource of type
  `StandIn/fail` fails the deployment with its `properties.message`.
  The body az sends is not strict JSON (an unquoted `template` key): parsed
  leniently.
- Resource group deployment stacks: GET (404 DeploymentStackNotFound),
  POST …/validate, PUT (200 `deploying`, then `succeeded` or `failed` on the
  next GET, as az's long-running-operation poller reads the body), DELETE.
  Outputs and failures as for deployments.

Every request needs `Authorization: Bearer <JWT>` whose claim `standin`
names one of the Entra stand-in's tokens, else 401
InvalidAuthenticationToken.

Usage: arm_stand_in.py CERT KEY LOG BIND PORT — prints the port on its first
line (PORT 0 picks one) and appends one JSON line per request to LOG.
"""
import base64
import http.server
import json
import re
import ssl
import sys
import threading

cert, key, log_path, bind, port = sys.argv[1:6]
groups, pending, deployments, stacks = {}, {}, {}, {}
lock = threading.Lock()
GROUP = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)$")
STACK = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.resources/deploymentstacks/([^/]+)(/validate)?$")
ROLE_ASSIGNMENT = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.authorization/roleassignments/([0-9a-f-]{36})$")
DEPLOYMENT = re.compile(
    r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)(?:/providers/microsoft\.resources)?/deployments/([^/]+)(/validate|/operations)?$")


def lenient_json(raw):
    text = raw.decode()
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(re.sub(r'([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:', r'\1"\2":', text))


def standin_token(auth):
    try:
        payload = auth.split(" ", 1)[1].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("standin", "")).startswith("standin-token-")
    except (IndexError, ValueError):
        return False


def arm_type(t):
    t = (t or "string").lower()
    return {"string": "String", "int": "Int", "bool": "Bool", "object": "Object", "array": "Array",
            "securestring": "SecureString", "secureobject": "SecureObject"}.get(t, t)


def evaluate(value, parameters):
    if isinstance(value, str):
        m = re.fullmatch(r"\[parameters\('([^']+)'\)\]", value)
        if m:
            return parameters.get(m.group(1), {}).get("value")
    return value


def outputs_of(deployment):
    """A deployment's or stack's outputs as ARM answers them: capitalised
    types, no value for secure ones."""
    outputs = {}
    for k, o in (deployment["template"].get("outputs") or {}).items():
        t = arm_type(o.get("type"))
        outputs[k] = {"type": t} if t.startswith("Secure") else {
            "type": t, "value": evaluate(o.get("value"), deployment["parameters"])}
    return outputs


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

    def base(self):
        return "https://%s:%d" % (bind, self.server.server_port)

    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        auth = self.headers.get("authorization") or ""
        with lock, open(log_path, "a") as log:
            log.write(json.dumps({"method": self.command, "path": path, "query": query, "auth": auth,
                                  "body": body.decode(errors="replace")}) + "\n")
        if path == "/metadata/endpoints":
            return self.metadata()
        if not auth.startswith("Bearer ") or not standin_token(auth):
            return self.error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        lower = path.lower()
        if lower == "/subscriptions":
            return self.answer(200, {"value": [{"id": "/subscriptions/" + s, "subscriptionId": s,
                                                "tenantId": "tenant-456", "displayName": "Stand-in " + s,
                                                "state": "Enabled"} for s in ["11111111-2222-3333-4444-555555555555"]]})
        if lower == "/tenants":
            return self.answer(200, {"value": [{"id": "/tenants/tenant-456", "tenantId": "tenant-456"}]})
        if lower.startswith("/operationresults/"):
            return self.operation_result(path.rsplit("/", 1)[1])
        m = ROLE_ASSIGNMENT.match(lower)
        if m:
            return self.role_assignment(*m.groups(), query, body)
        m = STACK.match(lower)
        if m:
            return self.stack(*m.groups(), body)
        m = DEPLOYMENT.match(lower)
        if m:
            return self.deployment(*m.groups(), body)
        m = GROUP.match(lower)
        if m:
            return self.group(*m.groups(), query, body)
        return self.error(404, "NotFound", "the stand-in does not serve " + path)

    def metadata(self):
        base = self.base() + "/"
        self.answer(200, [{
            "name": "AzureCloud", "resourceManager": base, "portal": base, "gallery": base,
            "graph": base, "graphAudience": base, "microsoftGraphResourceId": base, "batch": base,
            "media": base, "sqlManagement": base, "vmImageAliasDoc": base + "aliases.json",
            "activeDirectoryDataLake": base, "appInsightsResourceId": base,
            "authentication": {"loginEndpoint": base, "audiences": ["https://management.core.windows.net/",
                                                                   "https://management.azure.com/"],
                               "tenant": "common", "identityProvider": "AAD"},
            "suffixes": {"storage": "core.windows.net", "keyVaultDns": "vault.azure.net",
                         "acrLoginServer": "azurecr.io", "sqlServerHostname": "database.windows.net",
                         "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
                         "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net"}}])

    def operation_result(self, name):
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

    def group(self, sub, name, query, body):
        if "api-version=" not in query:
            return self.error(400, "MissingApiVersionParameter", "api-version is required")
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
            if name.endswith("-elsewhere"):
                # A hostile or broken ARM: the operation to follow is on
                # another host, where the caller's token must not go.
                return self.answer(202, None, [("Location", "https://127.0.0.2:9/operationresults/" + name),
                                               ("Retry-After", "0")])
            with lock:
                pending[name] = 1
            return self.answer(202, None, [("Location", self.location(name)), ("Retry-After", "0")])
        return self.error(405, "MethodNotAllowed", self.command)

    def role_assignment(self, sub, group, name, query, body):
        # Role Assignments 2022-04-01: PUT with {properties: {roleDefinitionId, principalId}}.
        if "api-version=" not in query:
            return self.error(400, "MissingApiVersionParameter", "api-version is required")
        if self.command != "PUT":
            return self.error(405, "MethodNotAllowed", self.command)
        with lock:
            if group not in groups:
                return self.error(404, "ResourceGroupNotFound", "Resource group '%s' could not be found." % group)
        props = json.loads(body)["properties"]
        role = props["roleDefinitionId"]
        if not re.match(r"^/subscriptions/%s/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-f-]{36}$" % sub, role):
            return self.error(400, "InvalidRoleDefinitionId", "The role definition ID '%s' is not valid." % role)
        return self.answer(201, {"id": "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Authorization/roleAssignments/%s" % (sub, group, name),
                                 "name": name, "type": "Microsoft.Authorization/roleAssignments", "properties": props})

    def deployment(self, sub, group, name, action, body):
        did = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Resources/deployments/%s" % (sub, group, name)
        with lock:
            if group not in groups:
                return self.error(404, "ResourceGroupNotFound", "Resource group '%s' could not be found." % group)
        if action == "/validate" or (action is None and self.command == "PUT"):
            doc = lenient_json(body)
            props = doc.get("properties", {})
            state = {"id": did, "name": name, "template": props.get("template", {}),
                     "parameters": props.get("parameters", {}), "mode": props.get("mode", "Incremental"),
                     "polls": 1}
            if action == "/validate":
                return self.answer(200, {"id": did, "name": name, "properties": {
                    "provisioningState": "Succeeded", "mode": state["mode"], "validatedResources": []}})
            with lock:
                deployments[(group, name)] = state
            return self.answer(201, {"id": did, "name": name, "properties": {
                "provisioningState": "Accepted", "mode": state["mode"]}})
        with lock:
            d = deployments.get((group, name))
        if d is None:
            return self.error(404, "DeploymentNotFound", "Deployment '%s' could not be found." % name)
        resources = d["template"].get("resources", [])
        failing = [r for r in resources if isinstance(r, dict) and r.get("type") == "StandIn/fail"]
        done = d["polls"] == 0
        final = "Failed" if failing else "Succeeded"
        state = final if done else "Running"
        if action == "/operations":
            return self.answer(200, {"value": [{
                "id": "%s/operations/%d" % (did, i), "operationId": "%08d" % i,
                "properties": {"provisioningOperation": "Create",
                               "provisioningState": ("Failed" if r in failing else "Succeeded") if done else "Running",
                               "targetResource": {"id": "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (
                                   sub, group, r.get("type"), r.get("name")),
                                   "resourceType": r.get("type"), "resourceName": r.get("name")}}}
                for i, r in enumerate(resources) if isinstance(r, dict)]})
        with lock:
            if d["polls"] > 0:
                d["polls"] -= 1
        props = {"provisioningState": state, "mode": d["mode"]}
        if done and final == "Succeeded":
            props["outputs"] = outputs_of(d)
        if done and failing:
            props["error"] = {"code": "DeploymentFailed",
                              "message": "At least one resource deployment operation failed.",
                              "details": [{"code": "ResourceDeploymentFailure",
                                           "message": r.get("properties", {}).get("message", "failed")}
                                          for r in failing]}
        return self.answer(200, {"id": did, "name": name, "properties": props})

    def stack(self, sub, group, name, action, body):
        sid = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Resources/deploymentStacks/%s" % (sub, group, name)
        with lock:
            if group not in groups:
                return self.error(404, "ResourceGroupNotFound", "Resource group '%s' could not be found." % group)
            known = stacks.get((group, name))
        if action == "/validate":
            return self.answer(200, {"id": sid, "name": name, "properties": {"validatedResources": []}})
        if self.command == "PUT":
            props = lenient_json(body).get("properties", {})
            with lock:
                stacks[(group, name)] = {"template": props.get("template", {}),
                                         "parameters": props.get("parameters", {}), "polled": False}
            return self.answer(200, {"id": sid, "name": name, "type": "Microsoft.Resources/deploymentStacks",
                                     "properties": {"provisioningState": "deploying"}})
        if known is None:
            return self.error(404, "DeploymentStackNotFound", "Deployment stack '%s' could not be found." % name)
        if self.command == "DELETE":
            with lock:
                stacks.pop((group, name), None)
            return self.answer(200)
        resources = [r for r in known["template"].get("resources", []) if isinstance(r, dict)]
        failing = [r for r in resources if r.get("type") == "StandIn/fail"]
        props = {"provisioningState": "failed" if failing else "succeeded",
                 "deploymentId": "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Resources/deployments/%s-1" % (sub, group, name),
                 "resources": [{"id": "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (
                     sub, group, r.get("type"), r.get("name")), "status": "managed"} for r in resources],
                 "denySettings": {"mode": "none"}, "actionOnUnmanage": {"resources": "delete"}}
        if failing:
            props["error"] = {"code": "DeploymentStackDeploymentFailed",
                              "message": "One or more resources could not be deployed.",
                              "details": [{"code": "ResourceDeploymentFailure",
                                           "message": r.get("properties", {}).get("message", "failed")}
                                          for r in failing]}
        else:
            props["outputs"] = outputs_of(known)
        return self.answer(200, {"id": sid, "name": name, "type": "Microsoft.Resources/deploymentStacks",
                                 "properties": props})

    def location(self, name):
        return "%s/operationresults/%s?api-version=2021-04-01" % (self.base(), name)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = handle_any


server = http.server.ThreadingHTTPServer((bind, int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_port, flush=True)
server.serve_forever()
