"""``portkit plan explain | lint | check``: a stack's port plan, read, linted and verified."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from portkit.cli._output import out, stdout_style, stdout_width
from portkit.cli.commands._options import PORT_RANGE, Seconds, json_option
from portkit.errors import PortkitError, UsageError

if TYPE_CHECKING:
    from portkit.model import PortRange
    from portkit.plan import Plan

_files_argument = click.argument(
    "files", nargs=-1, metavar="FILE...", type=click.Path(dir_okay=False, allow_dash=True)
)
_env_file_option = click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Variables for ${VAR} in compose files (repeatable; default: .env beside the first file).",
)
_profile_option = click.option(
    "--profile",
    "profiles",
    multiple=True,
    metavar="NAME",
    help="Enable a compose profile (repeatable, * for all; default: COMPOSE_PROFILES).",
)
_format_option = click.option(
    "--format",
    "file_format",
    type=click.Choice(["auto", "compose", "kubernetes", "plan"]),
    default="auto",
    show_default=True,
    help="How to read the files (auto: recognise each one).",
)


def _load(
    files: tuple[str, ...],
    env_files: tuple[str, ...],
    file_format: str,
    profiles: tuple[str, ...] = (),
) -> Plan:
    if not files:
        raise UsageError("no FILE given (a compose file, Kubernetes manifests or a portkit plan)")
    try:
        import yaml  # noqa: F401
    except ImportError:
        raise PortkitError("portkit plan needs PyYAML: pip install 'portkit[yaml]'") from None
    from portkit.plan import load_plan

    return load_plan(
        list(files),
        env_files=list(env_files) if env_files else None,
        format=file_format,
        profiles=list(profiles) or None,
    )


@click.group(
    "plan",
    epilog="""\b
Examples:
  portkit plan explain compose.yaml
  portkit plan lint compose.yaml k8s/*.yaml --fail-on warning
  portkit plan lint deploy.yaml --sarif > portkit.sarif
  portkit plan check examples/web-stack/portkit-plan.yaml
  portkit plan check compose.yaml --host 10.0.0.5
  portkit plan snapshot > host.plan.yaml && portkit plan check host.plan.yaml""",
)
def plan_group() -> None:
    """A stack's ports: docker compose files, Kubernetes manifests and portkit plans.

    explain says what every mapping means, lint finds mistakes before deploying,
    check verifies the plan against this machine or a remote host, snapshot writes
    what listens here as a baseline that check then holds the host to.
    """


@plan_group.command(
    "explain",
    epilog="""\b
Examples:
  portkit plan explain compose.yaml
  portkit plan explain deployment.yaml service.yaml --json
  portkit plan explain compose.yaml --env-file prod.env""",
)
@_files_argument
@_env_file_option
@_profile_option
@_format_option
@json_option
def explain_cmd(
    files: tuple[str, ...],
    env_files: tuple[str, ...],
    profiles: tuple[str, ...],
    file_format: str,
    as_json: bool,
) -> int:
    """Every port mapping in plain words, grouped by service, and the host ports taken.

    e.g. "host 0.0.0.0:8080/tcp -> container web:3000/tcp, reachable on every
    interface of the host". --json prints a list of mapping objects.
    """
    from portkit.render import to_json
    from portkit.render.plan import explain_text, mapping_json

    plan = _load(files, env_files, file_format, profiles)
    if as_json:
        out(to_json([mapping_json(m) for m in plan.mappings]))
    else:
        out(explain_text(plan, stdout_style(), stdout_width()))
    return 0


_SEVERITIES = ("error", "warning", "info")


@plan_group.command(
    "lint",
    epilog="""\b
Examples:
  portkit plan lint compose.yaml
  portkit plan lint k8s/*.yaml --fail-on warning
  portkit plan lint compose.yaml --ignore privileged-port --json
  portkit plan lint deploy.yaml --sarif > portkit.sarif
  portkit plan lint --list-rules""",
)
@_files_argument
@_env_file_option
@_profile_option
@_format_option
@click.option(
    "--fail-on",
    type=click.Choice(_SEVERITIES),
    default="error",
    show_default=True,
    help="Exit 1 when a finding is at least this severe.",
)
@click.option("--ignore", "ignore", multiple=True, metavar="RULE", help="Skip a rule (repeatable).")
@click.option(
    "--enable",
    "enable",
    multiple=True,
    metavar="RULE",
    help="Run a rule that is off by default (repeatable): external-service.",
)
@click.option(
    "--node-port-range",
    type=PORT_RANGE,
    default="30000-32767",
    show_default=True,
    help="The cluster's --service-node-port-range.",
)
@click.option("--sarif", is_flag=True, help="Print SARIF 2.1.0 for code-scanning tools.")
@click.option("--list-rules", is_flag=True, help="Print the rules and exit.")
@json_option
def lint_cmd(
    files: tuple[str, ...],
    env_files: tuple[str, ...],
    profiles: tuple[str, ...],
    file_format: str,
    fail_on: str,
    ignore: tuple[str, ...],
    enable: tuple[str, ...],
    node_port_range: PortRange,
    sarif: bool,
    list_rules: bool,
    as_json: bool,
) -> int:
    """Find port mistakes before deploying: every problem in every file.

    Rules cover invalid ports, ranges, protocols and names (worded as Docker and
    Kubernetes word them), host port conflicts across services and files,
    databases published on every interface, NodePorts outside the range,
    targetPorts that reach no container, unquoted base-60 ports, SSH, hostPort and
    more (--list-rules). Exit 1 when a finding reaches --fail-on, 2 when a file
    cannot be read at all.
    """
    from portkit.plan import RULES, Severity, lint
    from portkit.render import to_json
    from portkit.render.plan import findings_json, findings_text, rules_text

    if sarif and as_json:
        raise UsageError("--sarif and --json are exclusive: pick one output")
    if list_rules and (sarif or files or env_files):
        what = "--sarif" if sarif else ("FILE" if files else "--env-file")
        raise UsageError(
            f"--list-rules prints the rule table and reads no file: drop {what} "
            "(or --list-rules --json for the table as JSON)"
        )
    if list_rules:
        if as_json:
            out(
                to_json(
                    [
                        {
                            "rule": r.id,
                            "severity": str(r.severity),
                            "title": r.title,
                            "hint": r.hint,
                            "default": r.default,
                        }
                        for r in RULES
                    ]
                )
            )
        else:
            out(rules_text(RULES, stdout_style(), stdout_width()))
        return 0
    plan = _load(files, env_files, file_format, profiles)
    findings = lint(plan, node_port_range=node_port_range, ignore=ignore, enable=enable)
    if sarif:
        from portkit._version import __version__
        from portkit.plan._sarif import to_sarif

        out(to_json(to_sarif(findings, version=__version__)))
    elif as_json:
        out(to_json(findings_json(findings)))
    else:
        out(findings_text(findings, len(plan.files), stdout_style(), stdout_width()))
    threshold = Severity.parse(fail_on)
    return 1 if any(f.severity >= threshold for f in findings) else 0


@plan_group.command(
    "check",
    epilog="""\b
Examples:
  portkit plan check examples/web-stack/portkit-plan.yaml
  portkit plan check compose.yaml
  portkit plan check compose.yaml --host 10.0.0.5 --timeout 2
  portkit plan check k8s/service.yaml --host node1.example --json""",
)
@_files_argument
@_env_file_option
@_profile_option
@_format_option
@click.option(
    "--host",
    "host",
    metavar="TARGET",
    default=None,
    help="Probe this host instead of looking at this machine.",
)
@click.option(
    "--timeout",
    type=Seconds(0.01, 60),
    default=1.0,
    show_default=True,
    help="Seconds to wait for each probe.",
)
@click.option(
    "--netns",
    metavar="NAME",
    default=None,
    help="Look at the listeners of this network namespace (ip netns) instead.",
)
@click.option(
    "-p",
    "--project-name",
    "project",
    metavar="NAME",
    default=None,
    help="The compose project the containers belong to (as docker compose -p; "
    "default: COMPOSE_PROJECT_NAME, the file's name:, its directory).",
)
@json_option
def check_cmd(
    files: tuple[str, ...],
    env_files: tuple[str, ...],
    profiles: tuple[str, ...],
    file_format: str,
    host: str | None,
    timeout: float,
    netns: str | None,
    project: str | None,
    as_json: bool,
) -> int:
    """Is the plan true right now? Each planned port listening, reachable, internal-only.

    Without --host, looks at this machine's listening sockets (and connects to
    each TCP port to confirm it accepts): a public port must listen on every
    interface, a loopback one on loopback only, an internal one not on every
    interface. A compose port counts only when a container of that service
    publishes it (asked of the local Docker/Podman API). With --host, probes
    TARGET: public ports must accept connections, internal and loopback ones must
    not be reachable from here. A line per mapping and a summary; exit 1 on any miss.
    """
    from portkit.plan import check
    from portkit.render import to_json
    from portkit.render.plan import check_json, check_text

    plan = _load(files, env_files, file_format, profiles)
    if host is not None and netns is not None:
        raise UsageError("--host probes a remote host, --netns looks into a namespace: pick one")
    results = check(plan, host=host, timeout=timeout, netns=netns, project=project)
    if as_json:
        out(to_json(check_json(results)))
    else:
        out(check_text(results, stdout_style(), stdout_width()))
    return 1 if any(r.status in ("miss", "unexpected") for r in results) else 0


@plan_group.command(
    "snapshot",
    epilog="""\b
Examples:
  portkit plan snapshot > host.plan.yaml        what listens here now, as a baseline
  portkit plan check host.plan.yaml             exit 1 on a new, wider or missing listener
  portkit exporter --baseline host.plan.yaml    portkit_unexpected_listener for Prometheus""",
)
@click.option("--netns", metavar="NAME", default=None, help="Read this network namespace.")
@click.option(
    "--name", "host_name", metavar="NAME", default=None, help="The host's name (default: hostname)."
)
def snapshot_cmd(netns: str | None, host_name: str | None) -> int:
    """Write today's listeners as a portkit plan: what is allowed to listen here.

    One service per owner (process name, or container), each listener with its port,
    protocol, bind address and the exposure that address gives. The plan is marked
    ``baseline: true``: plan check then reports listeners it does not have
    (unexpected), listeners bound wider than it allows, and missing ones.
    """
    import socket
    import time

    from portkit.plan import snapshot_text
    from portkit.plan._live import owned_listeners

    listeners, notes = owned_listeners(netns)
    host = host_name or (f"netns {netns}" if netns else socket.gethostname())
    taken = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out(snapshot_text(listeners, host, taken=taken, notes=notes).rstrip())
    return 0
