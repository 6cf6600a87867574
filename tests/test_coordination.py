"""The rules that keep a shared study exact, under any interleaving of its workers."""

from __future__ import annotations

import optuna
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from tuner.storage.coordination import SURPLUS_ATTR, claim_slot, give_up_surplus, requeue, retried_numbers
from tuner.study.optuna_study import count_finished, count_started

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _holding(study: optuna.Study, claimed: set[int]) -> int:
    """Trials that passed their claim and still count toward the total."""
    retried = retried_numbers(study.get_trials(deepcopy=False))
    states = {t.number: t for t in study.get_trials(deepcopy=False)}
    return sum(
        1
        for n in claimed
        if n not in retried
        and not states[n].system_attrs.get(SURPLUS_ATTR)
        and states[n].state != TrialState.FAIL
    )


@settings(max_examples=100, deadline=None)
@given(
    total=st.integers(1, 6),
    workers=st.integers(2, 5),
    schedule=st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=120),
)
def test_racing_workers_never_pass_the_total_and_always_reach_it(total, workers, schedule):
    """Workers step in any order (look, ask, claim, finish or die); the study ends at exactly its total."""
    study = optuna.create_study(direction="maximize")
    held: list[optuna.Trial | None] = [None] * workers
    ready: list[bool] = [False] * workers  # saw a free slot; asks at its next step
    claimed: list[bool] = [False] * workers
    passed: set[int] = set()

    def step(w: int, dies: bool) -> None:
        trial = held[w]
        if trial is None and not ready[w]:
            ready[w] = count_finished(study) < total and count_started(study) < total
        elif trial is None:
            trial = study.ask()
            trial.suggest_float("lr", 1e-4, 1.0, log=True)
            held[w], ready[w], claimed[w] = trial, False, False
        elif not claimed[w]:
            if claim_slot(study, trial.number, total):
                claimed[w] = True
                passed.add(trial.number)
            else:
                give_up_surplus(study, trial)
                held[w] = None
        else:
            if dies:  # the worker died: its trial is failed and queued again, once
                study.tell(trial, state=TrialState.FAIL)
                requeue(study, trial._trial_id, max_retry=1)
            else:
                study.tell(trial, 0.5)
            held[w] = None
        assert _holding(study, passed) <= total

    for w, dies in schedule:
        step(w % workers, dies)
    for _ in range(40 * (total + workers)):  # then every worker in turn, none dying
        for w in range(workers):
            step(w, False)
        if all(h is None for h in held) and not any(ready) and count_finished(study) >= total:
            break
    assert count_finished(study) == total
    assert not study.get_trials(states=(TrialState.RUNNING,))
