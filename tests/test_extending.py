"""docs/EXTENDING.md run the way a user runs it, and the family-independent default prompt.

The guide's marked code blocks are its test script, in the order they appear:
``python file=PATH`` / ``yaml file=PATH`` are written into a temporary folder outside the
repository; ``bash run`` blocks run there and must succeed, ``bash fails`` blocks must fail; a
``text output`` block lists lines the block before it prints. The guide's set-up is played by the
environment: ``FASTADASP`` = this checkout, ``FASTADASP_DATA`` = its ``data/`` (the demo sets of
``make data``), the interpreter's folder first on ``PATH``, one thread. Every command that
runs ``run.py`` must leave one ``metrics.json`` per job with the method, task, sample count and FLOPs
target its overrides name, and the target realised; each recipe's own outcome is checked below.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from fastadasp.run.instantiate import instantiate
from fastadasp.tasks.definition import DEFAULT_PROMPT, Task, TaskConfigError

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "EXTENDING.md"
TASKS = sorted(p.stem for p in (ROOT / "configs" / "task").glob("*.yaml"))
#: the defaults of configs/config.yaml that a command does not override
DEFAULT_JOB = {"method": "none", "task": "asr", "flops": "0"}


# -- reading the guide ---------------------------------------------------------------------------

@dataclass
class Block:
    section: str  # the "## " heading the block is under
    kind: str  # file | run | fails | output
    text: str
    path: str | None = None


def guide_blocks(text: str) -> list[Block]:
    """The marked fenced blocks of the guide, in order (unmarked blocks are prose)."""
    blocks, section = [], ""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("```") or line.strip() == "```":
            continue
        info = line[3:].split()
        body = []
        for inner in lines:
            if inner.startswith("```"):
                break
            body.append(inner)
        content = "\n".join(body) + "\n"
        marks = dict(word.split("=", 1) if "=" in word else (word, "") for word in info[1:])
        if "file" in marks:
            blocks.append(Block(section, "file", content, marks["file"]))
        elif info[0] == "bash" and ("run" in marks or "fails" in marks):
            blocks.append(Block(section, "run" if "run" in marks else "fails", content))
        elif info[0] == "text" and "output" in marks:
            blocks.append(Block(section, "output", content))
    return blocks


BLOCKS = guide_blocks(GUIDE.read_text(encoding="utf-8"))
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS))


def section(prefix: str) -> str:
    matches = [s for s in SECTIONS if s.startswith(prefix)]
    assert len(matches) == 1, f"docs/EXTENDING.md has no single section starting {prefix!r}: {SECTIONS}"
    return matches[0]


def guide_file(path: str) -> str:
    return next(b.text for b in BLOCKS if b.kind == "file" and b.path == path)


def expected_jobs(command_block: str) -> list[dict[str, str]]:
    """One dict (method, task, flops, limit) per job of each run.py command of a block."""
    jobs = []
    for line in command_block.splitlines():
        words = shlex.split(line)
        if not any(w.endswith("run.py") for w in words):
            continue
        overrides = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith(("hydra.", "PYTHONPATH")))
        sweep = "-m" in words or "--multirun" in words
        keys = [k for k in overrides if k in ("method", "task", "flops", "limit")]
        values = [overrides[k].split(",") if sweep else [overrides[k]] for k in keys]
        jobs += [DEFAULT_JOB | dict(zip(keys, combo)) for combo in itertools.product(*values)]
    return jobs


def check_printed(expected: str, printed: str) -> None:
    """Each line of a ``text output`` block is printed. A log summary line is compared by its
    `` | `` fields: the run folder by its last component (the user's path differs), a metric by
    its name (its value is the model's, checked by the recipe's own test), the rest as written."""
    for line in filter(None, (x.strip() for x in expected.splitlines())):
        if " | " not in line:
            assert line in printed, f"the guide says this is printed:\n{line}\ngot:\n{printed[-3000:]}"
            continue
        for part in line.split(" | "):
            if "/" in part and "outputs" in part:
                part = part.rsplit("/", 1)[1]
            elif re.fullmatch(r"\w+=\S+", part):
                part = part.split("=")[0] + "="
            assert part in printed, f"the guide says a line holds {part!r}; got:\n{printed[-3000:]}"


# -- running it ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    command: str
    printed: str
    metrics: list[dict] = field(default_factory=list)  # the metrics.json files the block wrote


class GuideRun:
    """The guide followed in one folder, section by section (a later recipe may use an earlier one's files)."""

    def __init__(self, folder: Path):
        self.folder, self.done = folder, 0
        self.outcomes: dict[str, list[Outcome]] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
        self.env.update(FASTADASP=str(ROOT), FASTADASP_DATA=str(ROOT / "data"), OMP_NUM_THREADS="1",
                        MKL_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def through(self, prefix: str) -> list[Outcome]:
        """Run every block up to the end of the section starting with ``prefix``; its outcomes."""
        name = section(prefix)
        last = max(i for i, b in enumerate(BLOCKS) if b.section == name)
        for block in BLOCKS[self.done : last + 1]:
            self._play(block)
            self.done += 1
        return self.outcomes.get(name, [])

    def _metrics_files(self) -> set[Path]:
        return set(self.folder.glob("outputs/**/metrics.json"))

    def _play(self, block: Block) -> None:
        if block.kind == "file":
            target = self.folder / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            return
        if block.kind == "output":
            check_printed(block.text, self.outcomes[block.section][-1].printed)
            return
        before = self._metrics_files()
        done = subprocess.run(["bash", "-e", "-c", block.text], cwd=self.folder, env=self.env, text=True,
                              capture_output=True, timeout=600)
        printed = done.stdout + done.stderr
        if block.kind == "run":
            assert done.returncode == 0, f"{block.text}\nfailed:\n{printed[-4000:]}"
        else:
            assert done.returncode != 0, f"{block.text}\nshould fail, but printed:\n{printed[-2000:]}"
        written = [json.loads(p.read_text()) for p in sorted(self._metrics_files() - before)]
        self.outcomes.setdefault(block.section, []).append(Outcome(block.text, printed, written))
        if block.kind == "run":
            check_jobs(block.text, written)


def check_jobs(command: str, written: list[dict]) -> None:
    """One metrics.json per job, each with its method, task, sample count and FLOPs target, realised."""
    jobs = expected_jobs(command)
    assert all("limit" in j for j in jobs), f"{command}\nthe guide's runs take a limit (the test must stay fast)"
    want = sorted((j["method"], j["task"], float(j["flops"]), int(j["limit"])) for j in jobs)
    got = sorted((m["method"], m["task"], m["flops_target"], m["num_samples"]) for m in written)
    assert got == want, f"{command}\nwrote runs {got}, expected {want}"
    for m in written:
        assert m["num_failed"] == 0 and abs(m["flops_realized"] - m["flops_target"]) <= 0.01, m


@pytest.fixture(scope="module")
def guide(tmp_path_factory) -> GuideRun:
    folder = tmp_path_factory.mktemp("my_project")
    assert not folder.resolve().is_relative_to(ROOT), "the recipes must run outside the repository"
    return GuideRun(folder)


def rows(folder: Path, metrics: dict) -> list[dict]:
    path = Path(metrics["config"]["output_dir"])
    return [json.loads(line) for line in (folder / path / "predictions.jsonl").read_text().splitlines()]


# -- the recipes ---------------------------------------------------------------------------------

@pytest.mark.real_model
def test_the_method_recipe_runs_from_outside_the_repository(guide):
    outcomes = guide.through("1.")
    layer = yaml.safe_load(guide_file("conf/method/keynorm_evict.yaml"))["layer"]
    runs = [m for o in outcomes for m in o.metrics if m["method"] == "keynorm_evict"]
    assert len(runs) >= 2  # the run and the sweep
    for m in runs:
        assert m["method_settings"] == {"start_layer": layer, "name": "keynorm_evict"}
        assert m["config"]["method"]["_target_"] == "my_methods.KeyNormEvict"
        for row in rows(guide.folder, m):
            tokens = row["tokens_per_layer"]  # entering each layer, then the output
            assert len(set(tokens[: layer + 1])) == 1 and len(set(tokens[layer + 1 :])) == 1
            assert tokens[layer + 1] < tokens[layer]  # reduced at its layer only
    tables = list((guide.folder / "report" / "tables").glob("methods_*.md"))
    assert any("keynorm_evict" in t.read_text() for t in tables), tables


@pytest.mark.real_model
def test_the_model_family_recipe_runs_a_shipped_task_unchanged(guide):
    outcomes = guide.through("2.")
    runs = [m for o in outcomes for m in o.metrics]
    assert runs and all(m["model_family"] == "chat_speech_lm" for m in runs)
    for m in runs:
        assert m["config"]["model"]["_target_"] == "my_models.ChatSpeechLM" and m["task"] in TASKS
        for row in rows(guide.folder, m):
            assert row["tokens_per_layer"][-1] < row["tokens_per_layer"][0]


@pytest.mark.real_model
def test_the_task_recipe_parses_and_scores_its_answers(guide):
    outcomes = guide.through("3.")
    keywords = yaml.safe_load(guide_file("conf/task/kws.yaml"))["keywords"]
    runs = [m for o in outcomes for m in o.metrics]
    assert runs and all(m["task"] == "kws" and m["primary_metric"] == "f1" for m in runs)
    for m in runs:
        assert {"f1", "precision", "recall", "hits", "false_alarms", "misses"} <= set(m["metrics"])
        for row in rows(guide.folder, m):
            assert row["answer"] == [k for k in keywords if k in row["answer"]]  # parsed, in the task's order
    whisper_full = [m for m in runs if m["model_family"] == "whisper_en" and m["method"] == "none"]
    assert whisper_full and whisper_full[0]["metrics"]["f1"] >= 80  # tiny.en hears the keywords of clean speech
    assert any(m["model_family"] == "chat_speech_lm" for m in runs)  # the new family on the new task


@pytest.mark.real_model
def test_the_mistakes_the_guide_shows_are_refused_as_it_says(guide):
    outcomes = guide.through("When something")
    assert outcomes and all(not o.metrics for o in outcomes)


# -- the default prompt --------------------------------------------------------------------------

def compose_task(name: str) -> Task:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return Task.from_config(compose(config_name="config", overrides=[f"task={name}"]).task, instantiate)


@pytest.mark.parametrize("name", TASKS)
def test_every_task_has_a_default_prompt_for_new_families(name):
    task = compose_task(name)
    default = task.prompts[DEFAULT_PROMPT]
    assert isinstance(default, str) and "<" not in default  # a plain instruction, no model's tokens
    assert task.template("a_family_added_later", uses_default=True) == default
    with pytest.raises(TaskConfigError, match="has no prompt for model family 'a_family_added_later'.*"
                                              "uses_default_prompt is False"):
        task.template("a_family_added_later")
    for family in task.prompts.keys() - {DEFAULT_PROMPT} - task.prompt_conditions.keys():
        assert task.template(family, uses_default=True) == task.template(family)  # its own prompt wins


def test_a_task_without_a_default_names_what_it_has():
    task = compose_task("asr")
    task.prompts.pop(DEFAULT_PROMPT)
    with pytest.raises(TaskConfigError, match=r"it has prompts for \[.*'whisper_en'.*\] and no default prompt"):
        task.template("a_family_added_later", uses_default=True)
