"""The real command line in subprocesses: the mission sweep, joblib, errors, an installed wheel."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from linreg_lab import contract, curves
from tests.conftest import ROOT, all_runs, run_cli

MISSION = ["-m", "optimizer=sgd,adam", "lr=0.1,0.01"]
FINAL_METRICS = {"w_error/l2", "w_error/0", "w_error/1", "b_error", "ols/w_gap_l2", "ols/b_gap",
                 "time/train_s", "time/total_s"}


def split(uri: str) -> tuple[list, list]:
    runs = all_runs(uri)
    return ([r for r in runs if r.data.tags.get("run_kind") == "sweep"],
            [r for r in runs if r.data.tags.get("run_kind") == "job"])


def test_mission_command(tmp_path: Path) -> None:
    out = run_cli(MISSION, tmp_path, {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'store.db'}"})
    assert out.returncode == 0, out.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    (parent,), jobs = split(uri)
    assert parent.info.status == "FINISHED" and len(jobs) == 4
    assert {r.info.run_name for r in jobs} == {f"manual-{o}-lr{lr}-bs10-noise0.01-s0-R8" for o in ("sgd", "adam")
                                                for lr in ("0.1", "0.01")}
    client = MlflowClient(uri)
    for run in jobs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        p = run.data.params
        assert p["optimizer.name"] in {"sgd", "adam"} and p["lr"] in {"0.1", "0.01"}
        assert {"batch_size", "noise", "device", "seed", "model.name", "data.true_w"} <= set(p)
        assert FINAL_METRICS <= set(run.data.metrics)
        assert {"device", "torch_version", "overrides", "git_commit"} <= set(run.data.tags)
        assert run.data.tags["device"] == "cpu" and "optimizer=" in run.data.tags["overrides"]
        train = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in train] == curves.logged(np.arange(1, 1001), np.ones(1000))[0].tolist()
        full = curves.load(Path(client.download_artifacts(run.info.run_id, contract.CURVES_NPZ, str(tmp_path))))
        assert full["train/loss"][0].tolist() == list(range(1, 1001))  # every step of the 1000, in curves.npz
        test = [m.step for m in client.get_metric_history(run.info.run_id, "test/loss")]
        assert test == curves.logged(*full["test/loss"], curves.SIDE_POINTS)[0].tolist()  # 101 evaluations, thinned
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "data.npz", "curve.csv", "curves.npz"} <= arts
        data = np.load(client.download_artifacts(run.info.run_id, "data.npz", str(tmp_path)))
        assert data["X"].shape == (8, 1000, 2) and data["w_init"].shape == (8, 2)  # 8 replicates by default
        w = np.load(client.download_artifacts(run.info.run_id, "replicates.npz", str(tmp_path)))["w"]
        refit = [np.linalg.lstsq(np.c_[X, np.ones(1000)], y, rcond=None)[0] for X, y in zip(data["X"], data["y"])]
        gap = np.mean([np.linalg.norm(w_r - fit[:2]) for w_r, fit in zip(w, refit)])
        assert abs(gap - run.data.metrics["ols/w_gap_l2"]) < 1e-5  # the gap is to a fit of this very data
    assert "mlflow ui --backend-store-uri" in out.stdout and "[4/4]" in out.stdout
    assert not (tmp_path / "mlflow.db").exists()  # MLFLOW_TRACKING_URI was honoured


def test_default_store_is_mlflow_db_in_the_working_directory(tmp_path: Path) -> None:
    out = run_cli(["steps=5"], tmp_path, {"MLFLOW_TRACKING_URI": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "mlflow.db").is_file()
    assert len(all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")) == 1
    assert not list((tmp_path / "outputs").rglob("*.db"))  # Hydra's output dir holds no store


def test_joblib_launcher_two_workers_nests_under_the_parent(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_cli([*MISSION, "steps=50", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path,
                  {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-3000:]
    (parent,), jobs = split(uri)
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in jobs)
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"


def test_installed_wheel_finds_its_configs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # the dependencies from this interpreter's own site-packages (a venv's, when the suite runs in one), after
    # the new venv's own; a .pth line only extends sys.path, so the editable install's finder stays out
    own = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    new_site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    Path(new_site, "outer_site_packages.pth").write_text("\n".join(own) + "\n")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", *wheels.glob("*.whl")], check=True,
                   capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([py, "-c", "import linreg_lab.run as r; print(r.conf_dir())"], cwd=work,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)) and where.endswith("linreg_lab/conf")
    out = subprocess.run([py, "-m", "linreg_lab.run", "experiment=grid_search"], cwd=work,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = all_runs(f"sqlite:///{work / 'mlflow.db'}")
    assert run.data.metrics["predict/4"] == 8.0
