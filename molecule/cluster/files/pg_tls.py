"""Runs on a gateway: connects to Kong's PostgreSQL as Kong's user with the given libpq sslmode
(the password from PGPASSWORD, the CA from --ca) and prints one JSON line: {"sslmode",
"connected", "ssl_in_use", "error"}. psycopg is the Kong simulator package's dependency."""

import argparse
import json

import psycopg

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--user", required=True)
p.add_argument("--database", required=True)
p.add_argument("--sslmode", required=True)
p.add_argument("--ca", default="")
args = p.parse_args()
params = {
    "host": args.host,
    "user": args.user,
    "dbname": args.database,
    "sslmode": args.sslmode,
    "connect_timeout": 5,
}
if args.ca:
    params["sslrootcert"] = args.ca
out = {"sslmode": args.sslmode, "connected": False, "ssl_in_use": None, "error": ""}
try:
    with psycopg.connect(**params) as conn:
        out["connected"] = True
        out["ssl_in_use"] = bool(conn.info.pgconn.ssl_in_use)
except psycopg.OperationalError as exc:
    out["error"] = str(exc).strip()
print(json.dumps(out))
