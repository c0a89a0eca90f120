"""The plan: every file read, with Service targets resolved across files.

A Service in one manifest often selects the pods of a Deployment in another, so
named ``targetPort`` values are resolved only once every file is read. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from portkit.model import PortRange
from portkit.plan._model import (
    Issue,
    KubeContainerPort,
    KubeService,
    KubeWorkload,
    PlanFile,
    PortMapping,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from portkit.plan._check import CheckResult
    from portkit.plan._rules import Finding

__all__ = ["Plan", "build_plan", "selected_workloads"]


@dataclass(frozen=True)
class Plan:
    """Every file of a plan, read; ``mappings`` has the Service targets resolved."""

    files: tuple[PlanFile, ...]
    mappings: tuple[PortMapping, ...]

    @property
    def issues(self) -> tuple[Issue, ...]:
        return tuple(i for f in self.files for i in f.issues)

    @property
    def services(self) -> list[KubeService]:
        return [s for f in self.files if f.kube is not None for s in f.kube.services]

    @property
    def workloads(self) -> list[KubeWorkload]:
        return [w for f in self.files if f.kube is not None for w in f.kube.workloads]

    def lint(self, **options: Any) -> list[Finding]:
        """Run the lint rules (see :func:`portkit.plan.lint`)."""
        from portkit.plan._rules import lint

        return lint(self, **options)

    def check(self, **options: Any) -> list[CheckResult]:
        """Verify against this machine or a remote host (see :func:`portkit.plan.check`)."""
        from portkit.plan._check import check

        return check(self, **options)


def _same_namespace(a: str | None, b: str | None) -> bool:
    # A manifest without a namespace gets one at apply time (kubectl -n, kustomize),
    # so a missing namespace is taken to match any.
    return a is None or b is None or a == b


def selected_workloads(
    service: KubeService, workloads: Sequence[KubeWorkload]
) -> list[KubeWorkload]:
    """The workloads whose pod labels carry every key=value of the Service selector."""
    if not service.selector:
        return []
    return [
        w
        for w in workloads
        if _same_namespace(service.namespace, w.namespace)
        and all(w.labels.get(k) == v for k, v in service.selector.items())
    ]


def resolve_target(
    target: int | str | None, protocol: str, pods: Sequence[KubeWorkload]
) -> tuple[int | None, KubeContainerPort | None]:
    """The container port a Service targetPort reaches in ``pods``: (number, port record)."""
    for w in pods:
        for cp in w.ports:
            if cp.protocol != protocol:
                continue
            if (isinstance(target, str) and cp.name == target) or (
                isinstance(target, int) and cp.container_port == target
            ):
                return cp.container_port, cp
    return (target if isinstance(target, int) else None), None


def build_plan(files: Sequence[PlanFile]) -> Plan:
    """Join the files: resolve every Service port's target against the selected pods."""
    workloads = [w for f in files if f.kube is not None for w in f.kube.workloads]
    services = {
        (s.file, s.name, s.namespace): s
        for f in files
        if f.kube is not None
        for s in f.kube.services
    }
    mappings: list[PortMapping] = []
    for f in files:
        for m in f.mappings:
            if m.origin == "service":
                svc = services.get((m.file, m.service, m.namespace))
                if svc is not None:
                    pods = selected_workloads(svc, workloads)
                    number, cp = resolve_target(m.target_port, m.protocol.upper(), pods)
                    m = replace(
                        m,
                        container_port=PortRange(number)
                        if number and 0 < number <= 65535
                        else None,
                        container=cp.container if cp is not None else None,
                        selected=tuple(w.object for w in pods),
                    )
            mappings.append(m)
    return Plan(tuple(files), tuple(mappings))
