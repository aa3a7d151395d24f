"""The ``stemme`` command.

stemme init                      create the key file (demo) and migrate the database
stemme serve                     run the service
stemme demo                      fictional caseworker and case; print the links and login
stemme user add USERNAME         add a caseworker (password from STEMME_NEW_PASSWORD or a prompt;
                                 TOTP is set up at their first login)
stemme user reset-2fa USERNAME   forget their TOTP secret and end their sessions
stemme user disable USERNAME     no more logins; their sessions end at once
stemme team add NAME             a team (then `stemme user add … --team NAME --role team_lead`)
stemme audit verify              walk the audit log's hash chain (exit 1 names the first bad row)
stemme demo --code               the demo caseworker's current TOTP code (not in production)
stemme case add REF --caseworker USERNAME --birth-date YYYY-MM-DD --name NAME
stemme case invite REF [--channels sms,webchat] [--qr DIR]   enrolment code, link, QR code
stemme case close REF            no more bot messages, check-ins or rights notes
stemme case shred REF            destroy a closed, fully filed case's data key (after retention)
stemme phone --channel sms|telegram|messenger [--from ADDRESS]   text the demo as a child
stemme safety check              JSON verdict per stdin line (for tuning the lexicon)
stemme keys generate             print a new keyring for STEMME_KEY_FILE
stemme keys rotate | rewrap      a new master key version; re-wrap the case keys to it (online)
stemme keys retire VERSION       drop an old master key version nothing references any more
stemme check-config [--processes N]   what is missing or insecure; the webhook URLs to paste
stemme backup DEST               the database (never the keys) into the new directory DEST
stemme restore SRC [--force]     a backup into the configured database
stemme caselog status | retry | dead-letters   participation entries waiting, filed, dead
stemme caselog receive --port N --secret whsec_…   a reference receiver for the webhook sink
stemme caselog secret            print a new whsec_ signing secret
stemme caselog retention [--dry-run]   remove local copies filed longer ago than retention
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gc
import getpass
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot import keyrotation
from bot.app import create_app
from bot.caselog import admin as caselog_admin
from bot.caselog import retention_cli
from bot.caselog.receiver import run_receiver
from bot.cases import add_case, add_caseworker, set_password, webchat_tokens
from bot.crypto import Keyring
from bot.engine.conversation import COPENHAGEN
from bot.engine.enrolment import Enrolment, NewInvitation
from bot.engine.safety import SafetyChecker, check_lines
from bot.errors import NotFound
from bot.inbox import admin_cli
from bot.inbox.teams import TeamError, add_team, team_id_by_name
from bot.keys import KeyService, load_keyring
from bot.ops import backup as ops_backup
from bot.ops.check_config import check
from bot.ops.config_report import exit_status, report
from bot.ops.errors import OpsError
from bot.ops.facts import gather_facts
from bot.ops.logs import configure_logging
from bot.phone import DEFAULT_ADDRESSES, run_phone
from bot.settings import ConfigError, Settings
from bot.storage.db import Database
from bot.storage.migrate import upgrade
from bot.storage.models import Case, Caseworker, Role
from consent.qr import qr_png, qr_svg
from prompts.instruments import InstrumentError
from prompts.safety import LexiconError
from prompts.texts import TextsError

log = logging.getLogger("stemme")

T = TypeVar("T")
DEMO_USER = "demo"
DEMO_CASE = "DEMO-0001"
DEMO_TEAM = "Demo-team (fiktivt)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        # check-config reports every problem itself instead of stopping at the first.
        settings = Settings.from_env(validate=getattr(args, "validate_settings", True))
        configure_logging(settings)  # redacted, text or JSON; a bad level: check-config says
        result: int = args.func(settings, args)
        return result
    except ConfigError as exc:
        print(f"stemme: configuration error: {exc}", file=sys.stderr)
        return 2
    except (InstrumentError, TextsError, LexiconError) as exc:
        # A prompt file with a mistake stops start-up; the message names the file and field.
        print(f"stemme: cannot start, a prompt file has a mistake:\n{exc}", file=sys.stderr)
        return 2
    except NotFound as exc:
        print(f"stemme: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stemme", description="Stemme — the child's own line.")
    sub = parser.add_subparsers(required=True, metavar="command")

    sub.add_parser("init", help="create keys (demo) and migrate the database").set_defaults(
        func=cmd_init
    )
    serve = sub.add_parser("serve", help="run the service")
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="create demo data and print how to use it")
    demo.add_argument("--code", action="store_true", help="print the demo login's TOTP code")
    demo.set_defaults(func=cmd_demo)

    user = sub.add_parser("user", help="caseworker accounts").add_subparsers(required=True)
    user_add = user.add_parser("add", help="add a caseworker")
    user_add.add_argument("username")
    user_add.add_argument("--name", required=True, help="display name")
    user_add.add_argument("--language", choices=["da", "en"], default="da")
    user_add.add_argument("--role", choices=[r.value for r in Role], default=Role.CASEWORKER)
    user_add.add_argument("--team", default=None, help="team name (stemme team add NAME)")
    user_add.set_defaults(func=cmd_user_add)
    for name, func, text in (
        ("reset-2fa", admin_cli.cmd_user_reset_2fa, "forget the TOTP secret; set up anew"),
        ("disable", admin_cli.cmd_user_disable, "disable the account and end its sessions"),
    ):
        command = user.add_parser(name, help=text)
        command.add_argument("username")
        command.set_defaults(func=func)
    team = sub.add_parser("team", help="teams of caseworkers").add_subparsers(required=True)
    team_add = team.add_parser("add", help="add a team (then: stemme user add --team NAME)")
    team_add.add_argument("name")
    team_add.set_defaults(func=cmd_team_add)
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(required=True)
    audit.add_parser("verify", help="check the hash chain (exit 1: broken)").set_defaults(
        func=admin_cli.cmd_audit_verify
    )

    case = sub.add_parser("case", help="cases").add_subparsers(required=True)
    case_add = case.add_parser("add", help="add a case and print the child's web chat link")
    case_add.add_argument("case_ref", help="the municipality's case reference")
    case_add.add_argument("--caseworker", required=True, help="caseworker username")
    case_add.add_argument("--name", required=True, help="the child's first name (encrypted)")
    case_add.add_argument("--birth-date", required=True, type=dt.date.fromisoformat)
    case_add.add_argument("--language", choices=["da", "en"], default="da")
    case_add.set_defaults(func=cmd_case_add)

    case_invite = case.add_parser(
        "invite", help="a single-use enrolment code (72 h), web chat link and QR code"
    )
    case_invite.add_argument("case_ref")
    case_invite.add_argument(
        "--channels", default="sms,telegram,messenger,webchat", help="comma-separated"
    )
    case_invite.add_argument(
        "--qr", type=Path, help="write the link's QR code as PNG and SVG here"
    )
    case_invite.set_defaults(func=cmd_case_invite)
    case_close = case.add_parser("close", help="close a case: no more bot messages or check-ins")
    case_close.add_argument("case_ref")
    case_close.set_defaults(func=retention_cli.cmd_case_close)
    case_shred = case.add_parser(
        "shred", help="destroy a closed, fully filed case's data key (after retention)"
    )
    case_shred.add_argument("case_ref")
    case_shred.set_defaults(func=retention_cli.cmd_case_shred)

    phone = sub.add_parser("phone", help="text the running demo as a child (sandbox providers)")
    phone.add_argument("--channel", choices=["sms", "telegram", "messenger"], default="sms")
    phone.add_argument("--from", dest="address", help="the fictional sender address")
    phone.set_defaults(func=cmd_phone)

    safety = sub.add_parser("safety", help="the safety check").add_subparsers(required=True)
    safety.add_parser(
        "check", help="one message per line on stdin, one JSON verdict per line on stdout"
    ).set_defaults(func=cmd_safety_check)

    keys = sub.add_parser("keys", help="key management").add_subparsers(required=True)
    keys.add_parser("generate", help="print a new keyring (JSON)").set_defaults(
        func=cmd_keys_generate
    )
    for name, helptext in (
        ("rotate", "add a master key version and re-wrap every case key to it"),
        ("rewrap", "re-wrap every case key to the current master key version"),
    ):
        rewrap = keys.add_parser(name, help=helptext)
        rewrap.add_argument("--batch", type=int, default=100, help="case keys per transaction")
        rewrap.set_defaults(func=cmd_keys_rotate if name == "rotate" else cmd_keys_rewrap)
        if name == "rotate":
            rewrap.add_argument(
                "--no-rewrap", action="store_true", help="only add the version (restart first)"
            )
    retire = keys.add_parser("retire", help="remove a master key version nothing needs")
    retire.add_argument("version", type=int)
    retire.set_defaults(func=cmd_keys_retire)

    check_config = sub.add_parser(
        "check-config", help="what is missing or insecure, and the webhook URLs (exit 1: fix)"
    )
    check_config.add_argument(
        "--processes", type=int, default=1, help="how many Stemme processes share the database"
    )
    check_config.set_defaults(func=cmd_check_config, validate_settings=False)

    backup = sub.add_parser("backup", help="back up the database (never the keys) into DEST")
    backup.add_argument("dest", type=Path, help="a new directory")
    backup.add_argument("--pg-bindir", type=Path, help="where pg_dump is (PostgreSQL)")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="restore a backup into the configured database")
    restore.add_argument("src", type=Path, help="a directory written by `stemme backup`")
    restore.add_argument("--force", action="store_true", help="replace an existing database")
    restore.add_argument("--pg-bindir", type=Path, help="where pg_restore is (PostgreSQL)")
    restore.set_defaults(func=cmd_restore)

    caselog = sub.add_parser("caselog", help="participation entries").add_subparsers(required=True)
    caselog.add_parser("status", help="entries pending, filed, dead").set_defaults(
        func=cmd_caselog_status
    )
    caselog.add_parser("retry", help="queue dead-lettered entries again").set_defaults(
        func=cmd_caselog_retry
    )
    caselog.add_parser("dead-letters", help="list dead-lettered entries").set_defaults(
        func=cmd_caselog_dead_letters
    )
    retention = caselog.add_parser(
        "retention", help="remove local copies of entries filed longer ago than retention"
    )
    retention.add_argument("--dry-run", action="store_true", help="only count; change nothing")
    retention.set_defaults(func=retention_cli.cmd_caselog_retention)
    caselog.add_parser("secret", help="print a new webhook signing secret").set_defaults(
        func=cmd_caselog_secret, validate_settings=False
    )
    receive = caselog.add_parser("receive", help="a reference webhook receiver")
    receive.add_argument("--port", type=int, default=8099)
    receive.add_argument("--host", default="127.0.0.1")
    receive.add_argument("--secret", required=True, help="whsec_… (or @FILE to read it)")
    receive.add_argument("--dir", type=Path, default=Path("received"), help="where to store")
    receive.set_defaults(func=cmd_caselog_receive, validate_settings=False)
    return parser


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    load_keyring(settings, create=True)
    upgrade(settings.effective_database_url)
    print(f"Database ready: {_redacted(settings.effective_database_url)}")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.production:
        cmd_init(settings, args)
    app = create_app(settings)
    app.on_startup.append(_freeze_heap)  # last: after everything start-up builds
    print(
        f"Stemme is running on http://{settings.host}:{settings.port}/ (Ctrl-C to stop)",
        flush=True,
    )
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
    return 0


async def _freeze_heap(_app: web.Application) -> None:
    """Take what start-up built (modules, compiled patterns, tables) out of the collector's way.

    Those objects live as long as the process, yet every full collection walks all of them:
    with ~250,000 of them, a full collection paused the event loop for ~100 ms under load (a
    webhook waiting behind it). Frozen, they are skipped; newer objects are collected as before.
    """
    gc.collect()
    gc.freeze()


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    if settings.production:
        raise ConfigError("`stemme demo` creates fictional accounts and is refused in production.")
    if getattr(args, "code", False):
        print(admin_cli.demo_code(settings, DEMO_USER))
        return 0
    cmd_init(settings, args)
    password = "-".join(secrets.token_hex(2) for _ in range(3))
    token = asyncio.run(_demo(settings, password))
    totp_secret, totp_uri = asyncio.run(admin_cli.demo_totp(settings, DEMO_USER))
    print()
    print("Stemme demo — fictional data only")
    print(f"  Child's chat link: {settings.public_url('/c/' + token)}")
    print(f"  Caseworker inbox:  {settings.public_url('/inbox/')}")
    print(f"  Login:             {DEMO_USER} / {password}")
    print(f"  TOTP secret:       {totp_secret}  (code now: stemme demo --code)")
    print(f"  TOTP app link:     {totp_uri}")
    if settings.sandbox_active:
        invitation = asyncio.run(_invite(settings, DEMO_CASE, ["sms", "telegram", "messenger"]))
        print(f"  Text as the child: stemme phone --channel sms  (send {invitation.code})")
    print(flush=True)
    return 0


async def _demo(settings: Settings, password: str) -> str:
    db = Database(settings.effective_database_url)
    keys = KeyService(load_keyring(settings))
    try:
        async with db.read() as session:
            worker = (
                await session.exec(select(Caseworker).where(Caseworker.username == DEMO_USER))
            ).first()
            case = (await session.exec(select(Case).where(Case.case_ref == DEMO_CASE))).first()
            has_team = await team_id_by_name(session, DEMO_TEAM) is not None
        if not has_team:
            await add_team(db, DEMO_TEAM)
        if worker is None:
            await add_caseworker(
                db,
                username=DEMO_USER,
                display_name="Sanne Demo (fiktiv)",
                password=password,
                team=DEMO_TEAM,
            )
        else:
            await set_password(db, username=DEMO_USER, password=password)
        if case is None:
            new = await add_case(
                db,
                keys,
                case_ref=DEMO_CASE,
                caseworker_username=DEMO_USER,
                child_name="Testbarn Kim (fiktiv)",
                birth_date=dt.date(2013, 5, 17),
            )
            return new.webchat_token
        return (await webchat_tokens(db, keys, case.id))[0]
    finally:
        await db.dispose()


def cmd_case_invite(settings: Settings, args: argparse.Namespace) -> int:
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    unknown = sorted(set(channels) - {"sms", "telegram", "messenger", "webchat"})
    if unknown:
        print(f"stemme: unknown channels {unknown}", file=sys.stderr)
        return 2
    try:
        invitation = asyncio.run(_invite(settings, args.case_ref, channels))
    except NotFound:
        print(f"stemme: no case {args.case_ref!r}", file=sys.stderr)
        return 1
    _print_invitation(settings, invitation, qr_dir=args.qr)
    return 0


async def _invite(settings: Settings, case_ref: str, channels: list[str]) -> NewInvitation:
    db = Database(settings.effective_database_url)
    keys = KeyService(load_keyring(settings))
    try:
        async with db.write() as session:
            case = (await session.exec(select(Case).where(Case.case_ref == case_ref))).first()
            if case is None:
                raise NotFound("case")
            enrolment = Enrolment(
                keys=keys, valid_for=dt.timedelta(hours=settings.invitation_hours)
            )
            return await enrolment.invite(
                session, case_id=case.id, channels=channels, caseworker_id=None
            )
    finally:
        await db.dispose()


def _print_invitation(
    settings: Settings, invitation: NewInvitation, *, qr_dir: Path | None
) -> None:
    local = invitation.expires_at.astimezone(COPENHAGEN)
    print(f"  Code for the child: {invitation.code}  (single use, until {local:%d.%m.%Y %H:%M})")
    print(f"  Channels:           {', '.join(invitation.channels)}")
    if invitation.webchat_token is not None:
        link = settings.public_url("/c/" + invitation.webchat_token)
        print(f"  Web chat link:      {link}")
        if qr_dir is not None:
            qr_dir.mkdir(parents=True, exist_ok=True)
            (qr_dir / "stemme-link.png").write_bytes(qr_png(link))
            (qr_dir / "stemme-link.svg").write_text(qr_svg(link), encoding="utf-8")
            print(f"  QR code:            {qr_dir / 'stemme-link.png'} (and .svg)")


def cmd_phone(settings: Settings, args: argparse.Namespace) -> int:
    address = args.address or DEFAULT_ADDRESSES[args.channel]
    return asyncio.run(
        run_phone(
            channel=args.channel,
            address=address,
            base_port=settings.sandbox_port,
            write=lambda line: print(line, flush=True),  # a pipe sees each line at once
        )
    )


def cmd_safety_check(settings: Settings, args: argparse.Namespace) -> int:
    checker = SafetyChecker.load()
    for line in check_lines((raw.rstrip("\n") for raw in sys.stdin), checker):
        print(line, flush=True)
    return 0


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> int:
    password = _new_password()
    try:
        asyncio.run(
            _with_db(
                settings,
                lambda db: add_caseworker(
                    db,
                    username=args.username,
                    display_name=args.name,
                    password=password,
                    language=args.language,
                    role=Role(args.role),
                    team=args.team,
                ),
            )
        )
    except NotFound:
        print(f"stemme: no team called {args.team!r} (stemme team add NAME)", file=sys.stderr)
        return 1
    except IntegrityError:
        print(f"stemme: user {args.username!r} exists already", file=sys.stderr)
        return 1
    # No TOTP secret here: it is made and shown at their first login, on their own screen.
    print(f"Added caseworker {args.username}. They set up TOTP at their first login.")
    return 0


def cmd_team_add(settings: Settings, args: argparse.Namespace) -> int:
    try:
        asyncio.run(_with_db(settings, lambda db: add_team(db, args.name)))
    except TeamError as exc:
        print(f"stemme: {exc}", file=sys.stderr)
        return 1
    print(f"Added team {args.name.strip()}.")
    return 0


def cmd_case_add(settings: Settings, args: argparse.Namespace) -> int:
    async def run(db: Database) -> str:
        keys = KeyService(load_keyring(settings))
        new = await add_case(
            db,
            keys,
            case_ref=args.case_ref,
            caseworker_username=args.caseworker,
            child_name=args.name,
            birth_date=args.birth_date,
            language=args.language,
        )
        return new.webchat_token

    try:
        token = asyncio.run(_with_db(settings, run))
    except IntegrityError:
        print(f"stemme: case {args.case_ref!r} exists already", file=sys.stderr)
        return 1
    print(f"Added case {args.case_ref}. Give the child this link in person:")
    print(f"  {settings.public_url('/c/' + token)}")
    return 0


def cmd_keys_generate(settings: Settings, args: argparse.Namespace) -> int:
    print(Keyring.generate().to_json())
    return 0


def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(
        keyrotation.rotate_command(settings, batch=args.batch, rewrap=not args.no_rewrap)
    )


def cmd_keys_rewrap(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(keyrotation.rewrap_command(settings, batch=args.batch))


def cmd_keys_retire(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(keyrotation.retire_command(settings, args.version))


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    facts = asyncio.run(gather_facts(settings, demo_username=DEMO_USER, processes=args.processes))
    findings = check(settings, facts)
    print(report(settings, findings), end="")
    return exit_status(findings)


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    try:
        outcome = asyncio.run(ops_backup.backup(settings, args.dest, pg_bindir=args.pg_bindir))
    except OpsError as exc:
        print(f"stemme: backup failed: {exc}", file=sys.stderr)
        return 1
    print(ops_backup.summary(outcome, "Backup written to"))
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    try:
        outcome = asyncio.run(
            ops_backup.restore(settings, args.src, force=args.force, pg_bindir=args.pg_bindir)
        )
    except OpsError as exc:
        print(f"stemme: restore refused: {exc}", file=sys.stderr)
        return 1
    print(ops_backup.summary(outcome, "Restored from"))
    return 0


def cmd_caselog_status(settings: Settings, args: argparse.Namespace) -> int:
    found = asyncio.run(_with_db(settings, caselog_admin.status))
    print(f"pending: {found.pending}")
    print(f"filed:   {found.filed}")
    print(f"dead:    {found.dead}")
    print(f"oldest pending: {caselog_admin.describe_age(found.oldest_pending_age)}")
    return 1 if found.dead else 0


def cmd_caselog_retry(settings: Settings, args: argparse.Namespace) -> int:
    count = asyncio.run(_with_db(settings, caselog_admin.retry))
    print(f"queued again: {count}")
    return 0


def cmd_caselog_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    for d in asyncio.run(_with_db(settings, caselog_admin.dead_letters)):
        print(
            f"{d.entry_id}  {d.kind:<18} {d.case_ref}  seq {d.seq}  "
            f"attempts {d.attempts}  {d.last_error or '-'}"
        )
    return 0


def cmd_caselog_secret(settings: Settings, args: argparse.Namespace) -> int:
    print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    return 0


def cmd_caselog_receive(settings: Settings, args: argparse.Namespace) -> int:
    secret = str(args.secret)
    if secret.startswith("@"):
        secret = Path(secret[1:]).read_text(encoding="utf-8").strip()
    run_receiver(secret=secret, directory=args.dir, host=args.host, port=args.port)
    return 0


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = Database(settings.effective_database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()


def _new_password() -> str:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("the passwords differ")
    if len(password) < 12:
        raise ConfigError("a password needs at least 12 characters")
    return password


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


if __name__ == "__main__":
    raise SystemExit(main())
