"""Checked filter -> one SQLAlchemy clause over `Contact`, the same on SQLite and PostgreSQL.

Invariants:
- `compile_filter` always ANDs `Contact.workspace_id == ctx.workspace_id` onto the result, so no
  filter, however built, reaches another workspace's contacts.
- Only a `CheckedFilter` compiles; unknown fields and operators were rejected while checking, and a
  (category, kind, operator) this module has no method for raises instead of being skipped.
- Every condition is two-valued (never SQL NULL): positive operators are `value IS NOT NULL AND
  ...`, negative ones `value IS NULL OR ...`. That is what makes `segment not_in` (a NOT around a
  whole filter) and the missing-value rules agree with the in-memory evaluator.

AND and OR over many clauses are written as balanced trees of parenthesised pairs: SQLite's parser
nests one level per operator of a flat `a AND b AND c ...` chain and refuses a statement deeper than
1,000, which a filter within the documented limits reached (20 groups of 50 conditions, each
`value IS NOT NULL AND ...`). Balanced, the depth grows with the logarithm of the clause count.

The filter is compiled from its shape (shape.py): nested ANDs and ORs flattened and the value lists on
one field under each of them merged into one, which PostgreSQL needs to plan and run a filter with
many lists on one indexed column at all.

Custom values are read with the JSON `->>` operator and the key inlined as a literal (keys are
checked against `CUSTOM_KEY`): `custom ->> 'plan'` is the same text on both databases, so one
expression index serves both, which a bound JSON path would not.
"""

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from tertulia.contacts.models import Contact, ContactTag, Tag
from tertulia.segments.language import CUSTOM_KEY, CheckedFilter, Condition, FieldRef
from tertulia.segments.shape import Constant, Junction, Member, Negation, Node, shape, tag_subqueries
from tertulia.segments.timing import EvalContext, date_range

Clause = ColumnElement[bool]
# Up to this many tag subqueries in a filter may become joins (PostgreSQL's join_collapse_limit).
MAX_TAG_JOINS = 8


def _key_literal(key: str) -> ColumnElement[Any]:
    if not CUSTOM_KEY.match(key):  # keys are inlined into SQL text: never anything but [a-z0-9_]
        raise ValueError(f"not a custom field key: {key!r}")
    return literal_column(f"'{key}'")


def custom_text(key: str, *, folded: bool = False) -> ColumnElement[Any]:
    """`custom ->> 'key'` (or over `custom_folded`): the indexable custom value expression."""
    column = Contact.custom_folded if folded else Contact.custom
    return column.op("->>", return_type=String())(_key_literal(key))


class _Parenthesized(ColumnElement[bool]):
    """A clause kept in its own parentheses. SQLAlchemy flattens `and_(and_(a, b), c)` (groupings
    included) into one chain, which is the shape SQLite cannot parse past a depth of 1,000."""

    inherit_cache = True
    _traverse_internals = [("clause", InternalTraversal.dp_clauseelement)]  # noqa: RUF012 (SQLAlchemy's own protocol)
    type = Boolean()

    def __init__(self, clause: Clause) -> None:
        self.clause = clause


@compiles(_Parenthesized)
def _render_parenthesized(element: _Parenthesized, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clause, **kw)})"


def _balanced(join: Callable[..., Clause], clauses: Sequence[Clause]) -> Clause:
    """`join(*clauses)` as a balanced tree of parenthesised halves (see the module docstring)."""
    if len(clauses) <= 2:
        return join(*clauses)
    middle = len(clauses) // 2
    return join(_Parenthesized(_balanced(join, clauses[:middle])), _Parenthesized(_balanced(join, clauses[middle:])))


def all_of(clauses: Sequence[Clause]) -> Clause:
    return _balanced(and_, clauses)


def any_of(clauses: Sequence[Clause]) -> Clause:
    return _balanced(or_, clauses)


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def compile_filter(checked: CheckedFilter, ctx: EvalContext) -> Clause:
    """The clause selecting the filter's contacts, always scoped to `ctx.workspace_id`."""
    tree = shape(checked)
    compiler = SqlCompiler(ctx, many_tag_subqueries=tag_subqueries(tree) > MAX_TAG_JOINS)
    return and_(Contact.workspace_id == ctx.workspace_id, compiler.node(tree))


class SqlCompiler:
    def __init__(self, ctx: EvalContext, many_tag_subqueries: bool = False) -> None:
        self.ctx = ctx
        self.many_tag_subqueries = many_tag_subqueries

    def node(self, node: Node) -> Clause:
        if isinstance(node, Junction):
            clauses = [self.node(child) for child in node.children]
            return all_of(clauses) if node.join == "and" else any_of(clauses)
        if isinstance(node, Negation):
            return not_(self.node(node.child))
        if isinstance(node, Member):
            column = self.value(node.field)
            return and_(column.is_not(None), column.in_(node.values))
        if isinstance(node, Constant):
            return true() if node.value else false()
        return self.condition(node.condition)

    def condition(self, condition: Condition) -> Clause:
        if condition.category == "tag":
            name = f"{condition.category}_{condition.operator}"
        else:
            assert condition.field is not None
            name = f"{condition.field.kind}_{condition.operator}"
        method: Callable[[Condition], Clause] | None = getattr(self, name, None)
        if method is None:
            raise ValueError(f"no SQL for {condition.category} {name}")
        return method(condition)

    # ----- value expressions --------------------------------------------------------------------

    @staticmethod
    def value(field: FieldRef | None) -> ColumnElement[Any]:
        assert field is not None
        if field.source == "column":
            column: ColumnElement[Any] = getattr(Contact, field.name)
            if field.kind == "checkbox":
                # A boolean column, seen as a custom checkbox is: 'true' when set, NULL when not.
                return case((column, literal_column("'true'")), else_=null())
            return column
        if field.kind in ("text", "list"):
            return custom_text(field.name, folded=True)
        if field.kind == "number":
            return cast(custom_text(field.name), Float())
        if field.kind == "checkbox":
            # `->` gives JSON text on SQLite and jsonb on PostgreSQL; both equal the literal 'true'.
            return Contact.custom.op("->")(_key_literal(field.name))
        return custom_text(field.name)  # date and datetime: ISO text, string order is time order

    def _has(self, condition: Condition, test: Callable[[ColumnElement[Any]], Clause]) -> Clause:
        column = self.value(condition.field)
        return and_(column.is_not(None), test(column))

    def _lacks_or(self, condition: Condition, test: Callable[[ColumnElement[Any]], Clause]) -> Clause:
        column = self.value(condition.field)
        return or_(column.is_(None), test(column))

    def _exists(self, condition: Condition) -> Clause:
        return self.value(condition.field).is_not(None)

    def _not_exists(self, condition: Condition) -> Clause:
        return self.value(condition.field).is_(None)

    # ----- text ---------------------------------------------------------------------------------

    def text_is(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col == c.value)

    def text_is_not(self, c: Condition) -> Clause:
        return self._lacks_or(c, lambda col: col != c.value)

    def text_contains(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col.like(f"%{escape_like(c.value)}%", escape="\\"))

    def text_not_contains(self, c: Condition) -> Clause:
        return self._lacks_or(c, lambda col: col.not_like(f"%{escape_like(c.value)}%", escape="\\"))

    def text_starts_with(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col.like(f"{escape_like(c.value)}%", escape="\\"))

    def text_ends_with(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col.like(f"%{escape_like(c.value)}", escape="\\"))

    text_exists = _exists
    text_not_exists = _not_exists

    # ----- list (custom list fields) and code (country, language) ------------------------------
    # `is` and `is_any_of` are `Member`s of the shape (see `node`).

    def list_is_not(self, c: Condition) -> Clause:
        return self._lacks_or(c, lambda col: col != c.value[0])

    def list_is_none_of(self, c: Condition) -> Clause:
        return self._lacks_or(c, lambda col: col.not_in(c.value))

    list_exists = _exists
    list_not_exists = _not_exists
    code_is_not = list_is_not
    code_is_none_of = list_is_none_of
    code_exists = _exists
    code_not_exists = _not_exists

    # ----- number -------------------------------------------------------------------------------

    def number_eq(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col == c.value)

    def number_neq(self, c: Condition) -> Clause:
        return self._lacks_or(c, lambda col: col != c.value)

    def number_gt(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col > c.value)

    def number_gte(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col >= c.value)

    def number_lt(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col < c.value)

    def number_lte(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col <= c.value)

    def number_between(self, c: Condition) -> Clause:
        low, high = c.value
        return self._has(c, lambda col: and_(col >= low, col <= high))

    number_exists = _exists
    number_not_exists = _not_exists

    # ----- checkbox -----------------------------------------------------------------------------

    def checkbox_is_true(self, c: Condition) -> Clause:
        return self._has(c, lambda col: col == literal_column("'true'"))

    def checkbox_is_false(self, c: Condition) -> Clause:
        # An unset checkbox is unticked.
        return self._lacks_or(c, lambda col: col != literal_column("'true'"))

    # ----- date and datetime (contact fields, custom fields, last messages) ---------------------

    def _in_range(self, c: Condition) -> Clause:
        bounds = date_range(c, self.ctx)

        def test(col: ColumnElement[Any]) -> Clause:
            parts: list[Clause] = []
            if bounds.low is not None:
                parts.append(col >= bounds.low if bounds.low_inclusive else col > bounds.low)
            if bounds.high is not None:
                parts.append(col <= bounds.high if bounds.high_inclusive else col < bounds.high)
            return and_(*parts)

        return self._has(c, test)

    date_before = date_after = date_on = date_between = _in_range
    date_less_than_ago = date_more_than_ago = _in_range
    date_exists = _exists
    date_not_exists = _not_exists
    datetime_before = datetime_after = datetime_on = datetime_between = _in_range
    datetime_less_than_ago = datetime_more_than_ago = _in_range
    datetime_exists = _exists
    datetime_not_exists = _not_exists

    # ----- assignee -----------------------------------------------------------------------------

    def _user_id(self, c: Condition) -> int | None:
        return self.ctx.me_user_id if c.value == "me" else int(c.value)

    def assignee_is(self, c: Condition) -> Clause:
        user_id = self._user_id(c)
        if user_id is None:
            return false()
        return self._has(c, lambda col: col == user_id)

    def assignee_is_not(self, c: Condition) -> Clause:
        user_id = self._user_id(c)
        if user_id is None:
            return true()
        return self._lacks_or(c, lambda col: col != user_id)

    assignee_exists = _exists
    assignee_not_exists = _not_exists

    # ----- tags ---------------------------------------------------------------------------------

    def _tagged(self, contact_ids: Select[int]) -> Clause:
        clause = Contact.id.in_(contact_ids)
        # PostgreSQL turns each `id IN (subquery)` ANDed at the top into a join, and plans joins in
        # time that grows much faster than their number (100 took 3 s); `IS TRUE` keeps each one a
        # hashed subquery, planned on its own. A few stay joins, the better plan for a rare tag.
        return clause.is_(True) if self.many_tag_subqueries else clause

    def _tag_rows(self, keys: tuple[str, ...]) -> Select[int]:
        return (
            select(ContactTag.contact_id)
            .join(Tag, Tag.id == ContactTag.tag_id)
            .where(Tag.workspace_id == self.ctx.workspace_id, Tag.name_key.in_(keys))
        )

    def tag_has_any_of(self, c: Condition) -> Clause:
        return self._tagged(self._tag_rows(c.value))

    def tag_has_all_of(self, c: Condition) -> Clause:
        keys: tuple[str, ...] = c.value
        if len(keys) == 1:
            return self._tagged(self._tag_rows(keys))
        # One subquery, not one per tag: a tag is on a contact at most once (contact_tags' key) and
        # keys are distinct, so a contact with every tag has exactly len(keys) rows.
        return self._tagged(self._tag_rows(keys).group_by(ContactTag.contact_id).having(func.count() == len(keys)))

    def tag_has_none_of(self, c: Condition) -> Clause:
        return not_(self._tagged(self._tag_rows(c.value)))

    # tag_count is kept by triggers on contact_tags, so these read one indexed column.
    def tag_exists(self, c: Condition) -> Clause:
        return Contact.tag_count > 0

    def tag_not_exists(self, c: Condition) -> Clause:
        return Contact.tag_count == 0
