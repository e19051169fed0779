"""The one way to connect to Ray: a private local instance, or a cluster that gives up quickly.

``compare`` trains and ``synth --address`` renders through this module. Without an address (or with
``"local"``) a new Ray instance sized to this machine is started whatever else runs here; with ``auto``,
``host:port`` or ``ray://host:port`` that cluster is joined, and where nothing answers :class:`RayUnavailable`
is raised within about CONNECT_SECONDS instead of Ray's minutes of retries. Ray is imported only inside the
functions, so importing this module costs nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# How long to wait for a cluster given by address: Ray's own defaults (a 30 s connection timeout, tried 20
# times) wait for minutes on an address where nobody answers.
CONNECT_SECONDS = 10
LOCAL = "local"


class RayUnavailable(ConnectionError):
    """No Ray cluster answers at the address given; the message says what to check."""


def start_ray(address: str | None, num_cpus: int = 0, *, fallback: str = "") -> bool:
    """A private local Ray instance with at least ``num_cpus`` CPUs (``address`` None or "local"), or the cluster
    at ``address``, unless this process has Ray already (then it is used as it is); returns whether Ray was
    started here, so must be shut down. ``fallback`` ends the message of :class:`RayUnavailable` (what the
    user can do instead, such as "without --address, compare trains on this machine")."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    if not address or address == LOCAL:
        import ray

        # "local": a new instance even where someone ran `ray start`, where RAY_ADDRESS is set, or where a dead
        # cluster left its address in /tmp/ray/ray_current_cluster; a bare ray.init() would join those (and
        # refuse num_cpus). Its workers see the source tree through the installed package: nothing is shipped.
        ray.init(address=LOCAL, num_cpus=max(os.cpu_count() or 1, num_cpus), include_dashboard=False, **kwargs)
        return True
    probe(address, fallback=fallback)
    with bounded_connection():
        import ray

        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            if any(word in chain_text(exc) for word in ("InvalidAuthToken", "Unauthenticated")):
                raise RayUnavailable(
                    f"the Ray cluster at {address} wants an authentication token: set RAY_AUTH_MODE=token, with "
                    "the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token (Ray sends it only when told to)"
                ) from None
            raise RayUnavailable(unreachable(address, first_line(exc), fallback)) from None
    return True


@contextmanager
def ray_session(address: str | None, num_cpus: int = 0, *, fallback: str = "") -> Iterator[None]:
    """:func:`start_ray` for the length of a block, shut down on the way out (also on errors and Ctrl-C) when
    it was started here."""
    started = start_ray(address, num_cpus, fallback=fallback)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def probe(address: str, *, fallback: str = "") -> None:
    """Give up at once where nothing listens at ``address`` (host:port or ray://host:port), and within
    CONNECT_SECONDS where nothing answers (a firewall dropping packets): Ray would retry for minutes."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray explains itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except TimeoutError:
        raise RayUnavailable(unreachable(address, f"no answer within {CONNECT_SECONDS} s", fallback)) from None
    except OSError as exc:
        raise RayUnavailable(unreachable(address, (exc.strerror or str(exc)).lower(), fallback)) from None


@contextmanager
def bounded_connection() -> Iterator[None]:
    """Ray's own connection settings, where the user has not set them: one try of CONNECT_SECONDS instead of
    20 of 30 s. Ray reads the timeout when it is imported, so import it inside this block (in a process that
    imported it before, Ray's 30 s stay); the settings are only for connecting and are taken back afterwards."""
    settings = {"RAY_py_gcs_connect_timeout_s": str(CONNECT_SECONDS), "RAY_gcs_server_port_wait_time_s": "1"}
    added = [k for k in settings if k not in os.environ]
    os.environ.update({k: settings[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def unreachable(address: str, why: str, fallback: str = "") -> str:
    return (
        f"cannot reach a Ray cluster at {address} ({why}): check that Ray runs there ('ray status' on the head "
        "node), that this is the head's address (host:6379 by default, ray://host:10001 for Ray Client) and that "
        "no firewall blocks the port" + (f"; {fallback}" if fallback else "")
    )


def chain_text(exc: BaseException | None) -> str:
    """The messages of an exception and of those it was raised from (Ray puts the real reason there)."""
    texts = []
    while exc is not None and len(texts) < 10:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def death_reason(exc: BaseException) -> str:
    """One line for a Ray task or actor that did not finish: the error and, where Ray says it, how the process
    ended (a crash, the memory monitor)."""
    why = f"{type(exc).__name__}: {first_line(exc)}"
    # Ray puts how the process ended after "exit detail:", then general advice.
    detail = str(exc).partition("exit detail:")[2].partition(" Some common causes")[0].strip()
    if detail:
        why += f" {detail[:200]}"
    return why
