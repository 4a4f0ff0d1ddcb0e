"""BCE's t and b learn as their learning rate predicts; the report states the final values and
names a learnable parameter that stayed at its initialisation."""

import json
import math

import pandas as pd
import pytest
import yaml

from pairrel.report import final, loss_params
from pairrel.report.figures import load_runs, training_curves
from pairrel.train import Trainer, linear_schedule
from tests.test_train import RUN, prepared, run_config  # noqa: F401 (the fixture)

STEPS, WARMUP = 8, 2


def _train(prepared, root, loss_lr):  # noqa: F811
    cfg = run_config(prepared, steps=STEPS, every=STEPS)
    cfg["training"].update(warmup_steps=WARMUP, loss_learning_rate=loss_lr)
    folder = root / f"lr~{loss_lr:g}" / "run"
    assert Trainer(cfg, folder, progress=False).run() == 0
    (folder / "run.yaml").write_text(yaml.safe_dump(cfg))  # as the workflow writes it
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_runs(prepared, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("runs")
    return root, {lr: _train(prepared, root, lr) for lr in (0.05, 2e-4)}


def bound(lr):
    """AdamW's reach over the run: lr x the schedule's sum (here 1.5 warm-up + 3.5 decay = 5)."""
    factor = linear_schedule(WARMUP, STEPS)
    return lr * sum(factor(step) for step in range(STEPS))


def test_t_and_b_move_as_far_as_their_learning_rate_allows(two_runs):
    assert bound(0.05) == pytest.approx(0.25) and bound(2e-4) == pytest.approx(0.001)
    factor = linear_schedule(WARMUP, STEPS)
    _, runs = two_runs
    moved = {}
    for lr, metrics in runs.items():
        t_prime = [math.log(10.0)] + [math.log(m["temperature"]) for m in metrics]  # t' = log t from log 10
        bias = [-4.0] + [m["bias"] for m in metrics]  # quickstart's bias_init
        for values in (t_prime, bias):
            steps = [abs(b - a) for a, b in zip(values, values[1:])]
            # AdamW's first update is lr_1 x sign(gradient): exactly lr / WARMUP here ...
            assert steps[0] == pytest.approx(lr * factor(0), rel=2e-3)
            # ... and no step goes further than about its learning rate, so no run past the bound.
            assert all(step <= 1.01 * lr * factor(s) + 1e-6 for s, step in enumerate(steps))
            assert abs(values[-1] - values[0]) <= 1.01 * bound(lr)
        moved[lr] = (abs(t_prime[-1] - t_prime[0]), abs(bias[-1] - bias[0]))
    # At the LoRA rate t and b stay within 0.1 % of where they started (the report flags them);
    # the 250 times larger rate moves each of them at least 50 times as far.
    lora = runs[2e-4][-1]
    assert abs(lora["temperature"] / 10.0 - 1) < 1e-3 and abs(lora["bias"] / -4.0 - 1) < 1e-3
    assert all(fast >= 50 * slow for fast, slow in zip(moved[0.05], moved[2e-4]))


def test_report_states_final_t_and_b_of_each_bce_run(two_runs):
    root, runs = two_runs
    params = loss_params.final_loss_parameters(load_runs(root))
    assert len(params) == 2
    by_folder = {row["folder"]: row for _, row in params.iterrows()}
    for lr, metrics in runs.items():
        row = by_folder[str(root / f"lr~{lr:g}" / "run")]
        assert row["t_final"] == pytest.approx(metrics[-1]["temperature"]) and row["t_init"] == 10.0
        assert row["b_final"] == pytest.approx(metrics[-1]["bias"]) and row["b_init"] == -4.0
    notes = loss_params.stuck_notes(params)
    assert [n.split(" of ")[0] for n in notes if "lr~0.0002" in n] == ["learnable t", "learnable b"]
    # The per-run table's column: a BCE row gets its runs' mean final t and b, others "–".
    frame = pd.DataFrame({"kind": ["trained", "trained", "base"], "loss": ["bce", "softmax", None]})
    cells = loss_params.cells(frame, ["loss"], params.assign(loss="bce"))
    assert cells == [f"t {params['t_final'].mean():.3g}, b {params['b_final'].mean():.3g}", "–", "–"]
    assert training_curves(root, root / "curves") and (root / "curves.png").is_file()


def test_a_parameter_under_five_percent_of_its_start_is_flagged():
    params = pd.DataFrame([
        {"folder": "runs/a", "t_init": 10.0, "t_final": 10.4, "b_init": -10.0, "b_final": -8.0,
         "learn_t": True, "learn_b": True},   # t moved 4 %: flagged; b 20 %: not
        {"folder": "runs/b", "t_init": 10.0, "t_final": 10.0, "b_init": 0.0, "b_final": 0.03,
         "learn_t": False, "learn_b": True},  # t fixed: never flagged; b from 0 moved 0.03 (absolute)
        {"folder": "runs/c", "t_init": 20.0, "t_final": 15.0, "b_init": -5.0, "b_final": -5.5,
         "learn_t": True, "learn_b": True},   # 25 % and 10 %: nothing to say
    ])
    notes = loss_params.stuck_notes(params)
    assert [n.split(" moved ")[0] for n in notes] == ["learnable t of runs/a", "learnable b of runs/b"]
    assert "moved 4.00 %" in notes[0] and "moved 3.00 %" in notes[1]


def test_main_table_gets_the_column_only_with_bce_runs():
    main = pd.DataFrame({"model": ["m", "m"], "grid_model": ["m", "m"], "loss": ["bce", "softmax"], "step": [4, 4],
                         "STS": [50.0, 40.0], "Average": [50.0, 40.0], "source": ["results", "results"],
                         "n_tasks": [1, 1], "missing": ["", ""]})
    grid = ["grid_model", "loss", "step"]
    params = pd.DataFrame({"grid_model": ["m"], "loss": ["bce"], "t_final": [12.5], "b_final": [-9.25]})
    table = final.final_table(main, grid, ["STS"], loss_params=params)
    assert list(table.shown[loss_params.COLUMN]) == ["t 12.5, b -9.25", "–"]
    assert loss_params.COLUMN not in final.final_table(main, grid, ["STS"]).shown


def test_partial_loss_block_is_an_error_naming_the_file(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("loss: {type: bce, temperature_init: 10.0}\n")
    with pytest.raises(ValueError, match=rf"{run_yaml}: not the resolved config of a BCE run \(config key 'loss.bias_init'"):
        loss_params._bce_settings(run_yaml)
    run_yaml.write_text("grid: {loss: bce}\n")
    assert loss_params._bce_settings(run_yaml) is None
