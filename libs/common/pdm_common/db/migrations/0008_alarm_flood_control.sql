-- Flood control for the anomaly service's alarms (ISA-18.2 / EEMUA 191): correlated alarms
-- of one asset grouped into one, and shelving by command.

-- Grouping: the conditions (and their sensors) one alarm stands for, the opening one first.
-- An alarm row is still unique per (asset, opening condition) while open; the conditions that
-- joined it are listed here, so a restart rebuilds the groups from this table alone.
ALTER TABLE alarms
    ADD COLUMN conditions text[] NOT NULL DEFAULT '{}',
    ADD COLUMN sensors    text[] NOT NULL DEFAULT '{}';
UPDATE alarms SET
    conditions = ARRAY[condition],
    sensors = CASE WHEN position(':' IN condition) > 0
                   THEN ARRAY[split_part(condition, ':', 1)] ELSE '{}' END;

-- Shelve/unshelve commands carry no alarm id; they are deduplicated in the same table.
ALTER TABLE alarm_commands_applied ALTER COLUMN alarm_id DROP NOT NULL;

-- Shelves: an operator's temporary, reasoned suppression of new alarms of an asset (sensor
-- NULL) or of one of its sensors. A shelf covers readings timed in [shelved_at, its end),
-- its end being expires_at or, if earlier, unshelved_at; rows are kept after they end (who
-- shelved what, why, and how much it held back). `suppressed` counts the alarms it held
-- back. The shelf exists because a command was applied (command_id, the last one to
-- shelve it), so emptying the applied commands empties the shelves.
CREATE TABLE alarm_shelves (
    shelf_id                  uuid PRIMARY KEY,
    asset_id                  text COLLATE "C" NOT NULL,
    sensor                    text,
    reason                    text NOT NULL CHECK (reason <> ''),
    shelved_by                text NOT NULL,
    shelved_at                timestamptz NOT NULL,
    expires_at                timestamptz NOT NULL CHECK (expires_at > shelved_at),
    command_id                uuid NOT NULL REFERENCES alarm_commands_applied (command_id),
    unshelved_by              text,
    unshelved_at              timestamptz,
    suppressed                bigint NOT NULL DEFAULT 0,
    last_suppressed_at        timestamptz,
    last_suppressed_condition text,
    updated_at                timestamptz NOT NULL DEFAULT now()
);
-- At most one shelf per target that has not been unshelved (an expired one is closed by the
-- next shelve of that target).
CREATE UNIQUE INDEX alarm_shelves_one_per_target ON alarm_shelves (asset_id, (coalesce(sensor, '')))
    WHERE unshelved_at IS NULL;
CREATE INDEX alarm_shelves_by_end ON alarm_shelves (expires_at);
