"""The free-list's selections, built from the allocation rules in `domain/allocation.py`.

`pool.free_units` holds one row per SPARE or POOLED unit (`pooled` tells which); a unit
is handed out by deleting its row. What each allocation source offers, and in which
order, is the data of `allocation.ALLOCATION_RULES`; the SQL below is made from it, so
the order is read (and changed) in one place.
"""

from __future__ import annotations

from services.pool.domain.allocation import Grace, OrderKey, SourceRule

# The grace boundary of `allocation.is_claimable` (claimable from claimable_at on).
_GRACE = {Grace.CLAIMABLE: "claimable_at <= {now}", Grace.IN_GRACE: "claimable_at > {now}"}


def grace(which: Grace, now: str) -> str:
    """The predicate of pooled rows in grace, or claimable, at the instant `now`."""
    return _GRACE[which].format(now=now)


def offered(rule: SourceRule, office: str, currency: str, now: str) -> str:
    """The predicate of the free rows a source offers (its company and type aside)."""
    parts = [f"office_id = {office}" if rule.own else f"currency = {currency}"]
    parts.append("pooled" if rule.pooled else "NOT pooled")
    if rule.grace is not None:
        parts.append(grace(rule.grace, now))
    return " AND ".join(parts)


def _oldest(rule: SourceRule) -> str:
    """The instant a source takes its units by (NULL: by unit id only)."""
    *first, last = rule.order
    assert last is OrderKey.UNIT_ID, "a source orders its units by unit id last"
    assert len(first) <= 1, "and by at most one instant before that"
    return first[0].value if first else "NULL::timestamptz"


def _arm(rank: int, rule: SourceRule, of: str, where: str) -> str:
    """The free rows one source offers to `of` (a group, or a pool: its company, type
    and limit), in its order, locked."""
    order = ", ".join(key.value for key in rule.order)
    return f"""SELECT unit_id, {rank} AS rank, {_oldest(rule)} AS ord FROM pool.free_units
        WHERE company_id = {of}.company AND license_type = {of}.ltype AND {where}
        ORDER BY {order} LIMIT {of}.lim FOR UPDATE SKIP LOCKED"""


def candidates(rules: tuple[SourceRule, ...]) -> str:
    """Up to a limit of free units per group (one office and type each), locked, in
    allocation order, with their source's rank: for every group of a batch in one
    statement. Each source reads its own partial index in its own order and stops at
    the limit.

    A source of the office's own (`own`) is read per group. One that is not offers the
    same rows to every group of a pool (company, currency, type): it is read once per
    pool, up to the largest limit of its groups, and each group sees the first rows of
    it up to its own limit, as if it had read it alone. (With many offices on one pool,
    one scan instead of one per office: the scan steps over the rows deleted since the
    last vacuum, at the head of the source's order.)

    Parameters are arrays, one element per group: $1 company, $2 office, $3 currency,
    $4 license type, then one boolean array per rule, the limits; and the instant. Rows
    come grouped by `n` (the group's place, from 1), each group in allocation order.
    Groups that can offer the same units (one pool) may see the same rows: the caller
    hands each unit out once.
    """
    count = len(rules)
    now = f"${6 + count}"
    flags = ", ".join(f"${4 + rank}::bool[]" for rank in range(1, count + 1))
    names = ", ".join(f"s{rank}" for rank in range(1, count + 1))
    shared: list[str] = []
    arms: list[str] = []
    for rank, rule in enumerate(rules, start=1):
        if rule.own:
            where = f"q.s{rank} AND {offered(rule, 'q.office', 'q.cur', now)}"
            arms.append(f"SELECT * FROM ({_arm(rank, rule, 'q', where)}) s{rank}")
            continue
        where = offered(rule, "NULL", "p.cur", now)
        shared.append(
            f"""pool{rank} AS (
    SELECT p.company, p.cur, p.ltype, s.unit_id, s.ord,
        row_number() OVER (PARTITION BY p.company, p.cur, p.ltype
                           ORDER BY s.ord, s.unit_id) AS pos
    FROM (SELECT company, cur, ltype, max(lim) AS lim FROM q WHERE s{rank}
          GROUP BY company, cur, ltype) p
    CROSS JOIN LATERAL ({_arm(rank, rule, "p", where)}) s
)"""
        )
        arms.append(
            f"""SELECT unit_id, {rank} AS rank, ord FROM pool{rank} s
        WHERE q.s{rank} AND s.company = q.company AND s.cur = q.cur AND s.ltype = q.ltype
          AND s.pos <= q.lim"""
        )
    union = "\n    UNION ALL ".join(arms)
    pools = "".join(f", {part}" for part in shared)
    return f"""
WITH q AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::char(3)[], $4::text[], {flags},
                         ${5 + count}::int[])
        WITH ORDINALITY AS q(company, office, cur, ltype, {names}, lim, n)
){pools}
SELECT q.n, c.unit_id, c.rank
FROM q CROSS JOIN LATERAL (
    SELECT unit_id, rank, ord FROM (
    {union}
    ) offered ORDER BY rank, ord, unit_id LIMIT q.lim
) c
ORDER BY q.n, c.rank, c.ord, c.unit_id
"""


def counts_by_source(rules: tuple[SourceRule, ...]) -> str:
    """Per license type, how many free units each source offers the office now.

    Parameters: $1 company, $2 office, $3 currency, $4 the instant, $5 the types (empty:
    all). Column `s<rank>` counts the source of that rank.
    """
    columns = ",\n    ".join(
        f"count(*) FILTER (WHERE {offered(rule, '$2', '$3', '$4')}) AS s{rank}"
        for rank, rule in enumerate(rules, start=1)
    )
    return f"""
SELECT license_type,
    {columns}
FROM pool.free_units
WHERE company_id = $1 AND currency = $3 AND (cardinality($5::text[]) = 0 OR license_type = ANY($5))
GROUP BY license_type
"""
