"""A bad environment (issue 19 F8-F10, item 6): BUSADV_HOME, BUSADV_CACHE, BUSADV_DATA, BUSADV_PLUGINS,
BUSADV_MAX_JOBS and --device with any bad value give one line naming the variable and the fix, at start, before any
work, from the CLI, the job CLI and the app's start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Imported before any test patches busadv.data or busadv.experiments: a module first imported under a patch
# would keep the patched function for the rest of the session.
import busadv.cli.commands  # noqa: F401
import busadv.experiments  # noqa: F401

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parent.parent


def _a_file(tmp_path: Path) -> str:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return str(path)


def _under_a_file(tmp_path: Path) -> str:
    return str(Path(_a_file(tmp_path)) / "sub")


def _unwritable(tmp_path: Path) -> str:
    if os.geteuid() == 0:
        return "/proc/busadv-home"
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder / "inner")


BAD = [
    ("BUSADV_HOME", _a_file, "is a file"), ("BUSADV_HOME", _under_a_file, "cannot be made"),
    ("BUSADV_HOME", _unwritable, "cannot be"),
    ("BUSADV_CACHE", _a_file, "is a file"), ("BUSADV_CACHE", _under_a_file, "cannot be made"),
    ("BUSADV_DATA", lambda tmp: str(tmp / "missing"), "no such folder"), ("BUSADV_DATA", _a_file, "is a file"),
    ("BUSADV_MAX_JOBS", lambda tmp: "two", "whole number"), ("BUSADV_MAX_JOBS", lambda tmp: "0", "whole number"),
    ("BUSADV_MAX_JOBS", lambda tmp: "-3", "whole number"), ("BUSADV_MAX_JOBS", lambda tmp: "1e9", "whole number"),
    ("BUSADV_PLUGINS", lambda tmp: "no_such_busadv_plugin", "cannot be imported"),
    ("BUSADV_PLUGINS", lambda tmp: "tests.job_plugins,os.path.nope", "cannot be imported"),
]


@pytest.mark.parametrize(("name", "make", "problem"), BAD, ids=[f"{n}-{p}-{i}" for i, (n, _, p) in enumerate(BAD)])
def test_a_bad_variable_is_one_line_at_start_naming_it_and_the_fix(tmp_path, monkeypatch, capsys, name, make,
                                                                   problem):
    from busadv.cli import main

    monkeypatch.setenv(name, make(tmp_path))
    monkeypatch.setattr("busadv.data.load_dataset", lambda *a, **k: pytest.fail("work started"))
    assert main(["data"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {name}") and problem in err, err
    assert "Traceback" not in err and any(word in err for word in ("point", "unset", "set it", "remove", "install"))


@pytest.mark.parametrize("name", ["BUSADV_HOME", "BUSADV_MAX_JOBS"])
def test_the_jobs_command_checks_the_environment_first(tmp_path, monkeypatch, capsys, name):
    from busadv.cli import main

    monkeypatch.setenv(name, _a_file(tmp_path) if name == "BUSADV_HOME" else "lots")
    assert main(["jobs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {name}")


def test_a_missing_plugin_is_one_line_not_a_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", BUSADV_PLUGINS="no_such_busadv_plugin")
    done = subprocess.run([sys.executable, "-m", "busadv", "train", "--epochs", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "BUSADV_PLUGINS" in done.stderr and "no_such_busadv_plugin" in done.stderr


def test_a_plugin_clashing_with_a_built_in_says_what_clashed_and_the_fix(tmp_path, monkeypatch, capsys):
    from busadv.cli import main

    (tmp_path / "clashing_plugin.py").write_text(
        "from busadv.models.registry import MODELS\n"
        "MODELS.register(MODELS.get('simplecnn'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BUSADV_PLUGINS", "clashing_plugin")
    assert main(["data"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BUSADV_PLUGINS" in err and "clashing_plugin" in err
    assert "'simplecnn'" in err and "another name" in err


@pytest.mark.parametrize("device", ["garbage", "meta", "cuda:x", "", "cpu:0:1", "mps" * 40])
def test_a_bad_device_is_refused_by_name_before_any_work(monkeypatch, capsys, device):
    from busadv.cli import main

    monkeypatch.setattr("busadv.experiments.train_job", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as info:
        main(["train", "--device", device])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --device" in err and "auto, cpu" in err and "Traceback" not in err


def test_cuda_without_a_gpu_is_refused_at_start(monkeypatch, capsys):
    import torch

    from busadv.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("busadv.experiments.train_job", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit):
        main(["train", "--device", "cuda"])
    assert "no CUDA device" in capsys.readouterr().err


def test_a_job_with_a_bad_device_fails_at_once_naming_it(tmp_path):
    from busadv.jobs import JobStore, run_job

    store = JobStore(tmp_path / "jobs.sqlite")
    job_id = store.submit("train", {"epochs": 1, "image_size": 32, "device": "meta"}, start=False)
    run_job(job_id, store)
    job = store.get(job_id)
    assert job.status == "failed" and "device" in job.error and "'meta'" in job.error


def test_the_app_start_reports_a_bad_environment_in_one_line(tmp_path, monkeypatch):
    from busadv.settings import environment_problem

    monkeypatch.setenv("BUSADV_CACHE", _a_file(tmp_path))
    problem = environment_problem()
    assert problem is not None and problem.startswith("BUSADV_CACHE") and "\n" not in problem
    monkeypatch.setenv("BUSADV_CACHE", str(tmp_path / "cache"))
    assert environment_problem() is None


@pytest.mark.parametrize(("name", "value"), [("BUSADV_HOME", None), ("BUSADV_MAX_JOBS", "many"),
                                             ("BUSADV_PLUGINS", "no_such_busadv_plugin")])
def test_the_app_shows_a_bad_environment_as_one_error_line(tmp_path, monkeypatch, name, value):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(name, value if value is not None else _a_file(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    (error,) = at.error
    shown = error.value.replace("\\", "")  # plain() escapes Markdown
    assert shown.startswith(name) and "\n" not in shown


def test_a_data_folder_named_in_markdown_is_shown_as_its_name(tmp_path, monkeypatch):
    """BUSADV_DATA's path reaches the banner and the sidebar label as text: no link, no bold of its choosing."""
    from streamlit.testing.v1 import AppTest

    from tests.test_data import make_busi

    folder = make_busi(tmp_path / "[click](javascript:alert(1)) **loud**", per_class=2)
    monkeypatch.setenv("BUSADV_DATA", str(folder))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/5_Dataset.py").run()
    assert not at.exception
    shown = [e.value for e in [*at.success, *at.caption] if "click" in str(e.value)]
    assert len(shown) >= 2, "the banner and the sidebar label both name the folder"
    for value in shown:
        assert "\\[click\\]" in value and "\\*\\*loud\\*\\*" in value and "[click](" not in value
