"""The API's shapes for knowledge entries, synonyms, CSV import reports and answers."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tertulia.kit.types import described

Question = Annotated[str, described(500)]
Answer = Annotated[str, described(4000)]
Button = Annotated[str, described(20)]
Topic = Annotated[str, described(100)]
Language = Annotated[str, described(2, pattern="^(es|en)$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EntryBody(Strict):
    question: Question
    alternatives: Annotated[list[Question], described(max_items=30)] = Field(
        default_factory=list, description="Other ways customers ask the same thing."
    )
    answer: Answer = Field(description='Text with dynamic variables such as {{contact.first_name | "cliente"}}.')
    buttons: Annotated[list[Button], described(max_items=10)] = Field(
        default_factory=list, description="Quick-reply buttons offered with the answer."
    )
    topic: Topic = ""
    language: Language = Field(description="es or en.")
    active: bool = True


class EntryPatch(Strict):
    question: Question | None = None
    alternatives: Annotated[list[Question], described(max_items=30)] | None = None
    answer: Answer | None = None
    buttons: Annotated[list[Button], described(max_items=10)] | None = None
    topic: Topic | None = None
    language: Language | None = None
    active: bool | None = None


class EntryOut(BaseModel):
    id: int
    question: str
    alternatives: list[str]
    answer: str
    buttons: list[str]
    topic: str
    language: str
    active: bool
    created_at: datetime
    updated_at: datetime


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_cursor: int | None = Field(description="Pass as `after` for the next page.")


class BulkBody(Strict):
    entries: Annotated[list[EntryBody], described(max_items=1000)] = Field(
        description="Written by language and question: a known question is updated, a new one created. "
        "All or nothing: one invalid entry refuses the request, naming it (entries[3].answer)."
    )


class BulkOut(BaseModel):
    created: list[int]
    updated: list[int]


class IdsBody(Strict):
    ids: Annotated[list[int], described(max_items=1000)]


class ActiveBody(IdsBody):
    active: bool


class CountOut(BaseModel):
    count: int


class RowErrorOut(BaseModel):
    line: int = Field(description="The line of the file (the header is line 1).")
    errors: dict[str, str] = Field(description="Field name to the reason it was refused.")


class ImportOut(BaseModel):
    rows: int
    created: int
    updated: int
    rejected: list[RowErrorOut]
    dry_run: bool


class SynonymGroup(Strict):
    language: Language
    terms: Annotated[list[Annotated[str, described(100)]], described(max_items=20)] = Field(
        description="Words or phrases the assistant treats as the same (at least two)."
    )


class SynonymsBody(Strict):
    synonyms: Annotated[list[SynonymGroup], described(max_items=500)]


class AnswerBody(Strict):
    question: Annotated[str, described(2000)]
    language: Language | None = Field(default=None, description="es or en; the other language is tried too.")
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Confidence below which to hand off (default: the assistant's)."
    )
    use_model: bool = Field(
        default=True, description="Let the workspace's language model write the answer, when one is set."
    )


class AnswerOut(BaseModel):
    answer: str | None = Field(description="The entry's answer as stored (variables are filled in when sent).")
    entry_id: int | None = Field(description="The best entry, also on a hand-off (what the agent's note shows).")
    confidence: float = Field(description="0 to 1.")
    handoff: bool
    reason: str = Field(
        description="matched, low_confidence, no_match, empty_question, no_knowledge, or ungrounded (the "
        "language model's answer cited no given entry, or one it was not given)."
    )
    buttons: list[str]
    language: str | None
    source: str = Field(default="retrieval", description="Which path answered: llm (the language model) or retrieval.")
    model_status: str = Field(
        default="off",
        description="grounded or ungrounded (source llm); off, no_candidates, budget, error or invalid_output "
        "(source retrieval: why the model did not answer).",
    )
    embeddings: str = Field(
        default="off",
        description="off (no embeddings model), ready (the question's embedding was fused into retrieval), "
        "building (the knowledge's embeddings are not computed yet), budget or error: retrieval was lexical.",
    )


class BotSettingsBody(Strict):
    enabled: bool | None = None
    threshold: float | None = Field(
        default=None,
        description="Confidence (0 to 1) below which the bot hands off; null: follow the assistant's default.",
    )
    handoff_keywords: Annotated[list[Annotated[str, described(50)]], described(max_items=50)] | None = Field(
        default=None, description="Words that make a customer's message a request for a person."
    )
    handoff_message: Annotated[str, described(1000)] | None = None
    max_bot_answers: int | None = Field(default=None, description="Answers per conversation before handing off.")
    hours: str | None = Field(default=None, description='"always", or "outside": only while business hours are closed.')
    keep_paused: bool | None = Field(
        default=None, description="A pause lasts into the contact's next conversation until a close turns it back on."
    )


class BotSettingsOut(BaseModel):
    channel_id: int
    enabled: bool
    threshold: float = Field(description="The confidence in use: the channel's own, or the assistant's default.")
    threshold_is_default: bool = Field(
        description="The channel follows the assistant's default threshold (it moves when the default does)."
    )
    handoff_keywords: list[str]
    handoff_message: str
    max_bot_answers: int
    hours: str
    keep_paused: bool


class SuggestionOut(BaseModel):
    entry_id: int
    answer: str
    confidence: float
    language: str | None


class SuggestionsOut(BaseModel):
    question: str = Field(description="The customer's last message the suggestions answer.")
    items: list[SuggestionOut]
