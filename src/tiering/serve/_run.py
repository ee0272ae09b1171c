"""Running the ops app with uvicorn: one process, or a supervisor with N worker processes.

Workers share one listening socket. It gets TCP_NODELAY, which Linux passes on to every accepted
connection: a worker process otherwise answers small responses (headers and body are two writes)
about 40 ms late, Nagle's algorithm waiting on the client's delayed ACK.
"""

from __future__ import annotations

import os
import socket

from tiering.serve._auth import TOKEN_ENV


def run_server(
    cfg, *, host: str, port: int, workers: int = 1, token: str | None = None, access_log: bool = True, config_path: str | None = None
) -> None:
    """Serve until interrupted. ``cfg``: the loaded Config; ``config_path``: where workers re-read it from."""
    import uvicorn

    from tiering.exceptions import ConfigError

    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ConfigError(f"--workers (serve.workers) must be a whole number from 1 to 256; got {workers!r}.")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port (serve.port) must be a whole number from 1 to 65535; got {port!r}.")
    if workers == 1:
        from tiering.serve._app import app_from_config

        uvicorn.run(app_from_config(cfg), host=host, port=port, access_log=access_log, log_level="info")
        return
    from uvicorn.supervisors import Multiprocess

    from tiering.serve._app import CONFIG_ENV

    # each worker process builds the app from the same config and token
    os.environ[CONFIG_ENV] = config_path or ""
    if token:
        os.environ[TOKEN_ENV] = token
    config = uvicorn.Config(
        "tiering.serve:app_from_environ", factory=True, host=host, port=port, workers=workers, access_log=access_log, log_level="info"
    )
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
