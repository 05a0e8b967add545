"""Bad input: one clear line before any work, a non-zero exit, and no new run in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from tests.conftest import all_runs, run_cli

CASES = {
    "unknown optimizer": (["optimizer=adagrad"], "optimizer=adagrad is not known; allowed: adam, momentum"),
    "unknown model": (["model=mlp"], "model=mlp is not known; allowed: closed_form, grid, linear"),
    "unknown data recipe": (["data=mnist"], "data=mnist is not known; allowed: gaussian"),
    "unknown experiment": (["experiment=nope"], "experiment=nope is not known; allowed: batch_size_scaling, "
                                                "bias_variance, conditioning, d2l_concise"),
    "unknown option inside a sweep": (["-m", "optimizer=sgd,adagrad"], "optimizer=adagrad is not known"),
    "lr zero": (["lr=0"], "lr must be a finite number > 0, got 0.0"),
    "lr negative in a sweep": (["-m", "lr=0.1,-1"], "job lr=-1: lr must be a finite number > 0, got -1.0"),
    "lr not a number": (["lr=fast"], "Value 'fast' of type 'str' could not be converted to Float"),
    "batch size zero": (["batch_size=0"], "batch_size must be in 1..1000 (data.n_train) or 'full', got 0"),
    "batch size above n": (["batch_size=1001"], "batch_size must be in 1..1000 (data.n_train) or 'full', got 1001"),
    "n zero": (["data.n_train=0"], "data.n_train and data.n_test must be > 0"),
    "noise negative": (["noise=-0.1"], "noise must be a finite number >= 0, got -0.1"),
    "steps zero": (["steps=0"], "steps must be > 0, got 0"),
    "epochs zero": (["steps=null", "epochs=0"], "epochs must be > 0, got 0"),
    "samples zero": (["steps=null", "samples=0"], "samples must be > 0, got 0"),
    "both budgets": (["epochs=3"], "set exactly one of steps, epochs and samples"),
    "true w vs features": (["data.n_features=3"], "data.true_w has 2 weights but data.n_features is 3"),
    "no true w": (["data.true_w=[]"], "data.true_w is empty; allowed: one weight per feature, or data.n_features"),
    "drawn w, bad seed": (["data.true_w=[]", "data.n_features=3", "data.w_seed=-1"],
                          "data.w_seed=-1 is outside numpy's seed range"),
    "drawn w, bad norm": (["data.true_w=[]", "data.n_features=3", "data.w_norm=-1"], "data.w_norm must be a finite"),
    "optimal ridge with an intercept": (["model=closed_form", "model.optimal_ridge=true"], "model.optimal_ridge needs "
                                        "isotropic Gaussian data without an intercept, got model.fit_intercept=True"),
    "condition number below 1": (["data.spectrum=condition", "data.condition_number=0.5"],
                                 "data.condition_number must be a finite number >= 1, got 0.5"),
    "eigenvalues of the wrong length": (["data.spectrum=list", "data.eigenvalues=[1,2,3]"],
                                        "data.eigenvalues must be 2 finite numbers > 0 (one per feature), got [1.0, 2"),
    "a non-positive eigenvalue": (["data.spectrum=list", "data.eigenvalues=[1,0]"],
                                  "data.eigenvalues must be 2 finite numbers > 0 (one per feature), got [1.0, 0.0]"),
    "decay zero": (["data.spectrum=power_law", "data.decay=0"], "data.decay must be a finite number > 0, got 0.0"),
    "eigenvalues without the list spectrum": (["data.eigenvalues=[1,2]"], "data.eigenvalues is set but "
                                              "data.spectrum=isotropic"),
    "theory-tuned adam": (["optimizer=adam", "theory_tuned=true", "batch_size=full"],
                          "theory_tuned=true needs full-batch sgd or momentum"),
    "theory-tuned mini-batch": (["theory_tuned=true"], "theory_tuned=true needs full-batch sgd or momentum without "
                                "weight decay, nesterov or dampening on a fixed training set, got model=manual "
                                "optimizer=sgd batch_size=10"),
    "unknown estimator": (["estimator=lasso"], "estimator=lasso is not known; allowed: gd_10, gd_100"),
    "misspelt key": (["optimizer.lrr=1"], "Key 'lrr' not in 'SGDConfig'; allowed keys: name, momentum"),
    "unknown device": (["device=tpu"], "device='tpu' is not known; allowed: auto, cpu, cuda, mps"),
    "malformed tracking URI": (["mlflow.tracking_uri=foo://bar"], "tracking URI 'foo://bar' is malformed"),
    "unreachable tracking URI": (["mlflow.tracking_uri=http://127.0.0.1:9"], "tracking URI http://127.0.0.1:9 "
                                                                            "is unreachable"),
    "absurd steps": (["steps=99999999999999999999"], "steps=99999999999999999999, replicates=8, 2 features need "
                                                     "about 8.34e+13 GiB of memory"),
    "absurd replicates": (["replicates=100000000"], "allowed: replicates="),
    "absurd features": (["data.true_w=[]", "data.n_features=100000"], "100000 features need about"),
    "negative seed": (["seed=-1"], "seed=-1 is outside numpy's seed range; allowed: 0 .. 4294967295"),
    "seed past numpy's range": (["data_seed=4294967296"], "data_seed=4294967296 is outside numpy's seed range"),
    "experiment name over MLflow's limit": ([f"mlflow.experiment={'x' * 501}"], "mlflow.experiment has 501 "
                                            "characters; allowed: 1 .. 500"),
    "unknown added key": (["+foo=1"], "foo: not a config key (added with +); allowed at the top: data, model"),
    "unknown added nested key": (["+data.bar=2"], "data.bar: not a config key (added with +); allowed at data: name"),
    "unwritable output dir": (["hydra.run.dir=/proc/linreg_lab"], "output folder /proc/linreg_lab cannot be "
                                                                  "written"),
}
if not torch.cuda.is_available():
    CASES["cuda without a GPU"] = (["device=cuda"], "device=cuda is not available on this machine; allowed here: "
                                                    "auto, cpu")


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store that already holds one finished run, so 'no new run' is a real check."""
    where = tmp_path_factory.mktemp("bad_input")
    uri = f"sqlite:///{where / 'mlflow.db'}"
    out = run_cli(["steps=5", f"hydra.run.dir={where / 'seed_run'}"], where, {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-2000:]
    return where, uri


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_in_one_line_and_writes_nothing(case: str, seeded_store: tuple[Path, str]) -> None:
    where, uri = seeded_store
    args, message = CASES[case]
    env = {"MLFLOW_TRACKING_URI": uri}
    if "mlflow.tracking_uri" in args[0]:
        env["MLFLOW_TRACKING_URI"] = ""  # let the config's URI be the one used
    out = run_cli(args, where, env)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("linreg_lab: error: "), out.stderr[-2000:]
    assert message in lines[0]
    assert len(all_runs(uri)) == 1  # no new run
    assert not (where / "multirun").exists() and not (where / "outputs").exists()


def test_bad_input_fails_before_torch_and_mlflow_load(tmp_path: Path) -> None:
    probe = ("import sys, runpy; sys.argv = ['linreg_lab.run', 'lr=-1']\n"
             "try:\n    runpy.run_module('linreg_lab.run', run_name='__main__')\n"
             "except SystemExit:\n    print('torch' in sys.modules, 'mlflow' in sys.modules)\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.strip() == "False False", out.stdout + out.stderr[-2000:]


def test_param_longer_than_mlflow_allows_is_hashed_and_kept_as_artifact(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    true_w = [round(0.001 * i, 3) for i in range(1500)]  # > 6000 characters as a param value
    out = run_cli([f"data.true_w=[{','.join(map(str, true_w))}]", "data.n_train=2000", "steps=5"], tmp_path,
                  {"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = all_runs(uri)
    assert run.info.status == "FINISHED" and run.data.params["data.true_w"].startswith("sha256:")
    path = MlflowClient(uri).download_artifacts(run.info.run_id, "long_params.json", str(tmp_path))
    assert json.loads(Path(path).read_text())["data.true_w"] == str(true_w)
