"""A real ``opentelemetry-opamp-client`` agent, run as a subprocess by the tests.

Usage: python pyclient_agent.py ENDPOINT SERVICE_NAME [INTERVAL]
Prints one JSON line per event on stdout; stops (sending agent_disconnect) when stdin closes or says "stop".
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
        client.update_effective_config(configs, "application/json")
        status = client.update_remote_config_status(rc.config_hash, pb.RemoteConfigStatuses_APPLIED)
        if status is not None:
            agent.send(client.build_remote_config_status_response_message(status))


def main() -> None:
    endpoint, service = sys.argv[1], sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
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
    )
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
