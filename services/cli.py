"""The `thidua` command."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from shared.access import service_headers, service_token
from shared.errors import FieldError
from shared.logs import setup_logging
from shared.settings import SERVICES, Settings, get_settings

if TYPE_CHECKING:
    from services.runtime import Runtime

VERSION = "0.1.0"

app = typer.Typer(
    help="thidua: emulation campaigns (phong trào thi đua) across a union federation.", no_args_is_help=True
)
org_app = typer.Typer(help="The federation's units (đơn vị).", no_args_is_help=True)
app.add_typer(org_app, name="org")
plan_app = typer.Typer(help="Plans (kế hoạch): issue, follow, cascade, amend, revoke.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
award_app = typer.Typer(help="Nominations and awards (khen thưởng).", no_args_is_help=True)
app.add_typer(award_app, name="award")
bench_app = typer.Typer(help="Benchmarks on the real broker and database.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
# Off a terminal (piped, in CI) rich would wrap tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)

ApiUrl = Annotated[str, typer.Option("--api", envvar="THIDUA_API_URL", help="Base URL of a running thidua")]


def _serve(settings: Settings, services: tuple[str, ...], host: str | None, port: int | None) -> None:
    from services.runtime import Runtime, create_app

    setup_logging(settings.log_level, settings.log_json)
    runtime = Runtime(settings, services)
    config = uvicorn.Config(
        create_app(runtime),
        host=host or settings.http_host,
        port=port or settings.http_port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    collect_less(settings.gc_thresholds)
    uvicorn.Server(config).run()


def collect_less(thresholds: tuple[int, int, int]) -> None:
    """What the process loaded to start (modules, schemas, the app) is kept for good: the garbage collector
    leaves it out of its passes from now on, and passes less often (see `Settings.gc_thresholds`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
) -> None:
    """All four services in one process: HTTP on :8000, the embedded broker and SQLite under ./var
    unless KAFKA_BOOTSTRAP_SERVERS and THIDUA_DATABASE_URL say otherwise."""
    _serve(get_settings(), SERVICES, host, port)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")],
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
) -> None:
    """One service (for containers): its API, consumer, outbox relay and schedulers."""
    if service not in SERVICES:
        raise typer.BadParameter(f"{service!r} is not a service; expected one of {', '.join(SERVICES)}")
    _serve(get_settings(), (service,), host, port)


@app.command()
def web(
    api: ApiUrl = "http://127.0.0.1:8000",
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
) -> None:
    """The officers' pages alone, as a client of the APIs at --api (the gateway, when the services run
    separately; `thidua up` serves the pages itself)."""
    from fastapi import FastAPI

    from services.web.app import build_web

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    pages = FastAPI(title="thidua — officers' pages", openapi_url=None)
    pages.include_router(build_web(lambda: httpx.AsyncClient(base_url=api.rstrip("/"), timeout=60)))

    @pages.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(pages, host=host or settings.http_host, port=port or settings.http_port, log_config=None)


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="Keep the demo's databases in this folder")] = None,
    quiet: Annotated[bool, typer.Option(help="Only the table and the verdict")] = True,
) -> None:
    """Run the skeleton flow of a campaign on the embedded stack and check every figure."""
    settings = get_settings()
    setup_logging("WARNING" if quiet else settings.log_level, settings.log_json)
    with tempfile.TemporaryDirectory(prefix="thidua-demo-") as scratch:
        folder = keep or Path(scratch)
        demo_settings = settings.model_copy(
            update={
                "var_dir": folder,
                "database_url": f"sqlite:///{folder.as_posix()}/{{service}}.db",
                "consumer_session_timeout_ms": 6000,
            }
        )
        problems = asyncio.run(_run_demo(demo_settings))
    if problems:
        console.print("[bold red]The figures do not match what was submitted:[/]")
        for problem in problems:
            console.print(f"  - {problem}")
        raise typer.Exit(1)
    console.print("[bold green]Every figure equals the figure expected from what was submitted.[/]")


async def _run_demo(settings: Settings) -> list[str]:
    from services import demo as flow
    from services.runtime import Runtime, create_app
    from shared.clock import ManualClock

    clock = ManualClock(flow.local("2023-02-21"))
    runtime = Runtime(settings, SERVICES, clock=clock)
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(runtime, manage_lifecycle=False))
        client = httpx.AsyncClient(
            transport=transport, base_url="http://thidua", headers=service_headers(settings, "demo")
        )
        async with client:
            result = await flow.run_flow(client, clock, runtime.tick)
    finally:
        await runtime.stop()
    print_completeness(result["city"], "Kỳ 1 — LĐLĐ thành phố Hà Nội")
    for table in result["districts"].values():
        print_completeness(table, f"Kỳ 1 — {table['total']['name']}")
    console.print(f"Notifications delivered: {len(result['deliveries'])}")
    return flow.mismatches(result)


@bench_app.command("national")
def bench_national(
    grassroots: Annotated[
        int, typer.Option(min=10, help="Grassroots unions in the generated federation")
    ] = 135_000,
    database: Annotated[
        str, typer.Option(help="'sqlite', or a PostgreSQL server URL on which fresh databases are made")
    ] = "sqlite",
    latency_rate: Annotated[float, typer.Option(min=1, help="Reports a second in the latency run")] = 2000.0,
    latency_seconds: Annotated[float, typer.Option(min=1, help="How long the latency run lasts")] = 10.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds any one step may take before the run fails")
    ] = 900.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON only")] = False,
) -> None:
    """The national wave: a generated federation cascades a plan and reports one phase, on separate
    service processes; waits until the national figures are exact and prints how fast that was."""
    from services import bench

    # Stopped from outside (SIGTERM): unwind, so the service processes and the broker stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = asyncio.run(
        bench.run_national(
            grassroots=grassroots,
            database=database,
            latency_rate=latency_rate,
            latency_seconds=latency_seconds,
            timeout=timeout,
            show_progress=not as_json,
        )
    )
    if as_json:
        print(bench.as_json(result))
        return
    figures = {name: value for name, value in vars(result).items() if name != "national_row"}
    title = f"thidua bench national — {result.grassroots_units:,} grassroots unions, {result.database}"
    print_figures(title, figures)


def print_figures(title: str, figures: dict[str, Any]) -> None:
    """Named figures as a two-column table."""
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)


def print_completeness(table_data: dict[str, Any], title: str) -> None:
    """A completeness table: one row per unit below the issuer, then the total."""
    table = Table(title=f"{title} (hạn báo cáo {table_data['report_due']})")
    for column in (
        "Đơn vị",
        "Expected",
        "Received",
        "On time",
        "Late",
        "Missing",
        "Đoàn viên mới",
        "Sáng kiến",
    ):
        table.add_column(column, justify="left" if column == "Đơn vị" else "right")

    def add(row: dict[str, Any], bold: bool = False) -> None:
        figures = row.get("figures", {})
        if "status" in row:
            counts = {"on_time": "", "late": "", "missing": ""}
            counts[row["status"]] = "✓" if row["status"] in counts else ""
            cells = [
                "1",
                "1" if row["status"] in ("on_time", "late") else "0",
                counts["on_time"],
                counts["late"],
                counts["missing"],
            ]
        else:
            cells = [str(row[key]) for key in ("expected", "received", "on_time", "late", "missing")]
        name = f"[bold]{row['name']}[/]" if bold else row["name"]
        table.add_row(name, *cells, str(figures.get("new_members", "")), str(figures.get("initiatives", "")))

    for row in table_data["units"]:
        add(row)
    add(table_data["total"], bold=True)
    console.print(table)


@app.command()
def status(
    plan_id: Annotated[str, typer.Argument(help="The plan's id")],
    phase: Annotated[int, typer.Option(help="The phase (đợt) number")] = 1,
    export: Annotated[Path | None, typer.Option(help="Also save the table as .xlsx or .csv")] = None,
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """The completeness table of a plan's phase: expected, received, on time, late and missing reports
    for the plan's issuer and each unit below it, with the summed figures."""
    base = f"/reporting/plans/{plan_id}/phases/{phase}"
    table = call(api, "GET", f"{base}/completeness")
    print_completeness(table, f"Đợt {phase} — {table['total']['name']}")
    if export is not None:
        kind = export.suffix.lower().lstrip(".")
        if kind not in ("xlsx", "csv"):
            message = f"{export.name}: the file must end in .xlsx or .csv"
            raise typer.BadParameter(message, param_hint="--export")
        export.write_bytes(call(api, "GET", f"{base}/export.{kind}"))
        console.print(f"Saved {export}")


@app.command()
def asyncapi(
    output: Annotated[
        Path | None, typer.Option(help="Write the document here instead of printing it")
    ] = None,
) -> None:
    """The AsyncAPI document of every topic and payload, generated from the code."""
    print_or_write(_asyncapi_text(), output)


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option(help="Write the document here instead of printing it")
    ] = None,
) -> None:
    """The OpenAPI document of the four services' HTTP APIs (as `thidua up` serves them)."""
    from services.runtime import create_app

    document = create_app(_offline_runtime(), manage_lifecycle=False).openapi()
    print_or_write(json.dumps(document, ensure_ascii=False, indent=2) + "\n", output)


def _offline_runtime() -> Runtime:
    """The services as wired, without starting them (nothing is connected or written)."""
    from services.runtime import Runtime

    return Runtime(Settings(database_url="sqlite:///:memory:", _env_file=None))  # type: ignore[call-arg]


def _asyncapi_text() -> str:
    from shared.asyncapi import asyncapi_document

    runtime = _offline_runtime()
    document = asyncapi_document(
        runtime.definitions, runtime.handlers, runtime.settings.topic_prefix, VERSION
    )
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def print_or_write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"Wrote {output}")


@org_app.command("import")
def org_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], api: ApiUrl = "http://127.0.0.1:8000"
) -> None:
    """Register units from a CSV or YAML file (columns: id, name, level, parent_id, sector, email,
    has_ioffice, valid_from, valid_to) with a running plans service."""
    from services.plans.domain import read_org_file

    try:
        units = read_org_file(file.name, file.read_text(encoding="utf-8"))
    except FieldError as error:
        console.print(f"[red]{file}: {error}[/]")
        raise typer.Exit(2) from error
    payload = [unit.model_dump(mode="json") for unit in units]
    answer = call(api, "POST", "/plans/org/units", payload)
    console.print(f"Registered {answer['registered']} units.")


@org_app.command("officer")
def org_officer(
    unit: Annotated[str, typer.Argument(help="The unit the officer signs in for")],
    username: Annotated[str, typer.Argument(help="The officer's user name")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    full_name: Annotated[str, typer.Option(help="The officer's name")] = "",
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Create an officer account for a unit (the password is kept only as a hash)."""
    body = {"username": username, "password": password, "full_name": full_name}
    call(api, "POST", f"/plans/org/units/{unit}/officers", body)
    console.print(f"Officer {username} signs in for {unit}.")


# ------------------------------------------------------------------ thidua plan …


def call(api: str, method: str, path: str, body: Any = None, content: bytes | None = None) -> Any:
    """Call a running thidua; a refusal is printed field by field and ends the command. `content` is
    sent as it is (a document); an answer that is not JSON comes back as bytes."""
    headers = {"Authorization": f"Bearer {caller_token()}"}
    if content is not None:
        headers["Content-Type"] = "application/octet-stream"
    response = httpx.request(
        method, f"{api.rstrip('/')}{path}", json=body, content=content, headers=headers, timeout=60
    )
    if response.status_code >= 400:
        detail = (
            response.json().get("detail")
            if response.headers.get("content-type", "").startswith("application/json")
            else response.text
        )
        if isinstance(detail, list):
            for item in detail:
                console.print(f"[red]{item.get('field')}: {item.get('value')!r} — {item.get('message')}[/]")
        else:
            console.print(f"[red]{detail}[/]")
        raise typer.Exit(1)
    if not response.content:
        return None
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


def caller_token() -> str:
    """THIDUA_TOKEN (an officer's, from `POST /plans/auth/token`), or else an operator's token signed
    with the deployment's key, which only a machine holding THIDUA_SECRET_KEY (or the embedded key
    file) can make."""
    settings = get_settings()
    if settings.token is not None:
        return settings.token.get_secret_value()
    return service_token(settings, "operator")


@app.command()
def token(
    service: Annotated[str, typer.Argument(help="The service or system the token is for, e.g. ioffice")],
) -> None:
    """Print a service token signed with the deployment's key, for a system that calls the APIs (the
    iOffice exchange, a reporting tool). It acts for the whole federation: keep it like a password."""
    sys.stdout.write(service_token(get_settings(), service) + "\n")


def read_body(file: Path) -> Any:
    """A request body from a JSON or YAML file."""
    import yaml

    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        return json.loads(text)
    # YAML reads 2023-03-01 as a date; the API takes dates as ISO text.
    return json.loads(json.dumps(yaml.safe_load(text), default=lambda value: value.isoformat()))


PlanId = Annotated[str, typer.Argument(help="The plan's id")]
BodyFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A JSON or YAML file")]


@plan_app.command("issue")
def plan_issue(file: BodyFile, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Issue a plan described in a file (the body of POST /plans/plans)."""
    issued = call(api, "POST", "/plans/plans", read_body(file))
    console.print(f"Issued {issued['number']}: {issued['plan_id']}")
    for warning in issued["warnings"]:
        console.print(f"[yellow]warning {warning['code']} ({warning['field']}): {warning['message']}[/]")


DocumentFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, help="A plan as text, DOCX, PDF or an edXML package")
]


def print_parsed(parsed: dict[str, Any]) -> None:
    """What a document says, as an officer would check it, warnings last and in colour."""
    console.print(
        f"[bold]{parsed['document_type'] or '?'} {parsed['number'] or '(no number)'}[/] — {parsed['title']}"
    )
    console.print(
        f"{parsed['issuer'] or '?'}, {parsed['place'] or '?'}, {parsed['issued_on'] or '(no date)'}"
    )
    for reference in parsed["implements"]:
        console.print(f"Thực hiện {reference['number']} ({reference['issued_on']}) của {reference['issuer']}")
    table = Table("Đợt", "Từ", "Đến")
    for phase in parsed["phases"]:
        table.add_row(
            phase["label"],
            phase["start"] or phase["start_event"] or "?",
            phase["end"] or phase["end_event"] or "?",
        )
    console.print(table)
    for kind in ("movements", "targets", "deadlines", "award_quotas", "recipients"):
        for item in parsed[kind]:
            text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, default=str)
            console.print(f"{kind}: {text}")
    if parsed["signer"]:
        signer = parsed["signer"]
        console.print(f"Ký: {signer['authority'] or ''} {signer['position']} {signer['name'] or ''}".strip())
    for warning in parsed["warnings"]:
        console.print(f"[yellow]warning {warning['code']}: {warning['message']}[/]")


@plan_app.command("parse")
def plan_parse(
    file: DocumentFile,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Read a plan document (no services needed): what it says, and what in it is doubtful."""
    from shared.documents import read_plan_document
    from shared.documents.errors import DocumentError

    try:
        parsed = read_plan_document(file.read_bytes(), file.name).plan.model_dump(mode="json")
    except DocumentError as error:
        console.print(f"[red]{file.name}: {error}[/]")
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(json.dumps(parsed, ensure_ascii=False, indent=2))
    else:
        print_parsed(parsed)


@plan_app.command("import")
def plan_import(
    file: DocumentFile,
    unit: Annotated[
        str | None, typer.Option(help="The unit whose draft it becomes (an edXML sender by default)")
    ] = None,
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Import a plan document as a draft, keeping the document: prints what was read and what to fix."""
    query = "&".join(f"{k}={v}" for k, v in (("unit_id", unit), ("filename", file.name)) if v)
    answer = call(api, "POST", f"/plans/documents?{query}", content=file.read_bytes())
    print_parsed(answer["parsed"])
    for note in answer["notes"]:
        console.print(f"[yellow]note {note['code']}: {note['message']}[/]")
    for problem in answer["problems"]:
        console.print(f"[red]to fix before issuing — {problem['field']}: {problem['message']}[/]")
    console.print(f"Draft {answer['draft']['id']} (document {answer['document_id']})")


@plan_app.command("docx")
def plan_docx(
    plan_id: PlanId,
    output: Annotated[Path, typer.Option(help="Where to write the DOCX")],
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Write an issued plan as DOCX (Decree 30/2020 layout)."""
    output.write_bytes(call(api, "GET", f"/plans/plans/{plan_id}/docx"))
    console.print(f"Wrote {output}")


@plan_app.command("edxml")
def plan_edxml(
    plan_id: PlanId,
    unit: Annotated[str, typer.Argument(help="The recipient with iOffice")],
    output: Annotated[Path, typer.Option(help="Where to write the package")],
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Write the plan's edXML package for one recipient."""
    output.write_bytes(call(api, "GET", f"/plans/plans/{plan_id}/edxml/{unit}"))
    console.print(f"Wrote {output}")


@plan_app.command("list")
def plan_list(
    issuer: Annotated[str | None, typer.Option(help="Only plans issued by this unit")] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Only plans of this campaign (its root plan's id)")
    ] = None,
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Plans, oldest first."""
    query = "&".join(f"{k}={v}" for k, v in (("issuer_unit_id", issuer), ("campaign_id", campaign)) if v)
    table = Table("Id", "Số", "Đơn vị ban hành", "Trạng thái", "Tên")
    for row in call(api, "GET", f"/plans/plans?{query}"):
        table.add_row(row["id"], row["number"], row["issuer_unit_id"], row["status"], row["title"])
    console.print(table)


@plan_app.command("show")
def plan_show(plan_id: PlanId, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """A plan with its phases and their dates."""
    plan = call(api, "GET", f"/plans/plans/{plan_id}")
    console.print(
        f"[bold]{plan['number']}[/] — {plan['title']} ({plan['status']}, version {plan['version']})"
    )
    table = Table("Đợt", "Tên", "Từ", "Đến", "Hạn báo cáo")
    for phase in plan["phases"]:
        end = phase["end"] or f"({phase['end_milestone']})"
        table.add_row(str(phase["seq"]), phase["label"], phase["start"], end, phase["report_due"] or "—")
    console.print(table)


@plan_app.command("deadlines")
def plan_deadlines(plan_id: PlanId, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Every due date the plan's deadline rules give."""
    table = Table("Hạn", "Loại", "Mục đích", "Đợt / kỳ")
    for due in call(api, "GET", f"/plans/plans/{plan_id}/deadlines"):
        table.add_row(
            due["due_on"], due["kind"], due["purpose"], str(due["phase_seq"] or due["period"] or "")
        )
    console.print(table)


@plan_app.command("deployment")
def plan_deployment(plan_id: PlanId, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Who has deployed the plan, and how many grassroots unions below have."""
    state = call(api, "GET", f"/plans/plans/{plan_id}/deployment")
    for target in state["targets"]:
        console.print(f"{'✓' if target['deployed'] else '·'} {target['name']}")
    console.print(
        f"Grassroots unions deployed: {state['grassroots_deployed']}/{state['grassroots_expected']}"
    )


@plan_app.command("ack")
def plan_ack(
    plan_id: PlanId,
    unit: Annotated[str, typer.Option(help="The acknowledging unit")],
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """A unit acknowledges (deploys) a plan sent to it."""
    call(api, "POST", f"/plans/plans/{plan_id}/acknowledgements", {"unit_id": unit})
    console.print(f"{unit} acknowledged {plan_id}")


@plan_app.command("derive")
def plan_derive(
    plan_id: PlanId,
    unit: Annotated[str, typer.Option(help="The unit deriving its own plan")],
    output: Annotated[Path | None, typer.Option(help="Write the draft here, to edit and issue")] = None,
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """A unit's draft of its own plan implementing this one."""
    draft = call(api, "GET", f"/plans/plans/{plan_id}/derived-draft?unit_id={unit}")
    print_or_write(json.dumps(draft, ensure_ascii=False, indent=2) + "\n", output)


@plan_app.command("milestone")
def plan_milestone(
    plan_id: PlanId,
    milestone: Annotated[str, typer.Argument(help="The milestone's id")],
    on: Annotated[str, typer.Option(help="Its date, YYYY-MM-DD")],
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Date (or move) a milestone; the phases ending at it are re-planned down the cascade."""
    call(api, "POST", f"/plans/plans/{plan_id}/milestones/{milestone}", {"on": on})
    console.print(f"{milestone} on {on}")


@plan_app.command("amend")
def plan_amend(plan_id: PlanId, file: BodyFile, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Issue a new version of a plan (the body of POST /plans/plans/{id}/amendments)."""
    amended = call(api, "POST", f"/plans/plans/{plan_id}/amendments", read_body(file))
    console.print(f"Version {amended['version']}: changed {', '.join(amended['changed'])}")


@plan_app.command("revoke")
def plan_revoke(
    plan_id: PlanId, reason: Annotated[str, typer.Option(help="Why")], api: ApiUrl = "http://127.0.0.1:8000"
) -> None:
    """Revoke a plan and every plan implementing it."""
    call(api, "POST", f"/plans/plans/{plan_id}/revocation", {"reason": reason})
    console.print(f"Revoked {plan_id}")


@plan_app.command("close")
def plan_close(plan_id: PlanId, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Close a plan: its campaign is over."""
    call(api, "POST", f"/plans/plans/{plan_id}/closure")
    console.print(f"Closed {plan_id}")


@plan_app.command("register")
def plan_register(
    plan_id: PlanId,
    unit: Annotated[str, typer.Option(help="The registering unit")],
    kind: Annotated[str, typer.Option(help="commitment, pledge or work")],
    title: Annotated[str, typer.Option(help="What is registered")],
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Register a commitment, a pledge or a work against a plan."""
    row = call(
        api, "POST", f"/plans/plans/{plan_id}/registrations", {"unit_id": unit, "kind": kind, "title": title}
    )
    console.print(f"Registered{' (late)' if row['late'] else ''}: {row['title']}")


# ------------------------------------------------------------------ thidua award …

NominationId = Annotated[str, typer.Argument(help="The nomination's id")]
ByUnit = Annotated[str, typer.Option("--by", help="The unit acting (its council, or its authority)")]


@award_app.command("nominate")
def award_nominate(file: BodyFile, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Nominate (the body of POST /awards/nominations, from a JSON or YAML file)."""
    made = call(api, "POST", "/awards/nominations", read_body(file))
    who = f"{made['nominee_name']} for {made['award']} to {made['to_unit_id']}"
    console.print(f"Nominated {who}: {made['nomination_id']}")


@award_app.command("show")
def award_show(nomination_id: NominationId, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Where a nomination stands, its votes, its decision, and the rules it fails."""
    n = call(api, "GET", f"/awards/nominations/{nomination_id}")
    console.print(
        f"[bold]{n['nominee_name']}[/] — {n['award']} ({n['year']}): {n['state']} at {n['to_unit_id']}"
    )
    console.print(f"Path: {' → '.join(n['path'])}")
    for v in n["votes"]:
        result = "passed" if v["passed"] else "refused"
        console.print(f"Council of {v['unit_id']}: {v['yes']} yes, {v['no']} no of {v['members']}: {result}")
    if n["decision"]:
        decision = n["decision"]
        revoked = " (revoked)" if decision["revoked"] else ""
        console.print(f"Decision {decision['number']} of {decision['decided_on']}{revoked}")
    for rule in n["failed_rules"]:
        console.print(f"[red]fails {rule['rule']}: {rule['message']} {rule['facts']}[/]")


@award_app.command("vote")
def award_vote(
    nomination_id: NominationId,
    by: ByUnit,
    members: Annotated[int, typer.Option(help="Members of the council")],
    yes: Annotated[int, typer.Option(help="Votes for")],
    no: Annotated[int, typer.Option(help="Votes against")] = 0,
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Record a council's vote on a nomination."""
    result = call(
        api,
        "POST",
        f"/awards/nominations/{nomination_id}/votes",
        {"by_unit_id": by, "members": members, "yes": yes, "no": no},
    )
    console.print("passed" if result["passed"] else "refused")


@award_app.command("forward")
def award_forward(nomination_id: NominationId, by: ByUnit, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Forward a passed nomination to the level above."""
    sent = call(api, "POST", f"/awards/nominations/{nomination_id}/forward", {"by_unit_id": by})
    console.print(f"Forwarded to {sent['to_unit_id']}")


@award_app.command("decide")
def award_decide(nomination_id: NominationId, by: ByUnit, api: ApiUrl = "http://127.0.0.1:8000") -> None:
    """Grant the award; prints the decision number."""
    decided = call(api, "POST", f"/awards/nominations/{nomination_id}/decision", {"by_unit_id": by})
    console.print(f"Decision {decided['decision_number']}")


@award_app.command("revoke")
def award_revoke(
    nomination_id: NominationId,
    by: ByUnit,
    reason: Annotated[str, typer.Option(help="Why")],
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Revoke a decided award."""
    call(api, "POST", f"/awards/nominations/{nomination_id}/revocation", {"by_unit_id": by, "reason": reason})
    console.print(f"Revoked {nomination_id}")


@award_app.command("stats")
def award_stats(
    plan: Annotated[str | None, typer.Option(help="Only this plan")] = None,
    api: ApiUrl = "http://127.0.0.1:8000",
) -> None:
    """Awards decided per level, per award, and the shares for direct production and small collectives."""
    stats = call(api, "GET", f"/awards/statistics{'?plan_id=' + plan if plan else ''}")
    console.print(f"Decided: {stats['decided']}")
    for key in ("by_level", "by_award"):
        for name, count in stats[key].items():
            console.print(f"  {name}: {count}")
    console.print(f"Direct production: {stats['direct_production']}/{stats['individuals']} individuals")
    console.print(f"Small collectives: {stats['small_collectives']}/{stats['collectives']} collectives")


@app.command()
def chaos(
    kills: Annotated[int, typer.Option(min=7, help="SIGKILLs of the services (at least 7)")] = 24,
    broker_restarts: Annotated[int, typer.Option(min=0, help="Restarts of the broker, empty")] = 2,
    grassroots: Annotated[int, typer.Option(min=3, help="Grassroots unions under each district")] = 6,
    database: Annotated[str, typer.Option(help="The PostgreSQL server fresh databases are made on")] = (
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    ),
    seed: Annotated[int, typer.Option(help="Seeds the faults and the figures")] = 2026,
    pace: Annotated[float, typer.Option(min=0.5, help="Seconds between kills, about")] = 3.0,
    burst: Annotated[int, typer.Option(min=1, help="Versions of each report sent straight to Kafka")] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON only")] = False,
) -> None:
    """Fault injection: the services as separate processes on a local broker and PostgreSQL run a
    campaign down four levels while they are killed, the broker loses everything, a database goes away
    and messages come twice, shuffled or poisoned; exits 0 only when nothing was lost, double-counted or
    notified twice, and every poison record is in a dead-letter topic."""
    from services import chaos as harness

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say = (lambda _text: None) if as_json else (lambda text: console.print(f"[dim]{text}[/]"))
    tally = asyncio.run(
        harness.run_chaos(
            kills=kills,
            broker_restarts=broker_restarts,
            grassroots_each=grassroots,
            database=database,
            seed=seed,
            pace=pace,
            burst_versions=burst,
            say=say,
        )
    )
    counts = tally.counts()
    if as_json:
        sys.stdout.write(json.dumps({**counts, "problems": tally.mismatches}, ensure_ascii=False) + "\n")
    else:
        print_figures("thidua chaos", counts)
        for marker, letters in tally.dead_letters.items():
            console.print(f"poison {marker}: " + ", ".join(f"{who} → {why}" for who, why in letters))
        for problem in tally.mismatches:
            console.print(f"[bold red]{problem}[/]")
    if tally.mismatches:
        raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
