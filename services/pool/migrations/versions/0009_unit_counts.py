"""Unit counts kept as units change, so a live snapshot reads a few rows instead of
counting every unit of the company.

`pool.unit_counts` holds, per (company, currency, office, license type, state, held-from
state), how many units are in it. Statement-level triggers on `pool.units` add each
statement's changes to it (one grouped upsert per statement, its rows in key order), in
the transaction of the change: a view that sees a change sees its count. Every writer of a
(company, currency) holds that key's lock, so two transactions never update the same
company's counts at once. Rows that fall to zero stay (at most one per combination);
readers skip them.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from libs.common.migrations import execute_script

revision = "0009"
down_revision = "0008"

GROUPED = "company_id, currency, office_id, license_type, state, coalesce(held_from, '')"


def _add(*changes: tuple[str, int]) -> str:
    """The upsert that adds the units of transition tables (+1 each in one, -1 in the
    other) to their counts."""
    rows = "\n                    UNION ALL\n                    ".join(
        f"SELECT {GROUPED}, {sign} FROM {table}" for table, sign in changes
    )
    return f"""
                INSERT INTO pool.unit_counts AS c
                SELECT k1, k2, k3, k4, k5, k6, sum(d) FROM (
                    {rows}
                ) AS changed (k1, k2, k3, k4, k5, k6, d)
                GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4, 5, 6
                ON CONFLICT (company_id, currency, office_id, license_type, state, held_from)
                DO UPDATE SET n = c.n + excluded.n;"""


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE pool.unit_counts (
            company_id uuid NOT NULL,
            currency character(3) NOT NULL,
            office_id uuid NOT NULL,
            license_type text NOT NULL,
            state text NOT NULL,
            held_from text NOT NULL,  -- '' for a unit not held
            n bigint NOT NULL,
            PRIMARY KEY (company_id, currency, office_id, license_type, state, held_from)
        );
        """
    )
    # One statement: its body has semicolons at the ends of lines.
    op.execute(
        f"""
        CREATE FUNCTION pool.count_units() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN{_add(("new_units", 1))}
            ELSIF TG_OP = 'DELETE' THEN{_add(("old_units", -1))}
            ELSE{_add(("new_units", 1), ("old_units", -1))}
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    execute_script(
        f"""
        LOCK TABLE pool.units IN SHARE ROW EXCLUSIVE MODE;
        INSERT INTO pool.unit_counts
        SELECT {GROUPED}, count(*) FROM pool.units GROUP BY 1, 2, 3, 4, 5, 6;

        CREATE TRIGGER units_counted_on_insert AFTER INSERT ON pool.units
            REFERENCING NEW TABLE AS new_units
            FOR EACH STATEMENT EXECUTE FUNCTION pool.count_units();
        CREATE TRIGGER units_counted_on_update AFTER UPDATE ON pool.units
            REFERENCING OLD TABLE AS old_units NEW TABLE AS new_units
            FOR EACH STATEMENT EXECUTE FUNCTION pool.count_units();
        CREATE TRIGGER units_counted_on_delete AFTER DELETE ON pool.units
            REFERENCING OLD TABLE AS old_units
            FOR EACH STATEMENT EXECUTE FUNCTION pool.count_units();
        """
    )
