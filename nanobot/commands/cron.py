"""`nanobot cron`: list, add, remove, enable, disable and run scheduled jobs.

The jobs live in NANOBOT_HOME/cron/jobs.json; a running gateway notices every change within
about a second (it watches the file) and never undoes one. Jobs fire only while
`nanobot gateway` runs — `nanobot agent` alone never runs them.
"""

from __future__ import annotations

import argparse
import sys
import time

from nanobot.config.loader import load_config
from nanobot.errors import NanobotError
from nanobot.services import jobs, targets
from nanobot.services.jobs import Job, JobState, JobStore
from nanobot.tools.cron import when

ONLY_GATEWAY = (
    "Jobs run only while `nanobot gateway` runs (`nanobot agent` alone never fires them)."
)


class CronError(NanobotError):
    """A cron command that cannot be done as asked; the text names the fix."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    ls = sub.add_parser("list", help="show jobs and their next run (local time)")
    ls.add_argument("-a", "--all", action="store_true", help="include disabled jobs")
    add = sub.add_parser("add", help="add a job")
    add.add_argument("-n", "--name", required=True, help="a short name")
    add.add_argument("-m", "--message", required=True, help="what the agent does when it runs")
    when_ = add.add_mutually_exclusive_group(required=True)
    when_.add_argument("-e", "--every", type=int, metavar="SECONDS", help="every N seconds (>= 60)")
    when_.add_argument("-c", "--cron", metavar="EXPR", help="a 5-field cron expression")
    when_.add_argument("--at", metavar="ISO", help="once, e.g. 2026-03-01T09:00")
    add.add_argument(
        "--tz", default="", help="IANA time zone of --cron (default: agents.defaults.timezone)"
    )
    add.add_argument(
        "-d", "--deliver", action="store_true", help="always send the result (else only news)"
    )
    add.add_argument("--to", help="chat to report to (named in that channel's allowFrom)")
    add.add_argument("--channel", help="channel of --to (default: the only enabled one)")
    for name, text in (
        ("remove", "delete a job"),
        ("enable", "enable a job"),
        ("disable", "disable a job (kept, never fires)"),
    ):
        one = sub.add_parser(name, help=text, aliases=["rm"] if name == "remove" else [])
        one.add_argument("id")
    run = sub.add_parser("run", help="ask the running gateway to run a job now")
    run.add_argument("id")
    run.add_argument("-f", "--force", action="store_true", help="even when disabled")
    p.set_defaults(_parser=p)


def run(args: argparse.Namespace) -> int:
    if not args.action:
        args._parser.print_help()
        return 2
    cfg, _ = load_config(args.config)
    store = JobStore()
    action = "remove" if args.action == "rm" else args.action
    return ACTIONS[action](args, cfg, store)


def _list(args, cfg, store: JobStore) -> int:
    tz = cfg.agents.defaults.timezone
    shown = [j for j in store.load() if j.enabled or args.all]
    if not shown:
        print("No jobs." if args.all else "No enabled jobs (see --all).")
        print(ONLY_GATEWAY)
        return 0
    print(f"{'ID':<9} {'NAME':<20} {'SCHEDULE':<28} {'NEXT RUN':<22} {'TO':<22} LAST")
    for j in shown:
        nxt = when(j.next_run(tz), tz) if j.enabled else "disabled"
        last = j.state.last_status or "-"
        print(
            f"{j.id:<9} {j.name[:20]:<20} {j.schedule.describe()[:28]:<28} {nxt:<22} "
            f"{(j.channel + ':' + j.chat_id)[:22]:<22} {last}"
        )
    print(ONLY_GATEWAY)
    return 0


def _add(args, cfg, store: JobStore) -> int:
    tz = cfg.agents.defaults.timezone
    try:
        if args.every is not None:
            schedule = jobs.every(args.every)
        elif args.cron:
            schedule = jobs.cron(args.cron, args.tz)
        else:
            schedule = jobs.at(args.at, tz)
    except ValueError as e:
        raise CronError(str(e)) from None
    channel, chat = _target(cfg, args.to, args.channel)
    now = time.time()
    job = Job(
        id=jobs.new_id(),
        name=args.name,
        message=args.message,
        schedule=schedule,
        channel=channel,
        chat_id=chat,
        bound="allowFrom",
        deliver=args.deliver,
        created_at=now,
        state=JobState(anchor=now),
    )
    store.update(lambda current: current.append(job) or True)
    print(f"Added job {job.id} '{job.name}': {schedule.describe()}, to {channel}:{chat}")
    print(f"Next run: {when(job.next_run(tz), tz)}")
    print(ONLY_GATEWAY)
    return 0


def _target(cfg, to: str | None, channel: str | None) -> tuple[str, str]:
    if to is None:
        found = targets.default_target(cfg)
        if found is None:
            raise CronError(
                "say which chat the job reports to with --to CHAT (and --channel NAME when "
                "several chat channels are enabled); it must be named in that channel's allowFrom"
            )
        return found
    chans = targets.push_channels(cfg)
    if channel is None:
        if len(chans) != 1:
            raise CronError(
                f"add --channel NAME (enabled chat channels: {', '.join(chans) or 'none'})"
            )
        channel = chans[0]
    problem = targets.target_error(cfg, channel, to)
    if problem:
        raise CronError(problem)
    return channel, to


def _change(args, store: JobStore, change, done: str) -> int:
    """Apply change(jobs, index, job) -> True | "why not" to job args.id under the store's
    lock; nothing is written unless it returned True."""
    problem = [f"no job '{args.id}'; see `nanobot cron list --all`"]

    def apply(current: list[Job]) -> bool:
        for i, j in enumerate(current):
            if j.id == args.id:
                result = change(current, i, j)
                problem[0] = "" if result is True else result
                return result is True
        return False

    store.update(apply)
    if problem[0]:
        raise CronError(problem[0])
    print(done.format(id=args.id))
    return 0


def _remove(args, cfg, store: JobStore) -> int:
    def change(current, i, j):
        del current[i]
        return True

    return _change(args, store, change, "Removed job {id}.")


def _enable(args, cfg, store: JobStore) -> int:
    def change(current, i, j):
        if not j.enabled:  # counts from now: a long-disabled job does not fire at once
            j.enabled, j.state.anchor = True, time.time()
        return True

    return _change(args, store, change, "Enabled job {id}.")


def _disable(args, cfg, store: JobStore) -> int:
    def change(current, i, j):
        j.enabled = False
        return True

    return _change(args, store, change, "Disabled job {id}.")


def _run(args, cfg, store: JobStore) -> int:
    def change(current, i, j):
        if not j.enabled and not args.force:
            return f"job {j.id} is disabled; add --force to run it anyway"
        j.state.run_requested = time.time()
        return True

    code = _change(args, store, change, "Job {id} will run within seconds if the gateway runs.")
    print(ONLY_GATEWAY, file=sys.stderr)
    return code


ACTIONS = {
    "list": _list,
    "add": _add,
    "remove": _remove,
    "enable": _enable,
    "disable": _disable,
    "run": _run,
}
