"""Benchmark: the harness against the naive way of wiring PyTorch + Hydra + MLflow, on the same work.

    python scripts/bench.py [--full] [--json PATH] [--repeats N]

The reference lives in this file (`reference_job`): nn.Linear fed by a shuffled DataLoader,
torch.optim, `mlflow.log_metric` on every step, one run per seed, each job in-process under
Hydra's basic launcher. Every row prints the median over repeats, harness / reference, the
target and whether it was met. Quick mode (default, ~3 min on 2 CPUs) projects the 1000-job sweep
from two commands of its own kind of jobs, 52 and 100 of them, extrapolating the line through their
times (projected_big_sweep); beside it, MLflow's own client writes the same sweep's rows again in its
fewest calls on 2 processes (mlflow_floor_sweep): the store's floor under row 5. Row 11 (--full) runs each
study preset's sweep against its time budget. --full runs
the 1000 jobs, and the report over them, as stated, and adds the nn.Linear loop rows. Sweeps
run on linreg_lab's pool launcher (hydra/launcher=pool); row 7 also shows joblib's. The
reference's per-job figures (rows 2 and 4) are those of row 1's reference jobs, each but the
first of a sweep (which creates the store).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linreg_lab import contract

ROOT = Path(__file__).resolve().parent.parent
MISSION = ["-m", "optimizer=sgd,adam", "lr=0.1,0.01"]
LRS = [f"{v:.3g}" for v in np.geomspace(1e-3, 0.3, 25)]
BIG_SWEEP = ["-m", "optimizer=sgd,momentum,rmsprop,adam", f"lr={','.join(LRS)}", "seed=range(10)"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
POOL = ["hydra/launcher=pool", "hydra.launcher.n_jobs=2"]  # linreg_lab's launcher: workers forked after the imports
HEAVY_STEPS = 50000  # --full's second joblib row
# a study preset's whole sweep on 2 CPUs, seconds (row 11)
PRESET_BUDGETS = {"double_descent": 120, "conditioning": 180, "batch_size_scaling": 300}
TIMINGS_ENV = "LINREG_LAB_BENCH_TIMINGS"  # the reference app appends each job's figures (a JSON line) here


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
    """One job the naive way; returns its seconds: total, loop (with the DataLoader, without
    logging), per-step logging, and every MLflow call together."""
    import mlflow
    import torch

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    X = torch.randn(1000, 2)
    y = X @ torch.tensor([2.0, -3.4]) + 4.2 + 0.01 * torch.randn(1000)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=cfg.batch_size,
                                         shuffle=True)
    model = torch.nn.Linear(2, 1)
    opt = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
           "adam": torch.optim.Adam}[cfg.optimizer](model.parameters(), lr=cfg.lr)
    t = time.perf_counter()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("reference")
    with mlflow.start_run(run_name=f"{cfg.optimizer}-lr{cfg.lr}-s{cfg.seed}"):
        mlflow.log_params({"optimizer": cfg.optimizer, "lr": cfg.lr, "batch_size": cfg.batch_size})
        setup_log = time.perf_counter() - t
        step_log = 0.0
        loop_start, step = time.perf_counter(), 0
        while step < cfg.steps:
            for xb, yb in loader:
                loss = torch.nn.functional.mse_loss(model(xb).squeeze(-1), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if cfg.log_every_step:
                    t = time.perf_counter()
                    mlflow.log_metric("train/loss", loss.item(), step=step)
                    step_log += time.perf_counter() - t
                step += 1
                if step == cfg.steps:
                    break
        loop = time.perf_counter() - loop_start - step_log
        t = time.perf_counter()
        mlflow.log_metric("w_error/l2", float((model.weight.detach()[0] - torch.tensor([2.0, -3.4])).norm()))
    end_log = time.perf_counter() - t
    return {"total_s": time.perf_counter() - start, "loop_s": loop, "step_log_s": step_log,
            "log_s": setup_log + step_log + end_log}


def reference_app() -> None:
    """`bench.py --reference-app -m optimizer=sgd,adam lr=0.1,0.01`: the reference under Hydra's basic launcher."""
    import hydra
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="reference", node=ReferenceConfig)

    @hydra.main(version_base="1.3", config_path=None, config_name="reference")
    def app(cfg) -> None:
        timings = reference_job(cfg, os.environ[contract.TRACKING_URI_ENV])
        if os.environ.get(TIMINGS_ENV):
            with open(os.environ[TIMINGS_ENV], "a") as f:
                f.write(json.dumps(timings) + "\n")

    sys.argv = [sys.argv[0]] + sys.argv[2:]
    app()


# ---- measuring ----

def timed_command(args: list[str], cwd: Path, **env_extra: str) -> float:
    """Wall seconds of a fresh process writing to a fresh (or the given folder's) store in `cwd`."""
    env = {**os.environ, contract.TRACKING_URI_ENV: f"sqlite:///{cwd / 'mlflow.db'}", "MPLBACKEND": "Agg", **env_extra}
    env.pop(contract.PARENT_ENV, None)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - start


def in_fresh_dirs(fn, repeats: int) -> float:
    """Median of fn(folder) over `repeats` new temp folders."""
    values = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="linreg_lab-bench-") as tmp:
            values.append(fn(Path(tmp)))
    return statistics.median(values)


def row(name: str, harness: float, reference: float, target: str, met: bool | None, **extra) -> dict:
    return {"row": name, "harness": float(harness), "reference": float(reference), "target": target,
            "met": met, **extra}


def row_mission(repeats: int) -> tuple[dict, list[dict[str, float]]]:
    """Row 1, and the figures of the reference's jobs that did not create their store."""
    ref_jobs: list[dict[str, float]] = []

    def reference(folder: Path) -> float:
        timings = folder / "timings.jsonl"
        seconds = timed_command([__file__, "--reference-app", *MISSION, f"hydra.sweep.dir={folder / 'multirun'}"],
                                folder, **{TIMINGS_ENV: str(timings)})
        ref_jobs.extend(json.loads(line) for line in timings.read_text().splitlines()[1:])
        return seconds

    harness = in_fresh_dirs(lambda d: timed_command(["-m", "linreg_lab.run", *MISSION], d), repeats)
    ref_s = in_fresh_dirs(reference, repeats)
    return row("1. mission sweep, end to end (s)", harness, ref_s, "<= 0.25x", harness <= 0.25 * ref_s), ref_jobs


def harness_jobs(overrides: list[str], count: int, uri: str) -> list[dict[str, float]]:
    """Run `count` jobs (seeds 0..) in this process as the entry point would, timing each job
    from outside and every MLflow call it makes (all of them go through linreg_lab.tracking)."""
    from hydra import compose, initialize_config_dir

    from linreg_lab import job, tracking
    from linreg_lab.config import check_config, register_configs
    from linreg_lab.run import conf_dir, job_context

    register_configs()
    spent = {"log_s": 0.0, "rows_s": 0.0}
    rows = ("start_run", "log_metrics")  # the calls that write the run's rows (run, params, tags, metrics, status)
    # every call into the store, and the writing of the artifacts (in place, into the run's folder)
    originals = {(tracking, name): getattr(tracking, name) for name in
                 ("open_experiment", "finished_run_with", "start_run", "end_run", "log_metrics", "artifact_dir",
                  "log_artifacts")}
    originals[job, "write_artifacts"] = job.write_artifacts

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent["log_s"] += time.perf_counter() - t
                if fn.__name__ in rows:
                    spent["rows_s"] += time.perf_counter() - t
        return wrapper

    results = []
    try:
        for (module, name), fn in originals.items():
            setattr(module, name, timed(fn))
        with initialize_config_dir(str(conf_dir()), version_base="1.3"), contextlib.redirect_stdout(io.StringIO()):
            for seed in range(count):
                raw = compose("config", [*overrides, f"seed={seed}", "device=cpu"])
                ctx, cfg = job_context(raw, uri, overrides), check_config(raw)
                spent["log_s"] = spent["rows_s"] = 0.0
                start = time.perf_counter()
                finals = job.run_job(cfg, ctx)
                results.append({"total_s": time.perf_counter() - start, "loop_s": finals[contract.TIME_TRAIN],
                                "log_s": spent["log_s"], "rows_s": spent["rows_s"]})
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    return results


def held_rows(client, run) -> tuple[str, dict[str, str], list, list]:
    """A run's rows as MLflow holds them: its name, its tags (not MLflow's own), its params, every point of its
    metrics (each of contract.HISTORIES whole, any other metric its one point at step 0)."""
    from mlflow.entities import Metric, Param

    metrics = []
    for key, value in run.data.metrics.items():
        if key in contract.HISTORIES:
            metrics += client.get_metric_history(run.info.run_id, key)
        else:
            metrics.append(Metric(key, value, run.info.end_time or 0, 0))
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    return run.info.run_name, tags, [Param(k, v) for k, v in run.data.params.items()], metrics


def write_fewest(client, exp_id: str, name: str, tags: dict[str, str], params: list, metrics: list) -> float:
    """Seconds MLflow's own client takes to write these rows as a new run in the fewest calls its API allows:
    create_run with the name and tags, log_batch calls within MLflow's limits (tracking.ENTITIES_PER_CALL,
    PARAMS_PER_CALL), set_terminated."""
    from linreg_lab.tracking import ENTITIES_PER_CALL, PARAMS_PER_CALL

    start = time.perf_counter()
    run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    while params or metrics:
        part, params = params[:PARAMS_PER_CALL], params[PARAMS_PER_CALL:]
        take = ENTITIES_PER_CALL - len(part)
        client.log_batch(run_id, metrics=metrics[:take], params=part)
        metrics = metrics[take:]
    client.set_terminated(run_id, "FINISHED")
    return time.perf_counter() - start


def write_share(uri: str, exp_id: str, held: list) -> None:
    """One of mlflow_floor_sweep's writers: these runs' rows through a client of its own."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for rows in held:
        write_fewest(client, exp_id, *rows)


def mlflow_floor_sweep(source_uri: str, folder: Path, workers: int = 2) -> tuple[float, int]:
    """Seconds MLflow's own client takes to write the rows of every job run of the store at `source_uri` again
    (write_fewest), shared out between `workers` forked processes, into a new store made the way linreg_lab
    makes one (SQLite, write-ahead log): the store's floor under that sweep, beside row 5; and how many runs."""
    import multiprocessing

    from linreg_lab import tracking

    client, exp_id = tracking.open_experiment(source_uri, "linreg_lab")
    held = [held_rows(client, run) for run in tracking.search_all(client, exp_id, "tags.run_kind = 'job'")]
    uri = f"sqlite:///{folder / 'floor.db'}"
    _, floor_exp = tracking.open_experiment(uri, "floor")
    tracking.close_connections()  # each writer opens its own
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=write_share, args=(uri, floor_exp, held[i::workers])) for i in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a writer of MLflow's floor failed: exit codes {[p.exitcode for p in procs]}")
    return seconds, len(held)


def rows_job(repeats: int, ref: list[dict[str, float]], uri: str) -> list[dict]:
    """Logging share and per-job overhead of a 1000-step job (SQLite, warm store and process), beside
    the reference's jobs `ref` (row 1's); the time our calls take to write a job's rows beside MLflow's
    own client writing the same rows in its fewest calls."""
    from mlflow import MlflowClient

    from linreg_lab import tracking

    jobs = harness_jobs(["steps=1000"], repeats + 1, uri)[1:]  # the first job pays the store's creation
    client, exp_id = tracking.open_experiment(uri, "linreg_lab")
    runs = sorted(tracking.search_all(client, exp_id, "tags.run_kind = 'job'"), key=lambda r: r.info.start_time)
    own = MlflowClient(uri)  # MLflow's own client writes the floor's rows
    floor_exp = own.create_experiment(f"floor-{time.time_ns()}")
    floors, histories, points, finals = [], [], [], []
    for run in runs[1:]:  # each run's rows twice in a row, whole then without its histories: a paired difference
        name, tags, params, metrics = held_rows(client, run)
        ends = [m for m in metrics if m.key not in contract.HISTORIES]
        floors.append(write_fewest(own, floor_exp, name, tags, params, metrics))
        histories.append(floors[-1] - write_fewest(own, floor_exp, name, tags, params, ends))
        points.append(len(metrics))
        finals.append(len(ends))
    floor_s = statistics.median(floors)
    rows_s = statistics.median(j["rows_s"] for j in jobs)
    share = statistics.median(j["log_s"] / j["total_s"] for j in jobs)
    ref_share = statistics.median(r["log_s"] / r["total_s"] for r in ref)
    overhead = statistics.median(j["total_s"] - j["loop_s"] for j in jobs)
    ref_overhead = statistics.median(r["total_s"] - r["loop_s"] - r["step_log_s"] for r in ref)
    job_s = statistics.median(j["total_s"] for j in jobs)
    ref_job_s = statistics.median(r["total_s"] for r in ref)
    return [row("2. logging share of a 1000-step job", share, ref_share, "<= 10%", share <= 0.10),
            row("4. per-job overhead outside the loop (s)", overhead, ref_overhead, "<= 0.050 s", overhead <= 0.050),
            row("   1000-step job, all in (s)", job_s, ref_job_s, "", None),
            row("9. a job's rows: our calls / MLflow's fewest calls (s)", rows_s, floor_s, "<= 1.5x",
                rows_s <= 1.5 * floor_s),
            row("12. metric points a 1000-step job writes to MLflow", statistics.median(points), float("nan"), "",
                None, finals=statistics.median(finals)),
            row("    their histories' share of MLflow's fewest calls (s)", statistics.median(histories), floor_s, "",
                None)]


def rows_loop(replicates: list[int], steps: int, device: str, models: tuple[str, ...], uri: str) -> list[dict]:
    """Training-loop time per step on one CPU thread (or on `device`), harness models vs the reference loop
    (which needs R separate runs for R replicates), whose run goes to the existing store at `uri`."""
    import torch
    from hydra import compose, initialize_config_dir

    from linreg_lab import fitting
    from linreg_lab.config import check_config, register_configs
    from linreg_lab.run import conf_dir

    torch.set_num_threads(1)
    register_configs()
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # torch.optim's one-off import of torch._dynamo
    ref = reference_job(ReferenceConfig(steps=steps, log_every_step=False), uri)
    ref_us = ref["loop_s"] / steps * 1e6
    rows, per_step = [], {}
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        for model in models:
            for R in replicates:
                cfg = check_config(compose("config", [f"model={model}", f"replicates={R}", f"steps={steps}",
                                                      f"device={device}"]))
                fits = [fitting.fit_gradient(cfg, fitting.load_data(cfg), torch.device(device)) for _ in range(3)]
                us = per_step[model, R] = statistics.median(f.finals[contract.TIME_TRAIN] for f in fits) / steps * 1e6
                default = model == "manual"
                rows.append(row(f"3. loop, {model}{' (default)' if default else ''}, R={R} ({device}, us/step)", us,
                                ref_us * R, "<= 100 us" if default and R <= 100 else "",
                                us <= 100 if default and R <= 100 else None))
    ratio = per_step["manual", 100] / per_step["manual", 1]
    rows.append(row(f"3. loop, manual, R=100 / R=1 ({device})", ratio, 100.0, "<= 1.5x", ratio <= 1.5))
    default = per_step["manual", 8] / per_step["manual", 1]  # the price of replicates=8, the default
    rows.append(row(f"3. loop, manual, R=8 (default) / R=1 ({device})", default, 8.0, "", None))
    return rows


def jobs_span(folder: Path) -> float:
    """Seconds from the first job run's start to the last one's end, in the store a command made in `folder`
    (the command's time less its imports, checks, store creation and summary)."""
    from linreg_lab import tracking

    client, exp_id = tracking.open_experiment(f"sqlite:///{folder / 'mlflow.db'}", "linreg_lab")
    runs = tracking.search_all(client, exp_id, "tags.run_kind = 'job'")
    return (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000


def rows_sweeps(full: bool, ref_job_s: float) -> list[dict]:
    """The 2-worker speed-up of joblib and of the pool launcher on 16 jobs; the 1000-job sweep on the
    pool launcher (run, or projected: projected_big_sweep); the report over that sweep's runs (quick: 100 of them)."""
    sixteen = ["-m", "optimizer=sgd,momentum,rmsprop,adam", "lr=0.003,0.01,0.03,0.1"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="linreg_lab-bench-") as tmp:
        def seconds(name: str, overrides: list[str]) -> float:
            Path(tmp, name).mkdir()
            return timed_command(["-m", "linreg_lab.run", *overrides], Path(tmp, name))

        sizes = [("1000", ["steps=1000"])] + ([(str(HEAVY_STEPS), [f"steps={HEAVY_STEPS}"])] if full else [])
        for steps, extra in sizes:  # --full: jobs long enough that joblib's workers repay their imports (~6 s)
            basic_s = seconds(f"basic{steps}", [*sixteen, *extra])
            basic_jobs_s = jobs_span(Path(tmp, f"basic{steps}"))
            for name, launcher in (("joblib", JOBLIB), ("pool", POOL)):
                par_s = seconds(f"{name}{steps}", [*sixteen, *extra, *launcher])
                par_jobs_s = jobs_span(Path(tmp, f"{name}{steps}"))
                rows.append(row(f"7. {name} 2 workers, 16 jobs of {steps} steps: speed-up (x)", basic_s / par_s, 1.0,
                                ">= 1.6x", basic_s / par_s >= 1.6, basic_s=basic_s, parallel_s=par_s))
                rows.append(row("   its jobs alone, first start to last end: speed-up (x)", basic_jobs_s / par_jobs_s,
                                1.0, "", None, basic_s=basic_jobs_s, parallel_s=par_jobs_s))
        if full:
            big_s, where, runs = seconds("big", [*BIG_SWEEP, "steps=1000", *POOL]), Path(tmp, "big"), 1000
            extra = {}
        else:
            big_s, extra = projected_big_sweep(seconds)
            where, runs = Path(tmp, "small100"), 100
        report_s = timed_command(["-m", "linreg_lab.report", "--out", str(where / "report")], where)
        load_s, points = load_results(f"sqlite:///{where / 'mlflow.db'}")
        floor_s, floor_runs = mlflow_floor_sweep(f"sqlite:///{where / 'mlflow.db'}", Path(tmp))
    big = "1000-job sweep, pool x2 (s)" + ("" if full else ", projected from 52 and 100 of its jobs")
    return rows + [row(f"5. {big}", big_s, ref_job_s * 1000, "<= 60 s", big_s <= 60, **extra),
                   row("   MLflow's fewest calls for its rows, 2 processes (s)", floor_s,
                       float("nan"), "", None, runs=floor_runs),
                   row(f"6. report over {runs} runs (s)", report_s, float("nan"), "<= 30 s for 1000",
                       report_s <= 30 if full else None),
                   row(f"10. results: runs + every train/loss point, {runs} runs (s)", load_s, float("nan"),
                       "<= 10 s for 1000", load_s <= 10 if full else None, points=points)]


def projected_big_sweep(seconds) -> tuple[float, dict]:
    """Quick mode's row 5: the 1000-job sweep's own kind of jobs (its optimizers, its rates, seed 0) run as two
    whole commands of 52 and 100 jobs, a straight line through their times extrapolated to 1000 jobs. Each
    command pays its fixed costs (imports, the store's making, the summary) once, and its jobs the per-job
    ones (each optimizer's config composed once per worker, the store's writes as its tables grow), so the
    line's intercept and slope are both measured, not assumed."""
    half = [*BIG_SWEEP[:2], f"lr={','.join(LRS[::2])}", "seed=0", "steps=1000", *POOL]  # 4 x 13 jobs
    whole = [*BIG_SWEEP[:3], "seed=0", "steps=1000", *POOL]  # 4 x 25 jobs
    t52, t100 = seconds("small52", half), seconds("small100", whole)
    slope = (t100 - t52) / (100 - 52)
    return t100 + (1000 - 100) * slope, {"seconds_52": t52, "seconds_100": t100, "per_job_s": slope}


def rows_presets(full: bool) -> list[dict]:
    """Row 11: each study preset's whole sweep on the pool launcher against its time budget (--full only)."""
    if not full:
        return [row("11. study presets: --full runs them", float("nan"), float("nan"), "", None)]
    rows = []
    for preset, budget in PRESET_BUDGETS.items():
        command = ["-m", "linreg_lab.run", "-m", f"experiment={preset}", *POOL]
        seconds = in_fresh_dirs(lambda d, command=command: timed_command(command, d), 1)
        rows.append(row(f"11. preset {preset}, pool x2 (s)", seconds, float("nan"), f"<= {budget} s",
                        seconds <= budget))
    return rows


def load_results(uri: str) -> tuple[float, int]:
    """Seconds for linreg_lab.results to load the latest sweep's runs and every point of their training
    loss (a process that has MLflow loaded, as a notebook has after its first call), and the points."""
    from linreg_lab import results

    results.runs("latest", tracking_uri=uri)  # the store's first open loads MLflow's SQL modules (~0.5 s)
    start = time.perf_counter()
    runs = results.runs("latest", tracking_uri=uri)
    points = len(results.curves(runs, contract.TRAIN_LOSS, resolution="full"))
    return time.perf_counter() - start, points


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def print_table(rows: list[dict]) -> None:
    print(f"{'row':<58} {'harness':>9} {'reference':>10} {'ratio':>7}  {'target':<17} met")
    for r in rows:
        ratio = r["harness"] / r["reference"] if np.isfinite(r["reference"]) and r["reference"] else float("nan")
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        print(f"{r['row']:<58} {r['harness']:>9.4g} {r['reference']:>10.4g} {ratio:>7.3g}  {r['target']:<17} {met}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--reference-app":
        return reference_app()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="run the 1000-job sweep and its report as stated (minutes)")
    p.add_argument("--json", help="also write the machine and the rows as JSON to this path")
    p.add_argument("--repeats", type=int, default=None, help="repeats per row, >= 1 (default: 1 quick, 3 full)")
    args = p.parse_args()
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.json and not Path(args.json).absolute().parent.is_dir():
        p.error(f"--json {args.json}: its folder does not exist")
    repeats = args.repeats or (3 if args.full else 1)
    started = time.perf_counter()
    mission, ref_jobs = row_mission(repeats)
    rows = [mission]
    models, steps = ("manual", "linear") if args.full else ("manual",), 2000 if args.full else 500
    with tempfile.TemporaryDirectory(prefix="linreg_lab-bench-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"  # the in-process rows' store
        job_rows = rows_job(max(repeats, 5), ref_jobs, uri)
        rows += job_rows
        rows += rows_loop([1, 8, 10, 100, 1000], steps, "cpu", models, uri)
        import torch

        if torch.cuda.is_available():
            rows += rows_loop([1, 8, 10, 100, 1000], steps, "cuda", models, uri)
        else:
            rows.append(row("8. CUDA rows: no CUDA device here", float("nan"), float("nan"), "", None))
    rows += rows_sweeps(args.full, statistics.median(r["total_s"] for r in ref_jobs))  # the reference's 1000-step job
    rows += rows_presets(args.full)
    info = {"mode": "full" if args.full else "quick", "seconds": time.perf_counter() - started, **machine()}
    print(f"linreg_lab benchmark, {info['mode']} mode, {info['cpus']} CPUs, torch {info['torch']}, "
          f"{info['platform']} ({info['seconds']:.0f} s)")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({**info, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
