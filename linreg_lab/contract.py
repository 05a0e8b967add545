"""Every name linreg_lab writes or reads: metrics, tags and their values, artifacts, environment variables,
and the model and optimizer names. Writers and readers import these; nothing else spells them.

The README's contract tables list the same names (tests/test_contract.py checks both ways), and a scan of
the source fails on a metric or artifact name spelt anywhere else, so renaming one is an edit here and in
the README. A `{i}` or `{x}` in a name is filled in with `.format`; the README writes it `<i>`, `<x>`.
"""

from __future__ import annotations

# ---- models and optimizers ----
GRADIENT_MODELS = ("linear", "scratch", "manual", "no_intercept")  # fitted by an optimizer
SOLVER_MODELS = ("closed_form", "grid")  # no optimizer, no loop
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
GD_FAMILY = ("sgd", "momentum")  # gradient descent and heavy ball: the optimizers theory describes

# ---- metric histories (curves.npz holds every point, MLflow a thinned copy) ----
TRAIN_LOSS = "train/loss"
TRAIN_LOSS_P10 = "train/loss_p10"
TRAIN_LOSS_P90 = "train/loss_p90"
TEST_LOSS = "test/loss"
FULL_LOSS = "train/full_loss"
GRID_COST = "grid/cost"
HISTORIES = (TRAIN_LOSS, TRAIN_LOSS_P10, TRAIN_LOSS_P90, TEST_LOSS, FULL_LOSS, GRID_COST)

# ---- final metrics (one value at step 0) ----
W_ERROR = "w_error/l2"
W_ERROR_I = "w_error/{i}"
B_ERROR = "b_error"
W_I = "w/{i}"
W_INIT_I = "w_init/{i}"  # a replicate's start: results.replicates' column
B = "b"
OLS_W_GAP = "ols/w_gap_l2"
OLS_B_GAP = "ols/b_gap"
OLS_LOSS = "ols/loss"
PREDICT_AT = "predict/{x}"
DIVERGED = "diverged"
DIVERGED_FRACTION = "diverged_fraction"
DIVERGED_STEP = "diverged_step"
STEPS_DONE = "steps_done"  # the optimizer steps taken: the budget, or fewer (stop_at_target, divergence)

EST_W_BIAS2 = "est/w_bias2"
EST_W_VAR = "est/w_var"
EST_W_MSE = "est/w_mse"
EST_B_BIAS2 = "est/b_bias2"
EST_B_VAR = "est/b_var"
EST_B_MSE = "est/b_mse"
EST_W_OPT_MSE = "est/w_opt_mse"
EST_W_STAT_MSE = "est/w_stat_mse"
EST_REPLICATES = "est/replicates"
EST_FINITE_REPLICATES = "est/finite_replicates"
PRED_BIAS2 = "pred/bias2"
PRED_VAR = "pred/var"
PRED_NOISE = "pred/noise"
PRED_TEST_MSE = "pred/test_mse"

THEORY_W_VAR = "theory/w_var"
THEORY_B_VAR = "theory/b_var"
THEORY_LR_MAX = "theory/lr_max"
THEORY_CONDITION = "theory/condition"
THEORY_BEST_WEIGHT_DECAY = "theory/best_weight_decay"
THEORY_BEST_STEPS = "theory/best_steps"
THEORY_W_VAR_SGD = "theory/est/w_var_sgd"
# conditioning: the best constant rates of the training Hessian, and when a full-batch run meets its target
THEORY_BEST_LR = "theory/best_lr"
THEORY_BEST_CONTRACTION = "theory/best_contraction"
THEORY_POLYAK_LR = "theory/polyak_lr"
THEORY_POLYAK_MOMENTUM = "theory/polyak_momentum"
THEORY_POLYAK_CONTRACTION = "theory/polyak_contraction"
THEORY_STEPS_TO_TARGET = "theory/steps_to_target"
THEORY_NOISE_SCALE = "theory/noise_scale"  # streaming Gaussian rows: McCandlish et al.'s B_simple at the start
# double descent: the decomposition given the design (bias counts the design's randomness), and the
# isotropic Gaussian design's exact expectations (theory.py's isotropic section)
EST_W_BIAS2_COND = "est/w_bias2_cond"
EST_W_VAR_COND = "est/w_var_cond"
THEORY_GAUSS_W_MSE = "theory/gauss/w_mse"
THEORY_GAUSS_W_BIAS2_COND = "theory/gauss/w_bias2_cond"
THEORY_GAUSS_W_VAR_COND = "theory/gauss/w_var_cond"
THEORY_GAUSS_RIDGE_W_MSE = "theory/gauss/ridge_w_mse"
THEORY_GAUSS_RIDGE_WEIGHT_DECAY = "theory/gauss/ridge_weight_decay"

# batch-size scaling, on a sweep's parent: S(B) = min_steps (1 + critical_batch / B) fitted to each optimizer's
# fewest steps to target at each batch size (analysis.critical_batch_fit)
SCALING_CRITICAL_BATCH = "scaling/{optimizer}/critical_batch"
SCALING_MIN_STEPS = "scaling/{optimizer}/min_steps"

TTT_STEPS = "ttt/steps"
TTT_SAMPLES = "ttt/samples"
TTT_SECONDS = "ttt/seconds"
TTT_CENSORED = "ttt/censored"
TIME_TRAIN = "time/train_s"
TIME_TOTAL = "time/total_s"

# what a job may return to a sweeper (`objective`): a metric a job records under one name (a history: its last value)
OBJECTIVES = (W_ERROR, B_ERROR, OLS_W_GAP, OLS_B_GAP, OLS_LOSS, TRAIN_LOSS, TEST_LOSS, FULL_LOSS, DIVERGED_FRACTION,
              EST_W_BIAS2, EST_W_VAR, EST_W_MSE, EST_B_BIAS2, EST_B_VAR, EST_B_MSE, EST_W_OPT_MSE, EST_W_STAT_MSE,
              EST_W_BIAS2_COND, EST_W_VAR_COND, PRED_BIAS2, PRED_VAR, PRED_TEST_MSE, TTT_STEPS, TTT_SAMPLES,
              TTT_SECONDS, STEPS_DONE, TIME_TRAIN, TIME_TOTAL)
BEST_OBJECTIVE = "best/{objective}"  # a sweep parent's: the winning job's objective

# the bias/variance decomposition: quantity -> part -> metric (analysis.decompose's parts)
EST_PARTS = {"w": {"bias2": EST_W_BIAS2, "var": EST_W_VAR, "mse": EST_W_MSE},
             "b": {"bias2": EST_B_BIAS2, "var": EST_B_VAR, "mse": EST_B_MSE},
             "w_opt": {"mse": EST_W_OPT_MSE}, "w_stat": {"mse": EST_W_STAT_MSE}}
PRED_PARTS = {"bias2": PRED_BIAS2, "var": PRED_VAR, "mse": PRED_TEST_MSE}
DECOMPOSED = (EST_W_BIAS2, EST_W_VAR, EST_W_MSE, EST_B_BIAS2, EST_B_VAR, EST_B_MSE,
              PRED_BIAS2, PRED_VAR, PRED_TEST_MSE)  # each logged with se(name) and theory_of(name) beside it
WITH_SE = (*DECOMPOSED, EST_W_OPT_MSE, EST_W_STAT_MSE)


def se(metric: str) -> str:
    """The standard error logged beside an estimate: est/w_mse -> est/w_mse_se."""
    return f"{metric}_se"


def theory_of(metric: str) -> str:
    """What theory predicts for a measured metric: est/w_mse -> theory/est/w_mse."""
    return f"theory/{metric}"


def loss_percentile(q: int) -> str:
    """The band's edge of the training loss over replicates: 10 -> train/loss_p10."""
    return {10: TRAIN_LOSS_P10, 90: TRAIN_LOSS_P90}[q]


# ---- tags (and the values they take) ----
RUN_KIND = "run_kind"
RUN_KINDS = ("job", "sweep")
OUTCOME = "outcome"
OUTCOMES = ("completed", "diverged", "interrupted")
DEVICE = "device"
TORCH_VERSION = "torch_version"
OVERRIDES = "overrides"
MODEL = "model"
PRESET = "preset"
THEORY = "theory"
THEORY_KINDS = ("exact", "approximate", "none")
STABILITY = "stability"
STABILITY_VERDICTS = ("stable_as_predicted", "diverged_as_predicted", "diverged_below_bound",
                      "stable_above_bound", "n/a")
GIT_COMMIT = "git_commit"
CONFIG_HASH = "config_hash"
OWNER = "owner"
ERROR = "error"
COMMAND = "command"  # sweep parents
SWEEP_DIR = "sweep_dir"
SWEEP_HASH = "sweep_hash"
BEST_RUN_ID = "best_run_id"  # sweep parents: the job with the best objective (the sweeper's direction)
NOTE = "mlflow.note.content"  # MLflow's: a run's description
PARENT_RUN = "mlflow.parentRunId"  # MLflow's: nests a job under its sweep
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's: which view the UI opens an experiment in
MODEL_TRAINING = "custom_model_development"

# ---- artifacts ----
CONFIG_YAML = "config.yaml"
DATA_NPZ = "data.npz"
# X, y, w_init, b_init: a leading replicate axis when R > 1
DATA_ARRAYS = ("X", "y", "w_init", "b_init", "X_test", "y_test", "true_w", "true_b")
CURVES_NPZ = "curves.npz"  # each history's metric name -> a 2 x n array: steps, values
CURVE_CSV = "curve.csv"
CURVE_CSV_HEADER = "step,train_loss"  # every step, the mean over replicates
REPLICATES_NPZ = "replicates.npz"
REPLICATE_ARRAYS = ("train_loss", "w", "b", "w_init", "b_init", "diverged_at")
FIT_PNG = "fit.png"
GRID_CSV = "grid.csv"
GRID_COST_PNG = "grid_cost.png"
LONG_PARAMS_JSON = "long_params.json"
OPTIMIZATION_RESULTS = "optimization_results.yaml"  # an Optuna sweep's own result, on its parent
REPORT_DIR = "report"  # the parent's report, under this artifact folder:
REPORT_HTML = "report.html"
RUNS_CSV = "runs.csv"

# ---- environment variables ----
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # the store, over the config's
POOLCLASS_ENV = "MLFLOW_SQLALCHEMYSTORE_POOLCLASS"  # MLflow's: NullPool keeps no SQLite connection open
PARENT_ENV = "LINREG_LAB_PARENT_RUN_ID"  # the sweep's parent run, handed to every job
SIZE_ENV = "LINREG_LAB_SWEEP_SIZE"  # the sweep's number of jobs, for the [k/N] labels
HTTP_TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"  # a try of a server's request gives up after this (20 s unless set)
ARTIFACTS_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # false unless set: no bar per run read
