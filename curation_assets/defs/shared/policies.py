"""The policies every per-video asset shares: its partitions, its backfill policy, and retrying a
step that failed as a whole, never a stop.

A per-video asset is partitioned by video (``partitions.videos_partitions``) and takes its videos
in ranges of ``VIDEOS_PER_RUN`` per run (:data:`BACKFILL_POLICY`); :data:`PER_VIDEO` is that pair.
Failures of single videos are kept to their video and raised with ``allow_retries=False``
(``outcomes``): trying the whole batch again would not change them (the backfill schedule
requests failed videos again later).

Dagster's ``RetryPolicy`` on a step retries *any* exception, interrupts included: Ctrl-C,
SIGTERM or the UI's *Terminate* during a step becomes a retry after 5, 15 and 35 s
(``op_execution_error_boundary``; dagster #15026 for the in-process executor), so a stopped run
idles for a minute and a Kubernetes or systemd grace period ends in SIGKILL. So no step carries
a policy: the compute functions and the work-area IO manager raise ``RetryRequested`` themselves
with the same backoff (:data:`RETRY_POLICY`), for exceptions only. A stop is a ``BaseException``
(``core.cancel.Interrupted``, ``KeyboardInterrupt``, Dagster's ``DagsterExecutionInterruptedError``)
and passes through untouched: Dagster records the step as interrupted and ends the run.

Not retried either, as with a policy: a ``Failure(allow_retries=False)`` (a broken video, a
missing stored value, settings that cannot work), a ``RetryRequested`` of the code's own, and
Dagster's framework errors.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NoReturn

import dagster as dg

from ...core.options import VIDEOS_PER_RUN
from ...partitions import videos_partitions

BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=VIDEOS_PER_RUN)
#: What every per-video asset shares: video partitions, in ranges of ``VIDEOS_PER_RUN`` per run.
PER_VIDEO: dict[str, Any] = dict(partitions_def=videos_partitions, backfill_policy=BACKFILL_POLICY)

# A step that fails as a whole (the work area or the output unreachable, a model that did not
# load) is tried again after 5, 15 and 35 s.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


_CONTEXTS = (dg.AssetExecutionContext, dg.OpExecutionContext, dg.InputContext, dg.OutputContext)


def attempts_before(context: Any) -> int:
    """How many times this step ran before (0 on the first attempt), from a step's, an output's
    or an input's context."""
    number = getattr(context, "retry_number", None)
    if isinstance(number, int):
        return number
    try:
        return int(context.step_context.previous_attempt_count)
    except Exception:  # noqa: BLE001 - a context built outside a step (a test): first attempt
        return 0


def retry_for(exc: Exception, context: Any) -> Exception:
    """What to raise for ``exc``: a ``RetryRequested`` with the policy's backoff, or ``exc``
    itself when a retry cannot change it (see the module docstring)."""
    if isinstance(exc, (dg.RetryRequested, dg.DagsterError)):
        return exc
    if isinstance(exc, dg.Failure) and not exc.allow_retries:
        return exc
    attempt = attempts_before(context) + 1
    return dg.RetryRequested(max_retries=RETRY_POLICY.max_retries,
                             seconds_to_wait=RETRY_POLICY.calculate_delay(attempt))


def retried(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a step's compute function, plain or a generator, or an IO manager method taking
    ``(self, context, ...)``) with its exceptions turned into retry requests; interrupts pass."""

    def context_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if "context" in kwargs:
            return kwargs["context"]
        return next((a for a in args if isinstance(a, _CONTEXTS)), None)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                _raise_for(exc, context_of(args, kwargs))

        return generator

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            _raise_for(exc, context_of(args, kwargs))

    return plain


def _raise_for(exc: Exception, context: Any) -> NoReturn:
    """Raise what :func:`retry_for` makes of ``exc`` (``exc`` itself, or a retry request from it)."""
    raised = retry_for(exc, context)
    if raised is exc:
        raise exc
    raise raised from exc
