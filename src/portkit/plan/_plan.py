"""The plan: every file read, with Service targets resolved across files.

A Service in one manifest often selects the pods of a Deployment in another, so
named ``targetPort`` values are resolved only once every file is read. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

from portkit.model import PortRange
from portkit.plan._model import (
    Issue,
    KubeService,
    KubeWorkload,
    PlanFile,
    PortMapping,
    resolve_target,
    selected_workloads,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Plan", "build_plan"]


@dataclass(frozen=True)
class Plan:
    """Every file of a plan, read; ``mappings`` has the Service targets resolved.

    A record: :func:`portkit.plan.lint` and :func:`portkit.plan.check` take it.
    """

    files: tuple[PlanFile, ...]
    mappings: tuple[PortMapping, ...]

    @property
    def issues(self) -> tuple[Issue, ...]:
        return tuple(i for f in self.files for i in f.issues)

    @cached_property
    def services(self) -> list[KubeService]:
        return [s for f in self.files if f.kube is not None for s in f.kube.services]

    @cached_property
    def workloads(self) -> list[KubeWorkload]:
        return [w for f in self.files if f.kube is not None for w in f.kube.workloads]

    @cached_property
    def _selected(self) -> dict[int, list[KubeWorkload]]:
        # Every Service's pods at once, through an index of the pod labels: the rules
        # ask for each Service's pods, and one scan of every workload per Service
        # made lint quadratic on big bundles.
        index: dict[tuple[str, str], list[KubeWorkload]] = {}
        for w in self.workloads:
            for pair in w.labels.items():
                index.setdefault(pair, []).append(w)
        out: dict[int, list[KubeWorkload]] = {}
        for svc in self.services:
            if not svc.selector:
                continue
            first = next(iter(svc.selector.items()))
            out[id(svc)] = selected_workloads(svc, index.get(first, []))
        return out

    def pods_of(self, service: KubeService) -> list[KubeWorkload]:
        """The workloads a Service of this plan selects (see ``selected_workloads``)."""
        found = self._selected.get(id(service))
        return found if found is not None else selected_workloads(service, self.workloads)


def build_plan(files: Sequence[PlanFile]) -> Plan:
    """Join the files: resolve every Service port's target against the selected pods."""
    pre = Plan(tuple(files), ())  # its Service -> pods index
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
                    pods = pre.pods_of(svc)
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
