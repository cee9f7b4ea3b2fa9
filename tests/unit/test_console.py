# ruff: noqa: E501 - the sample lines are real TensorFlow and kfp lines, long as they are
"""The local run's console (issue 12): step lines with "step k/N" and elapsed time, the steps' own
lines, no kfp executor-input JSON or TensorFlow banner unless --verbose, everything in the log file,
and a "still running" line when a step is silent."""

from __future__ import annotations

import builtins
import io
import logging
import time
from pathlib import Path

from melanoma_pipelines.console import Console

# What kfp.local echoes from a step subprocess (after its own 4-space indent), abridged from a real run.
SUBPROCESS = """\
INFO:root:Got executor_input:
{
    "inputs": {
        "parameterValues": {
            "parent_run_id": "04c913e71e254190881dc8360aa3ea10",
            "seed": 42
        }
    }
}
2026-11-30 01:51:40.178045: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
2026-11-30 01:51:41.283641: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
2026-11-30 01:51:45,002 INFO melanoma_mlops.model.schedules: stage1: 2049 trainable parameters (head only)
Epoch 1/2
3/3 - 10s - 3s/step - auc: 0.4494 - loss: 1.4959 - val_auc: 0.0000 - val_loss: 0.7819
2026-11-30 01:51:55,310 INFO melanoma_mlops.steps.train: stage1 epoch 1/2: loss 1.4959, val AUC 0.0000
2026-11-30 01:51:56,001 WARNING absl: Compiled the loaded model, but the compiled metrics have yet to be built.
🏃 View run stage1 at: http://127.0.0.1:5000/#/experiments/1/runs/e898ec81
🧪 View experiment at: http://127.0.0.1:5000/#/experiments/1
2026-11-30 01:51:57,002 ERROR melanoma.stage1: stage1 failed: data validation of x failed (1 expectation(s)):
min side below 32 px: a.png
The Data Docs report is in /tmp/docs.
2026-11-30 01:51:58,002 ERROR melanoma.stage2: stage2 failed
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/urllib3/connection.py", line 239, in _new_conn
ConnectionRefusedError: [Errno 111] Connection refused
/usr/lib/python3/dist-packages/keras/src/trainers/trainer.py:12: UserWarning: something noisy
  warnings.warn(
"""


def _kfp_record(message: str) -> logging.LogRecord:
    return logging.LogRecord(
        "root", logging.INFO, "/venv/kfp/local/task_dispatcher.py", 1, message, None, None
    )


def _feed(console: Console, task: str) -> None:
    root = logging.getLogger()
    root.handle(_kfp_record(f"Executing task \x1b[96m'{task}'\x1b[0m"))
    for line in SUBPROCESS.splitlines(keepends=True):
        builtins.print("    ", end="")  # kfp.local's indented_print
        builtins.print(line, end="")
    root.handle(_kfp_record(f"Task \x1b[96m'{task}'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m"))


def test_the_console_shows_steps_and_progress_and_hides_the_noise(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(tmp_path / "run.log", steps=["validate", "split", "oversample", "stage1"], out=out)
    with console:
        _feed(console, "stage1")
    shown = out.getvalue().splitlines()
    assert shown[0] == "step 4/4 stage1: started"
    assert shown[-1].startswith("step 4/4 stage1: done in ") and "(run time " in shown[-1]
    body = "\n".join(shown)
    assert "stage1: 2049 trainable parameters" in body and "stage1 epoch 1/2: loss 1.4959" in body
    assert "ERROR: stage1 failed: data validation" in body and "min side below 32 px: a.png" in body
    assert "ERROR: stage2 failed" in body  # its traceback is only in the log
    for noise in ("executor_input", "parameterValues", "oneDNN", "To enable the following", "Epoch 1/2",
                  "3/3 - 10s", "absl", "UserWarning", "warnings.warn", "View run", "View experiment", "Traceback", "ConnectionRefusedError"):  # fmt: skip
        assert noise not in body, noise
    log = (tmp_path / "run.log").read_text()
    assert "executor_input" in log and "oneDNN" in log and "stage1 epoch 1/2" in log  # all of it
    assert console.lines_shown == len(shown)


def test_verbose_shows_every_line(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(tmp_path / "run.log", steps=["stage1"], verbose=True, out=out)
    with console:
        _feed(console, "stage1")
    assert "executor_input" in out.getvalue() and "oneDNN custom operations" in out.getvalue()


def test_a_silent_step_gets_a_still_running_line(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(tmp_path / "run.log", steps=["stage2"], quiet_s=0.2, out=out)
    with console:
        logging.getLogger().handle(_kfp_record("Executing task 'stage2'"))
        time.sleep(5.5)
    assert "    ... stage2 still running (" in out.getvalue()


def test_print_and_logging_are_restored(tmp_path: Path) -> None:
    original, filters = builtins.print, list(logging.getLogger().filters)
    with Console(tmp_path / "run.log", out=io.StringIO()):
        assert builtins.print is not original
    assert builtins.print is original and logging.getLogger().filters == filters


def test_a_step_that_dies_before_reporting_is_named_by_its_traceback(tmp_path: Path) -> None:
    """A component whose import fails never reaches our runtime's error file: the run's one error
    line is then its traceback's last line, not 'killed? out of memory?'."""
    from melanoma_pipelines.console import last_exception

    log = tmp_path / "run.log"
    log.write_text(
        "# step 5/9 stage2: done\n# step 6/9 evaluate: started\n"
        "    Traceback (most recent call last):\n"
        '      File "/tmp/x/ephemeral_component.py", line 94, in evaluate\n'
        "        from melanoma_mlops.steps.evaluate import evaluate_step\n"
        "    ModuleNotFoundError: No module named 'fairlearn'\n    \n"
        "# step 6/9 evaluate: FAILED in 5 s\n"
    )
    assert last_exception(log) == "ModuleNotFoundError: No module named 'fairlearn'"
    log.write_text("# step 6/9 evaluate: FAILED in 5 s\n")
    assert last_exception(log) == ""
    assert last_exception(tmp_path / "missing.log") == ""


def test_the_cli_holds_chatty_libraries_above_info_unless_verbose(monkeypatch) -> None:
    """Great Expectations logs ~200 INFO lines ("Skipping registering function ...") when
    `evaluate` validates in the CLI's process; the console shows our lines, not theirs."""
    import logging

    from melanoma_pipelines import cli

    for name in cli.QUIETED_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    assert cli.main(["compile", "--gpus", "-1"]) == 2  # refused by its own check: no work done
    assert logging.getLogger("great_expectations").level == logging.WARNING
