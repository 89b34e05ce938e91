"""The Ray executor on a local Ray instance: the same results as the local executor, parents first,
checkpoints shipped to the workers, records written by the driver, included code imported by the tasks."""
from __future__ import annotations

import os

import pytest

from harness.cli import main
from harness.store import Store
from rewards.base import REWARDS
from tests.helpers import write_grid

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install '.[ray]'")


CHILD = "test_ray_from_ce"
# Included code (--include): imported by the driver and, before the run, by every Ray task.
INCLUDE = f"""
from rewards.base import register_reward
from rewards.ce import CrossEntropy


@register_reward({CHILD!r})
class FromCE(CrossEntropy):
    \"\"\"Cross-entropy that starts from the ce run's checkpoint (test only).\"\"\"

    init_from = "ce"
"""


@pytest.fixture
def local_ray(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", os.environ.get("HARNESS_CACHE")
                       or str(tmp_path_factory.getbasetemp() / "cache"))
    env = {k: os.environ[k] for k in ("HARNESS_CACHE", "HF_HUB_OFFLINE") if k in os.environ}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()
    REWARDS.pop(CHILD, None)


def _results(store) -> dict:
    return {(r.task, r.reward): {
        "status": r.status, "hash": r.hash, "test": r.test, "init_from": r.init_from,
        "predictions": [e["prediction"] for e in r.test_examples]} for r in Store(store).records()}


def test_ray_grid_matches_the_local_executor(tmp_path, data_dir, local_ray, capsys):
    include = tmp_path / "from_ce.py"
    include.write_text(INCLUDE)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment", "ner"], rewards=[CHILD, "ce"], epochs=1,
                      max_train=16, max_eval=8)
    common = ["run", "--grid", "--grid-file", str(grid), "--data-dir", str(data_dir), "--quiet",
              "--include", str(include)]
    main(common + ["--store", str(tmp_path / "ray"), "--executor", "ray"])
    err = capsys.readouterr().err
    main(common + ["--store", str(tmp_path / "local")])
    on_ray, local = _results(tmp_path / "ray"), _results(tmp_path / "local")
    assert len(local) == 4 and all(r["status"] == "completed" for r in local.values())
    # Ray's worker uses one CPU thread, the local run two: float sums differ in the last bits, so the
    # calibration measures (NLL, Brier, ECE) agree to rounding; everything discrete agrees exactly.
    for key, run in local.items():
        assert {k: v for k, v in on_ray[key].items() if k != "test"} == {k: v for k, v in run.items() if k != "test"}
        assert on_ray[key]["test"] == pytest.approx(run["test"], rel=1e-5, abs=1e-6)
    for task in ("sentiment", "ner"):  # the children started from their ce parents' checkpoints
        assert on_ray[(task, CHILD)]["init_from"] == on_ray[(task, "ce")]["hash"]
        assert Store(tmp_path / "ray").checkpoint_path(on_ray[(task, "ce")]["hash"]).exists()
    # Each child finished after its parent (it was submitted only then).
    lines = [line for line in err.splitlines() if line.startswith("[") and ": started " not in line]
    order = [tuple(line.split()[1:3]) for line in lines]
    assert len(order) == 4 and all(order.index((t, "ce")) < order.index((t, CHILD))
                                   for t in ("sentiment", "ner")), lines
    # Resuming on Ray skips what is stored.
    main(common + ["--store", str(tmp_path / "ray"), "--executor", "ray"])
    assert "4 of 4 cells already stored (4 completed), skipped" in capsys.readouterr().err


def test_executor_options_need_ray(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--grid", "--preset", "smoke", "--address", "auto", "--store", str(tmp_path / "s")])
    assert "need --executor ray" in str(exit_info.value.code)
    assert not (tmp_path / "s").exists()


def test_missing_ray_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--grid", "--preset", "smoke", "--executor", "ray", "--store", str(tmp_path / "s")])
    assert "pip install 'reward-harness[ray]'" in str(exit_info.value.code)
    assert not (tmp_path / "s").exists()


def test_bad_data_in_a_ray_task_stops_the_grid_with_its_message(tmp_path, data_dir, local_ray, monkeypatch):
    """Issue 13, item 3. Before: "UnserializableException", a `failed` record, exit 0. The check up
    front is skipped here (as if the file changed after it), so the Ray task meets the bad line."""
    import shutil

    import harness.run.data

    folder = tmp_path / "data" / "sst2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(data_dir / "sst2" / name, folder / name)
    (folder / "test.tsv").write_text("1\ta gem .\n0\tdull .\textra\n")
    monkeypatch.setattr(harness.run.data, "check_data", lambda tasks, source: None)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], epochs=1, max_train=8, max_eval=8)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--grid", "--grid-file", str(grid), "--data-dir", str(tmp_path / "data"), "--quiet",
              "--store", str(tmp_path / "s"), "--executor", "ray"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "test.tsv, line 2: expected 2 tab-separated columns" in message
    assert not list((tmp_path / "s").rglob("*.json"))
