"""compare and Ray: workers that die, machines where other Ray instances run, addresses where none does."""

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray

from conftest import run_cli, toy_crops
from toonvision.learning.training import TrainConfig

# make test runs the suite on two xdist workers: the tests whose workers crash on purpose share this test
# process's Ray (group "ray"); those of which Ray compare uses start their own in child processes, as users'
# commands do, and run one at a time beside the others (group "ray-cluster"), as the demo test's compare does.
pytestmark = pytest.mark.xdist_group("ray")
ray_cluster = pytest.mark.xdist_group("ray-cluster")


def crash_a_run_in_worker() -> None:
    """Ray worker set-up hook: fit() ends the worker process, as a crash or the out-of-memory killer would,
    for the run named in the file $TV_CRASH_FILE ("once|always <seed>:<config>"); "once" removes the file
    first, so that Ray's retry finishes. Each crashed worker's pid is added to the file's .pids sibling."""
    from toonvision.learning import experiments

    original = experiments.fit

    def fit(cfg, *args, **kwargs):
        switch = Path(os.environ["TV_CRASH_FILE"])
        if switch.exists():
            mode, target = switch.read_text().split()
            if target == f"{cfg.seed}:{cfg.name}":
                if mode == "once":
                    switch.unlink()
                with open(switch.with_suffix(".pids"), "a") as pids:
                    pids.write(f"{os.getpid()}\n")
                os._exit(1)
        return original(cfg, *args, **kwargs)

    experiments.fit = fit


@pytest.fixture(scope="module")
def crash_switch(tmp_path_factory):
    """A Ray of this test process whose workers crash on demand (see crash_a_run_in_worker); yields the file
    that says which run to crash."""
    from ray import cloudpickle

    switch = tmp_path_factory.mktemp("crash") / "switch"
    # The workers cannot import this file: ship the hook by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": crash_a_run_in_worker, "env_vars": {"TV_CRASH_FILE": str(switch)}},
    )
    yield switch
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _crashed(switch: Path) -> list[int]:
    pids = switch.with_suffix(".pids")
    return [int(p) for p in pids.read_text().split()] if pids.exists() else []


def _experiment(name: str, runs: int):
    from toonvision.learning.experiments import Experiment

    return Experiment(name, configs=(TrainConfig(name="baseline", epochs=2, lr=3e-3),), runs=runs)


def test_a_run_whose_worker_dies_is_retried(ws, crash_switch):
    from toonvision.learning.experiments import run_experiment

    toy_crops(ws, per_label=6)
    crash_switch.write_text("once 0:baseline")
    results = run_experiment(ws, _experiment("retry", 2), ws.runs / "compare" / "retry", workers=1)
    assert [(r.run, r.failed) for r in results] == [(0, ""), (1, "")]
    crashed = _crashed(crash_switch)
    assert len(crashed) == 1 and not crash_switch.exists()
    # Run 0 was finished by the worker Ray restarted, in a new process.
    assert int(results[0].worker.rsplit(":", 1)[1]) != crashed[0]
    assert all(0.0 <= r.test["accuracy"] <= 1.0 for r in results)
    assert ray.is_initialized()  # the caller's Ray: used, not shut down
    # Same seeds give the same numbers, whichever worker trains them: run 0 again, in a fresh experiment and a
    # new worker process.
    again = run_experiment(ws, _experiment("again", 1), ws.runs / "compare" / "again", workers=1)
    assert again[0].test["loss"] == pytest.approx(results[0].test["loss"], rel=1e-5)


def test_a_run_that_keeps_failing_is_recorded_and_retried_next_time(ws, crash_switch, capsys, monkeypatch):
    import typer

    from toonvision.cli.learning import run_comparison
    from toonvision.learning import experiments

    # One retry instead of the product's RETRIES: the same path, and each retry is a worker that starts and
    # imports TensorFlow (~5 s).
    monkeypatch.setattr(experiments, "RETRIES", 1)

    toy_crops(ws, per_label=6)
    crash_switch.with_suffix(".pids").unlink(missing_ok=True)
    crash_switch.write_text("always 1:baseline")
    exp, out = _experiment("fail", 3), ws.runs / "compare" / "fail"
    with pytest.raises(typer.Exit) as stopped:
        run_comparison(ws, exp, workers=1)  # one worker: run 2 needs the one that replaces it
    assert stopped.value.exit_code == 1
    assert len(_crashed(crash_switch)) == 2  # tried, then retried by Ray on a restarted worker
    record = json.loads((out / "results" / "run0001_baseline.json").read_text())
    assert "worker died" in record["failed"] and record["test"] == {}
    for run in (0, 2):
        assert not json.loads((out / "results" / f"run000{run}_baseline.json").read_text())["failed"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [{"run": 1, "config": "baseline", "reason": record["failed"]}]
    assert summary["summary"]["baseline"]["accuracy"]["n"] == 2  # over the runs that finished
    assert "## Failed runs" in (out / "summary.md").read_text()
    # The keeper judged the failed run and went on: nothing waits, run 0's model at least is kept.
    assert json.loads((out / "best.json").read_text())["next_run"] == 3
    assert not list((out / "pending").iterdir()) and (out / "best" / "baseline.keras").is_file()
    printed = capsys.readouterr()
    assert "warning: 1 run failed (run 1 baseline)" in " ".join(printed.err.split())
    assert "run 1 baseline failed: its worker died" in " ".join(printed.out.split())

    crash_switch.unlink()  # the machine is well again: the same command retries the failed run only
    before = {p.name: p.read_bytes() for p in (out / "results").glob("run000[02]_*.json")}
    run_comparison(ws, exp, workers=1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and summary["summary"]["baseline"]["accuracy"]["n"] == 3
    assert not json.loads((out / "results" / "run0001_baseline.json").read_text())["failed"]
    assert all((out / "results" / n).read_bytes() == b for n, b in before.items())
    assert not list((out / "pending").iterdir())
    assert "## Failed runs" not in (out / "summary.md").read_text()


# --- which Ray compare uses ---

SMALL = ("--epochs", "1", "--runs", "1", "--config", "baseline")


@pytest.fixture
def ray_tmp():
    """A Ray temporary folder of the test's own (RAY_TMPDIR), short: Ray's socket paths must fit in 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="tvray-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    """A local port nothing listens at (once the socket that found it is closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compare(ws, name: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_cli("compare", "--root", str(ws.root), *SMALL, "--name", name, *extra, env=env)


@ray_cluster
def test_compare_beside_a_running_ray_start(ws, ray_tmp):
    """A real `ray start --head` on this machine, of the test's own (its own temporary folder and ports), stopped
    by ending its own processes only: compare starts a private Ray beside it, whatever the machine says (also
    with RAY_ADDRESS naming a dead cluster), and joins it with --address."""
    toy_crops(ws, per_label=6)
    port = _free_port()
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    ports = ("--ray-client-server-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port")
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--port", str(port)]
        + ["--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats"]
        + [arg for option in ports for arg in (option, str(_free_port()))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its processes in a group of their own, so the test can end them all
    )
    try:
        address_file = ray_tmp / "ray" / "ray_current_cluster"
        deadline = time.time() + 120
        while time.time() < deadline and not address_file.exists() and head.poll() is None:
            time.sleep(0.5)
        assert address_file.exists(), "ray start did not come up"
        there = {"RAY_TMPDIR": str(ray_tmp)}  # where a bare ray.init() finds it
        # ... and RAY_ADDRESS naming a dead one: following either would be wrong, following the dead one fails.
        # -X importtime lists every module the driver imports (on stderr; the workers are other processes).
        command = ["compare", "--root", str(ws.root), *SMALL, "--name", "beside"]
        beside = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "toonvision.cli", *command],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "200", **there, "RAY_ADDRESS": f"127.0.0.1:{_free_port()}"},
        )
        assert beside.returncode == 0, beside.stdout + beside.stderr[-3000:]
        # The driver never loads TensorFlow: the workers train and send each model back as a .keras archive.
        imported = [line.rsplit("|", 1)[-1].strip() for line in beside.stderr.splitlines() if "import time:" in line]
        assert "ray" in imported and "tensorflow" not in imported and "keras" not in imported
        assert (ws.runs / "compare" / "beside" / "best" / "baseline.keras").is_file()
        # Ray sends its authentication token (ray start made one) to a given address only when told to.
        address = f"127.0.0.1:{port}"
        refused = _compare(ws, "refused", "--address", address, env={**there, "RAY_AUTH_MODE": "disabled"})
        assert refused.returncode == 2 and "RAY_AUTH_MODE=token" in refused.stderr.splitlines()[-1]
        for name, how, extra in (("auto", "auto", {}), ("address", address, {"RAY_AUTH_MODE": "token"})):
            joined = _compare(ws, name, "--address", how, env={**there, **extra})
            assert joined.returncode == 0, joined.stdout + joined.stderr
            assert (ws.runs / "compare" / name / "results" / "run0000_baseline.json").is_file()
            assert (ws.runs / "compare" / name / "best" / "baseline.keras").is_file()
    finally:
        head.send_signal(signal.SIGTERM)  # --block: ray start ends the processes it started
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)  # anything of its group left behind


# --- an address where no Ray answers ---


def _gives_up(
    ws, address: str, name: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = _compare(ws, name, "--address", address, env=env)
    return result, time.perf_counter() - start


def _one_error_line(result: subprocess.CompletedProcess, address: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: cannot reach a Ray cluster at " + address), line
    assert "Traceback" not in result.stdout + result.stderr
    return line


@ray_cluster
def test_compare_gives_up_quickly_where_nothing_listens(ws):
    toy_crops(ws, per_label=6)
    for address in (f"127.0.0.1:{_free_port()}", f"ray://127.0.0.1:{_free_port()}"):
        result, seconds = _gives_up(ws, address, "refused")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "connection refused" in _one_error_line(result, address)
        assert seconds < 30


@ray_cluster
def test_compare_gives_up_where_nothing_answers(ws):
    from toonvision.learning.experiments import CONNECT_SECONDS

    toy_crops(ws, per_label=6)
    # A black hole: a listening socket whose queue is full and that never accepts drops every new SYN, as a
    # firewall that drops packets does.
    with socket.socket() as hole, socket.socket() as filler:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        filler.connect(hole.getsockname())
        address = f"127.0.0.1:{hole.getsockname()[1]}"
        result, seconds = _gives_up(ws, address, "hole")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no answer within {CONNECT_SECONDS} s" in _one_error_line(result, address)
    assert CONNECT_SECONDS <= seconds < 35


@ray_cluster
def test_compare_gives_up_where_something_else_listens(ws):
    """The connection is taken but nobody speaks Ray (a proxy, another server): Ray's own wait, bounded."""
    toy_crops(ws, per_label=6)
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))  # Ray connects to this machine's address, not to 127.0.0.1
        server.listen(16)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        # Ray's own setting, which compare leaves as the user set it: a 3 s wait instead of CONNECT_SECONDS.
        result, seconds = _gives_up(ws, address, "silent", env={"RAY_py_gcs_connect_timeout_s": "3"})
    assert result.returncode == 2, result.stdout + result.stderr
    # Ray's own log lines may come first; compare's verdict is one line, the last.
    assert result.stderr.splitlines()[-1].startswith(f"error: cannot reach a Ray cluster at {address}")
    assert "Traceback" not in result.stdout + result.stderr
    assert seconds < 40
