"""A real ``opentelemetry-opamp-client`` agent, run as a subprocess by the tests.

Usage: python pyclient_agent.py ENDPOINT SERVICE_NAME [INTERVAL] [OPTIONS]
Prints one JSON line per event on stdout; stops (sending agent_disconnect) when stdin closes or says "stop".

Options (for the config-state tests; each is something a real application can do with this client):
  --effective JSON     the effective config it starts with (file name -> config object), reported as JSON
  --cached HASH        it starts reporting remote config HASH as APPLIED (a config it applied before)
  --mode MODE          apply (default): apply a remote config and report it as its effective config;
                       drift: apply it but report an effective config with "local": true added;
                       ignore: never apply anything (it keeps what it started with)
  --no-reports         capabilities without ReportsRemoteConfig and ReportsEffectiveConfig
"""

from __future__ import annotations

import json
import sys
import threading

from opentelemetry._opamp import OpAMPAgent, OpAMPCallbacks, OpAMPClient
from opentelemetry._opamp.proto import opamp_pb2 as pb


def emit(event: str, **data: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


class Callbacks(OpAMPCallbacks):
    mode = "apply"

    def on_connect(self, agent, client):  # noqa: ANN001, ANN201
        emit("connect")

    def on_connect_failed(self, agent, client, exc):  # noqa: ANN001, ANN201
        emit("connect_failed", error=str(exc))

    def on_error(self, agent, client, error_response):  # noqa: ANN001, ANN201
        emit("error", message=error_response.error_message)

    def on_message(self, agent, client, message):  # noqa: ANN001, ANN201
        rc = message.remote_config
        if rc is None or not rc.config_hash:
            return
        configs = {name: cfg for name, cfg in client.decode_remote_config(rc)}
        emit("remote_config", hash=rc.config_hash.hex(), configs=configs)
        if self.mode == "ignore":
            return
        effective = configs
        if self.mode == "drift":
            effective = {name: {**cfg, "local": True} for name, cfg in configs.items()}
        client.update_effective_config(effective, "application/json")
        status = client.update_remote_config_status(rc.config_hash, pb.RemoteConfigStatuses_APPLIED)
        if status is not None:
            # The status, then the full state so the server sees the new effective config at once
            # (this client sends its effective config only with a full state).
            agent.send(client.build_remote_config_status_response_message(status))
            agent.send(client.build_full_state_message())
        emit("applied", hash=rc.config_hash.hex())


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("service")
    ap.add_argument("interval", nargs="?", type=float, default=1.0)
    ap.add_argument("--effective")
    ap.add_argument("--cached")
    ap.add_argument("--mode", choices=("apply", "drift", "ignore"), default="apply")
    ap.add_argument("--no-reports", action="store_true")
    opts = ap.parse_args()
    endpoint, service, interval = opts.endpoint, opts.service, opts.interval
    caps = (
        pb.AgentCapabilities.AgentCapabilities_ReportsStatus
        | pb.AgentCapabilities.AgentCapabilities_ReportsHeartbeat
        | pb.AgentCapabilities.AgentCapabilities_AcceptsRemoteConfig
    )
    if not opts.no_reports:
        caps |= (
            pb.AgentCapabilities.AgentCapabilities_ReportsRemoteConfig
            | pb.AgentCapabilities.AgentCapabilities_ReportsEffectiveConfig
        )
    Callbacks.mode = opts.mode
    client = OpAMPClient(
        endpoint=endpoint,
        agent_identifying_attributes={"service.name": service, "service.version": "1.2.3"},
        agent_non_identifying_attributes={
            "host.name": "pyhost",
            "os.type": "linux",
            "deployment.environment": "test",
            # the rest of the application's Resource, as the spec's guidelines have SDK agents send it
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
        },
        timeout_millis=1000,
        capabilities=caps,
    )
    if opts.effective:
        client.update_effective_config(json.loads(opts.effective), "application/json")
    if opts.cached:
        client.update_remote_config_status(bytes.fromhex(opts.cached), pb.RemoteConfigStatuses_APPLIED)
    agent = OpAMPAgent(interval=interval, callbacks=Callbacks(), client=client, max_retries=3)
    agent.start()
    emit("started", instance_uid=client._instance_uid.hex() if hasattr(client, "_instance_uid") else "")
    done = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        done.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    done.wait()
    agent.stop(timeout=5)
    emit("stopped")


if __name__ == "__main__":
    main()
