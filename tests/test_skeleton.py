"""The stage skeleton: one order of phases for every stage, a refusal stops before anything is
written, a shard ends in its fragment, and every stage module runs in it."""

from __future__ import annotations

import ast
import dataclasses
from typing import ClassVar

import pytest
from conftest import REPO_ROOT

from perceptual_audio.stages import cli
from perceptual_audio.stages.skeleton import StageRun, run_stage


def _double(x: int) -> int:
    if x < 0:
        raise ValueError(f"{x} is negative")
    return 2 * x


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Settings(cli.StageSettings):
    items: tuple[int, ...] = ()
    stop_at: str | None = None
    shard: object | None = None


@dataclasses.dataclass
class _Recorder(StageRun[_Settings]):
    stage: ClassVar[str] = "recorder"
    do_item: ClassVar = _double
    calls: list[str] = dataclasses.field(default_factory=list)
    values: list[int] = dataclasses.field(default_factory=list)

    def _phase(self, name: str) -> int | None:
        self.calls.append(name)
        return 2 if self.settings.stop_at == name else None

    def check(self):
        return self._phase("check")

    def claim(self):
        return self._phase("claim")

    def read(self):
        return self._phase("read")

    def plan(self):
        self.todo = list(self.settings.items)
        return self._phase("plan")

    def collect(self, outcomes):
        self.calls.append("collect")
        for oc in outcomes:
            if oc.ok:
                self.values.append(oc.value)
            else:
                self.failures.append((str(oc.item), oc.error))

    def finish_shard(self):
        self.calls.append("finish_shard")
        return 0

    def commit(self):
        return self._phase("commit")

    def summary(self):
        self.calls.append("summary")
        return f"{self.written} done"


def test_phases_run_in_order_and_items_in_parallel_map(capsys):
    run = _Recorder(_Settings(items=(1, 2, 3)))
    assert run_stage(run) == 0
    assert run.calls == ["check", "claim", "read", "plan", "collect", "commit", "summary"]
    assert run.values == [2, 4, 6] and run.written == 3
    assert "recorder: finished in" in capsys.readouterr().err


def test_a_failed_item_fails_the_run_and_the_others_are_done():
    run = _Recorder(_Settings(items=(1, -1, 3)))
    assert run_stage(run) == cli.EXIT_FAILED
    assert run.values == [2, 6]
    assert run.failures == [("-1", "ValueError: -1 is negative")]


@pytest.mark.parametrize("phase", ["check", "claim", "read", "plan", "commit"])
def test_a_phase_that_returns_a_status_stops_the_run_there(phase):
    run = _Recorder(_Settings(items=(1,), stop_at=phase))
    assert run_stage(run) == 2
    assert run.calls[-1] == phase and "summary" not in run.calls


def test_a_shard_ends_in_its_fragment_not_the_commit():
    run = _Recorder(_Settings(items=(1,), shard=object()))
    assert run_stage(run) == 0
    assert run.calls[-2:] == ["collect", "finish_shard"]


STAGE_MODULES = {
    "convert.py": "_Conversion",
    "listening_import.py": "_Import",
    "degrade.py": "_Run",
    "restore.py": "_Run",
    "embed.py": "_ModelEmbedding",
    "score.py": "_Scoring",
    "visualize.py": "_Report",
}


@pytest.mark.parametrize("module, run_class", sorted(STAGE_MODULES.items()))
def test_every_stage_runs_in_the_skeleton(module, run_class):
    tree = ast.parse((REPO_ROOT / "perceptual_audio" / "stages" / module).read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert run_class in classes, f"{module} defines no {run_class}"
    bases = [ast.unparse(b) for b in classes[run_class].bases]
    assert any(b.startswith("StageRun[") for b in bases), bases
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert calls & {"run_stage", "run_stage_skeleton"}, f"{module} never calls run_stage"
