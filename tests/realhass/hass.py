"""A real ``hass`` process with the integration copied into its configuration folder.

The process is driven the way a user's browser and Home Assistant's own frontend drive it:
onboarding over ``/api/onboarding``, tokens from ``/auth/token``, config flows over
``/api/config/config_entries/...``, states and services over the REST API and everything
else over the websocket API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import aiohttp

from tests.reliability.processes import LOOPBACK, ServiceProcess, free_port, request_json

from .environment import INTEGRATION

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .environment import RealHass

DASHBOARD = "p2p-energy"  # a YAML dashboard at /p2p-energy/ (its URL needs a hyphen)
USERNAME, PASSWORD = "owner", "correct-horse-battery"
RESTART_EXIT_CODE = 100  # homeassistant.const.RESTART_EXIT_CODE: "start me again"

CONFIGURATION = """\
# Written by tests/realhass: the parts of default_config this test needs, without the
# hardware and cloud integrations that cannot work here.
http:
  server_host: {host}
  server_port: {port}
frontend:
# The Energy dashboard's preferences (it brings the recorder and history along).
energy:
lovelace:
  dashboards:
    {dashboard}:
      mode: yaml
      filename: {dashboard}.yaml
      title: Energy trading
      icon: mdi:transmission-tower
      show_in_sidebar: true
logger:
  default: warning
  logs:
    custom_components.p2p_energy: debug
"""


class HassError(AssertionError):
    """Home Assistant refused a request; ``error`` is a websocket command's error object."""

    def __init__(self, message: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error or {}


class HassProcess(ServiceProcess):
    """``hass -c <config>`` of one installed release, on a free loopback port."""

    def __init__(self, release: RealHass, directory: Path) -> None:
        self.release = release
        self.config_dir = directory / "config"
        port = free_port()
        super().__init__("hass", directory, [], port)
        self.client_id = f"{self.url}/"
        self.access_token = ""
        self.refresh_token = ""
        self._token_expires = 0.0
        self._write_configuration()

    def _write_configuration(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            CONFIGURATION.format(host=LOOPBACK, port=self.port, dashboard=DASHBOARD)
        )
        # Installed by hand, as the README says: the integration's folder in custom_components.
        shutil.copytree(
            INTEGRATION,
            self.config_dir / "custom_components" / INTEGRATION.name,
            ignore=shutil.ignore_patterns("__pycache__"),
        )

    def replace_in_integration(self, file: str, old: str, new: str) -> None:
        """Change the installed copy of the integration (before the first start)."""
        path = self.config_dir / "custom_components" / INTEGRATION.name / file
        text = path.read_text()
        if text.count(old) != 1:
            raise AssertionError(f"{old!r} is not in {file} exactly once: update the test")
        path.write_text(text.replace(old, new))

    def write_dashboard(self, cards: list[dict[str, Any]]) -> None:
        """The YAML dashboard's one view (JSON is YAML); read by the frontend on each load."""
        document = {"title": "Energy trading", "views": [{"title": "Home", "cards": cards}]}
        (self.config_dir / f"{DASHBOARD}.yaml").write_text(json.dumps(document, indent=2))

    def command_line(self) -> list[str]:
        # --skip-pip: a user's install already has the requirements; nothing is fetched here.
        return [
            *(str(self.release.python), "-m", "homeassistant"),
            *("--config", str(self.config_dir), "--skip-pip"),
        ]

    def ready(self) -> bool:
        """The HTTP server answers (it starts once Home Assistant has started)."""
        try:
            status, _ = request_json("GET", f"{self.url}/manifest.json", timeout=2)
        except OSError:
            return False
        return status == 200

    def start(self, timeout: float = 180.0, env: dict[str, str] | None = None) -> None:
        """Start and wait until Home Assistant runs (not only its HTTP server)."""
        super().start(timeout, env)
        if self.access_token:
            self.refresh_access_token()
            self.wait_until(lambda: self.get("/api/config")["state"] == "RUNNING", "running")

    def restart(self, timeout: float = 180.0) -> None:
        """Restart as a user does (Settings, Restart): Home Assistant stops with exit code 100
        and its service manager (systemd's RestartForceExitStatus=100, the Supervisor, here
        this harness) starts it again."""
        assert self.process is not None
        with contextlib.suppress(HassError, OSError):  # the shutdown may cut the answer off
            self.call_service("homeassistant", "restart", {})
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hass did not stop to restart\n{self.log_tail()}") from None
        assert code == RESTART_EXIT_CODE, f"hass exited with {code}\n{self.log_tail()}"
        self.process = None
        self.start(timeout)

    # -- onboarding and tokens ------------------------------------------------------

    def onboard(self) -> None:
        """Every onboarding step, as the onboarding page does them; keeps the owner's tokens."""
        status, body = request_json(
            "POST",
            f"{self.url}/api/onboarding/users",
            {
                "client_id": self.client_id,
                "name": "Owner",
                "username": USERNAME,
                "password": PASSWORD,
                "language": "en",
            },
        )
        if status != 200:
            raise HassError(f"onboarding the owner: {status} {body}")
        self._token({"grant_type": "authorization_code", "code": body["auth_code"]})
        self.post("/api/onboarding/core_config", {})
        self.post("/api/onboarding/analytics", {})
        self.post(
            "/api/onboarding/integration",
            {"client_id": self.client_id, "redirect_uri": f"{self.url}/?auth_callback=1"},
        )
        self.wait_until(lambda: self.get("/api/config")["state"] == "RUNNING", "running")
        self.confirm_http_configuration()

    def confirm_http_configuration(self) -> None:
        """Confirm the HTTP settings, as the owner is asked to on releases that try them first.

        Since 2026 Home Assistant moves ``http:`` from configuration.yaml into its storage as
        a pending trial and, unless the owner confirms it within 5 minutes, restarts with the
        previous settings (another port here). Older releases have no such command.
        """
        try:
            (config,) = self.ws({"type": "http/config"})
        except HassError as error:
            if error.error.get("code") == "unknown_command":
                return
            raise
        if config["pending"] is not None:
            self.ws({"type": "http/config/promote"})

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        data = urllib.parse.urlencode({**form, "client_id": self.client_id}).encode()
        request = urllib.request.Request(f"{self.url}/auth/token", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            tokens: dict[str, Any] = json.loads(response.read())
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens.get("refresh_token", self.refresh_token)
        self._token_expires = time.monotonic() + float(tokens["expires_in"])
        return tokens

    def _current_token(self) -> str:
        """The access token, renewed a minute before it expires (it lives 30 minutes; a
        module's tests under a loaded CI machine can take longer), as the frontend does."""
        if self.refresh_token and time.monotonic() > self._token_expires - 60:
            self.refresh_access_token()
        return self.access_token

    def refresh_access_token(self) -> dict[str, Any]:
        """A fresh access token from the owner's refresh token (it survives restarts)."""
        return self._token({"grant_type": "refresh_token", "refresh_token": self.refresh_token})

    def browser_tokens(self) -> dict[str, Any]:
        """What the frontend keeps in localStorage (``hassTokens``) after signing in."""
        tokens = self.refresh_access_token()
        return {
            "access_token": tokens["access_token"],
            "token_type": "Bearer",
            "expires_in": tokens["expires_in"],
            "expires": int(time.time() * 1000) + tokens["expires_in"] * 1000,
            "refresh_token": self.refresh_token,
            "hassUrl": self.url,
            "clientId": self.client_id,
        }

    # -- REST -------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return request_json(
            method, f"{self.url}{path}", body, {"Authorization": f"Bearer {self._current_token()}"}
        )

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise HassError(f"GET {path}: {status} {body}")
        return body

    def post(self, path: str, body: Any) -> Any:
        status, answer = self.request("POST", path, body)
        if status not in (200, 201):
            raise HassError(f"POST {path}: {status} {answer}")
        return answer

    def state(self, entity_id: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"/api/states/{entity_id}")
        if status == 404:
            return None
        if status != 200:
            raise HassError(f"GET state {entity_id}: {status} {body}")
        return dict(body)

    def set_state(self, entity_id: str, state: str, attributes: dict[str, Any]) -> None:
        """A state pushed over the REST API, as an external meter integration would."""
        self.post(f"/api/states/{entity_id}", {"state": state, "attributes": attributes})

    def call_service(
        self, domain: str, service: str, data: dict[str, Any], *, response: bool = False
    ) -> Any:
        query = "?return_response" if response else ""
        return self.post(f"/api/services/{domain}/{service}{query}", data)

    # -- flows ------------------------------------------------------------------------

    def flow(self, kind: str, handler: Any, *steps: dict[str, Any]) -> dict[str, Any]:
        """Run a flow (``config``, ``options`` or ``subentries``) through ``steps``' forms.

        Returns the last answer; every step before it must show a form.
        """
        base = {
            "config": "/api/config/config_entries/flow",
            "options": "/api/config/config_entries/options/flow",
            "subentries": "/api/config/config_entries/subentries/flow",
        }[kind]
        result = self.post(base, {"handler": handler, "show_advanced_options": False})
        for user_input in steps:
            if result.get("type") != "form":
                raise HassError(f"{kind} flow of {handler} ended early: {result}")
            result = self.post(f"{base}/{result['flow_id']}", user_input)
        return dict(result)

    # -- websocket ----------------------------------------------------------------------

    def ws(self, *commands: dict[str, Any]) -> list[Any]:
        """Send websocket commands in order on one connection; their results."""
        return asyncio.run(self._ws(commands))

    async def _ws(self, commands: tuple[dict[str, Any], ...]) -> list[Any]:
        results: list[Any] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{self.url}/api/websocket") as socket,
        ):
            await socket.receive_json()  # auth_required
            await socket.send_json({"type": "auth", "access_token": self._current_token()})
            if (answer := await socket.receive_json())["type"] != "auth_ok":
                raise HassError(f"websocket authentication: {answer}")
            for number, command in enumerate(commands, start=1):
                await socket.send_json({"id": number, **command})
                while True:
                    message = await socket.receive_json(timeout=60)
                    if message.get("id") == number and message["type"] == "result":
                        break
                if not message["success"]:
                    raise HassError(f"{command['type']}: {message['error']}", message["error"])
                results.append(message["result"])
        return results

    # -- waiting ------------------------------------------------------------------------

    def wait_until(self, check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
        """Poll ``check`` until it returns something true; fail with the log's tail."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if result := check():
                    return result
            except (HassError, OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.log_tail()}")
            if not self.running:
                raise AssertionError(f"hass exited while waiting for {what}\n{self.log_tail()}")
            time.sleep(0.5)
