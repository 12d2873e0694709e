# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one reconcile loop shared by the entity modules (kong_service, kong_route, ...).

A module describes its entity kind (a subclass of EntityKind: fields with Kong's schema defaults,
how to find, write and delete one) and calls run_entity_module(). The flow for each declared
entity is: read current -> build the desired stored state (Kong's defaults for what is not
given, because PUT replaces the whole entity) -> normalise (null vs [], sets, numbers) ->
compare -> diff {before, after} -> stop in check mode -> write -> return what Kong stored.
Then, with prune, entities of the kind that carry all select_tags but were not declared go.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import (
    KongClient,
    KongError,
    kong_argument_spec,
    segment,
)
from ansible_collections.ai_gateway.kong.plugins.module_utils.masking import Masker

# Kong filters by at most 5 tags (kong/api/endpoints.lua); select_tags scope prune that way.
MAX_SELECT_TAGS = 5


def normalize(value, unordered=False):
    """Comparable form of a Kong value: [] and {} are null (Kong and users write either),
    sets are sorted, nested dicts are normalised key by key."""
    if isinstance(value, dict):
        out = dict((k, normalize(v)) for k, v in value.items())
        return out or None
    if isinstance(value, (list, tuple)):
        items = [normalize(v) for v in value]
        if not items:
            return None
        if unordered:
            items = sorted(items, key=repr)
        return items
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and value.is_integer():
        # Kong's Lua numbers come back as 60000 or 60000.0 depending on the encoder.
        return int(value)
    return value


def merged(base, given):
    """`given` merged into a copy of `base` key by key, nested maps too (Kong's defaults of a
    record with the fields a user gave, or a stored config with the keys a user changed)."""
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for name, value in (given or {}).items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = merged(out[name], value)
        else:
            out[name] = value
    return out


def fk(entity_id):
    """Kong's JSON shape of a foreign key."""
    return {"id": entity_id} if entity_id else None


def fk_id(value):
    return value.get("id") if isinstance(value, dict) else value


class MissingReference(Exception):
    """A referenced service, route or consumer does not exist (while deleting)."""


class EntityKind(object):
    """What the generic reconcile needs to know about one Kong entity kind.

    Subclasses set the class attributes and override the hooks that differ from the plain
    "top-level collection with a PUT-able endpoint key" case (services, routes, consumers).
    """

    # Module-facing name of the returned entity (`service`, `route`, ...).
    singular = None
    # Top-level Admin API collection, e.g. "/services".
    collection = None
    # The option that identifies an entity, and Kong's endpoint_key for it.
    key = "name"
    # Every option of one entity that is stored as a Kong field, with Kong's schema default.
    fields = None
    # Set-typed fields (order is not significant).
    unordered = ("tags",)

    def __init__(self, module, client, masker=None):
        self.module = module
        self.client = client
        self.masker = masker or Masker.from_module(module)
        self.check_mode = module.check_mode
        self.index = None  # identity -> current entity, filled by prefetch() in bulk mode
        self.state = None  # the state of the item being reconciled
        self._refs = {}

    # ----- hooks -------------------------------------------------------------------------
    @classmethod
    def option_spec(cls):
        """The options of one entity (argument spec), without connection and bulk options."""
        raise NotImplementedError

    def check_item(self, item):
        """An error message when a declared item is inconsistent, else None."""
        if item.get(self.key) in (None, ""):
            return "%s is required for every %s" % (self.key, self.singular)
        return None

    def returned(self, entity):
        """The entity as the module returns it (Kong's stored JSON)."""
        return entity

    def identity(self, item):
        """A stable, human-readable identity of a declared item (used in bulk diffs)."""
        return to_text(item.get(self.key))

    def stored_identity(self, entity):
        return to_text(entity.get(self.key) or entity.get("id"))

    def desired(self, item, current):
        """Kong's fields as they must be stored: the options given, Kong's defaults elsewhere."""
        out = {}
        for name, default in self.fields.items():
            value = item.get(name)
            out[name] = copy.deepcopy(default) if value is None else value
        out["tags"] = self.tags(item) or None
        return out

    def payload(self, item, desired):
        """The body of the write; PUT replaces, so unset fields are simply left out."""
        return dict((k, v) for k, v in desired.items() if v is not None)

    def prefetch(self):
        """Bulk mode: read the whole collection once instead of one GET per entity."""
        rows = self.client.list(self.collection) or []
        self.index = dict((self.stored_identity(row), row) for row in rows)
        for row in rows:
            self.index.setdefault(row["id"], row)

    def find(self, item):
        if self.index is not None:
            return self.index.get(to_text(item[self.key]))
        return self.client.get("%s/%s" % (self.collection, segment(item[self.key])))

    def write(self, item, current, payload):
        return self.client.put("%s/%s" % (self.collection, segment(item[self.key])), payload)

    def remove(self, entity):
        self.client.delete("%s/%s" % (self.collection, entity["id"]))

    def prune_candidates(self, select_tags):
        return self.client.list(self.collection, tags=select_tags) or []

    # ----- shared helpers ------------------------------------------------------------------
    def tags(self, item):
        tags = list(item.get("tags") or [])
        for tag in self.module.params["select_tags"] or []:
            if tag not in tags:
                tags.append(tag)
        return sorted(tags)

    def reference(self, collection, value, what):
        """Resolve a name or id of another entity to its id (cached). In check mode a missing
        reference may be created by an earlier task of the same play, so it is kept as a name."""
        if value is None:
            return None
        cache_key = (collection, value)
        if cache_key not in self._refs:
            found = self.client.get("%s/%s" % (collection, segment(value)))
            if found is None:
                if self.state == "absent":
                    # An entity scoped to something that does not exist does not exist either.
                    raise MissingReference(what, value)
                if self.check_mode:
                    self.module.warn(
                        "%s %r does not exist yet; assuming an earlier task creates it"
                        % (what, value)
                    )
                    return {"name": value}
                raise KongError("%s %r not found in Kong" % (what, value))
            self._refs[cache_key] = found["id"]
        return fk(self._refs[cache_key])

    def project(self, entity):
        """The managed fields of a stored entity, normalised for comparison and diff."""
        return dict(
            (name, normalize(entity.get(name), name in self.unordered)) for name in self.fields
        )

    def compare_view(self, desired):
        return dict(
            (name, normalize(desired.get(name), name in self.unordered)) for name in self.fields
        )


def entity_argument_spec(kind):
    """Connection options, the single-entity options, `entities`, select_tags, prune, state."""
    spec = kong_argument_spec()
    one = kind.option_spec()
    spec.update(copy.deepcopy(one))
    bulk = copy.deepcopy(one)
    bulk["state"] = dict(type="str", choices=["present", "absent"])
    spec.update(
        entities=dict(type="list", elements="dict", options=bulk),
        select_tags=dict(type="list", elements="str", default=[]),
        prune=dict(type="bool", default=False),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    return spec


def reconcile(kind, items, bulk):
    """Converge the declared items; return (changed, results, diff, pruned)."""
    module = kind.module
    params = module.params
    mask = kind.masker.diff
    changed = False
    results = []
    before_all, after_all = {}, {}
    declared_ids = set()

    for item in items:
        state = kind.state = item.get("state") or params["state"]
        ident = kind.identity(item)
        try:
            current = kind.find(item)
        except MissingReference:
            current = None
        if current is not None:
            declared_ids.add(current["id"])

        if state == "absent":
            if current is not None:
                changed = True
                before_all[ident] = mask(kind.project(current))
                after_all[ident] = None
                if not kind.check_mode:
                    kind.remove(current)
            results.append(None)
            continue

        desired = kind.desired(item, current)
        want = kind.compare_view(desired)
        have = kind.project(current) if current is not None else None
        if have == want:
            results.append(current)
            continue
        changed = True
        before_all[ident] = mask(have)
        after_all[ident] = mask(want)
        if kind.check_mode:
            stored = copy.deepcopy(current) if current is not None else {}
            stored.update(desired)
        else:
            stored = kind.write(item, current, kind.payload(item, desired))
            if stored and stored.get("id"):
                declared_ids.add(stored["id"])
        results.append(stored)

    pruned = []
    if params["prune"]:
        for entity in kind.prune_candidates(params["select_tags"]):
            if entity["id"] in declared_ids:
                continue
            changed = True
            name = kind.stored_identity(entity)
            before_all[name] = mask(kind.project(entity))
            after_all[name] = None
            pruned.append(kind.masker.returned(kind.returned(entity)))
            if not kind.check_mode:
                kind.remove(entity)

    if bulk or pruned:
        diff = {"before": before_all, "after": after_all}
    elif after_all:
        ident = next(iter(after_all))
        diff = {"before": before_all[ident], "after": after_all[ident]}
    else:
        view = mask(kind.project(results[0])) if results[0] is not None else None
        diff = {"before": view, "after": view}
    return changed, results, diff, pruned


def run_entity_module(kind_class, mutually_exclusive=None, required_one_of=None):
    """main() of every entity module: parse options, converge, exit with the stored entities."""
    # The single-entity identity option and `entities` exclude each other (bulk mode).
    exclusive = [[kind_class.key, "entities"], *(mutually_exclusive or [])]
    module = AnsibleModule(
        argument_spec=entity_argument_spec(kind_class),
        supports_check_mode=True,
        mutually_exclusive=exclusive,
        required_one_of=required_one_of or [[kind_class.key, "entities"]],
    )
    params = module.params
    if params["prune"] and not params["select_tags"]:
        module.fail_json(msg="prune requires select_tags: only entities carrying them are pruned")
    if len(params["select_tags"]) > MAX_SELECT_TAGS:
        module.fail_json(msg="select_tags takes at most %d tags (Kong's limit)" % MAX_SELECT_TAGS)
    masker = Masker.from_module(module)
    client = KongClient.from_module(module, masker)
    kind = kind_class(module, client, masker)
    bulk = params["entities"] is not None
    option_names = list(kind.option_spec())
    single = dict((name, params[name]) for name in option_names)
    items = params["entities"] if bulk else [single]
    # Secrets inside options that are not no_log as a whole (a plugin's config, `entities`).
    masker.protect(items)
    # Every item is checked before the first request: bad input changes nothing.
    for index, item in enumerate(items):
        error = kind.check_item(item)
        if error:
            module.fail_json(msg=("entities[%d]: %s" % (index, error)) if bulk else error)
    try:
        client.node()
        if bulk:
            kind.prefetch()
        changed, results, diff, pruned = reconcile(kind, items, bulk)
    except KongError as e:
        masker.fail(e)

    result = dict(changed=changed, diff=diff, pruned=pruned)
    if bulk:
        result["entities"] = [masker.returned(kind.returned(r)) for r in results]
    else:
        result[kind.singular] = masker.returned(kind.returned(results[0]))
    module.exit_json(**result)
