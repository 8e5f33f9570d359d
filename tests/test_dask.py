"""`--scheduler`: stage two's per-video work on a Dask cluster gives the local run's detections."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from t3al.adapt.engine import cluster
from t3al.adapt.cli import main as adapt_main
from t3al.adapt.sweep_cli import main as sweep_main
from t3al.adapt.algorithm.video import VideoProblem

from conftest import score_spread, write_toy_world

CLASSES = ["Jump", "Throw", "Swim", "Run"]


@pytest.fixture(scope="module")
def scheduler():
    """Two worker processes on localhost, one thread each (TCP, as a real cluster talks): each worker
    is a fresh spawned interpreter that imports t3al and opens the cache by its path."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids
        yield local


def _world(tmp_path, broken: str | None = None):
    actions = {f"v{i}": (200, 30 + 7 * i, 110 + 5 * i, i % 4) for i in range(10)}
    return write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Swim", "Run"]], broken=broken,
                           noise=0.6, logit_scale=2.0)


def _invoke(command, *args, env=None):
    return CliRunner().invoke(command, [str(a) for a in args] + ["--no-progress"], env=env, catch_exceptions=False)


def _tasks_run(local: LocalCluster) -> int:
    """Task transitions the scheduler has seen (it runs in this process; the workers do not)."""
    return local.scheduler.transition_counter


def _detections(folder):
    return {split.name: (json.loads((split / "detections.json").read_text())["results"],
                         {c.name: np.load(c)["similarity"] for c in sorted((split / "curves").iterdir())})
            for split in sorted(folder.glob("split_*"))}


def _same_outputs(local_folder, dask_folder) -> None:
    local, remote = _detections(local_folder), _detections(dask_folder)
    assert local.keys() == remote.keys() and local
    scores = [item["score"] for name in local for items in local[name][0].values() for item in items]
    distinct, spread = score_spread(scores)
    assert distinct == len(scores) >= 6 and spread > 1e-3  # exact equality that bites
    for name in local:
        assert local[name][0] == remote[name][0]  # segments, labels and scores, exactly
        assert local[name][1].keys() == remote[name][1].keys()
        for video in local[name][1]:
            np.testing.assert_array_equal(local[name][1][video], remote[name][1][video])


def test_adapt_on_a_dask_cluster_gives_the_local_detections(tmp_path, scheduler):
    cache = _world(tmp_path, broken="v3")
    args = [cache, "--steps", "4", "--seed", "7", "--allow-failures"]
    local = _invoke(adapt_main, *args, "--out", tmp_path / "local")
    before = _tasks_run(scheduler)
    remote = _invoke(adapt_main, *args, "--out", tmp_path / "dask", "--scheduler", scheduler.scheduler_address)
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert _tasks_run(scheduler) > before  # the work did go to the cluster's workers
    _same_outputs(tmp_path / "local", tmp_path / "dask")
    # a video that fails on a worker comes back as a named problem, as it does locally
    assert "failed: video v3: 1 frame feature(s) contain NaN or infinity" in remote.output
    problems = json.loads((tmp_path / "dask" / "results.json").read_text())["splits"][1]["problems"]
    assert problems == [{"video": "v3", "reason": "1 frame feature(s) contain NaN or infinity"}]


def test_sweep_takes_the_scheduler_from_the_environment(tmp_path, scheduler):
    cache = _world(tmp_path)
    table = tmp_path / "two.toml"
    table.write_text('rows = [{name = "T3AL"}, {name = "no background", remove_background = false}]\n')
    args = [cache, "--table", table, "--steps", "3", "--split-index", "0"]
    local = _invoke(sweep_main, *args, "--out", tmp_path / "local")
    remote = _invoke(sweep_main, *args, "--out", tmp_path / "dask",
                     env={cluster.SCHEDULER_ENV: scheduler.scheduler_address})
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert (tmp_path / "local" / "table.csv").read_text() == (tmp_path / "dask" / "table.csv").read_text()
    for row in ("T3AL", "no background"):
        _same_outputs(tmp_path / "local" / row, tmp_path / "dask" / row)


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    cache = _world(tmp_path)
    result = _invoke(adapt_main, cache, "--steps", "1", "--out", tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 1
    assert "Error: cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_a_problem_found_in_a_worker_process_pickles_whole():
    problem = pickle.loads(pickle.dumps(VideoProblem("v3", "1 frame feature(s) contain NaN or infinity")))
    assert (problem.video_id, problem.reason) == ("v3", "1 frame feature(s) contain NaN or infinity")
    assert str(problem) == "video v3: 1 frame feature(s) contain NaN or infinity"
