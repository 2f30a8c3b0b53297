"""`judgeline route-policy update|show|watch`: the routing controller (docs/routing.md).

Contract: heavy imports stay inside each command (``register`` comes from ``cli._utils.family``).
- ``update`` fits a policy from the stored evidence, stores and publishes it when it changed (``--force``: always)
  and prints the version and one line per rule; a drift alarm is printed too.
- ``show`` prints the newest stored policy of ``routing.policy_scope`` (``--json``: its JSON as published).
- ``watch --every S`` runs ``update`` every S seconds in the foreground until SIGTERM/SIGINT, which end it cleanly
  after the update in progress (exit 0).
"""

from __future__ import annotations

import typer

from cli._utils import exits_on_error, family
from cli._utils import fail as _fail
from cli._utils import settings as _settings

commands, register = family()
route_app = typer.Typer(no_args_is_help=True, help="Routing policies from live evidence (docs/routing.md).")
commands.add_typer(route_app, name="route-policy")


def _print_rules(policy) -> None:
    from operations.route_policy import describe_policy

    typer.echo(f"{'segment':<48} {'threshold':>9} {'sample':>7} {'route all':>9} {'n':>6} {'err ub':>7}  reason")
    for r in describe_policy(policy):
        bound = "" if r["error_upper_bound"] is None else f"{r['error_upper_bound']:.3f}"
        typer.echo(f"{r['segment']:<48} {r['threshold']:>9.2f} {r['sample_rate']:>7.3f} "
                   f"{'yes' if r['route_all'] else 'no':>9} {r['evidence_n']:>6} {bound:>7}  {r['reason']}")


def print_result(result) -> None:
    for a in result.alarms:
        typer.echo(f"DRIFT ALARM {a.segment}: agreement {a.observed_agreement:.3f} vs {a.expected_agreement:.3f} "
                   f"assumed over {a.observations} checked verdicts (CUSUM {a.statistic:.2f}); segment now routed")
    state = "published" if result.published else "unchanged, not published"
    typer.echo(f"routing policy version {result.policy.version} ({state}; judge version "
               f"{result.judge_version or 'none'}, {result.evidence} evidence items, extra sample spend "
               f"{result.extra_sample_spend:.3f})")
    _print_rules(result.policy)


@route_app.command("update")
@exits_on_error("updating the routing policy")
def update(force: bool = typer.Option(False, help="Store and publish a new version even if no rule changed.")) -> None:
    """Fit the routing policy from stored evidence; store and publish it when it changed."""
    from operations.route_policy import update as run_update

    print_result(run_update(_settings(), force=force))


@route_app.command("show")
@exits_on_error("reading the routing policy")
def show(as_json: bool = typer.Option(False, "--json", help="Print the policy's JSON as published.")) -> None:
    """Print the newest stored routing policy of routing.policy_scope."""
    from operations.analytics import connect_store
    from operations.route_policy import latest_policy

    settings = _settings()
    policy = latest_policy(connect_store(settings), settings)
    if policy is None:
        _fail(f"no routing policy stored for scope {settings.routing.policy_scope}; run `judgeline route-policy "
              "update` (until then inline workers route by routing.without_policy="
              f"{settings.routing.without_policy})")
    if as_json:
        typer.echo(policy.to_json().decode())
        return
    typer.echo(f"routing policy version {policy.version} of scope {settings.routing.policy_scope}, made "
               f"{policy.created_at.isoformat()}")
    _print_rules(policy)


@route_app.command("watch")
def watch(every: float = typer.Option(300.0, "--every", min=1.0, help="Seconds between updates.")) -> None:
    """Update the routing policy every S seconds until SIGTERM/SIGINT (the controller as a long-running process)."""
    import signal
    import threading

    from operations.route_policy import watch as run_watch

    settings = _settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"routing controller: updating every {every:g} s, testing for drift every "
               f"{min(every, settings.routing.drift_check_s):g} s (SIGTERM stops it)")
    runs = run_watch(settings, every, stop, on_result=print_result)
    typer.echo(f"routing controller stopped after {runs} updates")
