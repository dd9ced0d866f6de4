"""Settings > Assistant > Knowledge: the knowledge entries (list with search, create, edit, delete),
CSV import with its row report and export, the synonyms, and a box to try a question against the
knowledge as the assistant would answer it. Settings > Assistant > Bot: the bot's settings, one
channel at a time. Settings > Assistant > Language model: the optional OpenAI-compatible model,
its "Test connection" and its last error. `manage_knowledge` (owners and managers)."""

import re
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from starlette.responses import Response

from tertulia.assistant import bot_settings, csvio, grounded, model_settings, retrieval, service
from tertulia.assistant.models import LANGUAGES, KnowledgeEntry
from tertulia.channels.service import list_channels
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import DomainError, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, get_db, is_read, read_only
from tertulia.kit.text import replace_unsafe_characters
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors, submit
from tertulia.web.sections import Section, open_section, render_section, section_page

router = APIRouter(prefix="/settings", include_in_schema=False, route_class=CheckedInputRoute)

KNOWLEDGE = Section("knowledge", i18n.lazy("Knowledge"), Permission.MANAGE_KNOWLEDGE)
PAGE_SIZE = 50
MAX_IMPORT_BYTES = 1024 * 1024

LANGUAGE_LABELS = {"es": i18n.lazy("Spanish"), "en": i18n.lazy("English")}
REASONS = {
    "matched": i18n.lazy("Answered from the knowledge."),
    "low_confidence": i18n.lazy("Not sure enough: the conversation would go to a person."),
    "no_match": i18n.lazy("No entry matches: the conversation would go to a person."),
    "empty_question": i18n.lazy("Write a question with some words in it."),
    "no_knowledge": i18n.lazy("There are no active entries yet."),
}
EMPTY_ENTRY = {
    "question": "",
    "alternatives": "",
    "answer": "",
    "buttons": "",
    "topic": "",
    "language": "es",
    "active": True,
}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _raw(
    question: str, alternatives: str, answer: str, buttons: str, topic: str, language: str, active: str | None
) -> dict[str, Any]:
    return {
        "question": question,
        "alternatives": _lines(alternatives),
        "answer": answer,
        "buttons": _lines(buttons),
        "topic": topic,
        "language": language,
        "active": active is not None,
    }


def _typed(
    question: str, alternatives: str, answer: str, buttons: str, topic: str, language: str, active: str | None
) -> dict[str, Any]:
    clean = replace_unsafe_characters
    return {
        "question": clean(question),
        "alternatives": clean(alternatives),
        "answer": clean(answer),
        "buttons": clean(buttons),
        "topic": clean(topic),
        "language": clean(language),
        "active": active is not None,
    }


def _entry_typed(entry: KnowledgeEntry) -> dict[str, Any]:
    return {
        "question": entry.question,
        "alternatives": "\n".join(entry.alternatives or []),
        "answer": entry.answer,
        "buttons": "\n".join(entry.buttons or []),
        "topic": entry.topic,
        "language": entry.language,
        "active": entry.active,
    }


def _synonym_text(ctx: WebContext) -> dict[str, str]:
    groups = service.list_synonyms(ctx.session, ctx.actor)
    return {lang: "\n".join(", ".join(g.terms) for g in groups if g.language == lang) for lang in LANGUAGES}


def _try_question(ctx: WebContext, question: str, language: str | None) -> retrieval.Answer:
    """Retrieval's answer ranked as the bot's is: with the question's embedding when embeddings are
    on and ready (on a page read only; its tokens recorded in a short transaction of their own)."""
    if not is_read(ctx.request):
        return retrieval.answer(ctx.session, ctx.actor.workspace_id, question, language)
    looked = grounded.retrieve(ctx.session, ctx.actor.workspace_id, question)
    if looked.called:
        with get_db(ctx.request).transaction() as accounting:
            grounded.record_lookup(accounting, ctx.actor.workspace_id, looked)
    return retrieval.answer(ctx.session, ctx.actor.workspace_id, question, language, None, looked.semantic)


@section_page(router, "/knowledge", KNOWLEDGE)
def _knowledge(
    ctx: WebContext,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    report: csvio.ImportReport | None = None,
    import_errors: dict[str, str] | None = None,
    synonyms: dict[str, str] | None = None,
    synonym_errors: dict[str, str] | None = None,
) -> Response:
    params = ctx.request.query_params
    search = replace_unsafe_characters(params.get("q", ""))[:200]
    language = params.get("language") if params.get("language") in LANGUAGES else None
    after = params.get("after", "")
    entries = service.list_entries(
        ctx.session,
        ctx.actor,
        search=search,
        language=language,
        after=int(after) if after.isdigit() and len(after) < 18 else None,
        limit=PAGE_SIZE + 1,
    )
    question = replace_unsafe_characters(params.get("ask", ""))[: retrieval.MAX_QUESTION]
    ask_language = params.get("ask_language") if params.get("ask_language") in LANGUAGES else None
    tried: dict[str, Any] | None = None
    if question.strip():
        answer = _try_question(ctx, question, ask_language)
        entry = next((e for e in entries if e.id == answer.entry_id), None)
        if entry is None and answer.entry_id is not None:
            entry = ctx.session.get(KnowledgeEntry, answer.entry_id)
        tried = {"answer": answer, "entry": entry, "reason": REASONS.get(answer.reason, answer.reason)}
    context = {
        "entries": entries[:PAGE_SIZE],
        "next_after": entries[PAGE_SIZE - 1].id if len(entries) > PAGE_SIZE else None,
        "search": search,
        "language": language or "",
        "languages": LANGUAGE_LABELS,
        "typed": typed or EMPTY_ENTRY,
        "errors": errors or {},
        "report": report,
        "import_errors": import_errors or {},
        "synonyms": synonyms or _synonym_text(ctx),
        "synonym_errors": synonym_errors or {},
        "ask": question,
        "ask_language": ask_language or "",
        "tried": tried,
        "threshold": retrieval.DEFAULT_THRESHOLD,
    }
    failed = errors or import_errors or synonym_errors
    return render_section(ctx, KNOWLEDGE, "assistant/knowledge.html", context, status_code=422 if failed else 200)


@router.post("/knowledge")
def create_entry(
    ctx: UserPage,
    question: Annotated[str, Form()] = "",
    alternatives: Annotated[str, Form()] = "",
    answer: Annotated[str, Form()] = "",
    buttons: Annotated[str, Form()] = "",
    topic: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "es",
    active: Annotated[str | None, Form()] = None,
) -> Response:
    open_section(ctx, KNOWLEDGE)
    fields = (question, alternatives, answer, buttons, topic, language, active)

    def create() -> KnowledgeEntry:
        values = service.check_entry_values(ctx.session, ctx.actor.workspace_id, _raw(*fields))
        return service.do_create_entry(ctx.session, ctx.actor, values)

    return submit(
        ctx,
        create,
        again=lambda exc: _knowledge(ctx, typed=_typed(*fields), errors=field_errors(ctx, exc)),
        redirect="/settings/knowledge",
        flash="settings_saved",
        catch=(ValidationFailed,),
    )


@router.get("/knowledge/export")
def export_entries(ctx: UserPage) -> Response:
    open_section(ctx, KNOWLEDGE)
    return Response(
        csvio.export_entries(ctx.session, ctx.actor),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="knowledge.csv"'},
    )


@router.post("/knowledge/import")
def import_entries(ctx: UserPage, file: Annotated[UploadFile | None, File()] = None) -> Response:
    open_section(ctx, KNOWLEDGE)

    def run() -> csvio.ImportReport:
        if file is None or not file.filename:
            raise ValidationFailed.field("file", "Choose a CSV file.")
        data = file.file.read(MAX_IMPORT_BYTES + 1)
        if len(data) > MAX_IMPORT_BYTES:
            raise ValidationFailed.field("file", "The file is larger than 1 MB.")
        return csvio.do_import(ctx.session, ctx.actor, data)

    return submit(
        ctx,
        run,
        again=lambda exc: _knowledge(ctx, import_errors=field_errors(ctx, exc)),
        done=lambda report: _knowledge(ctx, report=report),
        catch=(ValidationFailed,),
    )


@router.post("/knowledge/synonyms")
def save_synonyms(
    ctx: UserPage,
    synonyms_es: Annotated[str, Form()] = "",
    synonyms_en: Annotated[str, Form()] = "",
) -> Response:
    open_section(ctx, KNOWLEDGE)
    texts = {"es": synonyms_es, "en": synonyms_en}

    def save() -> None:
        groups = [g for lang in LANGUAGES for g in service.parse_synonym_lines(texts[lang], lang)]
        try:
            clean = service.check_synonyms(groups)
        except ValidationFailed as exc:
            # The page has one box per language: the first problem of each shows beside its box.
            details = exc.details if isinstance(exc.details, dict) else {}
            boxes: dict[str, str] = {}
            for path, message in details.items():
                index = int(str(path).split("[")[1].split("]")[0]) if "[" in str(path) else 0
                language = groups[index]["language"] if index < len(groups) else "es"
                boxes.setdefault(f"synonyms_{language}", str(message))
            raise ValidationFailed(exc.message, details=boxes) from exc
        service.do_replace_synonyms(ctx.session, ctx.actor, clean)

    def again(exc: DomainError) -> Response:
        typed = {lang: replace_unsafe_characters(texts[lang]) for lang in LANGUAGES}
        return _knowledge(ctx, synonyms=typed, synonym_errors=field_errors(ctx, exc))

    return submit(
        ctx, save, again=again, redirect="/settings/knowledge", flash="settings_saved", catch=(ValidationFailed,)
    )


def _entry_page(
    ctx: WebContext, entry_id: int, *, typed: dict[str, Any] | None = None, errors: dict[str, str] | None = None
) -> Response:
    entry = service.access_entry(ctx.session, ctx.actor, entry_id)
    context = {
        "entry": entry,
        "typed": typed or _entry_typed(entry),
        "errors": errors or {},
        "languages": LANGUAGE_LABELS,
    }
    return render_section(ctx, KNOWLEDGE, "assistant/entry.html", context, status_code=422 if errors else 200)


@router.get("/knowledge/{entry_id}")
def entry_page(ctx: UserPage, entry_id: ID) -> Response:
    open_section(ctx, KNOWLEDGE)
    return _entry_page(ctx, entry_id)


@router.post("/knowledge/{entry_id}")
def update_entry(
    ctx: UserPage,
    entry_id: ID,
    question: Annotated[str, Form()] = "",
    alternatives: Annotated[str, Form()] = "",
    answer: Annotated[str, Form()] = "",
    buttons: Annotated[str, Form()] = "",
    topic: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "es",
    active: Annotated[str | None, Form()] = None,
) -> Response:
    open_section(ctx, KNOWLEDGE)
    fields = (question, alternatives, answer, buttons, topic, language, active)

    def update() -> None:
        entry = service.access_entry(ctx.session, ctx.actor, entry_id)
        values = service.check_entry_values(ctx.session, ctx.actor.workspace_id, _raw(*fields))
        service.do_update_entry(ctx.session, ctx.actor, entry, values)

    return submit(
        ctx,
        update,
        again=lambda exc: _entry_page(ctx, entry_id, typed=_typed(*fields), errors=field_errors(ctx, exc)),
        redirect=f"/settings/knowledge/{entry_id}",
        flash="settings_saved",
        catch=(ValidationFailed,),
    )


@router.post("/knowledge/{entry_id}/delete")
def delete_entry(ctx: UserPage, entry_id: ID) -> Response:
    open_section(ctx, KNOWLEDGE)
    service.do_delete_entry(ctx.session, ctx.actor, service.access_entry(ctx.session, ctx.actor, entry_id))
    return ctx.redirect("/settings/knowledge", flash="settings_saved")


# ----- Settings > Assistant > Bot: the bot's settings per channel ---------------------------------

BOT = Section("assistant-bot", i18n.lazy("Bot"), Permission.MANAGE_KNOWLEDGE)


def _bot_typed(values: bot_settings.BotValues) -> dict[str, Any]:
    return {
        "enabled": values.enabled,
        "threshold": "" if values.threshold is None else f"{values.threshold:g}",
        "handoff_keywords": ", ".join(values.handoff_keywords),
        "handoff_message": values.handoff_message,
        "max_bot_answers": str(values.max_bot_answers),
        "hours": values.hours,
        "keep_paused": values.keep_paused,
    }


def _number(text: str, kind: type[int] | type[float]) -> int | float | str:
    """The typed number, or the text itself so the check names the field."""
    try:
        return kind(text.strip().replace(",", "."))
    except ValueError:
        return text


@section_page(router, "/assistant-bot", BOT)
def _bot_page(
    ctx: WebContext,
    *,
    channel_id: int | None = None,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    channels = list_channels(ctx.session, ctx.actor.workspace_id)
    asked = ctx.request.query_params.get("channel", "")
    if channel_id is None and asked.isdigit() and len(asked) < 18:
        channel_id = int(asked)
    current = next((c for c in channels if c.id == channel_id), channels[0] if channels else None)
    if current is not None and typed is None:
        typed = _bot_typed(bot_settings.get_settings(ctx.session, ctx.actor, current.id))
    context = {
        "channels": channels,
        "current": current,
        "typed": typed or {},
        "errors": errors or {},
        "default_threshold": retrieval.DEFAULT_THRESHOLD,
    }
    return render_section(ctx, BOT, "assistant/bot.html", context, status_code=422 if errors else 200)


@router.post("/assistant-bot/{channel_id}")
def save_bot(
    ctx: UserPage,
    channel_id: ID,
    enabled: Annotated[str | None, Form()] = None,
    threshold: Annotated[str, Form()] = "",
    handoff_keywords: Annotated[str, Form()] = "",
    handoff_message: Annotated[str, Form()] = "",
    max_bot_answers: Annotated[str, Form()] = "",
    hours: Annotated[str, Form()] = "always",
    keep_paused: Annotated[str | None, Form()] = None,
) -> Response:
    open_section(ctx, BOT)
    clean = replace_unsafe_characters
    typed = {
        "enabled": enabled is not None,
        "threshold": clean(threshold),
        "handoff_keywords": clean(handoff_keywords),
        "handoff_message": clean(handoff_message),
        "max_bot_answers": clean(max_bot_answers),
        "hours": clean(hours),
        "keep_paused": keep_paused is not None,
    }
    raw = {
        "enabled": enabled is not None,
        "threshold": _number(threshold, float) if threshold.strip() else None,  # empty: the default
        "handoff_keywords": [w for w in handoff_keywords.split(",") if w.strip()],
        "handoff_message": handoff_message,
        "max_bot_answers": _number(max_bot_answers, int),
        "hours": hours,
        "keep_paused": keep_paused is not None,
    }
    return submit(
        ctx,
        lambda: bot_settings.do_save_settings(ctx.session, ctx.actor, channel_id, raw),
        again=lambda exc: _bot_page(ctx, channel_id=channel_id, typed=typed, errors=field_errors(ctx, exc)),
        redirect=f"/settings/assistant-bot?channel={channel_id}",
        flash="settings_saved",
        catch=(ValidationFailed,),
    )


# ----- Settings > Assistant > Language model: the optional OpenAI-compatible model ---------------

MODEL = Section("assistant-model", i18n.lazy("Language model"), Permission.MANAGE_KNOWLEDGE)
MODEL_FIELDS = (
    "base_url",
    "model",
    "embedding_model",
    "timeout_seconds",
    "max_retries",
    "conversation_token_budget",
    "monthly_token_budget",
)


def _model_typed(values: model_settings.ModelValues) -> dict[str, Any]:
    return {
        "enabled": values.enabled,
        "base_url": values.base_url,
        "model": values.model,
        "embedding_model": values.embedding_model,
        "timeout_seconds": f"{values.timeout_seconds:g}",
        "max_retries": str(values.max_retries),
        "conversation_token_budget": str(values.conversation_token_budget),
        "monthly_token_budget": str(values.monthly_token_budget),
    }


@section_page(router, "/assistant-model", MODEL)
def _model_page(
    ctx: WebContext,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    tested: bool | None = None,
    test_error: str = "",
    test_refused: bool = False,
) -> Response:
    status = model_settings.get_status(ctx.session, ctx.actor)
    if tested is not None:
        # This request's read began before the outcome was recorded (on SQLite it keeps reading
        # that snapshot): show the outcome itself.
        status = replace(
            status,
            last_error=test_error,
            last_error_at=utcnow() if test_error else status.last_error_at,
            last_success_at=status.last_success_at if test_error else utcnow(),
        )
    typed = typed or _model_typed(status.values)
    # Beside what the form shows: the saved budgets, or on a refused form what was typed.
    # A typed text that is not a plain number of tokens has its field's error instead.
    budgets = {
        field: int(typed[field])
        for field in grounded.BUDGET_FIELDS
        if re.fullmatch(r"[0-9]{1,10}", str(typed.get(field, "")))
    }
    context = {
        "status": status,
        "typed": typed,
        "errors": errors or {},
        "tested": tested,
        "test_refused": test_refused,
        "budget_warnings": {w.field: w.minimum for w in grounded.budget_warnings(budgets)},
        "answer_reply_tokens": grounded.MAX_COMPLETION_TOKENS,
    }
    return render_section(ctx, MODEL, "assistant/model.html", context, status_code=422 if errors else 200)


@router.post("/assistant-model")
def save_model(
    ctx: UserPage,
    enabled: Annotated[str | None, Form()] = None,
    base_url: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
    embedding_model: Annotated[str, Form()] = "",
    api_key: Annotated[str, Form()] = "",
    clear_api_key: Annotated[str | None, Form()] = None,
    timeout_seconds: Annotated[str, Form()] = "",
    max_retries: Annotated[str, Form()] = "",
    conversation_token_budget: Annotated[str, Form()] = "",
    monthly_token_budget: Annotated[str, Form()] = "",
) -> Response:
    open_section(ctx, MODEL)
    clean = replace_unsafe_characters
    texts = dict(
        zip(
            MODEL_FIELDS,
            (
                base_url,
                model,
                embedding_model,
                timeout_seconds,
                max_retries,
                conversation_token_budget,
                monthly_token_budget,
            ),
            strict=True,
        )
    )
    # What was typed comes back on an error, except the API key: a secret is never rendered.
    typed = {"enabled": enabled is not None, **{name: clean(value) for name, value in texts.items()}}
    raw = {
        "enabled": enabled is not None,
        "base_url": base_url,
        "model": model,
        "embedding_model": embedding_model,
        "timeout_seconds": _number(timeout_seconds, float),
        "max_retries": _number(max_retries, int),
        "conversation_token_budget": _number(conversation_token_budget, int),
        "monthly_token_budget": _number(monthly_token_budget, int),
    }
    return submit(
        ctx,
        lambda: model_settings.do_save(
            ctx.session, ctx.actor, raw, api_key=api_key, clear_api_key=clear_api_key is not None
        ),
        again=lambda exc: _model_page(ctx, typed=typed, errors=field_errors(ctx, exc)),
        redirect="/settings/assistant-model",
        flash="settings_saved",
        catch=(ValidationFailed,),
    )


@router.post("/assistant-model/test")
@read_only
def test_model(ctx: UserPage) -> Response:
    """One small completion with the saved settings. The request's transaction is a read (the
    endpoint may take its whole timeout); the outcome is recorded in a short one of its own, and
    the page shows it (the error, or that it worked)."""
    open_section(ctx, MODEL)
    try:
        test = model_settings.try_connection(ctx.session, ctx.actor)
    except ValidationFailed as exc:
        return _model_page(ctx, errors=field_errors(ctx, exc))
    if test.refused:
        return _model_page(ctx, test_refused=True)
    with get_db(ctx.request).transaction() as session:
        model_settings.record_connection_test(session, ctx.actor.workspace_id, test)
    return _model_page(ctx, tested=test.worked, test_error=test.error)
