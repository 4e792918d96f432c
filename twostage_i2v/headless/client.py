"""A small client for a running ComfyUI server (standard library only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid


class ComfyHTTPError(RuntimeError):
    pass


class ComfyClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ComfyHTTPError(f"{method} {path} -> HTTP {exc.code}: {exc.read()[:2000].decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ComfyHTTPError(f"{method} {path}: cannot reach ComfyUI at {self.url} ({exc})") from None
        return json.loads(raw) if raw else None

    def get(self, path: str):
        return self._request("GET", path)

    def object_info(self) -> dict:
        return self.get("/object_info")

    def queue_prompt(self, prompt: dict, workflow: dict | None = None) -> str:
        body = {"prompt": prompt, "client_id": str(uuid.uuid4())}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        return self._request("POST", "/prompt", body)["prompt_id"]

    def wait_for(self, prompt_id: str, timeout: float = 600.0, poll: float = 0.5) -> dict:
        """The prompt's history entry once it has finished (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = self.get(f"/history/{prompt_id}") or {}
            entry = hist.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(poll)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, prompt: dict, workflow: dict | None = None, timeout: float = 600.0) -> dict:
        entry = self.wait_for(self.queue_prompt(prompt, workflow), timeout)
        if entry["status"].get("status_str") != "success":
            msgs = [m for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
            detail = msgs[0][1] if msgs else entry["status"]
            raise ComfyHTTPError(f"prompt failed: {detail}")
        return entry
