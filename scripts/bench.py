"""Benchmark: the harness against the naive way of wiring PyTorch + Hydra + MLflow, on the same work.

    python scripts/bench.py [--full] [--json PATH] [--repeats N]

The reference lives in this file (`reference_job`): nn.Linear fed by a shuffled DataLoader,
torch.optim, `mlflow.log_metric` on every step, one run per job, each job in-process under
Hydra's basic launcher. Every row prints the median over repeats and harness / reference.
Quick mode (default) scales the large rows down and projects them; --full runs them as stated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MISSION = ["-m", "optimizer=sgd,adam", "lr=0.1,0.01"]


# ---- the reference: the blog-post way ----

@dataclass
class ReferenceConfig:
    optimizer: str = "sgd"
    lr: float = 0.03
    steps: int = 1000
    batch_size: int = 10
    seed: int = 0
    log_every_step: bool = True


def reference_job(cfg: ReferenceConfig, uri: str) -> dict[str, float]:
    """One job the naive way; returns its timings."""
    import mlflow
    import torch

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    X = torch.randn(1000, 2)
    y = X @ torch.tensor([2.0, -3.4]) + 4.2 + 0.01 * torch.randn(1000)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=cfg.batch_size,
                                         shuffle=True)
    model = torch.nn.Linear(2, 1)
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[cfg.optimizer](model.parameters(), lr=cfg.lr)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("reference")
    log_s = train_s = 0.0
    with mlflow.start_run(run_name=f"{cfg.optimizer}-lr{cfg.lr}-s{cfg.seed}"):
        t = time.perf_counter()
        mlflow.log_params({"optimizer": cfg.optimizer, "lr": cfg.lr, "batch_size": cfg.batch_size})
        log_s += time.perf_counter() - t
        step = 0
        while step < cfg.steps:
            for xb, yb in loader:
                t = time.perf_counter()
                loss = torch.nn.functional.mse_loss(model(xb).squeeze(-1), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                value = loss.item()
                t2 = time.perf_counter()
                train_s += t2 - t
                if cfg.log_every_step:
                    mlflow.log_metric("train/loss", value, step=step)
                log_s += time.perf_counter() - t2
                step += 1
                if step == cfg.steps:
                    break
        t = time.perf_counter()
        w_err = float((model.weight.detach()[0] - torch.tensor([2.0, -3.4])).norm())
        mlflow.log_metric("w_error/l2", w_err)
        log_s += time.perf_counter() - t
    return {"total_s": time.perf_counter() - start, "train_s": train_s, "log_s": log_s}


def reference_app() -> None:
    """`python scripts/bench.py --reference-app -m optimizer=sgd,adam lr=0.1,0.01`: the reference under Hydra."""
    import hydra
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="reference", node=ReferenceConfig)

    @hydra.main(version_base="1.3", config_path=None, config_name="reference")
    def app(cfg) -> None:
        reference_job(cfg, os.environ["MLFLOW_TRACKING_URI"])

    sys.argv = [sys.argv[0]] + sys.argv[2:]
    app()


# ---- measurements ----

def timed_command(args: list[str], cwd: Path) -> float:
    """Wall seconds of a fresh process with a fresh store in `cwd`."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    env.pop("LINREG_LAB_PARENT_RUN_ID", None)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - start


def fresh(fn, repeats: int) -> float:
    """Median of fn(tmp_dir) over `repeats` fresh temp dirs."""
    values = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="linreg_lab-bench-") as tmp:
            values.append(fn(Path(tmp)))
    return statistics.median(values)


def row_mission(repeats: int) -> dict:
    harness = fresh(lambda d: timed_command(["-m", "linreg_lab.run", *MISSION], d), repeats)
    reference = fresh(lambda d: timed_command([str(Path(__file__)), "--reference-app", *MISSION,
                                               f"hydra.sweep.dir={d / 'multirun'}"], d), repeats)
    return {"row": "mission sweep end to end (s)", "harness": harness, "reference": reference, "target": "<= 0.25x"}


def in_process_jobs(overrides: list[str], count: int, uri: str) -> list[dict[str, float]]:
    """Run `count` harness jobs in this process (seeds 0..count-1) with the MLflow calls timed."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from linreg_lab import job, tracking
    from linreg_lab.config import check_config, config_hash, register_configs
    from linreg_lab.run import conf_dir, flatten

    register_configs()
    spent = {"log_s": 0.0}
    originals = {}
    for name in ("open_experiment", "start_run", "end_run", "set_tags", "log_params", "log_metrics", "log_artifacts"):
        fn = originals[name] = getattr(tracking, name)

        def timed(*a, _fn=fn, **k):
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                spent["log_s"] += time.perf_counter() - t
        setattr(tracking, name, timed)
    results = []
    try:
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            for seed in range(count):
                raw = compose("config", [*overrides, f"seed={seed}", "device=cpu"])
                params = flatten(OmegaConf.to_container(raw, resolve=True, enum_to_str=True))
                ctx = job.JobContext(tracking_uri=uri, params=params, config_yaml=OmegaConf.to_yaml(raw),
                                     overrides=overrides, config_hash=config_hash(params))
                spent["log_s"] = 0.0
                finals = job.run_job(check_config(raw), ctx)
                results.append({"total_s": finals["time/total_s"], "train_s": finals["time/train_s"],
                                "log_s": spent["log_s"]})
    finally:
        for name, fn in originals.items():
            setattr(tracking, name, fn)
    return results


def row_logging_share(uri: str, repeats: int) -> list[dict]:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        jobs = in_process_jobs(["steps=1000"], repeats + 1, uri)[1:]  # the first job warms the store
    share = statistics.median(j["log_s"] / j["total_s"] for j in jobs)
    overhead = statistics.median(j["total_s"] - j["train_s"] for j in jobs)
    ref = [reference_job(ReferenceConfig(seed=s), uri) for s in range(repeats)]
    ref_share = statistics.median(r["log_s"] / r["total_s"] for r in ref)
    ref_overhead = statistics.median(r["total_s"] - r["train_s"] for r in ref)
    return [{"row": "logging share of a 1000-step job", "harness": share, "reference": ref_share,
             "target": "<= 10%"},
            {"row": "per-job overhead outside the training loop (s)", "harness": overhead, "reference": ref_overhead,
             "target": "<= 0.050 s"}]


def row_loop(replicates: list[int], steps: int) -> list[dict]:
    import torch
    from hydra import compose, initialize_config_dir

    from linreg_lab import fitting
    from linreg_lab.config import check_config, register_configs
    from linreg_lab.run import conf_dir

    torch.set_num_threads(1)
    register_configs()
    ref = reference_job(ReferenceConfig(steps=steps, log_every_step=False), f"sqlite:///{tempfile.mkdtemp()}/r.db")
    ref_us = ref["train_s"] / steps * 1e6
    rows = []
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        for model in ("manual", "linear"):
            base = None
            for R in replicates:
                cfg = check_config(compose("config", [f"model={model}", f"replicates={R}", f"steps={steps}",
                                                      "device=cpu"]))
                fit = fitting.fit_gradient(cfg, fitting.load_data(cfg), torch.device("cpu"))
                us = fit.finals["time/train_s"] / steps * 1e6
                base = base or us
                rows.append({"row": f"training loop, {model}, R={R} (us/step)", "harness": us,
                             "reference": ref_us * R, "target": "<= 100 us, R=100 <= 1.5x R=1",
                             "vs_R1": us / base})
    return rows


def sweep_seconds(jobs: int, launcher: list[str], cwd: Path) -> float:
    return timed_command(["-m", "linreg_lab.run", "-m", f"seed=range({jobs})", "steps=1000", *launcher], cwd)


def row_sweeps(full: bool) -> list[dict]:
    """joblib speed-up on 16 jobs; the 1000-job sweep (projected from 16 in quick mode); the report."""
    n = 1000 if full else 16
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    with tempfile.TemporaryDirectory(prefix="linreg_lab-bench-") as tmp:
        dirs = {name: Path(tmp, name) for name in ("basic", "joblib", "big")}
        for d in dirs.values():
            d.mkdir()
        basic_s = sweep_seconds(16, [], dirs["basic"])
        joblib_s = sweep_seconds(16, joblib, dirs["joblib"])
        big_s = sweep_seconds(n, joblib, dirs["big"]) if full else joblib_s / 16 * 1000
        where = dirs["big"] if full else dirs["joblib"]
        report_s = timed_command(["-m", "linreg_lab.report", "--out", str(where / "report")], where)
    per_job_ref = 24.0 / 4  # the measurement of the reference: ~24 s for the 4-job mission sweep
    return [{"row": "joblib 2 workers speed-up, 16 jobs (x)", "harness": basic_s / joblib_s, "reference": 1.0,
             "target": ">= 1.6x"},
            {"row": "1000-job sweep (s)" + ("" if full else ", projected from 16"), "harness": big_s,
             "reference": per_job_ref * 1000, "target": "<= 120 s"},
            {"row": f"report over {n} runs (s)", "harness": report_s, "reference": float("nan"),
             "target": "<= 30 s for 1000"}]


def print_table(rows: list[dict]) -> None:
    print(f"{'row':<52} {'harness':>10} {'reference':>10} {'ratio':>8}  target")
    for r in rows:
        ratio = r["harness"] / r["reference"] if r["reference"] and np.isfinite(r["reference"]) else float("nan")
        print(f"{r['row']:<52} {r['harness']:>10.4g} {r['reference']:>10.4g} {ratio:>8.3g}  {r['target']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--reference-app":
        return reference_app()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="run the large rows as stated (minutes)")
    p.add_argument("--json", help="also write the rows as JSON to this path")
    p.add_argument("--repeats", type=int, default=None, help="repeats per row (default 1 quick, 3 full)")
    args = p.parse_args()
    repeats = args.repeats or (3 if args.full else 1)
    rows = [row_mission(repeats)]
    with tempfile.TemporaryDirectory(prefix="linreg_lab-bench-") as tmp:
        rows += row_logging_share(f"sqlite:///{tmp}/mlflow.db", max(repeats, 3))
    rows += row_loop([1, 10, 100, 1000], 2000 if args.full else 300)
    rows += row_sweeps(args.full)
    mode = "full" if args.full else "quick"
    import torch

    rows.append({"row": "CUDA rows", "harness": float("nan"), "reference": float("nan"),
                 "target": "measured where a GPU exists" if torch.cuda.is_available() else "n/a: no CUDA device"})
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": mode, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
