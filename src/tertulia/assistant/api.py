"""JSON endpoints of the knowledge matrix (`manage_knowledge`) and the assistant's answer.

GET/POST /api/v1/knowledge/entries                list (?q=&language=&topic=&active=&after=&limit=), create
GET/PATCH/DELETE /api/v1/knowledge/entries/{id}   one entry
POST /api/v1/knowledge/entries/bulk               create or update many by question (all or nothing)
POST /api/v1/knowledge/entries/bulk-delete        delete many
POST /api/v1/knowledge/entries/bulk-active        switch many on or off
GET  /api/v1/knowledge/entries/export             CSV (question;alternatives;answer;topic;language;...)
POST /api/v1/knowledge/entries/import             CSV body (text/csv); ?dry_run=true; row report
GET/PUT /api/v1/knowledge/synonyms                the workspace's synonym groups
POST /api/v1/assistant/answer                     what the assistant answers (no side effects)
GET/PUT /api/v1/assistant/channels/{id}/settings  the bot's settings on a channel (PUT: the fields given)
GET  /api/v1/assistant/conversations/{id}/suggestions  the top answers for the customer's last message
"""

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response

from tertulia.assistant import bot, bot_settings, csvio, grounded, retrieval, service
from tertulia.assistant.models import KnowledgeEntry, entry_dict
from tertulia.assistant.schemas import (
    ActiveBody,
    AnswerBody,
    AnswerOut,
    BotSettingsBody,
    BotSettingsOut,
    BulkBody,
    BulkOut,
    CountOut,
    EntryBody,
    EntryOut,
    EntryPage,
    EntryPatch,
    IdsBody,
    ImportOut,
    RowErrorOut,
    SuggestionOut,
    SuggestionsOut,
    SynonymGroup,
    SynonymsBody,
)
from tertulia.conversations.auth import InboxActor
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession, get_db, read_only
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.users.session_auth import SessionOrTokenActor as ApiActor

router = APIRouter(prefix="/api/v1", tags=["assistant"], route_class=CheckedInputRoute, responses=API_ERRORS)


def _check_ids(ids: list[int]) -> None:
    if len(ids) > service.MAX_BULK:
        raise ValidationFailed.field("ids", "At most 1,000 entries in one request.")


def _out(entry: KnowledgeEntry) -> EntryOut:
    return EntryOut(**entry_dict(entry))


@router.get("/knowledge/entries", response_model=EntryPage)
def list_entries(
    session: DbSession,
    actor: ApiActor,
    q: Annotated[str, Query(max_length=200, description="Words found anywhere in the entry.")] = "",
    language: Annotated[str | None, Query(pattern="^(es|en)$")] = None,
    topic: Annotated[str | None, Query(max_length=100)] = None,
    active: bool | None = None,
    after: Annotated[ID | None, Query(description="An entry id: the entries after it.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EntryPage:
    rows = service.list_entries(
        session, actor, search=q, language=language, topic=topic, active=active, after=after, limit=limit + 1
    )
    page = rows[:limit]
    return EntryPage(items=[_out(e) for e in page], next_cursor=page[-1].id if len(rows) > limit else None)


@router.post("/knowledge/entries", response_model=EntryOut, status_code=201)
def create_entry(session: DbSession, actor: ApiActor, body: EntryBody) -> EntryOut:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    values = service.check_entry_values(session, actor.workspace_id, body.model_dump())
    return _out(service.do_create_entry(session, actor, values))


@router.get("/knowledge/entries/export", response_class=Response)
def export_entries(session: DbSession, actor: ApiActor) -> Response:
    return Response(
        csvio.export_entries(session, actor),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="knowledge.csv"'},
    )


@router.post("/knowledge/entries/import", response_model=ImportOut)
def import_entries(
    session: DbSession,
    actor: ApiActor,
    data: Annotated[bytes, Body(media_type="text/csv", description="The CSV file itself.")],
    dry_run: bool = False,
) -> ImportOut:
    report = csvio.do_import(session, actor, data, dry_run=dry_run)
    return ImportOut(
        rows=report.rows,
        created=report.created,
        updated=report.updated,
        rejected=[RowErrorOut(line=r.line, errors=r.errors) for r in report.rejected],
        dry_run=dry_run,
    )


@router.post("/knowledge/entries/bulk", response_model=BulkOut)
def bulk_upsert(session: DbSession, actor: ApiActor, body: BulkBody) -> BulkOut:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    if len(body.entries) > service.MAX_BULK:
        raise ValidationFailed.field("entries", "At most 1,000 entries in one request.")
    batch = [
        service.check_entry_values(session, actor.workspace_id, item.model_dump(), prefix=f"entries[{i}].")
        for i, item in enumerate(body.entries)
    ]
    result = service.do_upsert_entries(session, actor, batch)
    return BulkOut(created=[e.id for e in result.created], updated=[e.id for e in result.updated])


@router.post("/knowledge/entries/bulk-delete", response_model=CountOut)
def bulk_delete(session: DbSession, actor: ApiActor, body: IdsBody) -> CountOut:
    _check_ids(body.ids)
    return CountOut(count=service.do_delete_entries(session, actor, body.ids))


@router.post("/knowledge/entries/bulk-active", response_model=CountOut)
def bulk_active(session: DbSession, actor: ApiActor, body: ActiveBody) -> CountOut:
    _check_ids(body.ids)
    return CountOut(count=service.do_set_active(session, actor, body.ids, body.active))


@router.get("/knowledge/entries/{entry_id}", response_model=EntryOut)
def get_entry(session: DbSession, actor: ApiActor, entry_id: ID) -> EntryOut:
    return _out(service.access_entry(session, actor, entry_id))


@router.patch("/knowledge/entries/{entry_id}", response_model=EntryOut)
def update_entry(session: DbSession, actor: ApiActor, entry_id: ID, body: EntryPatch) -> EntryOut:
    entry = service.access_entry(session, actor, entry_id)
    merged = {**entry_dict(entry), **body.model_dump(exclude_none=True)}
    values = service.check_entry_values(session, actor.workspace_id, merged)
    service.do_update_entry(session, actor, entry, values)
    return _out(entry)


@router.delete("/knowledge/entries/{entry_id}", status_code=204)
def delete_entry(session: DbSession, actor: ApiActor, entry_id: ID) -> Response:
    service.do_delete_entry(session, actor, service.access_entry(session, actor, entry_id))
    return Response(status_code=204)


@router.get("/knowledge/synonyms", response_model=SynonymsBody)
def get_synonyms(session: DbSession, actor: ApiActor) -> SynonymsBody:
    groups = service.list_synonyms(session, actor)
    return SynonymsBody(synonyms=[SynonymGroup(language=g.language, terms=list(g.terms)) for g in groups])


@router.put("/knowledge/synonyms", response_model=SynonymsBody)
def put_synonyms(session: DbSession, actor: ApiActor, body: SynonymsBody) -> SynonymsBody:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    clean = service.check_synonyms([g.model_dump() for g in body.synonyms])
    service.do_replace_synonyms(session, actor, clean)
    return SynonymsBody(synonyms=[SynonymGroup(language=lang, terms=terms) for lang, terms in clean])


@router.post("/assistant/answer", response_model=AnswerOut)
@read_only
def answer(request: Request, session: DbSession, actor: ApiActor, body: AnswerBody) -> AnswerOut:
    """The answer the assistant would give to `question` from the workspace's active entries, written
    by the workspace's language model when one is set (`source`). Changes no data: the same call the
    bot makes, for trying out the knowledge; a model call's tokens and error are recorded (in a
    transaction of their own, the request's being a read)."""
    if len(body.question) > retrieval.MAX_QUESTION:
        raise ValidationFailed.field("question", "The question is too long (2,000 characters at most).")
    outcome = grounded.compose(
        session, actor.workspace_id, body.question, body.language, body.threshold, use_model=body.use_model
    )
    if outcome.called:
        with get_db(request).transaction() as accounting:
            grounded.record(accounting, actor.workspace_id, outcome)
    result = outcome.answer
    return AnswerOut(
        answer=result.answer,
        entry_id=result.entry_id,
        confidence=result.confidence,
        handoff=result.handoff,
        reason=result.reason,
        buttons=list(result.buttons),
        language=result.language,
        source=outcome.source,
        model_status=outcome.model_status,
        embeddings=outcome.embeddings,
    )


def _bot_out(channel_id: int, values: bot_settings.BotValues) -> BotSettingsOut:
    return BotSettingsOut(
        channel_id=channel_id,
        enabled=values.enabled,
        threshold=values.applied_threshold,
        threshold_is_default=values.threshold is None,
        handoff_keywords=values.handoff_keywords,
        handoff_message=values.handoff_message,
        max_bot_answers=values.max_bot_answers,
        hours=values.hours,
        keep_paused=values.keep_paused,
    )


@router.get("/assistant/channels/{channel_id}/settings", response_model=BotSettingsOut)
def get_bot_settings(session: DbSession, actor: ApiActor, channel_id: ID) -> BotSettingsOut:
    return _bot_out(channel_id, bot_settings.get_settings(session, actor, channel_id))


@router.put("/assistant/channels/{channel_id}/settings", response_model=BotSettingsOut)
def put_bot_settings(session: DbSession, actor: ApiActor, channel_id: ID, body: BotSettingsBody) -> BotSettingsOut:
    raw = body.model_dump(exclude_none=True)
    if "threshold" in body.model_fields_set and body.threshold is None:
        raw["threshold"] = None  # back to the assistant's default
    values = bot_settings.do_save_settings(session, actor, channel_id, raw)
    return _bot_out(channel_id, values)


@router.get("/assistant/conversations/{conversation_id}/suggestions", response_model=SuggestionsOut)
@read_only
def suggestions(request: Request, session: DbSession, actor: InboxActor, conversation_id: ID) -> SuggestionsOut:
    """Up to three knowledge answers for the customer's last message, most confident first, for an
    agent to put into the composer (variables are filled in when the reply is sent). Ranked as the
    bot's answer is, with the message's embedding when embeddings are on (its tokens are recorded
    in a transaction of their own, the request's being a read)."""
    text, found, looked = bot.suggested_replies(session, actor, conversation_id)
    if looked.called:
        with get_db(request).transaction() as accounting:
            grounded.record_lookup(accounting, actor.workspace_id, looked, conversation_id)
    return SuggestionsOut(
        question=text,
        items=[
            SuggestionOut(entry_id=a.entry_id or 0, answer=a.answer or "", confidence=a.confidence, language=a.language)
            for a in found
        ],
    )
