"""Leak scan: real ansible-playbook runs at -vvv --diff against the simulator, applying, changing
in check mode and failing in the ways a user meets (a plugin Kong does not load, a key that
Kong refuses, an unreachable Admin API, an empty admin header). Known secret values (the Admin
API token, a shared-secret header, a custom secret header, a Redis password, a given and a
Kong-generated key) appear 0 times in the output, in the values the playbook registered and in
Kong's log, while the check-mode diff still shows what changes."""

import json
import re

import pytest

pytestmark = pytest.mark.timeout(900)

ADMIN_TOKEN = "adm1n-t0ken-leakcheck-7f3a"
SHARED = "shared-s3cret-leakcheck-91c2"
SHARED_NEW = "shared-s3cret-rotated-5d7e"
TENANT = "tenant-s3cret-leakcheck-2b6d"
REDIS_PW = "redis-pa55-leakcheck-44b1"
GIVEN_KEY = "given-key-leakcheck-0a9f8e7d"
SECRETS = (ADMIN_TOKEN, SHARED, SHARED_NEW, TENANT, REDIS_PW, GIVEN_KEY)

DEFAULTS = {
    "admin_headers": {"Authorization": "Bearer " + ADMIN_TOKEN},
    "secret_headers": ["X-Tenant-Id"],
}
MASK_WITH_FINGERPRINT = re.compile(r"\*{8} \([0-9a-f]{8}\)")


def registered_dump(path, names):
    """The last task: every registered result, as the playbook holds them, into a file."""
    return {
        "name": "Keep what the playbook registered",
        "ansible.builtin.copy": {
            "content": "{{ %s | to_json }}"
            % ("{%s}" % ", ".join("'%s': %s" % (n, n) for n in names)),
            "dest": str(path),
            "mode": "0600",
        },
        "check_mode": False,
        "diff": False,
    }


def entity_tasks(minute, shared, path):
    tasks = [
        ("kong_service", {"name": "ls-svc", "url": "http://127.0.0.1:9/v1"}),
        ("kong_route", {"name": "ls-route", "service": "ls-svc", "paths": [path]}),
        ("kong_consumer", {"entities": [{"username": "ls-user"}, {"username": "ls-gen"}]}),
        ("kong_key_auth", {"consumer": "ls-user", "key": GIVEN_KEY}),
        ("kong_key_auth", {"consumer": "ls-gen", "tags": ["primary"]}),
        (
            "kong_plugin",
            {
                "name": "request-transformer",
                "instance_name": "ls-secret-header",
                "route": "ls-route",
                "config": {
                    "remove": {"headers": ["X-Gateway-Secret", "X-Tenant-Id"]},
                    "add": {"headers": ["X-Gateway-Secret:" + shared, "X-Tenant-Id:" + TENANT]},
                },
            },
        ),
        (
            "kong_plugin",
            {
                "name": "rate-limiting",
                "instance_name": "ls-limit",
                "service": "ls-svc",
                "config": {"minute": minute, "policy": "local", "redis": {"password": REDIS_PW}},
            },
        ),
        (
            "kong_info",
            {"entities": ["services", "routes", "consumers", "plugins", "key-auths"]},
        ),
    ]
    return [
        {"name": module, "ai_gateway.kong." + module: args, "register": "r%d" % i}
        for i, (module, args) in enumerate(tasks)
    ]


def failing_tasks(first):
    tasks = [
        ("kong_plugin", {"name": "ls-not-loaded", "config": {"password": REDIS_PW}}),
        # ls-gen may not hold ls-user's key: Kong's 409 quotes the key.
        ("kong_key_auth", {"consumer": "ls-gen", "key": GIVEN_KEY}),
        ("kong_service", {"name": "x", "host": "x.test", "admin_url": "http://127.0.0.1:9"}),
        ("kong_service", {"name": "x", "host": "x.test", "admin_headers": {"Authorization": ""}}),
    ]
    return [
        {
            "name": "Fails: " + module,
            "ai_gateway.kong." + module: args,
            "register": "r%d" % (first + i),
            "ignore_errors": True,
        }
        for i, (module, args) in enumerate(tasks)
    ]


def assert_no_secret(text, secrets, where):
    counts = dict((s, text.count(s)) for s in secrets)
    assert counts == dict.fromkeys(secrets, 0), "%s: %s" % (where, counts)


def test_no_secret_in_output_registered_values_or_kong_log(
    kong_postgres, admin_postgres, playbook_run, tmp_path
):
    runs = {}
    for name, check, minute, shared, path in (
        ("apply", False, 60, SHARED, "/ls"),
        ("again", False, 60, SHARED, "/ls"),
        ("change", True, 30, SHARED_NEW, "/ls2"),
    ):
        tasks = entity_tasks(minute, shared, path) + failing_tasks(8)
        dump = tmp_path / ("%s.json" % name)
        tasks.append(registered_dump(dump, ["r%d" % i for i in range(len(tasks))]))
        proc = playbook_run(
            name,
            kong_postgres.admin_url,
            tasks,
            check=check,
            json_output=False,
            args=("-vvv",),
            defaults=DEFAULTS,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        runs[name] = (proc.stdout + proc.stderr, dump.read_text(), json.loads(dump.read_text()))

    # The secrets did reach Kong (so that a leak would have been possible).
    plugin = admin_postgres.get("/plugins/ls-secret-header")
    assert "X-Gateway-Secret:" + SHARED in plugin["config"]["add"]["headers"]
    assert admin_postgres.get("/plugins/ls-limit")["config"]["redis"]["password"] == REDIS_PW
    gen = admin_postgres.get("/consumers/ls-gen")
    (generated,) = [
        c["key"] for c in admin_postgres.get("/consumers/%s/key-auth" % gen["id"])["data"]
    ]
    secrets = (*SECRETS, generated)

    for name, (output, dumped, _registered) in runs.items():
        assert_no_secret(output, secrets, "%s: ansible-playbook -vvv output" % name)
        assert_no_secret(dumped, secrets, "%s: registered values" % name)
        assert "********" in output
        assert "********" in dumped
    assert_no_secret(kong_postgres.output(), secrets, "Kong's log")

    applied, again, changed = (runs[n][2] for n in ("apply", "again", "change"))
    assert [applied["r%d" % i]["changed"] for i in range(7)] == [True] * 7
    assert [again["r%d" % i]["changed"] for i in range(7)] == [False] * 7
    # Failing runs fail, with Kong's message.
    not_loaded, refused_key, unreachable, empty_header = (applied["r%d" % i] for i in range(8, 12))
    assert not_loaded["failed"]
    assert "No plugin named 'ls-not-loaded'" in not_loaded["msg"]
    assert refused_key["failed"]
    assert "HTTP 409" in refused_key["msg"]
    assert unreachable["failed"]
    assert "unreachable" in unreachable["msg"]
    assert empty_header["failed"]
    assert "'Authorization' is empty" in empty_header["msg"]

    # The check-mode diff shows the changed non-secret fields and that the secret changed.
    route, header, limit = changed["r1"], changed["r5"], changed["r6"]
    assert (route["diff"]["before"]["paths"], route["diff"]["after"]["paths"]) == (
        ["/ls"],
        ["/ls2"],
    )
    assert (
        limit["diff"]["before"]["config"]["minute"],
        limit["diff"]["after"]["config"]["minute"],
    ) == (60, 30)
    assert limit["diff"]["before"]["config"]["redis"] == limit["diff"]["after"]["config"]["redis"]
    old, tenant_old = header["diff"]["before"]["config"]["add"]["headers"]
    new, tenant_new = header["diff"]["after"]["config"]["add"]["headers"]
    assert MASK_WITH_FINGERPRINT.search(old)
    assert MASK_WITH_FINGERPRINT.search(new)
    assert old != new
    assert tenant_old == tenant_new
    assert header["plugin"]["config"]["add"]["headers"] == [
        "X-Gateway-Secret:********",
        "X-Tenant-Id:********",
    ]
    # Check mode left Kong alone.
    assert (
        "X-Gateway-Secret:" + SHARED
        in admin_postgres.get("/plugins/ls-secret-header")["config"]["add"]["headers"]
    )


DECLARATIVE = {
    "_format_version": "3.0",
    "services": [
        {
            "name": "ls-svc",
            "url": "http://127.0.0.1:9/v1",
            "routes": [
                {
                    "name": "ls-route",
                    "paths": ["/ls"],
                    "plugins": [
                        {
                            "name": "request-transformer",
                            "config": {"add": {"headers": ["X-Gateway-Secret:" + SHARED]}},
                        }
                    ],
                }
            ],
            "plugins": [
                {
                    "name": "rate-limiting",
                    "config": {"minute": 60, "policy": "local", "redis": {"password": REDIS_PW}},
                }
            ],
        }
    ],
    "consumers": [{"username": "ls-user", "keyauth_credentials": [{"key": GIVEN_KEY}]}],
}


def test_declarative_no_secret_in_output_or_registered_values(kong_dbless, playbook_run, tmp_path):
    changed = json.loads(
        json.dumps(DECLARATIVE).replace(SHARED, SHARED_NEW).replace('"minute": 60', '"minute": 30')
    )
    runs = {}
    for name, config, check in (("apply", DECLARATIVE, False), ("change", changed, True)):
        tasks = [
            {
                "name": "Apply",
                "ai_gateway.kong.kong_declarative": {"config": config},
                "register": "r0",
            },
            {
                "name": "Read",
                "ai_gateway.kong.kong_info": {"entities": ["plugins", "key-auths"]},
                "register": "r1",
            },
            {
                "name": "A configuration Kong refuses",
                "ai_gateway.kong.kong_declarative": {
                    "config": dict(
                        config, services=[{"name": "bad", "port": 99999, "host": REDIS_PW}]
                    )
                },
                "register": "r2",
                "ignore_errors": True,
            },
        ]
        dump = tmp_path / ("dl-%s.json" % name)
        tasks.append(registered_dump(dump, ["r0", "r1", "r2"]))
        proc = playbook_run(
            "dl-" + name,
            kong_dbless.admin_url,
            tasks,
            check=check,
            json_output=False,
            args=("-vvv",),
            defaults=DEFAULTS,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        runs[name] = (proc.stdout + proc.stderr, dump.read_text(), json.loads(dump.read_text()))
    for name, (output, dumped, _registered) in runs.items():
        assert_no_secret(output, SECRETS, "%s: ansible-playbook -vvv output" % name)
        assert_no_secret(dumped, SECRETS, "%s: registered values" % name)
    assert_no_secret(kong_dbless.output(), SECRETS, "Kong's log")
    assert runs["apply"][2]["r0"]["changed"] is True
    assert runs["apply"][2]["r2"]["failed"] is True
    diff = runs["change"][2]["r0"]["diff"]
    assert sorted(diff["after"]) == ["plugins"]
    before = json.dumps(diff["before"])
    after = json.dumps(diff["after"])
    assert '"minute": 60' in before
    assert '"minute": 30' in after
    assert MASK_WITH_FINGERPRINT.search(after)
