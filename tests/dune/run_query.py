"""Runs a Dune query over a keymarket export in DuckDB, the query unchanged.

    run_query.py TRADES_FILE QUERY_FILE

TRADES_FILE is `keymarket export trades` output, CSV or Parquet (by its extension). It is
mounted as `social.trades`, the name of Dune spellbook's model whose columns it has, with
Dune's session time zone (UTC), so `date_trunc('day', block_time)` cuts UTC days as on Dune.
The CSV is read with the column types the Parquet file carries (ETH amounts as exact
DECIMAL(38, 18), never floats). Prints the query's rows as a JSON list of objects, every
value as a string (decimals exact).
"""

import json
import sys

import decimal

import duckdb


def text(v):
    """A value as a string; a decimal in plain notation (str() writes a zero sum of
    DECIMAL(38, 18) as 0E-18)."""
    if v is None:
        return None
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    return str(v)

# The CSV's column types: those of the Parquet export.
CSV_TYPES = {
    "blockchain": "VARCHAR",
    "block_time": "TIMESTAMPTZ",
    "block_month": "DATE",
    "block_number": "BIGINT",
    "project": "VARCHAR",
    "trader": "VARCHAR",
    "subject": "VARCHAR",
    "trade_side": "VARCHAR",
    "amount_original": "DECIMAL(38, 18)",
    "amount_usd": "DOUBLE",
    "share_amount": "BIGINT",
    "subject_fee_amount": "DECIMAL(38, 18)",
    "subject_fee_amount_usd": "DOUBLE",
    "protocol_fee_amount": "DECIMAL(38, 18)",
    "protocol_fee_amount_usd": "DOUBLE",
    "currency_contract": "VARCHAR",
    "currency_symbol": "VARCHAR",
    "supply": "BIGINT",
    "tx_hash": "VARCHAR",
    "evt_index": "BIGINT",
    "contract_address": "VARCHAR",
}


def literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def main() -> None:
    path, query_file = sys.argv[1], sys.argv[2]
    with open(query_file, encoding="utf-8") as f:
        query = f.read()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA social")
    if path.endswith(".parquet"):
        source = f"read_parquet({literal(path)})"
    else:
        types = ", ".join(f"{literal(k)}: {literal(v)}" for k, v in CSV_TYPES.items())
        source = f"read_csv({literal(path)}, header = true, auto_detect = false, columns = {{{types}}})"
    con.execute(f"CREATE VIEW social.trades AS SELECT * FROM {source}")
    result = con.execute(query)
    names = [d[0] for d in result.description]
    rows = [{n: text(v) for n, v in zip(names, row)} for row in result.fetchall()]
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main()
