"""Builds the schedules of one Lamina process: the EventBridge endpoint and the scheduler."""

from __future__ import annotations

import time
from dataclasses import dataclass

import botocore.session

from lamina.api.asgi import Endpoint
from lamina.api.auth import SigV4Verifier
from lamina.api.context import ApiContext
from lamina.api.json_service import JsonService
from lamina.audit.trail import AuditTrail
from lamina.control.policies import PolicyService
from lamina.observability.metrics import MetricsRegistry
from lamina.schedules import api
from lamina.schedules.clock import ScheduleClock
from lamina.schedules.rules import RuleService
from lamina.schedules.scheduler import Scheduler
from lamina.schedules.targets import LambdaTargets


@dataclass(frozen=True)
class Schedules:
    endpoint: Endpoint  # serves `X-Amz-Target: AWSEvents.*`
    scheduler: Scheduler


def build_schedules(
    ctx: ApiContext,
    metrics: MetricsRegistry,
    verifier: SigV4Verifier | None,
    audit: AuditTrail | None = None,
) -> Schedules:
    settings, domain = ctx.settings, ctx.domain
    clock = ScheduleClock(
        settings.schedule_time_scale, settings.schedule_time_origin or time.time()
    )
    scheduler = Scheduler(
        rules=domain.stores.rules,
        queue=domain.stores.queue,
        targets=LambdaTargets(ctx.functions, PolicyService(domain, ctx.functions), domain.account),
        account=domain.account,
        metrics=metrics,
        clock=clock,
    )
    rules = RuleService(domain.stores.rules, domain.account, clock.now, scheduler.changed)
    model = botocore.session.get_session().get_service_model("events")
    service = JsonService(model, api.operations(rules), verifier, audit)
    return Schedules(service.handle, scheduler)
